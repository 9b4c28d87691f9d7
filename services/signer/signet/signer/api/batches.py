"""`/v1/batches`: seal many documents with one key, follow progress, fetch a zip of results.

Create takes multipart: ``documents`` (one part per PDF, streamed into the
batch's spool as they arrive: `signet.signer.api.batch_form`), ``options``
(JSON `SignOptions`, the same as `/v1/sign`) and optionally ``image``.  An
``Idempotency-Key`` header makes a retried create return the batch it already
made instead of sealing everything twice.
"""

from __future__ import annotations

import functools
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError
from signet.common.contracts.signer import BatchStatus, CertificateKind, SignOptions
from signet.common.errors import InvalidRequest
from signet.common.http import file_download
from signet.signer.activation.seals import SealAuthorisationRefused
from signet.signer.api.batch_form import receive_batch
from signet.signer.api.deps import Service
from signet.signer.batch.wait import FinishWatch
from signet.signer.pades.engine import check_image
from signet.signer.service import SignerService

router = APIRouter(prefix="/v1/batches", tags=["batches"])
_IMAGE_LIMIT = 8 * 1024 * 1024
_MAX_DOCUMENTS = 10_000
#: The longest `wait` of a status request, in seconds (proxies often cut idle requests at 60).
MAX_WAIT = 55


def _certificate_serial(
    service: SignerService, options: SignOptions, caller: str | None, documents: int
) -> str:
    """Resolve the key now, so a revoked or unknown seal fails the request, not every
    item; a seal under its keeper's control needs a standing authorisation naming this
    caller, which the batch's documents are counted against (`_give_back` if the batch
    is not made)."""
    ca = service.ca
    issued = (
        ca.signing_material(options.certificate_serial)
        if options.certificate_serial
        else ca.signing_material_for_key(options.key_label or "")
    )
    if issued.record.kind in (CertificateKind.EVENT, CertificateKind.PERSON):
        raise InvalidRequest(
            f"a {issued.record.kind} key signs only what its holder confirms, one activation "
            "at a time: a batch needs a seal key"
        )
    if service.activations.needs_activation(issued.record):
        if options.seal_authorisation is None:
            raise SealAuthorisationRefused(
                "this seal is under its keeper's control: a batch names a standing seal-use "
                "authorisation (options.seal_authorisation, POST /v1/seal-authorisations)"
            )
        service.activations.seals.use(options.seal_authorisation, issued.record, caller, documents)
    elif options.seal_authorisation is not None:
        raise InvalidRequest(
            "seal_authorisation is for a seal whose keeper is enrolled; this key signs on "
            "the caller's token"
        )
    return issued.record.serial


def _give_back(service: SignerService, options: SignOptions, documents: int) -> None:
    if options.seal_authorisation is not None:
        service.activations.seals.give_back(options.seal_authorisation, documents)


#: The request body as the route's own parser reads it (`receive_batch`), for the docs.
_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["documents", "options"],
                "properties": {
                    "documents": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "the PDFs to seal, one part each",
                    },
                    "options": {"type": "string", "description": "SignOptions as JSON"},
                    "image": {
                        "type": "string",
                        "format": "binary",
                        "description": "PNG appearance image",
                    },
                },
            }
        }
    },
}


@router.post(
    "",
    status_code=201,
    response_model=BatchStatus,
    openapi_extra={"requestBody": _BODY},
)
async def create_batch(
    request: Request,
    service: Service,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> JSONResponse:
    upload = await run_in_threadpool(service.batches.upload, service.settings.max_document_bytes)
    try:
        form = await receive_batch(
            request, upload, max_documents=_MAX_DOCUMENTS, image_limit=_IMAGE_LIMIT
        )
        if form.options is None:
            raise InvalidRequest("options: Field required")
        try:
            parsed = SignOptions.model_validate_json(form.options)
        except ValidationError as exc:
            raise InvalidRequest(f"options: {exc.errors()[0]['msg']}") from exc
        if form.image is not None:
            check_image(form.image)  # refused at the door, not document by document later
        caller = getattr(request.state, "caller", None)
        documents = len(upload.items)
        serial = await run_in_threadpool(_certificate_serial, service, parsed, caller, documents)
        try:
            status, created = await run_in_threadpool(
                functools.partial(
                    service.batches.publish,
                    upload,
                    parsed,
                    serial,
                    image=form.image,
                    idempotency_key=idempotency_key,
                )
            )
        except BaseException:
            await run_in_threadpool(_give_back, service, parsed, documents)
            raise
        if not created:  # a retried create: the batch made the first time was counted
            await run_in_threadpool(_give_back, service, parsed, documents)
    finally:
        await run_in_threadpool(upload.discard)
    for worker in request.app.state.batch_workers:
        worker.wake()
    return JSONResponse(
        status.model_dump(mode="json", exclude={"items"}),
        status_code=201 if created else 200,
        headers={"Location": f"/v1/batches/{status.id}"},
    )


@router.get("/{batch_id}", response_model=BatchStatus)
async def get_batch(
    request: Request,
    service: Service,
    batch_id: str,
    items: Annotated[bool, Query(description="list every document (false: counts only)")] = True,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT,
            description="answer when the batch finishes, or after this many seconds "
            "(a long poll: instead of polling often, which slows the signing down)",
        ),
    ] = 0,
) -> BatchStatus:
    if wait > 0:
        running = await run_in_threadpool(
            functools.partial(service.batches.status, batch_id, with_items=False)
        )
        if running.state != "finished":
            watch: FinishWatch = request.app.state.batch_watch
            await watch.wait(batch_id, wait)
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
