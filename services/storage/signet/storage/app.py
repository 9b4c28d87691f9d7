"""The storage service's FastAPI application factory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from signet.common.errors import SignetError
from signet.common.http import bearer_guard, service_app
from signet.common.logging import configure_logging
from signet.storage.api import envelopes, ledger, objects
from signet.storage.api.transfer_docs import add_byte_routes
from signet.storage.api.transfers import ObjectTransfers
from signet.storage.config import StorageSettings
from signet.storage.service import StorageService


def create_app(
    settings: StorageSettings | None = None, service: StorageService | None = None
) -> FastAPI:
    settings = settings or (service.settings if service else StorageSettings())
    service = service or StorageService(settings)
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start_publisher()
        yield
        service.close()

    app = service_app("Signet storage", lifespan)
    app.state.service = service
    guard = Depends(bearer_guard(lambda: settings.service_token))
    for router in (objects.router, ledger.router, envelopes.router):
        app.include_router(router, dependencies=[guard])
    # The byte routes (PUT, GET, HEAD of objects) as plain ASGI, in front of FastAPI.
    app.add_middleware(
        ObjectTransfers,
        service=service,
        token=lambda: settings.service_token,
        metrics_service="storage",
    )
    generated_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's document, plus the byte routes it cannot see (`transfer_docs`)."""
        if app.openapi_schema is None:
            app.openapi_schema = add_byte_routes(generated_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        """Ready when the vault answers and keeps its promises (Object Lock, retention)."""
        try:
            readiness = await run_in_threadpool(service.readiness)
        except SignetError as exc:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "reason": exc.detail,
                    "error": exc.code,
                    **_start_nonce(),
                },
                status_code=503,
            )
        return JSONResponse(readiness.model_dump(mode="json") | _start_nonce())

    return app


def _start_nonce() -> dict[str, str | None]:
    """The nonce `signet up` gave this process: its readiness check believes only an
    answer that carries it (not one from leftovers of an earlier start on the port)."""
    return {"start_nonce": os.environ.get("SIGNET_START_NONCE")}
