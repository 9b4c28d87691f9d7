"""`signet operator crds`: write the CRDs generated from the shared models into the chart."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

operator_app = typer.Typer(no_args_is_help=True, help="The Kubernetes operator.")
console = Console(soft_wrap=True)


@operator_app.command("crds")
def crds(
    out: Annotated[Path, typer.Option(help="folder for the CRD YAML files")] = Path(
        "helm/signet/crds"
    ),
) -> None:
    """Generate the Appliance and SigningPolicy CRDs from the pydantic models."""
    from signet.operator.crds import write

    for path in write(out):
        console.print(f"wrote {path}")
