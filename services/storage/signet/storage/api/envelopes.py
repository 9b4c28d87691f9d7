"""`/v1/envelopes/{id}/evidence`: an envelope's evidence package (a zip), sealed once."""

from __future__ import annotations

import functools
from typing import IO, Annotated

from fastapi import APIRouter, Path, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from signet.common.contracts.storage import ENVELOPE_ID_PATTERN, EvidenceSeal
from signet.common.http import file_download
from signet.storage.api.deps import Service
from signet.storage.evidence import build_package, seal_package, sealed
from signet.storage.service import StorageService

router = APIRouter(prefix="/v1/envelopes", tags=["evidence"])

EnvelopePath = Annotated[str, Path(max_length=64, pattern=ENVELOPE_ID_PATTERN)]


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
async def evidence(service: Service, envelope_id: EnvelopePath) -> Response:
    """The sealed package (the same bytes at every download) once the envelope is sealed;
    before that a preview, made afresh (its manifest says `"sealed": false`)."""
    filename = f"evidence-{envelope_id}.zip"
    record = await run_in_threadpool(sealed, service.vault, envelope_id)
    if record is not None:
        sha256 = record["package_sha256"]
        info, chunks = await run_in_threadpool(service.vault.read, sha256)
        return StreamingResponse(
            chunks,
            media_type="application/zip",
            headers={
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Content-Length": str(info.size),
                "X-Signet-Sha256": sha256,
            },
        )
    return await file_download(
        functools.partial(_build, service, envelope_id),
        media_type="application/zip",
        filename=filename,
    )


def _seal(service: StorageService, envelope_id: str) -> tuple[EvidenceSeal, bool]:
    return seal_package(
        envelope_id,
        vault=service.vault,
        ledger=service.ledger,
        signer=service.signer,
        pki=service.signer.pki(),
    )


@router.post(
    "/{envelope_id}/evidence",
    status_code=201,
    response_model=EvidenceSeal,
    responses={200: {"model": EvidenceSeal, "description": "sealed before: that seal"}},
)
async def seal(service: Service, envelope_id: EnvelopePath, response: Response) -> EvidenceSeal:
    """Seal the envelope's evidence once it is complete: the package is made, kept in the
    vault (kind `evidence`) and its manifest's hash appended to the ledger
    (`evidence.sealed`, covered by a new signed tree head).  Idempotent: 201 the first
    time, 200 with the same seal after; events appended later are not in the package."""
    result, made = await run_in_threadpool(_seal, service, envelope_id)
    if not made:
        response.status_code = 200
    return result
