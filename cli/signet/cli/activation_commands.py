"""`signet enrol`: bind a person's or seal keeper's key to the contact its activation
codes go to (DESIGN.md "Signature activation").

An administrator's act, done beside the signer like `signet ca issue`: it opens this
installation's signer directly (the same `ActivationService.enrol` that
`POST /v1/enrolments` calls), so the enrolment is recorded as the CLI's, with the
contact it replaced.  The portal can never do this: that is what keeps a compromised
portal from redirecting a person's codes to itself.
"""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from signet.cli import embedded
from signet.common.contracts.signer import KeyEnrolment
from signet.common.errors import SignetError

console = Console(soft_wrap=True)
err = Console(stderr=True)
ENROLLED_BY = "cli"


def enrol(
    serial: Annotated[str, typer.Option("--serial", help="the certificate's serial (hex)")],
    email: Annotated[str | None, typer.Option(help="send codes to this e-mail")] = None,
    mobile: Annotated[str | None, typer.Option(help="send codes by SMS (E.164)")] = None,
) -> None:
    """Bind the key of certificate SERIAL to an e-mail or a mobile (exactly one)."""
    if (email is None) == (mobile is None):
        err.print("[red]error:[/] give exactly one of --email or --mobile")
        raise typer.Exit(2)
    channel, address = ("email", email) if email is not None else ("sms", mobile)
    try:
        enrolment = KeyEnrolment.model_validate(
            {"certificate_serial": serial, "contact": {"channel": channel, "address": address}}
        )
    except ValidationError as exc:
        err.print(f"[red]error:[/] {exc.errors()[0]['msg']}")
        raise typer.Exit(2) from exc
    service = embedded.signer_service()
    try:
        info = service.activations.enrol(enrolment, ENROLLED_BY)
    except SignetError as exc:
        err.print(f"[red]error:[/] {exc.detail}")
        raise typer.Exit(2) from exc
    finally:
        service.close()
    replaced = f" (replaces {info.previous.address})" if info.previous else ""
    console.print(
        f"key {info.key_label} of {info.certificate_serial}: codes go to "
        f"{info.contact.address} ({info.contact.channel.value}){replaced}"
    )
