"""Alembic's entry point for the signer's revisions (run by `alembic.command` functions
with a configuration from `signet.signer.migrations.alembic_config`).

Online, it migrates through the connection the caller passed, inside the caller's
transaction and lock; a command run without one opens its own under the same lock.
Offline (``--sql``) it only renders the statements.  SQLite cannot alter most of a
table in place, so its revisions run in Alembic's batch mode (copy and rename).
"""

from __future__ import annotations

from alembic import context
from signet.signer.migrations import migration_lock, models
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection


def _configure(**options: object) -> None:
    context.configure(target_metadata=models(), compare_type=True, **options)  # type: ignore[arg-type]


def _run_online(connection: Connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    config = context.config
    if context.is_offline_mode():
        url = config.get_main_option("sqlalchemy.url")
        _configure(url=url, literal_binds=True, render_as_batch=bool(url and "sqlite" in url))
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_online(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    try:
        with migration_lock(engine) as own:
            _run_online(own)
    finally:
        engine.dispose()


_main()
