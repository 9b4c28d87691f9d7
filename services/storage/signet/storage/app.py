"""The storage service's FastAPI application factory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from signet.common.auth import PUBLIC_HEALTH, Authorizer, Rule, Scope, rule
from signet.common.errors import SignetError
from signet.common.gate import GateRules, RequestGate
from signet.common.http import service_app
from signet.common.logging import configure_logging
from signet.storage.api import envelopes, ledger, objects, preservation
from signet.storage.api.transfer_docs import add_byte_routes
from signet.storage.api.transfers import PUT_PATH, ObjectTransfers
from signet.storage.config import StorageSettings
from signet.storage.service import StorageService

#: Who may call which storage route (`signet.common.auth`); anything else needs admin.
#: Legal hold and retention are the admin's alone: no service can lift a hold; so are
#: the preservation routes (`signet storage preserve`).
ROUTES: tuple[Rule, ...] = (
    *PUBLIC_HEALTH,
    rule("PUT", r"/v1/objects", Scope.VAULT_WRITE),
    rule("GET", r"/v1/objects/[^/]+", Scope.VAULT_READ),
    rule("POST", r"/v1/objects/[^/]+/legal-hold", Scope.LEGAL_HOLD),
    rule("POST", r"/v1/objects/[^/]+/retention", Scope.RETENTION),
    rule("POST", r"/v1/ledger/events", Scope.LEDGER_APPEND),
    rule("GET", r"/v1/ledger/(tree-head|proof/inclusion|proof/consistency)", Scope.LEDGER_READ),
    rule("GET", r"/v1/ledger/envelopes/[^/]+/events", Scope.LEDGER_READ),
    rule("GET", r"/v1/envelopes/[^/]+/evidence", Scope.EVIDENCE_READ),
    # sealing writes the package to the vault and its manifest's hash to the ledger
    rule("POST", r"/v1/envelopes/[^/]+/evidence", Scope.LEDGER_APPEND),
)


def create_app(
    settings: StorageSettings | None = None, service: StorageService | None = None
) -> FastAPI:
    settings = settings or (service.settings if service else StorageSettings())
    service = service or StorageService(settings)
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start_publisher()
        service.start_preservation()
        yield
        service.close()

    app = service_app("Signet storage", lifespan)
    app.state.service = service
    for router in (objects.router, ledger.router, envelopes.router, preservation.router):
        app.include_router(router)
    # The byte routes (PUT, GET, HEAD of objects) as plain ASGI, in front of FastAPI.
    app.add_middleware(ObjectTransfers, service=service, metrics_service="storage")
    # Outermost: the caller's token and scope (`ROUTES`) before any body is read; the
    # spliced upload then bounds its own body.
    app.add_middleware(
        RequestGate,
        authorize=Authorizer(settings.token_registry(), ROUTES),
        rules=GateRules(passthrough=(PUT_PATH,)),
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
