"""`/v1/ledger`: append events, signed tree heads, inclusion and consistency proofs."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from fastapi.concurrency import run_in_threadpool
from signet.common.contracts.storage import (
    ENVELOPE_ID_PATTERN,
    ConsistencyProof,
    EnvelopeEvents,
    InclusionProof,
    LedgerEntry,
    LedgerEventIn,
    LedgerReceipt,
    TreeHead,
)
from signet.common.errors import NotFound
from signet.storage import metrics
from signet.storage.api.deps import Service
from signet.storage.ledger import Ledger
from signet.storage.merkle import leaf_hash

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


def _entries(ledger: Ledger, envelope_id: str, after: int, limit: int) -> EnvelopeEvents:
    size, leaves, more = ledger.envelope_entries(envelope_id, after=after, limit=limit)
    events = []
    for index, leaf in leaves:
        stored = json.loads(leaf)
        known = {k: v for k, v in stored.items() if k in LedgerEntry.model_fields}
        known |= {"index": index, "leaf_hash": leaf_hash(leaf).hex()}
        try:
            events.append(LedgerEntry.model_validate(known))
        except ValueError:  # a leaf from before a bound existed: shown as it is stored
            events.append(LedgerEntry.model_construct(**known))
    return EnvelopeEvents(
        envelope_id=envelope_id,
        tree_size=size,
        events=events,
        next_after=events[-1].index if more and events else None,
    )


@router.get("/envelopes/{envelope_id}/events", response_model=EnvelopeEvents)
async def envelope_events(
    service: Service,
    envelope_id: Annotated[str, Path(max_length=64, pattern=ENVELOPE_ID_PATTERN)],
    after: Annotated[int, Query(ge=-1, description="only events after this index")] = -1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> EnvelopeEvents:
    """The envelope's stored events in ledger order (its timeline); none: an empty list.

    Only events durably stored are listed; each is in the tree of `tree_size` leaves.
    """
    ledger = await run_in_threadpool(lambda: service.ledger)
    return await run_in_threadpool(_entries, ledger, envelope_id, after, limit)
