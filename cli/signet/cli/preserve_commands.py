"""`signet ca rotate-tsa` and `signet storage preserve`: keeping signatures verifiable.

The rollover runs against the signer's HSM and registry like `signet ca init` (the
running signer switches keys by itself within seconds); the preservation run asks the
storage service, which holds the lease and remembers what it renewed
(docs/admin/preservation.md).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from asn1crypto import pem
from rich.console import Console
from signet.cli import embedded
from signet.common.errors import SignetError
from signet.signer.pki.ca import fingerprint
from signet.signer.pki.rotation import tsa_records

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
