"""`signet db …`: the signer database's schema revision, for admins.

Signer processes migrate their database when they start, under a lock, so these
commands are never required; `upgrade` lets an admin migrate before a rollout
(and see it succeed) and `current` tells which revision a database is at.
They read the same settings as the signer (``SIGNET_SIGNER_DATABASE_URL``, or
SQLite under ``$SIGNET_HOME``), so in a cluster run them in a signer pod.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from signet.cli import embedded
from signet.signer import migrations
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

db_app = typer.Typer(no_args_is_help=True, help="The signer database's schema.")
console = Console(soft_wrap=True)
err = Console(stderr=True)


@contextmanager
def _engine() -> Iterator[Engine]:
    settings = embedded.signer_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.resolved_database_url(), poolclass=NullPool)
    try:
        yield engine
    except SQLAlchemyError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()


def _describe(state: migrations.SchemaState) -> str:
    if state.at_head:
        return f"{state.revision} (head)"
    return f"{state.revision or 'none'} (head {state.head})"


@db_app.command("current")
def current() -> None:
    """The database's schema revision and the newest one this signer knows."""
    with _engine() as engine:
        console.print(_describe(migrations.current(engine)))


@db_app.command("upgrade")
def upgrade() -> None:
    """Migrate the database to the newest revision (what every signer does on start)."""
    with _engine() as engine:
        before = migrations.current(engine)
        after = migrations.upgrade(engine)
    if before.revision == after.revision:
        console.print(f"nothing to do: {_describe(after)}")
    else:
        console.print(f"migrated from {before.revision or 'none'} to {_describe(after)}")
