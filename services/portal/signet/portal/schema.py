"""The portal database's declarative base and the column types every model shares.

One `Base` for every aggregate (accounts, envelopes, identity, notifications, jobs),
each declared in its own domain folder; `signet.portal.models` imports them all so
that migrations and tests see the whole schema.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, String
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps stored with their zone and always read back as UTC.

    SQLite drops tzinfo; PostgreSQL keeps it.  Refusing naive values on the way in
    keeps a local time from ever being mistaken for UTC in the evidence."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("timestamps must carry a time zone")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if not isinstance(value, datetime):
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime()}  # noqa: RUF012 - SQLAlchemy's hook


def new_id() -> str:
    """Row ids: random UUIDs, so that ids in links and API answers reveal no counts."""
    return str(uuid.uuid4())


def utc_now() -> datetime:
    return datetime.now(UTC)


IdColumn = String(36)
