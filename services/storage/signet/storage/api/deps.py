"""FastAPI dependencies of the storage routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from signet.storage.service import StorageService


def get_service(request: Request) -> StorageService:
    service: StorageService = request.app.state.service
    return service


Service = Annotated[StorageService, Depends(get_service)]
