"""`signet seal-batch`: seal a folder of PDFs with one key, on every core, resumably."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from signet.cli import embedded
from signet.cli.signer_commands import DEFAULT_SEAL, _default_seal
from signet.common.contracts.signer import CertificateKind, SignatureLevel, SignOptions
from signet.common.errors import SignetError
from signet.signer.batch.bulk import BulkSealer, SealJob, SealResult

console = Console(soft_wrap=True)
err = Console(stderr=True)


def _inputs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() == ".pdf")


def seal_batch(
    input_dir: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="PDFs to seal")],
    out: Annotated[Path, typer.Option("--out", help="folder for the sealed PDFs")],
    key: Annotated[
        str, typer.Option(help="HSM key label of the seal (default: the organisation seal)")
    ] = DEFAULT_SEAL,
    level: Annotated[SignatureLevel, typer.Option()] = SignatureLevel.B_T,
    reason: Annotated[str | None, typer.Option()] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="signing processes (default: one per core)")
    ] = None,
) -> None:
    """Seal every PDF under INPUT_DIR into --out, keeping the folder layout.

    Documents already sealed in --out are skipped, so an interrupted run is
    resumed by running the same command again.  Exits 1 if any document failed.
    """
    service = embedded.signer_service()
    try:
        serial = (
            _default_seal(service)
            if key == DEFAULT_SEAL
            else service.ca.signing_material_for_key(key).record.serial
        )
        issued = service.ca.signing_material(serial)
    except SignetError as exc:
        err.print(f"[red]error:[/] {exc.detail}")
        raise typer.Exit(2) from exc
    if issued.record.kind in (CertificateKind.EVENT, CertificateKind.PERSON):
        err.print(
            f"[red]error:[/] a {issued.record.kind} key signs only what its holder confirms "
            "(an activation code per signature, through the portal): seal with a seal key"
        )
        raise typer.Exit(2)
    if service.activations.needs_activation(issued.record):
        err.print(
            "[red]error:[/] this seal is under its keeper's control (a keeper is enrolled): "
            "seal through the API, under a standing seal-use authorisation the keeper approved"
        )
        raise typer.Exit(2)
    service.close()

    sources = _inputs(input_dir)
    jobs = [SealJob(p, out / p.relative_to(input_dir)) for p in sources]
    pending = [job for job in jobs if not job.target.exists()]
    skipped = len(jobs) - len(pending)
    options = SignOptions(certificate_serial=serial, level=level, reason=reason)
    failures: list[SealResult] = []
    signed = 0
    start = time.perf_counter()
    columns = (
        TextColumn("[bold]sealing"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]:>7.1f}/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    if pending:
        with (
            Progress(*columns, console=console, transient=False) as progress,
            BulkSealer(embedded.signer_settings(), serial, options, processes=workers) as sealer,
        ):
            task = progress.add_task("seal", total=len(pending), rate=0.0)
            for result in sealer.run(pending):
                if result.ok:
                    signed += 1
                else:
                    failures.append(result)
                elapsed = time.perf_counter() - start
                progress.update(task, advance=1, rate=(signed + len(failures)) / max(elapsed, 1e-9))
    elapsed = time.perf_counter() - start

    summary = Table(title="seal-batch", show_header=False)
    summary.add_row("documents found", str(len(jobs)))
    summary.add_row("sealed now", str(signed))
    summary.add_row("already sealed (skipped)", str(skipped))
    summary.add_row("failed", f"[red]{len(failures)}[/]" if failures else "0")
    summary.add_row("level / seal", f"{level.value} / {issued.record.subject}")
    summary.add_row("time", f"{elapsed:.1f} s ({signed / max(elapsed, 1e-9):.1f} documents/s)")
    console.print(summary)
    if failures:
        table = Table(title="documents not sealed")
        table.add_column("file")
        table.add_column("reason")
        for failure in sorted(failures, key=lambda f: f.job.source):
            table.add_row(str(failure.job.source.relative_to(input_dir)), failure.error or "")
        console.print(table)
        raise typer.Exit(1)
