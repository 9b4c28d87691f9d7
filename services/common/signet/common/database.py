"""Opening a service's database: the engine, the migration lock, migrate-on-open, and
the atomic claim of queued rows, for every service that keeps state in SQL.

SQLite in the embedded default, PostgreSQL in a cluster, the same code.  A service
describes itself once (`Migrations`: its Alembic revisions and its own advisory-lock
key) and opens its database with `open_database`; each of its processes then migrates
on start, under a lock, so several processes starting at once migrate exactly once:
a PostgreSQL transaction-level advisory lock, or SQLite's write lock taken up front
(``BEGIN IMMEDIATE``).  The second process waits, then finds the schema at head and
does nothing.  Both databases run DDL inside transactions, so a failed revision leaves
the schema as it was.

A SQLite file holds every secret-adjacent record of its service (certificates,
one-time codes' hashes): it and its WAL and shared-memory files are created readable by
the owner only (0600, SQLite gives the WAL and SHM files the database file's mode), its
folder 0700.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import DateTime, bindparam, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "Database",
    "Migrations",
    "SchemaState",
    "alembic_config",
    "claim_rows",
    "create_engine",
    "current",
    "migration_lock",
    "open_database",
    "upgrade",
]

log = logging.getLogger(__name__)
# Alembic says "Context impl …" at INFO on every version check: noise in every start.
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)

#: Adopts a database made before the service had revisions (``create_all``): given the
#: connection (in the migration lock) and the revisions, stamps it and returns its
#: revision, or returns None for an empty database.
Adopt = Callable[[Connection, ScriptDirectory], "str | None"]


@dataclass(frozen=True)
class Migrations:
    """One service's schema history: where its Alembic revisions are and the key of the
    PostgreSQL advisory lock its processes migrate under (unique per service: two
    services sharing one database must not wait for each other's migrations)."""

    #: the service, for the log ("migrating the signer database …")
    name: str
    script_location: Path
    advisory_lock_key: int
    #: the first step of an unversioned database (None: every database has revisions)
    adopt: Adopt | None = None


@dataclass(frozen=True)
class SchemaState:
    """Where a database is (None: never migrated) against what this code knows."""

    revision: str | None
    head: str

    @property
    def at_head(self) -> bool:
        return self.revision == self.head


def alembic_config(
    migrations: Migrations, connection: Connection | None = None, url: str | None = None
) -> Config:
    """An Alembic configuration for `migrations`, for `alembic.command` calls.

    Pass the `connection` to migrate through (``env.py`` then uses it as it is, in the
    caller's transaction), or a `url` for commands that open their own (``--sql`` output).
    The environment is configured in code (no ``alembic.ini``), so a service's package
    ships in the wheel and needs nothing beside it.
    """
    config = Config()
    config.set_main_option("script_location", str(migrations.script_location))
    # New revisions are named like the existing ones (a module name must not start with
    # a digit); ``%%`` because the option goes through ConfigParser interpolation.
    config.set_main_option("file_template", "v%%(rev)s_%%(slug)s")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def migration_lock(engine: Engine, advisory_lock_key: int) -> Iterator[Connection]:
    """A connection in a transaction that no other migrating process can be in; committed
    when the block ends without an error, rolled back otherwise."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_lock_key}
            )
        elif connection.dialect.name == "sqlite":
            # pysqlite would begin (deferred) only before the first INSERT/UPDATE, after the
            # version was read; IMMEDIATE takes the write lock now, waiting up to the
            # connection's busy timeout for another migrating process to commit.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection
        connection.commit()


def current(engine: Engine, migrations: Migrations) -> SchemaState:
    """The database's revision, without changing anything (an unversioned database shows
    None until the next `upgrade` adopts it)."""
    with engine.connect() as connection:
        revision = MigrationContext.configure(connection).get_current_revision()
    head = ScriptDirectory.from_config(alembic_config(migrations)).get_current_head()
    assert head is not None
    return SchemaState(revision, head)


def upgrade(engine: Engine, migrations: Migrations) -> SchemaState:
    """Bring the database to the newest revision this code knows; safe to call from many
    processes at once and on every start (at head it only reads the version).

    A database at a revision this code does not know (a newer release migrated it; this
    is an older one, e.g. after a rollback) is left alone with a warning: revisions only
    add what older code can ignore (nullable columns, new tables), never remove.
    """
    state = current(engine, migrations)
    if state.at_head:
        return state  # the common case: no lock, no write (a read-only SQLite file works)
    with migration_lock(engine, migrations.advisory_lock_key) as connection:
        config = alembic_config(migrations, connection)
        script = ScriptDirectory.from_config(config)
        head = script.get_current_head()
        assert head is not None
        revision = MigrationContext.configure(connection).get_current_revision()
        if revision is None and migrations.adopt is not None:
            revision = migrations.adopt(connection, script)
        known = {s.revision for s in script.walk_revisions()}
        if revision is not None and revision not in known:
            log.warning(
                "%s database schema is at %s, unknown to this %s (head %s): "
                "a newer release migrated it; not migrating",
                migrations.name,
                revision,
                migrations.name,
                head,
            )
            return SchemaState(revision, head)
        if revision != head:
            log.info("migrating the %s database from %s to %s", migrations.name, revision, head)
            command.upgrade(config, "head")
        return SchemaState(head, head)


def create_engine(url: str, *, durable: bool = True) -> Engine:
    """An engine for `url`: SQLite in WAL mode with a busy timeout and, when `durable`,
    ``synchronous=FULL`` (a commit is on disk when it returns); a network database pings
    its connections on checkout (it may drop idle ones; a file cannot, and the ping would
    cost a round trip per query).

    Not `durable`: commits that do not wait for the disk, for writes a crash may undo
    harmlessly; SQLite ``synchronous=NORMAL`` (in WAL mode still atomic and consistent:
    the next durable commit's fsync of the WAL covers it), PostgreSQL
    ``synchronous_commit=off`` (the same promise).
    """
    if url.startswith("sqlite"):
        _secure_sqlite_file(url)
        engine = sqlalchemy.create_engine(url)
        synchronous = "FULL" if durable else "NORMAL"

        def pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.close()

        event.listen(engine, "connect", pragmas)
        return engine
    if url.startswith("postgresql") and not durable:
        return sqlalchemy.create_engine(
            url, pool_pre_ping=True, connect_args={"options": "-c synchronous_commit=off"}
        )
    return sqlalchemy.create_engine(url, pool_pre_ping=True)


def _secure_sqlite_file(url: str) -> None:
    """Create a SQLite file (and its folder) for the owner only before SQLite does (with
    the umask's 0644), and take group and world access from an existing one and its WAL
    and SHM files (made so by an older release)."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    except PermissionError:
        return  # a read-only copy: SQLite opens it as it can
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if name.stat().st_mode & 0o077:
                name.chmod(0o600)
        except (FileNotFoundError, PermissionError):
            continue


class Database:
    """An opened database: its engine and the two kinds of session a service needs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._undurable: sessionmaker[Session] | None = None

    def session(self) -> Session:
        return self._sessions()

    def undurable_session(self) -> Session:
        """A session whose commits do not wait for the disk: for writes that a crash may
        undo harmlessly (a job claim: lost, its rows are simply queued again).  Its own
        connections (`create_engine` with ``durable=False``); every other session stays
        fully durable."""
        if self._undurable is None:
            if self.url.startswith(("sqlite", "postgresql")):
                engine = create_engine(self.url, durable=False)
            else:
                engine = self.engine
            self._undurable = sessionmaker(engine, expire_on_commit=False)
        return self._undurable()


def open_database(url: str, migrations: Migrations) -> Database:
    """The database at `url`, migrated to the newest revision of `migrations` (under the
    lock: safe from many processes at once)."""
    database = Database(url)
    upgrade(database.engine, migrations)
    return database


def claim_rows(
    connection: Connection,
    table: str,
    *,
    keys: Sequence[str],
    state: str = "state",
    queued: str = "pending",
    claimed: str = "running",
    values: Mapping[str, Any],
    limit: int,
    returning: Sequence[str] = (),
    timestamps: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Claim up to `limit` of the oldest queued rows of `table` (ordered by `keys`) in one
    statement, so no row has two claimants, however many processes claim at once.

    The claimed rows get ``state = claimed`` and `values` (e.g. the claimant and the
    time; name in `timestamps` those that are aware datetimes); returns the `keys` and
    `returning` columns of each.  On PostgreSQL the rows are picked ``FOR UPDATE SKIP
    LOCKED`` (claimants take different rows instead of waiting for each other); SQLite
    has one writer at a time, and the outer ``state = queued`` re-check makes the same
    promise on both.  Table and column names come from code, never from a request.
    """
    key_list = ", ".join(keys)
    skip_locked = " FOR UPDATE SKIP LOCKED" if connection.dialect.name == "postgresql" else ""
    assignments = ", ".join(f"{column} = :v_{column}" for column in values)
    statement = text(
        f"UPDATE {table} SET {state} = :claimed, {assignments} "  # noqa: S608 - names from code
        f"WHERE ({key_list}) IN ("
        f"  SELECT {key_list} FROM {table} WHERE {state} = :queued "
        f"  ORDER BY {key_list} LIMIT :limit{skip_locked}"
        f") AND {state} = :queued "
        f"RETURNING {', '.join([*keys, *returning])}"
    ).bindparams(*(bindparam(f"v_{c}", type_=DateTime(timezone=True)) for c in timestamps))
    parameters = {f"v_{column}": value for column, value in values.items()}
    parameters.update(claimed=claimed, queued=queued, limit=limit)
    return [tuple(row) for row in connection.execute(statement, parameters)]
