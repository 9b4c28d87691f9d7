"""Organisations, users and API keys.

An organisation is the unit of isolation: every envelope, template and key belongs
to one, and every query of the service layer is filtered by it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from signet.portal.schema import Base, IdColumn, new_id, utc_now
from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column


class Role(StrEnum):
    ADMIN = "admin"  # users, keys, policies, every envelope of the organisation
    SENDER = "sender"  # their own envelopes
    AUDITOR = "auditor"  # reads every envelope and its evidence, changes nothing


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("organisation_id", "email"),)

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default=Role.SENDER.value)
    mobile: Mapped[str | None] = mapped_column(String(32))
    locale: Mapped[str] = mapped_column(String(16), default="en")
    #: argon2id; None for users who only sign in through the organisation's SSO
    password_hash: Mapped[str | None] = mapped_column(String(200))
    disabled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    #: wrong passwords in a row (`signet.portal.accounts.signin`); reset by a success
    failed_sign_ins: Mapped[int] = mapped_column(default=0, server_default="0")
    #: no sign-in before this time, whatever the password (lock-out)
    locked_until: Mapped[datetime | None]


class WebSession(Base):
    """A signed-in browser: the cookie holds a random token, the table its SHA-256, so a
    copy of the database signs nobody in.  Expires; revoked by signing out."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))


class ApiKey(Base):
    """An integrator's key: shown once, kept as SHA-256, scoped, revocable.

    `prefix` (the first characters) is what lists show, so an admin can tell keys
    apart without the database holding anything that authenticates."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    #: the user the key acts for (envelopes it creates are theirs)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
