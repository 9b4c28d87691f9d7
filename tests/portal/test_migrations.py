"""The portal's revisions make exactly what its models declare (SQLite, the default):
a column added to a model without a revision, or the other way round, fails here."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from signet.common.database import current
from signet.portal.database import open_portal_database
from signet.portal.migrations import PORTAL, metadata


def test_migrated_schema_is_what_the_models_declare(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'portal.db'}"
    open_portal_database(url).engine.dispose()
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert list(compare_metadata(context, metadata())) == []
        state = current(engine, PORTAL)
        assert state.at_head and state.revision == "0005_pages"
    finally:
        engine.dispose()
