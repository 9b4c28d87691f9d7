"""`signet portal serve`: what the operator runs in the portal's pods (`args` of its
row in the component table), and what `signet up` could run as a child."""

from __future__ import annotations

from typing import Annotated

import typer
from signet.cli import embedded

portal_app = typer.Typer(no_args_is_help=True, help="The contract portal.")


@portal_app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="also serve only /metrics on this port (Prometheus)")
    ] = None,
) -> None:
    """Run the portal API."""
    import os

    import uvicorn
    from signet.cli.metrics_port import metrics_listener
    from signet.common.protocol import GUARDED_PROTOCOL

    settings = embedded.portal_settings()
    os.environ.update(embedded.portal_environment(settings))
    host = host or settings.host
    port = port or settings.port
    with metrics_listener(
        host,
        metrics_port if metrics_port is not None else settings.metrics_port,
        api_port=port,
    ):
        uvicorn.run(
            "signet.portal.app:create_app",
            factory=True,
            host=host,
            port=port,
            log_level="warning",
            http=GUARDED_PROTOCOL,  # a bounded request head, JSON refusals
        )
