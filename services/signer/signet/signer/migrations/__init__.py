"""The signer database's schema, versioned by the Alembic revisions in ``versions/``.

Every signer process migrates when it opens its database (`signet.signer.database`),
so an upgraded image migrates its database before it serves; an admin may run the
same step ahead of a rollout with ``signet db upgrade``.  The generic part — the lock
(the signer's own PostgreSQL advisory-lock key, or SQLite's ``BEGIN IMMEDIATE``), the
version check, running the revisions — is `signet.common.database`; this module says
which revisions, which key, and how an unversioned database is adopted.

Databases made by ``create_all`` before the schema had revisions carry no
``alembic_version`` table: they are *adopted* — stamped at the revision whose
shape they have — never dropped or recreated.

Every wing declares its tables on `signet.signer.schema.Base` in a table module that
imports nothing above the schema; `TABLE_MODULES` is the one list of them (a new
wing's table module goes there, with the revision that creates its tables).
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from pathlib import Path
from types import ModuleType

from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from signet.common import database
from signet.common.database import SchemaState
from signet.signer import schema
from signet.signer.activation import tables as activation_tables
from signet.signer.batch import tables as batch_tables
from signet.signer.pki import tables as pki_tables
from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection, Engine

__all__ = [
    "ADVISORY_LOCK_KEY",
    "SIGNER",
    "TABLE_MODULES",
    "SchemaState",
    "alembic_config",
    "current",
    "migration_lock",
    "models",
    "upgrade",
]

log = logging.getLogger(__name__)

SCRIPT_LOCATION = Path(__file__).parent
#: Key of the PostgreSQL advisory lock held while migrating ("SIGNET" + 1); any other
#: user of advisory locks in the same database must pick another key.
ADVISORY_LOCK_KEY = 0x5349474E45540001
#: The revision an unversioned database (made by ``create_all``) is stamped at when it
#: lacks the spool columns, and the one when it has them.
_BASELINE = "0001"
_SPOOL = "0002"

#: Every module that declares tables of the signer database on `schema.Base`: the one
#: list a new wing's table module is added to (importing a module registers its tables).
TABLE_MODULES: tuple[ModuleType, ...] = (
    schema,
    batch_tables,
    pki_tables,
    activation_tables,
)


def models() -> MetaData:
    """The metadata of every table in `TABLE_MODULES`, which autogenerate and the schema
    tests compare against the revisions."""
    assert all(module.Base is schema.Base for module in TABLE_MODULES)
    return schema.Base.metadata


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic configuration for the signer's revisions (see
    `signet.common.database.alembic_config`)."""
    return database.alembic_config(SIGNER, connection, url)


def migration_lock(engine: Engine) -> AbstractContextManager[Connection]:
    """A connection in a transaction that no other migrating signer process can be in."""
    return database.migration_lock(engine, ADVISORY_LOCK_KEY)


def upgrade(engine: Engine) -> SchemaState:
    """Bring the database to the newest revision this code knows; safe to call from many
    processes at once and on every start (`signet.common.database.upgrade`)."""
    return database.upgrade(engine, SIGNER)


def current(engine: Engine) -> SchemaState:
    """The database's revision, without changing anything (an unversioned database made
    by ``create_all`` shows None until the next `upgrade` adopts it)."""
    return database.current(engine, SIGNER)


def _adopt_if_unversioned(connection: Connection, script: ScriptDirectory) -> str | None:
    """The database's revision, after stamping one made by ``create_all`` (None: empty).

    Such a database has the tables of revision 0001 (all of them, or only the registry's
    if it predates batch sealing: those missing are created as 0001 made them) and none,
    some or all of the spool columns that the ad-hoc step before 0002 added one ALTER at
    a time (a missing one is added as 0002 adds it).  Then it is stamped 0001 or 0002
    and the caller upgrades it from there like any other database.
    """
    context = MigrationContext.configure(connection)
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


SIGNER = database.Migrations(
    name="signer",
    script_location=SCRIPT_LOCATION,
    advisory_lock_key=ADVISORY_LOCK_KEY,
    adopt=_adopt_if_unversioned,
)
