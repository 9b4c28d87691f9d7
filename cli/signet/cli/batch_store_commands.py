"""`signet signer batch-store …`: is the batch directory the batches' own, and accepting it.

Run where the signer runs (``kubectl exec deploy/<appliance>-signer -- signet signer
batch-store status``): the commands read the signer's settings, so they look at the
same database and the same directory.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from signet.cli import embedded

batch_store_app = typer.Typer(no_args_is_help=True, help="The signer's batch directory.")
console = Console(soft_wrap=True)
err = Console(stderr=True)


@batch_store_app.command("status")
def status() -> None:
    """What the signer's readiness reports as `batch_store` (exit 1 unless ready)."""
    state = embedded.signer_service().batch_store.state()
    console.print(json.dumps(state.details(), indent=2))
    if not state.ready:
        raise typer.Exit(1)


@batch_store_app.command("adopt")
def adopt(
    yes: bool = typer.Option(
        False, "--yes", help="I know the documents of batches not in this directory are lost"
    ),
) -> None:
    """Accept the batch directory as the store of the database's batches.

    For a volume that replaced a lost one (or an emptyDir of an older operator): batches
    whose folders are not there stay listed but their results cannot be fetched, and their
    pending documents fail (their uploads are gone).  A marker that cannot be read (empty
    after a crash, edited) is replaced: it holds no document.  Restart the signer pods
    afterwards (``kubectl rollout restart deploy/<appliance>-signer``).
    """
    guard = embedded.signer_service().batch_store
    before = guard.open()
    if before.ready:
        console.print(f"nothing to do: {before.directory} is store {before.store_id}")
        return
    if not yes:
        err.print(f"[red]refused:[/] {before.problem}\nrun again with --yes to accept it")
        raise typer.Exit(2)
    after = guard.adopt()
    console.print(f"{after.directory} is now store {after.store_id}; restart the signer processes")
