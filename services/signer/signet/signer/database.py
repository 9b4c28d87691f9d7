"""Opening the signer's database: the one step above both the registry and the
migrations (`signet.common.database` for the engine, pragmas and the migration lock,
`signet.signer.migrations` for the signer's revisions and advisory-lock key).

Every process that uses the signer database opens it here, so it is migrated to the
revision this code expects before anything reads it; the registry and the wings' table
modules below know nothing of migrating.
"""

from __future__ import annotations

from pathlib import Path

from signet.common.database import open_database
from signet.signer import migrations
from signet.signer.registry import Registry

__all__ = ["open_registry", "open_registry_at"]


def open_registry(url: str) -> Registry:
    """The signer database at `url` (SQLAlchemy URL), migrated on open under the lock."""
    return Registry(open_database(url, migrations.SIGNER))


def open_registry_at(path: Path) -> Registry:
    """The embedded default's SQLite database at `path` (the file 0600, a new folder 0700)."""
    return open_registry(f"sqlite:///{path}")
