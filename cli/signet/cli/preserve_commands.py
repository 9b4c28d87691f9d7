"""`signet ca rotate-tsa` and `signet storage preserve`: keeping signatures verifiable.

The rollover runs against the signer's HSM and registry like `signet ca init` (the
running signer switches keys by itself within seconds); the preservation run asks the
storage service, which holds the lease and remembers what it renewed
(docs/admin/preservation.md).
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated, NoReturn

import httpx
import typer
from asn1crypto import pem
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from signet.cli import embedded
from signet.common.contracts.preservation import PreservationRun, PreservationStatus
from signet.common.errors import SignetError
from signet.common.logging import register_secret
from signet.common.settings import signet_home
from signet.signer.pki.ca import fingerprint
from signet.signer.pki.rotation import tsa_records
from signet.storage.config import StorageSettings

console = Console(soft_wrap=True)
err = Console(stderr=True)


def write_tsa_files(directory: Path, ders: list[tuple[str, bytes]]) -> None:
    """``tsa.pem`` (the current certificate), ``tsa-<serial>.pem`` for every one ever
    issued, and ``tsa-all.pem`` with all of them: a validator of old tokens needs the
    old certificates as much as a new one needs the current."""
    directory.mkdir(parents=True, exist_ok=True)
    armoured = [(serial, pem.armor("CERTIFICATE", der)) for serial, der in ders]
    for serial, text in armoured:
        (directory / f"tsa-{serial}.pem").write_bytes(text)
    (directory / "tsa-all.pem").write_bytes(b"".join(text for _, text in armoured))
    (directory / "tsa.pem").write_bytes(armoured[-1][1])


def rotate_tsa(
    validity_days: Annotated[
        float | None,
        typer.Option(help="validity of the new certificate (default: the TSA validity setting)"),
    ] = None,
) -> None:
    """Roll the TSA key over: a new key and certificate in the HSM stamp from now on; the
    old certificates stay published and in every validation. Then run
    `signet storage preserve` so every document gets a timestamp by the new key."""
    service = embedded.signer_service()
    try:
        previous = service.ca.tsa
        validity = timedelta(days=validity_days) if validity_days else None
        issued = service.rotate_tsa(validity)
        records = tsa_records(service.registry)
    except SignetError as exc:
        err.print(f"[red]error:[/] {exc.detail}")
        raise typer.Exit(2) from exc
    write_tsa_files(service.settings.home / "ca", [(r.serial, r.der) for r in records])
    console.print(
        f"TSA rolled over: serial {previous.record.serial} -> {issued.record.serial}, "
        f"key {issued.key.label}, valid until {issued.record.not_after:%Y-%m-%d %H:%M} UTC"
    )
    console.print(f"tsa      SHA-256 {fingerprint(issued.certificate)}")
    console.print(
        f"{len(records)} TSA certificates kept in {service.settings.home / 'ca'} "
        "(tsa-all.pem); next: `signet storage preserve`"
    )


def _storage_url() -> str:
    settings = StorageSettings()
    # a server bound to every interface is reached on loopback
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    return f"http://{host}:{settings.port}"


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def _answer(response: httpx.Response) -> PreservationStatus:
    if response.status_code in (200, 202):
        return PreservationStatus.model_validate_json(response.content)
    try:
        body = response.json()
        detail, code = str(body.get("detail")), str(body.get("error"))
    except ValueError:
        detail, code = response.text[:300], ""
    if code == "not_leader":
        _fail(f"{detail}", 3)
    _fail(f"storage answered {response.status_code} {code}: {detail}")


def preserve(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="only show what is due: nothing is renewed")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="the pass's report as one JSON document")
    ] = False,
    url: Annotated[
        str | None, typer.Option(help="the storage service (default: this installation's)")
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(help="the admin's token (default: $SIGNET_HOME/service-token)"),
    ] = None,
    poll: Annotated[float, typer.Option(min=0.05, help="seconds between progress reads")] = 0.5,
) -> None:
    """Run one preservation pass now (or, with --dry-run, count what is due) on the
    storage service, with its progress, and report it: renewed, waiting for a TSA
    rollover, failed with the reason, and the backlog left with its deadline."""
    path = token_file or signet_home() / "service-token"
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        _fail(f"no admin token in {path}: {exc.strerror}")
    register_secret(token)
    base = url or _storage_url()
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            report = _follow(client, dry_run, poll, show=not as_json)
    except httpx.HTTPError as exc:
        _fail(f"storage at {base} is unreachable: {exc}")
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        _print(report)
    if report.error or report.failed:
        raise typer.Exit(1)


def _follow(client: httpx.Client, dry_run: bool, poll: float, *, show: bool) -> PreservationRun:
    """Start the pass (after one already running, if any) and follow it to its end."""
    while True:
        response = client.post("/v1/preservation/runs", json={"dry_run": dry_run})
        if response.status_code != 409 or response.json().get("error") != "preservation_running":
            break
        if show:
            err.print("a pass is already running; waiting for it to end")
        while _answer(client.get("/v1/preservation")).running is not None:
            time.sleep(poll)
    status = _answer(response)
    mine = status.running
    if mine is None:  # finished already (an empty vault)
        if status.last_run is None:
            _fail("the pass left no report")
        return status.last_run
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not show,
    ) as progress:
        task = progress.add_task("dry run" if dry_run else "renewing", total=None)
        while True:
            status = _answer(client.get("/v1/preservation"))
            last = status.last_run
            if last is not None and last.started >= mine.started:  # ours (started after)
                return last
            if status.running is not None and status.running.total:
                progress.update(task, total=status.running.total, completed=status.running.done)
            time.sleep(poll)


def _print(run: PreservationRun) -> None:
    table = Table("", "", title="preservation dry run" if run.dry_run else "preservation pass")
    rows = [
        ("signed documents scanned", run.scanned),
        ("due" + (" (would be renewed)" if run.dry_run else ""), run.due),
        ("renewed", run.renewed),
        ("already preserved", run.already_preserved),
        ("waiting for a TSA rollover", run.waiting_for_rollover),
        ("failed", run.failed),
        ("evidence packages renewed", run.packages_renewed),
        ("backlog", run.backlog),
    ]
    for what, value in rows:
        table.add_row(what, str(value))
    if run.backlog_deadline is not None:
        table.add_row("backlog due before", f"{run.backlog_deadline:%Y-%m-%d %H:%M} UTC")
    console.print(table)
    for sha, why in run.failures.items():
        console.print(f"[red]failed[/] {sha}: {escape(why)}")
    if run.error:
        console.print(f"[red]{escape(run.error)}[/]")
    if run.waiting_for_rollover:
        console.print("next: roll the TSA over (`signet ca rotate-tsa`), then run this again")
