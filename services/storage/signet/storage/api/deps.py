"""FastAPI dependencies of the storage routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from signet.storage.service import StorageService


async def get_service(request: Request) -> StorageService:
    """The process's service.  `async` on purpose: FastAPI runs a plain `def`
    dependency in a worker thread, a thread hop per request for an attribute read."""
    service: StorageService = request.app.state.service
    return service


Service = Annotated[StorageService, Depends(get_service)]
