"""Alembic's entry point for the portal's revisions (see `signet.common.database`).

Online it migrates through the connection the caller passed, inside the caller's
transaction and lock; a command run without one opens its own under the same lock.
SQLite cannot alter most of a table in place, so revisions run in batch mode there.
"""

from __future__ import annotations

from alembic import context
from signet.common.database import migration_lock
from signet.portal.migrations import ADVISORY_LOCK_KEY, metadata
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection


def _configure(**options: object) -> None:
    context.configure(target_metadata=metadata(), compare_type=True, **options)  # type: ignore[arg-type]


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
        with migration_lock(engine, ADVISORY_LOCK_KEY) as own:
            _run_online(own)
    finally:
        engine.dispose()


_main()
