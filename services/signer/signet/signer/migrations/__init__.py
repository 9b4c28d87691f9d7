"""The signer database's schema, versioned by the Alembic revisions in ``versions/``.

Every signer process calls `upgrade` when it opens the registry, so an
upgraded image migrates its database before it serves; an admin may run the
same step ahead of a rollout with ``signet db upgrade``.  Several processes
(uvicorn workers, signer replicas) start at once, so the whole step — reading
the version, adopting an older database, running the revisions — is one
transaction holding a lock: a PostgreSQL transaction-level advisory lock, or
SQLite's write lock taken up front (``BEGIN IMMEDIATE``).  The second process
waits, then finds the schema at head and does nothing.  Both databases run
DDL inside transactions, so a failed revision leaves the schema as it was.

Databases made by ``create_all`` before the schema had revisions carry no
``alembic_version`` table: they are *adopted* — stamped at the revision whose
shape they have — never dropped or recreated.

The environment is configured in code (no ``alembic.ini``), so the package
ships in the wheel and needs nothing beside it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection, Engine

__all__ = ["SchemaState", "alembic_config", "current", "migration_lock", "models", "upgrade"]

log = logging.getLogger(__name__)
# Alembic says "Context impl …" at INFO on every version check: noise in every start.
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)

SCRIPT_LOCATION = Path(__file__).parent
#: Key of the PostgreSQL advisory lock held while migrating ("SIGNET" + 1); any other
#: user of advisory locks in the same database must pick another key.
ADVISORY_LOCK_KEY = 0x5349474E45540001
#: The revision an unversioned database (made by ``create_all``) is stamped at when it
#: lacks the spool columns, and the one when it has them.
_BASELINE = "0001"
_SPOOL = "0002"


@dataclass(frozen=True)
class SchemaState:
    """Where a database is (None: never migrated) against what this code knows."""

    revision: str | None
    head: str

    @property
    def at_head(self) -> bool:
        return self.revision == self.head


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic configuration for the signer's revisions, for `alembic.command` calls.

    Pass the `connection` to migrate through (``env.py`` then uses it as it is, in the
    caller's transaction), or a `url` for commands that open their own (``--sql`` output).
    """
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    # New revisions are named like the existing ones (a module name must not start with
    # a digit); ``%%`` because the option goes through ConfigParser interpolation.
    config.set_main_option("file_template", "v%%(rev)s_%%(slug)s")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def models() -> MetaData:
    """The metadata of the signer's models (all of them: batch tables are declared in
    `signet.signer.batch.queue`, the batch store's in `signet.signer.batch.guard`), which
    autogenerate and the schema tests compare against."""
    from signet.signer import registry
    from signet.signer.batch import guard, queue  # noqa: F401 - imported for their tables
    from signet.signer.pki import purposes  # noqa: F401 - imported for its table

    return registry.Base.metadata


@contextmanager
def migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that no other migrating process can be in; committed
    when the block ends without an error, rolled back otherwise."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
        elif connection.dialect.name == "sqlite":
            # pysqlite would begin (deferred) only before the first INSERT/UPDATE, after the
            # version was read; IMMEDIATE takes the write lock now, waiting up to the
            # connection's busy timeout for another migrating process to commit.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection
        connection.commit()


def upgrade(engine: Engine) -> SchemaState:
    """Bring the database to the newest revision this code knows; safe to call from many
    processes at once and on every start (at head it only reads the version).

    A database at a revision this code does not know (a newer signer migrated it; this
    is an older one, e.g. after a rollback) is left alone with a warning: revisions only
    add what older code can ignore (nullable columns, new tables), never remove.
    """
    state = current(engine)
    if state.at_head:
        return state  # the common case: no lock, no write (a read-only SQLite file works)
    with migration_lock(engine) as connection:
        config = alembic_config(connection)
        script = ScriptDirectory.from_config(config)
        head = script.get_current_head()
        assert head is not None
        revision = _adopt_if_unversioned(connection, script)
        known = {s.revision for s in script.walk_revisions()}
        if revision is not None and revision not in known:
            log.warning(
                "signer database schema is at %s, unknown to this signer (head %s): "
                "a newer signer migrated it; not migrating",
                revision,
                head,
            )
            return SchemaState(revision, head)
        if revision != head:
            log.info("migrating the signer database from %s to %s", revision, head)
            command.upgrade(config, "head")
        return SchemaState(head, head)


def current(engine: Engine) -> SchemaState:
    """The database's revision, without changing anything (an unversioned database made
    by ``create_all`` shows None until the next `upgrade` adopts it)."""
    with engine.connect() as connection:
        revision = MigrationContext.configure(connection).get_current_revision()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return SchemaState(revision, head)


def _adopt_if_unversioned(connection: Connection, script: ScriptDirectory) -> str | None:
    """The database's revision, after stamping one made by ``create_all`` (None: empty).

    Such a database has the tables of revision 0001 (all of them, or only the registry's
    if it predates batch sealing: those missing are created as 0001 made them) and none,
    some or all of the spool columns that the ad-hoc step before 0002 added one ALTER at
    a time (a missing one is added as 0002 adds it).  Then it is stamped 0001 or 0002
    and the caller upgrades it from there like any other database.
    """
    context = MigrationContext.configure(connection)
    revision = context.get_current_revision()
    if revision is not None:
        return revision
    baseline = script.get_revision(_BASELINE).module
    spool = script.get_revision(_SPOOL).module
    present = set(inspect(connection).get_table_names())
    if not present & set(baseline.TABLES):
        return None  # a fresh database: the revisions make everything
    with Operations.context(context):
        for name, create in baseline.TABLES.items():
            if name not in present:
                create()
        columns = {c["name"] for c in inspect(connection).get_columns("batch_items")}
        missing = [c for c in spool.SPOOL_COLUMNS if c not in columns]
        if len(missing) < len(spool.SPOOL_COLUMNS):
            for column in missing:
                spool.add_spool_column(column)
            revision = _SPOOL
        else:
            revision = _BASELINE
    log.warning("adopting a signer database made before migrations, at revision %s", revision)
    context.stamp(script, revision)
    return revision
