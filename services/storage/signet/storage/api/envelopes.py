"""`GET /v1/envelopes/{id}/evidence`: the evidence package of one envelope, as a zip."""

from __future__ import annotations

import functools
from typing import IO

from fastapi import APIRouter
from fastapi.responses import FileResponse
from signet.common.http import file_download
from signet.storage.api.deps import Service
from signet.storage.evidence import build_package
from signet.storage.service import StorageService

router = APIRouter(prefix="/v1/envelopes", tags=["evidence"])


def _build(service: StorageService, envelope_id: str, target: IO[bytes]) -> None:
    build_package(
        envelope_id,
        vault=service.vault,
        ledger=service.ledger,
        signer=service.signer,
        pki=service.signer.pki(),
        target=target,
    )


@router.get(
    "/{envelope_id}/evidence",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}}},
)
async def evidence(service: Service, envelope_id: str) -> FileResponse:
    return await file_download(
        functools.partial(_build, service, envelope_id),
        media_type="application/zip",
        filename=f"evidence-{envelope_id}.zip",
    )
