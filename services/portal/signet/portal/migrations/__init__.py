"""The portal database's schema, versioned by the Alembic revisions in ``versions/``.

Every portal process migrates when it opens its database (`signet.portal.database`),
under the portal's own advisory-lock key, exactly as the signer does
(`signet.common.database`): several replicas starting at once migrate once.
`signet.portal.models` imports every aggregate's tables; a new table goes there, with
the revision that creates it.
"""

from __future__ import annotations

from pathlib import Path

from signet.common import database
from signet.portal import models
from sqlalchemy import MetaData

__all__ = ["ADVISORY_LOCK_KEY", "PORTAL", "metadata"]

#: Key of the PostgreSQL advisory lock held while migrating ("SIGNET" + 3; the signer
#: has + 1): services sharing one database never wait for each other's migrations.
ADVISORY_LOCK_KEY = 0x5349474E45540003


def metadata() -> MetaData:
    """Every portal table, which autogenerate and the schema test compare to the revisions."""
    return models.Base.metadata


PORTAL = database.Migrations(
    name="portal", script_location=Path(__file__).parent, advisory_lock_key=ADVISORY_LOCK_KEY
)
