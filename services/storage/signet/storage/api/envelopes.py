"""`GET /v1/envelopes/{id}/evidence`: the evidence package of one envelope, as a zip."""

from __future__ import annotations

import tempfile

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from signet.storage.api.deps import Service
from signet.storage.evidence import build_package
from signet.storage.service import StorageService
from starlette.background import BackgroundTask

router = APIRouter(prefix="/v1/envelopes", tags=["evidence"])


def _build(
    service: StorageService, envelope_id: str, target: tempfile._TemporaryFileWrapper[bytes]
) -> None:
    build_package(
        envelope_id,
        vault=service.vault,
        ledger=service.ledger,
        signer=service.signer,
        pki=service.signer.pki(),
        target=target,
    )
    target.flush()


@router.get(
    "/{envelope_id}/evidence",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}}},
)
async def evidence(service: Service, envelope_id: str) -> FileResponse:
    spool = tempfile.NamedTemporaryFile(prefix="evidence-", suffix=".zip")  # noqa: SIM115
    try:
        await run_in_threadpool(_build, service, envelope_id, spool)
    except BaseException:
        spool.close()
        raise
    return FileResponse(
        spool.name,
        media_type="application/zip",
        filename=f"evidence-{envelope_id}.zip",
        background=BackgroundTask(spool.close),
    )
