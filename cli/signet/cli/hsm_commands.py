"""`signet hsm …`: the development token and the keys on a token."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table
from signet.cli import embedded
from signet.hsm import Hsm

app = typer.Typer(no_args_is_help=True, help="HSM tokens and keys.")
console = Console(soft_wrap=True)


@app.command("init")
def init() -> None:
    """Create the SoftHSM2 development token under $SIGNET_HOME (once; reruns reuse it)."""
    token = embedded.dev_token()
    verb = "created" if token.created else "already present"
    console.print(f"SoftHSM token [bold]{token.config.token_label}[/] {verb}: {token.conf_file}")
    console.print(f"user PIN kept in {token.conf_file.parent / 'user.pin'} (mode 0600)")


@app.command("keys")
def keys() -> None:
    """List the key pairs on the token (labels, algorithms, extractability)."""
    settings = embedded.signer_settings()
    service = embedded.SignerService(settings)
    hsm: Hsm = service.hsm
    table = Table("label", "algorithm", "id", "sensitive", "extractable")
    for info in hsm.list_keys():
        table.add_row(
            info.label,
            info.algorithm.value,
            info.key_id.hex(),
            str(info.sensitive),
            str(info.extractable),
        )
    console.print(table)
