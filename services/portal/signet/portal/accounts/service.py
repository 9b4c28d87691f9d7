"""API keys and the first administrator: who is calling, for which organisation.

A key is ``sgk_`` and 256 random bits; the database keeps its SHA-256 (nothing to
guess, so no slow hash) and a short prefix for lists.  It is shown once, when made.
People's passwords are argon2id.  The first start of an empty portal makes one
organisation, its administrator and an API key for them, and hands the secrets back
once, for `signet up` to print.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from argon2 import PasswordHasher
from signet.common.errors import Forbidden, NotFound, Unauthorized
from signet.portal.accounts.models import ApiKey, Organisation, Role, User
from signet.portal.schema import utc_now
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

KEY_PREFIX = "sgk_"


class PortalScope(StrEnum):
    """What an API key may do."""

    ENVELOPES_READ = "envelopes:read"  # get, list, timeline, downloads
    ENVELOPES_WRITE = "envelopes:write"  # create, send, void, remind
    WEBHOOKS_MANAGE = "webhooks:manage"  # subscriptions, their delivery log, replays
    #: keys, the outbox, every envelope of the organisation
    ADMIN = "admin"


#: A new key's scopes when the request names none: a sender's, not an admin's.
DEFAULT_SCOPES = frozenset({PortalScope.ENVELOPES_READ, PortalScope.ENVELOPES_WRITE})


@dataclass(frozen=True)
class Principal:
    """The caller of one request, as the key says: every query is filtered by it."""

    organisation_id: str
    user_id: str
    role: Role
    key_id: str
    scopes: frozenset[PortalScope]

    def may(self, needed: PortalScope) -> bool:
        return PortalScope.ADMIN in self.scopes or needed in self.scopes

    @property
    def sees_all(self) -> bool:
        """Admins and auditors see every envelope of the organisation; senders their own."""
        return self.role in (Role.ADMIN, Role.AUDITOR)


@dataclass(frozen=True)
class NewKey:
    id: str
    name: str
    prefix: str
    scopes: frozenset[PortalScope]
    #: the key itself: shown once, never stored
    secret: str


@dataclass(frozen=True)
class FirstAdmin:
    organisation: str
    email: str
    password: str
    api_key: NewKey


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Accounts:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def authenticate(self, header: str) -> Principal:
        """The principal of an ``Authorization: Bearer sgk_…`` header; 401 otherwise."""
        scheme, _, presented = header.partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented.startswith(KEY_PREFIX):
            raise Unauthorized("an API key is required (Authorization: Bearer sgk_…)")
        digest = _digest(presented)
        with self.sessions.begin() as session:
            found = session.execute(
                select(ApiKey, User)
                .join(User, User.id == ApiKey.user_id)
                .where(ApiKey.sha256 == digest)
            ).one_or_none()
            # the index found it by hash; compare again in constant time all the same
            if found is None or not hmac.compare_digest(found[0].sha256, digest):
                raise Unauthorized("this API key is not valid")
            key, user = found
            if key.revoked_at is not None:
                raise Unauthorized("this API key was revoked")
            if user.disabled_at is not None:
                raise Unauthorized("the user of this API key is disabled")
            now = utc_now()
            if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
                key.last_used_at = now  # at most a write a minute per key
            return Principal(
                key.organisation_id,
                user.id,
                Role(user.role),
                key.id,
                frozenset(PortalScope(s) for s in key.scopes),
            )

    def create_key(
        self,
        principal: Principal,
        name: str,
        scopes: Iterable[PortalScope] = DEFAULT_SCOPES,
        *,
        user_id: str | None = None,
    ) -> NewKey:
        """A key for `user_id` (default: the caller) of the caller's organisation; only
        an admin key makes keys, and never one with more than it has itself."""
        wanted = frozenset(scopes)
        if not principal.may(PortalScope.ADMIN):
            raise Forbidden("only an admin key manages API keys")
        with self.sessions.begin() as session:
            owner = session.get(User, user_id or principal.user_id)
            if owner is None or owner.organisation_id != principal.organisation_id:
                raise NotFound(f"no user {user_id}")
            if PortalScope.ADMIN in wanted and owner.role != Role.ADMIN.value:
                raise Forbidden("an admin scope is only for an administrator's key")
            return _new_key(session, owner, name, wanted)

    def list_keys(self, principal: Principal) -> list[ApiKey]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(ApiKey)
                    .where(ApiKey.organisation_id == principal.organisation_id)
                    .order_by(ApiKey.created_at)
                )
            )

    def revoke_key(self, principal: Principal, key_id: str) -> ApiKey:
        with self.sessions.begin() as session:
            key = session.get(ApiKey, key_id)
            if key is None or key.organisation_id != principal.organisation_id:
                raise NotFound(f"no API key {key_id}")
            if key.revoked_at is None:
                key.revoked_at = utc_now()
            return key

    def ensure_first_admin(self, organisation: str, email: str, name: str) -> FirstAdmin | None:
        """On an empty portal: the organisation, its administrator and their API key
        (secrets returned once); None when the portal already has an organisation."""
        with self.sessions.begin() as session:
            if session.scalar(select(func.count()).select_from(Organisation)):
                return None
            org = Organisation(name=organisation)
            session.add(org)
            session.flush()
            password = secrets.token_urlsafe(12)
            admin = User(
                organisation_id=org.id,
                email=email,
                name=name,
                role=Role.ADMIN.value,
                password_hash=PasswordHasher().hash(password),
            )
            session.add(admin)
            session.flush()
            key = _new_key(session, admin, "first admin", frozenset({PortalScope.ADMIN}))
            return FirstAdmin(organisation, email, password, key)

    def add_user(
        self, principal: Principal, email: str, name: str, role: Role = Role.SENDER
    ) -> User:
        if not principal.may(PortalScope.ADMIN):
            raise Forbidden("only an admin key manages users")
        with self.sessions.begin() as session:
            user = User(
                organisation_id=principal.organisation_id, email=email, name=name, role=role.value
            )
            session.add(user)
            return user


def _new_key(session: Session, owner: User, name: str, scopes: frozenset[PortalScope]) -> NewKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        organisation_id=owner.organisation_id,
        user_id=owner.id,
        name=name,
        prefix=secret[:12],
        sha256=_digest(secret),
        scopes=sorted(s.value for s in scopes),
    )
    session.add(key)
    session.flush()
    return NewKey(key.id, name, key.prefix, scopes, secret)
