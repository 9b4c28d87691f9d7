"""`/v1/preservation`: the preservation job's state, and a pass on request (admin only).

`signet storage preserve` starts a pass here and follows its progress; the periodic
passes run by themselves (`signet.storage.preservation_runner`).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from signet.common.contracts.preservation import PreservationRunRequest, PreservationStatus
from signet.storage.api.deps import Service

router = APIRouter(prefix="/v1/preservation", tags=["preservation"])


@router.get("", response_model=PreservationStatus)
async def status(service: Service) -> PreservationStatus:
    """This replica's role, the pass running (objects done of total), the last pass
    (renewed, failed with the reasons, the backlog and its deadline), the next one."""
    return service.preservation.status()


@router.post(
    "/runs",
    status_code=202,
    response_model=PreservationStatus,
    responses={409: {"description": "a pass is running, or this replica is a standby"}},
)
async def run(service: Service, request: PreservationRunRequest) -> PreservationStatus:
    """Start one pass now, in the background (`dry_run`: only count what is due).  A
    real pass runs only on the replica that holds the Lease: a standby answers 409
    `not_leader`; one pass at a time: 409 `preservation_running`."""
    return await run_in_threadpool(service.preservation.request, dry_run=request.dry_run)
