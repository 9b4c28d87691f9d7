"""`POST /v1/documents/renew`: a B-LTA document's archive-timestamp chain extended.

Storage's preservation job sends each retained signed document whose last
document timestamp nears its TSA certificate's expiry (or was made by a
rolled-over TSA key); the answer is the PDF with one more revision: that
timestamp's validation data in the DSS and a new document timestamp by the
current TSA key (`signet.signer.pades.renewal`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from signet.signer.api.deps import Service, read_limited
from signet.signer.pades.renewal import renew_pdf

router = APIRouter(prefix="/v1", tags=["preservation"])


@router.post(
    "/documents/renew",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
async def renew(
    service: Service,
    document: Annotated[UploadFile, File(description="the B-LTA PDF to renew")],
) -> Response:
    """Extend a B-LTA document's archive-timestamp chain: its last document timestamp's
    certificates and CRLs in the DSS, then a new document timestamp by the current TSA
    key. Every signature and timestamp must still validate: otherwise 422
    `signature_invalid` naming the field; no signatures is 422 `no_signatures`; no
    document timestamp (not B-LTA yet) is 422 `not_archival`."""
    pdf = await read_limited(document, service.settings.max_document_bytes, "the document")
    renewed = await run_in_threadpool(renew_pdf, service.engine, pdf)
    return Response(
        renewed, media_type="application/pdf", headers={"X-Signet-Signature-Level": "B-LTA"}
    )
