"""`/v1/ledger`: append events, signed tree heads, inclusion and consistency proofs."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool
from signet.common.contracts.storage import (
    ConsistencyProof,
    InclusionProof,
    LedgerEventIn,
    LedgerReceipt,
    TreeHead,
)
from signet.common.errors import NotFound
from signet.storage import metrics
from signet.storage.api.deps import Service

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])


@router.post(
    "/events",
    status_code=201,
    response_model=LedgerReceipt,
    responses={
        200: {"model": LedgerReceipt, "description": "replayed: this event id and content "
              "were appended before; the first receipt, nothing appended"},
        409: {"description": "event_conflict: the event id is taken by other content"},
    },
)  # fmt: skip
async def append_event(service: Service, event: LedgerEventIn, response: Response) -> LedgerReceipt:
    """Answers once the event is durably in the vault (group commit: no thread waits).

    With an `event_id`, idempotent: the same event again answers 200 with the first
    receipt (`replayed`: true) and appends nothing; other content under the same id is
    409 `event_conflict`.
    """
    ledger = await run_in_threadpool(lambda: service.ledger)
    receipt = await asyncio.wrap_future(ledger.append(event))
    if receipt.replayed:
        response.status_code = 200
    else:
        metrics.LEDGER_APPENDS.inc()
    return receipt


@router.get("/tree-head", response_model=TreeHead)
async def tree_head(
    service: Service,
    fresh: Annotated[bool, Query(description="sign a head for the current size now")] = False,
) -> TreeHead:
    ledger = await run_in_threadpool(lambda: service.ledger)
    if fresh:
        return await run_in_threadpool(ledger.publish_head, service.signer)
    head = ledger.latest_head()
    if head is None:
        raise NotFound("no signed tree head yet; ask with ?fresh=true")
    return head


@router.get("/proof/inclusion", response_model=InclusionProof)
async def inclusion(
    service: Service,
    index: Annotated[int, Query(ge=0)],
    tree_size: Annotated[int | None, Query(ge=1)] = None,
) -> InclusionProof:
    ledger = await run_in_threadpool(lambda: service.ledger)
    return ledger.inclusion(index, tree_size)


@router.get("/proof/consistency", response_model=ConsistencyProof)
async def consistency(
    service: Service,
    first: Annotated[int, Query(ge=0)],
    second: Annotated[int | None, Query(ge=0)] = None,
) -> ConsistencyProof:
    ledger = await run_in_threadpool(lambda: service.ledger)
    return ledger.consistency(first, second)
