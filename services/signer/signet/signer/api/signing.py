"""`POST /v1/sign` and `POST /v1/verify`.

Sign takes multipart: ``document`` (the PDF), ``options`` (JSON `SignOptions`)
and optionally ``image`` (PNG of a handwritten signature or seal).  It answers
with the signed PDF; the signature's field name and certificate serial come
back in headers so callers can record them without parsing the PDF.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import ValidationError
from signet.common.contracts.signer import SignOptions, VerifyResponse
from signet.common.errors import InvalidRequest
from signet.signer.api.deps import Service, read_limited
from signet.signer.ca import Issued
from signet.signer.service import SignerService
from signet.signer.validation import verify_pdf

router = APIRouter(prefix="/v1", tags=["signing"])
_IMAGE_LIMIT = 8 * 1024 * 1024


def _sign(
    service: SignerService, document: bytes, options: SignOptions, image: bytes | None
) -> tuple[bytes, Issued]:
    ca = service.ca
    issued = (
        ca.signing_material(options.certificate_serial)
        if options.certificate_serial
        else ca.signing_material_for_key(options.key_label or "")
    )
    signed = service.engine.sign(document, issued, options, image)
    ca.spend_event_key(issued)
    return signed, issued


@router.post(
    "/sign", response_class=Response, responses={200: {"content": {"application/pdf": {}}}}
)
async def sign(
    service: Service,
    document: Annotated[UploadFile, File(description="the PDF to sign")],
    options: Annotated[str, Form(description="SignOptions as JSON")],
    image: Annotated[UploadFile | None, File(description="PNG appearance image")] = None,
) -> Response:
    try:
        parsed = SignOptions.model_validate_json(options)
    except ValidationError as exc:
        raise InvalidRequest(f"options: {exc.errors()[0]['msg']}") from exc
    pdf = await read_limited(document, service.settings.max_document_bytes, "the document")
    png = await read_limited(image, _IMAGE_LIMIT, "the image") if image is not None else None
    signed, issued = await run_in_threadpool(_sign, service, pdf, parsed, png)
    return Response(
        signed,
        media_type="application/pdf",
        headers={
            "X-Signet-Certificate-Serial": issued.record.serial,
            "X-Signet-Signature-Level": parsed.level.value,
        },
    )


@router.post("/verify", response_model=VerifyResponse)
async def verify(
    service: Service,
    document: Annotated[UploadFile, File(description="the PDF to verify")],
) -> VerifyResponse:
    pdf = await read_limited(document, service.settings.max_document_bytes, "the document")
    context = await run_in_threadpool(service.engine.validation_context)
    return await run_in_threadpool(verify_pdf, pdf, context)
