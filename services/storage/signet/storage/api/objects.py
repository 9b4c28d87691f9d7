"""`/v1/objects`: legal hold and retention (FastAPI), and the object store connections.

Put, get and head, the byte routes, are plain ASGI in `signet.storage.api.transfers`.
No delete."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from signet.common.contracts.storage import (
    LegalHoldRequest,
    ObjectInfo,
    RetentionRequest,
)
from signet.storage.api.deps import Service
from signet.storage.s3_requests import close_loop_sessions
from signet.storage.vault import (
    check_sha256,
)


@asynccontextmanager
async def _connections(_: object) -> AsyncIterator[None]:
    """Close the object store connections this event loop opened, on shutdown."""
    yield
    await close_loop_sessions()


router = APIRouter(prefix="/v1/objects", tags=["objects"], lifespan=_connections)


@router.post("/{sha256}/legal-hold", response_model=ObjectInfo)
async def legal_hold(service: Service, sha256: str, request: LegalHoldRequest) -> ObjectInfo:
    return await run_in_threadpool(service.vault.set_legal_hold, check_sha256(sha256), request.on)


@router.post("/{sha256}/retention", response_model=ObjectInfo)
async def extend_retention(service: Service, sha256: str, request: RetentionRequest) -> ObjectInfo:
    """Extend only: an earlier date than the current one is refused (409)."""
    return await run_in_threadpool(
        service.vault.extend_retention, check_sha256(sha256), request.retain_until
    )
