"""The `signet` command: one Typer app, one sub-app per component.

Later issues add `signet storage …`, `signet portal …`, `signet operator …`
by registering their sub-apps here.
"""

from __future__ import annotations

import sys

import typer
from signet.cli import (
    VERBOSE,
    activation_commands,
    batch_commands,
    batch_store_commands,
    db_commands,
    demo,
    hsm_commands,
    operator_commands,
    portal_commands,
    portal_serve,
    preserve_commands,
    signer_commands,
    storage_commands,
    up,
)
from signet.common.errors import SignetError

app = typer.Typer(
    no_args_is_help=True,
    help="Signet, the on-premise e-signature appliance.",
    pretty_exceptions_enable=False,
)
app.add_typer(hsm_commands.app, name="hsm")
app.add_typer(signer_commands.ca_app, name="ca")
signer_commands.ca_app.command("rotate-tsa")(preserve_commands.rotate_tsa)
app.add_typer(signer_commands.signer_app, name="signer")
signer_commands.signer_app.add_typer(batch_store_commands.batch_store_app, name="batch-store")
app.add_typer(storage_commands.storage_app, name="storage")
storage_commands.storage_app.command("preserve")(preserve_commands.preserve)
app.add_typer(portal_serve.portal_app, name="portal")
app.add_typer(operator_commands.operator_app, name="operator")
app.add_typer(db_commands.db_app, name="db")
app.command("sign")(signer_commands.sign)
app.command("verify")(signer_commands.verify)
app.command("seal-batch")(batch_commands.seal_batch)
app.command("verify-evidence")(storage_commands.verify_evidence)
app.command("up")(up.up)
app.command("outbox")(portal_commands.outbox)
app.command("demo")(demo.demo)
app.command("enrol")(activation_commands.enrol)


def main() -> None:
    # `--verbose` was read by signet.cli (warnings shown); Typer must not see it.
    sys.argv[1:] = [arg for arg in sys.argv[1:] if arg != "--verbose"]
    try:
        app()
    except SignetError as exc:
        # a refusal the command did not handle itself (no HSM PIN yet, the CA not made):
        # one line saying what is wrong, not a traceback; --verbose shows it whole
        if VERBOSE:
            raise
        print(f"error: {exc.detail} (--verbose shows the traceback)", file=sys.stderr)
        sys.exit(1)
