"""The metrics listener of `signet signer serve` and `signet storage serve`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import typer
from signet.common.metrics import MetricsPortError, serve_metrics


@contextmanager
def metrics_listener(host: str, port: int | None, *, api_port: int) -> Iterator[None]:
    """`serve_metrics` around uvicorn; a port it cannot serve (in use, the API's own, an
    unknown address) is one line on stderr and exit status 2, never a traceback.

    `port` is the option if given (0 included: any free port, printed), else the
    setting; None serves nothing besides the API port's own ``/metrics``.
    """
    with ExitStack() as stack:
        try:
            server = stack.enter_context(serve_metrics(host, port, api_port=api_port))
        except MetricsPortError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        if server is not None and port == 0:
            typer.echo(f"/metrics on port {server.server_address[1]}", err=True)
        yield
