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
    """Generate the Appliance and SigningPolicy CRDs from the pydantic models, and the
    spec parts of the chart's values.schema.json (beside the crds folder)."""
    from signet.operator import values_schema
    from signet.operator.crds import write

    for path in write(out):
        console.print(f"wrote {path}")
    schema = out.parent / "values.schema.json"
    if schema.exists():
        console.print(f"wrote {values_schema.write(schema)}")


@operator_app.command("run")
def run(
    namespace: Annotated[str, typer.Option(help="the namespace whose Appliances to manage")],
    verbose: Annotated[bool, typer.Option(help="debug logging")] = False,
    liveness_port: Annotated[int, typer.Option(help="/healthz for the kubelet")] = 8081,
    metrics_port: Annotated[int, typer.Option(help="Prometheus /metrics (0: off)")] = 8080,
    bind: Annotated[str, typer.Option(help="address of the two ports")] = "0.0.0.0",  # noqa: S104
) -> None:
    """Run the operator (Kopf, standalone: one replica) in one namespace.

    The chart runs exactly this; the tests too, against the Kubernetes emulator.
    """
    import logging

    import kopf
    from prometheus_client import start_http_server
    from signet.operator import handlers  # registers the handlers

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO)
    if metrics_port:
        start_http_server(metrics_port, addr=bind)
    kopf.run(
        standalone=True,
        namespaces=[namespace],
        liveness_endpoint=f"http://{bind}:{liveness_port}/healthz",
    )
    _ = handlers
