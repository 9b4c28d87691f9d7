"""`signet storage serve|scrub`; `signet verify-evidence` is `signet.cli.verify_commands`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from signet.cli import embedded
from signet.cli.verify_commands import verify_evidence
from signet.common.errors import SignetError
from signet.storage.api.splice import SPLICE_PROTOCOL
from signet.storage.service import StorageService
from signet.storage.vault import scrub as scrub_vault

__all__ = ["scrub", "serve", "storage_app", "verify_evidence"]

storage_app = typer.Typer(no_args_is_help=True, help="The storage service: vault and ledger.")
console = Console(soft_wrap=True)
err = Console(stderr=True)


@storage_app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="also serve only /metrics on this port (Prometheus)")
    ] = None,
) -> None:
    """Run the storage API (one process: the ledger has exactly one writer)."""
    import os

    import uvicorn
    from signet.cli.metrics_port import metrics_listener

    settings = embedded.storage_settings()
    os.environ.update(embedded.storage_environment(settings))
    host = host or settings.host
    port = port or settings.port
    with metrics_listener(
        host,
        metrics_port if metrics_port is not None else settings.metrics_port,
        api_port=port,
    ):
        uvicorn.run(
            "signet.storage.app:create_app",
            factory=True,
            host=host,
            port=port,
            log_level="warning",
            http=SPLICE_PROTOCOL,  # spliced GET bodies
        )


@storage_app.command("scrub")
def scrub() -> None:
    """Re-read every object and report any whose bytes no longer match their hash."""
    service = StorageService(embedded.storage_settings())
    try:
        findings = []
        checked = 0
        for finding in scrub_vault(service.vault):
            findings.append(finding)
        checked = sum(1 for _ in service.vault.objects())
    except SignetError as exc:
        err.print(f"[red]error:[/] {exc.detail}")
        raise typer.Exit(2) from exc
    if not findings:
        console.print(f"{checked} objects checked, all intact")
        return
    table = Table("object", "problem", title=f"{len(findings)} of {checked} objects damaged")
    for finding in findings:
        table.add_row(finding.sha256, finding.problem)
    console.print(table)
    raise typer.Exit(1)
