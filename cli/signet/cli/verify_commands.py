"""`signet verify-evidence`: an evidence package checked offline, by anyone.

Courts, auditors and counterparties run it on a machine that has no appliance, so it
imports only the verifier (`signet.storage.evidence_verify`), typer and rich: run as
`signet verify-evidence …` it starts without the rest of the CLI's imports (the
signer, the portal and their databases, seconds of start-up; see `signet.cli`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from signet.storage.evidence_verify import verify_package

console = Console(soft_wrap=True)


def verify_evidence(
    package: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, metavar="PACKAGE", help="evidence zip")
    ],
    root: Annotated[
        Path,
        typer.Option(
            exists=True, dir_okay=False, help="the root CA certificate you trust (PEM/DER)"
        ),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON document for machines (exit code the same)")
    ] = False,
) -> None:
    """Check an evidence package offline: hashes, proofs, tree-head signature, timestamp."""
    checks = verify_package(package, root.read_bytes())
    failed = [c for c in checks if not c.ok]
    if as_json:
        verdict = {
            "package": str(package),
            "intact": not failed,
            "checks": [
                {"check": c.what, "ok": c.ok, "warning": c.warning, "detail": c.detail}
                for c in checks
            ],
            "failed": [c.what for c in failed],
        }
        print(json.dumps(verdict, ensure_ascii=False, indent=2))
        if failed:
            raise typer.Exit(1)
        return
    table = Table("check", "result", "detail", title=str(package))
    for check in checks:
        result = (
            "[red]FAILED[/]"
            if not check.ok
            else "[yellow]warning[/]"
            if check.warning
            else "[green]ok[/]"
        )
        table.add_row(escape(check.what), result, escape(check.detail))
    console.print(table)
    if failed:
        console.print(
            f"[red]{len(failed)} check(s) failed:[/] " + escape(", ".join(c.what for c in failed))
        )
        raise typer.Exit(1)
    console.print("[green]the package is intact and proves what it says[/]")


def run_alone() -> None:
    """`signet verify-evidence …` as a program of its own (exits)."""
    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    app.command("verify-evidence")(verify_evidence)
    args = [arg for arg in sys.argv[2:] if arg != "--verbose"]
    app(args=args, prog_name="signet verify-evidence")
