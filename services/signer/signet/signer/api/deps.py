"""FastAPI dependencies of the signer's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, UploadFile
from signet.common.errors import PayloadTooLarge
from signet.signer.service import SignerService


def get_service(request: Request) -> SignerService:
    service: SignerService = request.app.state.service
    return service


Service = Annotated[SignerService, Depends(get_service)]


async def read_limited(upload: UploadFile, limit: int, what: str) -> bytes:
    """Read an uploaded part, refusing more than `limit` bytes with a 413."""
    if upload.size is not None and upload.size > limit:
        raise PayloadTooLarge(f"{what} is {upload.size} bytes; the limit is {limit}")
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"{what} is larger than the limit of {limit} bytes")
    return data


async def read_body_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
