"""`POST /v1/complete`: a finished document made PAdES B-LTA.

Multipart: ``document`` (the PDF, every signature made) and ``options`` (JSON
`CompleteOptions`).  The answer is the PDF with one more revision: every
signature's certificates and CRLs in the DSS, then a document timestamp
(`signet.signer.pades.complete`).  Any signature that is not valid, intact and
trusted is refused with 422 ``signature_invalid`` naming its field.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import ValidationError
from signet.common.contracts.signer import CompleteOptions
from signet.common.errors import InvalidRequest
from signet.signer.api.deps import Service, read_limited
from signet.signer.pades.complete import complete_pdf

router = APIRouter(prefix="/v1", tags=["signing"])


@router.post(
    "/complete", response_class=Response, responses={200: {"content": {"application/pdf": {}}}}
)
async def complete(
    service: Service,
    document: Annotated[UploadFile, File(description="the signed PDF to complete")],
    options: Annotated[str, Form(description="CompleteOptions as JSON")] = "{}",
) -> Response:
    """Make a finished document PAdES B-LTA: one more revision with every signature's
    certificates and CRLs in the DSS, then a document timestamp (from
    `timestamp_authority`, a configured TSA's name, or the appliance's own). Every
    signature must be valid, intact and trusted first: otherwise 422 `signature_invalid`
    naming the field; a PDF without signatures is 422 `no_signatures`; an unknown TSA
    name 422 `timestamp_authority_unknown`. `options` may be omitted (`{}`)."""
    try:
        parsed = CompleteOptions.model_validate_json(options)
    except ValidationError as exc:
        raise InvalidRequest(f"options: {exc.errors()[0]['msg']}") from exc
    pdf = await read_limited(document, service.settings.max_document_bytes, "the document")
    completed = await run_in_threadpool(complete_pdf, service.engine, pdf, parsed)
    return Response(
        completed, media_type="application/pdf", headers={"X-Signet-Signature-Level": "B-LTA"}
    )
