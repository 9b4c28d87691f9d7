"""`/v1/batches`: seal many documents with one key, follow progress, fetch a zip of results.

Create takes multipart: ``documents`` (one part per PDF, streamed to disk),
``options`` (JSON `SignOptions`, the same as `/v1/sign`) and optionally
``image``.  An ``Idempotency-Key`` header makes a retried create return the
batch it already made instead of sealing everything twice.
"""

from __future__ import annotations

import functools
from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError
from signet.common.contracts.signer import BatchStatus, CertificateKind, SignOptions
from signet.common.errors import InvalidRequest
from signet.common.http import file_download
from signet.signer.api.deps import Service, read_limited
from signet.signer.service import SignerService

router = APIRouter(prefix="/v1/batches", tags=["batches"])
_IMAGE_LIMIT = 8 * 1024 * 1024
_MAX_DOCUMENTS = 10_000


def _certificate_serial(service: SignerService, options: SignOptions) -> str:
    """Resolve the key now, so a revoked or unknown seal fails the request, not every item."""
    ca = service.ca
    issued = (
        ca.signing_material(options.certificate_serial)
        if options.certificate_serial
        else ca.signing_material_for_key(options.key_label or "")
    )
    if issued.record.kind == CertificateKind.EVENT:
        raise InvalidRequest("an event certificate signs once; a batch needs a seal or person key")
    return issued.record.serial


@router.post(
    "",
    status_code=201,
    response_model=BatchStatus,
    # Starlette's default of 1,000 files per form would refuse a batch the API allows.
    form_limits={"max_files": _MAX_DOCUMENTS + 1},
)
async def create_batch(
    request: Request,
    service: Service,
    documents: Annotated[list[UploadFile], File(description="the PDFs to seal")],
    options: Annotated[str, Form(description="SignOptions as JSON")],
    image: Annotated[UploadFile | None, File(description="PNG appearance image")] = None,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> JSONResponse:
    try:
        parsed = SignOptions.model_validate_json(options)
    except ValidationError as exc:
        raise InvalidRequest(f"options: {exc.errors()[0]['msg']}") from exc
    if len(documents) > _MAX_DOCUMENTS:
        raise InvalidRequest(f"at most {_MAX_DOCUMENTS} documents per batch")
    png = await read_limited(image, _IMAGE_LIMIT, "the image") if image is not None else None
    serial = await run_in_threadpool(_certificate_serial, service, parsed)
    status, created = await run_in_threadpool(
        service.batches.create,
        ((doc.filename, doc.file) for doc in documents),
        parsed,
        serial,
        image=png,
        idempotency_key=idempotency_key,
        max_document_bytes=service.settings.max_document_bytes,
    )
    for worker in request.app.state.batch_workers:
        worker.wake()
    return JSONResponse(
        status.model_dump(mode="json", exclude={"items"}),
        status_code=201 if created else 200,
        headers={"Location": f"/v1/batches/{status.id}"},
    )


@router.get("/{batch_id}", response_model=BatchStatus)
async def get_batch(
    service: Service,
    batch_id: str,
    items: Annotated[bool, Query(description="list every document (false: counts only)")] = True,
) -> BatchStatus:
    return await run_in_threadpool(
        functools.partial(service.batches.status, batch_id, with_items=items)
    )


@router.get(
    "/{batch_id}/results",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}}, 409: {"description": "running"}},
)
async def batch_results(service: Service, batch_id: str) -> FileResponse:
    """The signed documents and report.csv; 409 while documents are still being sealed."""
    return await file_download(
        functools.partial(service.batches.write_results, batch_id),
        media_type="application/zip",
        filename=f"batch-{batch_id}.zip",
    )
