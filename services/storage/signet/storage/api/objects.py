"""`/v1/objects`: put (streamed), get (streamed), head, legal hold, retention.  No delete."""

from __future__ import annotations

import functools
import tempfile
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from signet.common.contracts.storage import (
    LegalHoldRequest,
    ObjectInfo,
    ObjectKind,
    RetentionRequest,
)
from signet.common.errors import PayloadTooLarge
from signet.storage.api.deps import Service
from signet.storage.vault import check_sha256

router = APIRouter(prefix="/v1/objects", tags=["objects"])
_SPOOL = 8 * 1024 * 1024


def _headers(info: ObjectInfo) -> dict[str, str]:
    headers = {
        "Content-Length": str(info.size),
        "ETag": f'"{info.sha256}"',
        "X-Signet-Sha256": info.sha256,
        "X-Signet-Kind": info.kind.value,
        "X-Signet-Retain-Until": info.retain_until.isoformat(),
        "X-Signet-Legal-Hold": "on" if info.legal_hold else "off",
    }
    if info.envelope_id:
        headers["X-Signet-Envelope"] = info.envelope_id
    return headers


@router.put("", status_code=201, response_model=ObjectInfo)
async def put_object(
    request: Request,
    service: Service,
    content_type: Annotated[str, Header()] = "application/octet-stream",
    x_signet_kind: Annotated[ObjectKind, Header()] = ObjectKind.ORIGINAL,
    x_signet_envelope: Annotated[str | None, Header(max_length=64)] = None,
) -> JSONResponse:
    """Store the request body; 201 when new, 200 when these bytes were already stored."""
    limit = service.settings.max_object_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the object is {declared} bytes; the limit is {limit}")
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL)  # noqa: SIM115 - closed below
    try:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the object is larger than the limit of {limit} bytes")
            spool.write(chunk)
        spool.seek(0)
        info, created = await run_in_threadpool(
            functools.partial(
                service.vault.put,
                spool,  # type: ignore[arg-type]
                content_type=content_type.split(";")[0].strip(),
                kind=x_signet_kind,
                envelope_id=x_signet_envelope,
                limit=limit,
            )
        )
    finally:
        spool.close()
    return JSONResponse(
        info.model_dump(mode="json"),
        status_code=201 if created else 200,
        headers={"Location": f"/v1/objects/{info.sha256}"},
    )


@router.get("/{sha256}", response_class=StreamingResponse)
async def get_object(service: Service, sha256: str) -> StreamingResponse:
    info, chunks = await run_in_threadpool(service.vault.read, check_sha256(sha256))
    return StreamingResponse(chunks, media_type=info.content_type, headers=_headers(info))


@router.head("/{sha256}")
async def head_object(service: Service, sha256: str) -> Response:
    info = await run_in_threadpool(service.vault.head, check_sha256(sha256))
    return Response(media_type=info.content_type, headers=_headers(info))


@router.post("/{sha256}/legal-hold", response_model=ObjectInfo)
async def legal_hold(service: Service, sha256: str, request: LegalHoldRequest) -> ObjectInfo:
    return await run_in_threadpool(service.vault.set_legal_hold, check_sha256(sha256), request.on)


@router.post("/{sha256}/retention", response_model=ObjectInfo)
async def extend_retention(service: Service, sha256: str, request: RetentionRequest) -> ObjectInfo:
    """Extend only: an earlier date than the current one is refused (409)."""
    return await run_in_threadpool(
        service.vault.extend_retention, check_sha256(sha256), request.retain_until
    )
