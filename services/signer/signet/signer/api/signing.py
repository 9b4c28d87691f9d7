"""`POST /v1/sign` and `POST /v1/verify`.

Sign takes multipart: ``document`` (the PDF), ``options`` (JSON `SignOptions`)
and optionally ``image`` (PNG of a handwritten signature or seal).  It answers
with the signed PDF; the signature's field name and certificate serial come
back in headers so callers can record them without parsing the PDF.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Iterator
from typing import IO, Annotated, BinaryIO, cast

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError
from signet.common.contracts.signer import SignOptions, VerifyResponse
from signet.common.errors import InvalidRequest, PayloadTooLarge
from signet.signer.api.deps import Service, read_limited
from signet.signer.pades.engine import check_image
from signet.signer.pades.validation import verify_pdf

router = APIRouter(prefix="/v1", tags=["signing"])
_IMAGE_LIMIT = 8 * 1024 * 1024


#: Signed documents up to this size are answered from memory, larger ones from a temp file.
_IN_MEMORY = 16 * 1024 * 1024


def _chunks(spool: IO[bytes]) -> Iterator[bytes]:
    try:
        spool.seek(0)
        while chunk := spool.read(1024 * 1024):
            yield chunk
    finally:
        spool.close()


@router.post(
    "/sign", response_class=Response, responses={200: {"content": {"application/pdf": {}}}}
)
async def sign(
    request: Request,
    service: Service,
    document: Annotated[UploadFile, File(description="the PDF to sign")],
    options: Annotated[str, Form(description="SignOptions as JSON")],
    image: Annotated[UploadFile | None, File(description="PNG appearance image")] = None,
) -> Response:
    try:
        parsed = SignOptions.model_validate_json(options)
    except ValidationError as exc:
        raise InvalidRequest(f"options: {exc.errors()[0]['msg']}") from exc
    limit = service.settings.max_document_bytes
    if document.size is not None and document.size > limit:
        raise PayloadTooLarge(f"the document is {document.size} bytes; the limit is {limit}")
    png = await read_limited(image, _IMAGE_LIMIT, "the image") if image is not None else None
    if png is not None:
        check_image(png)  # header only: a bomb or garbage is refused before any signing
    # The upload is already spooled to disk when large; the signed copy is too, so a
    # 200 MB contract never sits in memory (the signature itself is a few KB).
    output = tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY)  # noqa: SIM115
    try:
        done = await run_in_threadpool(
            functools.partial(
                service.sign_document,
                document.file,
                cast(BinaryIO, output),
                parsed,
                png,
                caller=getattr(request.state, "caller", None),
            )
        )
    except BaseException:
        output.close()
        raise
    headers = {
        "X-Signet-Certificate-Serial": done.issued.record.serial,
        "X-Signet-Signature-Level": parsed.level.value,
    }
    if done.activation_id is not None:
        headers["X-Signet-Activation"] = done.activation_id
    if done.seal_authorisation is not None:
        headers["X-Signet-Seal-Authorisation"] = done.seal_authorisation
    size = output.tell()
    if size <= _IN_MEMORY:
        output.seek(0)
        signed = output.read()
        output.close()
        return Response(signed, media_type="application/pdf", headers=headers)
    headers["Content-Length"] = str(size)
    return StreamingResponse(_chunks(output), media_type="application/pdf", headers=headers)


@router.post("/verify", response_model=VerifyResponse)
async def verify(
    service: Service,
    document: Annotated[UploadFile, File(description="the PDF to verify")],
) -> VerifyResponse:
    pdf = await read_limited(document, service.settings.max_document_bytes, "the document")
    context = await run_in_threadpool(service.engine.validation_context)
    return await run_in_threadpool(verify_pdf, pdf, context)
