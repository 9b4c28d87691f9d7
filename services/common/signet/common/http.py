"""What every Signet HTTP service shares: error mapping, /healthz, /metrics.

Who may call what is `signet.common.auth`, checked by `signet.common.gate`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from http import HTTPStatus
from pathlib import Path
from typing import IO

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from signet.common import metrics
from signet.common.errors import SignetError, summarize_validation
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


#: The ``error`` of Starlette's own HTTP refusals, as `SignetError` names them.
_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def install_error_handlers(app: FastAPI) -> None:
    """Map `SignetError`s to their HTTP status with a JSON body ``{error, detail}``."""

    @app.exception_handler(SignetError)
    async def _signet_error(_: Request, exc: SignetError) -> JSONResponse:
        if exc.status_code >= 500:
            log.warning("%s: %s", exc.code, exc.detail)
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own refusals (no such route, a method the route lacks, a body it
        # cannot parse, such as JSON nested past the parser's recursion limit) would
        # answer {"detail"} alone: every refusal has the same shape for clients
        code = _HTTP_CODES.get(exc.status_code) or HTTPStatus(exc.status_code).name.lower()
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            detail = "the body could not be parsed (malformed, or nested too deeply)"
        else:
            detail = str(exc.detail)
        return JSONResponse(
            {"error": code, "detail": detail},
            status_code=exc.status_code,
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"error": "invalid_request", "detail": summarize_validation(exc.errors())},
            status_code=422,
        )


#: Keyword arguments for every service's `FastAPI(...)`.  FastAPI's built-in
#: OpenTelemetry is switched off, including exporters configured from the
#: environment: nothing leaves the appliance unless an admin wires it up, and
#: Prometheus `/metrics` is the appliance's own observability.
FASTAPI_DEFAULTS: dict[str, object] = {
    "telemetry": {
        "auto_configure": False,
        "tracing": False,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
    }
}


def service_app(
    title: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    *,
    service: str | None = None,
) -> FastAPI:
    """A service's FastAPI app with what every service has.

    Defaults, error mapping, ``/healthz``, and Prometheus ``/metrics`` with the
    request middleware (`signet.common.metrics`).  `service` is the ``service``
    label of the HTTP metrics; by default the title without "Signet "
    ("Signet signer" → ``signer``).  Like /healthz, /metrics needs no token: it
    holds counts by route template and nothing secret.
    """
    name = service or title.removeprefix("Signet ").strip().lower()

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        metrics.warn_if_incomplete(name)
        try:
            async with lifespan(app):
                yield
        finally:
            metrics.forget_this_process()

    app = FastAPI(title=title, version="0.1.0", lifespan=run, **FASTAPI_DEFAULTS)  # type: ignore[arg-type]
    install_error_handlers(app)
    app.add_middleware(metrics.MetricsMiddleware, service=name)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers.  Readiness (`/readyz`) is each service's own."""
        return {"status": "ok"}

    @app.get("/metrics", tags=["health"], response_class=Response)
    def prometheus_metrics() -> Response:
        """Prometheus text format; with several workers, the sum over all of them."""
        return Response(metrics.scrape(), media_type=metrics.CONTENT_TYPE)

    return app


async def file_download(
    write: Callable[[IO[bytes]], None], *, media_type: str, filename: str
) -> FileResponse:
    """Build a large answer (a zip) into a temporary file off the event loop, then send it.

    Memory stays bounded; the file disappears once sent, or at once if building fails.
    """
    spool = tempfile.NamedTemporaryFile(prefix="signet-", suffix=Path(filename).suffix)  # noqa: SIM115

    def build() -> None:
        write(spool)
        spool.flush()

    try:
        await run_in_threadpool(build)
    except BaseException:
        spool.close()
        raise
    return FileResponse(
        spool.name,
        media_type=media_type,
        filename=filename,
        background=BackgroundTask(spool.close),
    )
