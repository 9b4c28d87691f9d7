"""Opening the portal's database: migrated on open under the portal's own lock.

The generic part (engine, SQLite pragmas and file modes, the lock) is
`signet.common.database`, shared with the signer; this says which revisions.
"""

from __future__ import annotations

from signet.common.database import Database, open_database
from signet.portal.migrations import PORTAL

__all__ = ["open_portal_database"]


def open_portal_database(url: str) -> Database:
    """The portal database at `url` (SQLAlchemy URL), at the newest revision."""
    return open_database(url, PORTAL)
