"""Signing in to the portal's pages with a local account's password (argon2id).

A success makes a browser session: a random 256-bit token for the cookie, its SHA-256
in `web_sessions`, an expiry.  Five wrong passwords in a row lock the account for
fifteen minutes, whatever is typed next; the answer never says which of "no such
account", "wrong password" or "locked" it was, and an unknown e-mail costs the same
argon2 verification as a known one, so neither the words nor the time tell.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from signet.common.errors import SignetError
from signet.portal.accounts.models import Role, User, WebSession
from signet.portal.evidence.record import NOWHERE, Origin
from signet.portal.schema import utc_now
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

MAX_FAILURES = 5
LOCK_FOR = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=8)
_HASHER = PasswordHasher()
#: verified against when the e-mail is unknown, so that both cost one argon2 run
_DUMMY = _HASHER.hash(secrets.token_urlsafe(16))


class SignInRefused(SignetError):
    status_code = 401
    code = "sign_in_refused"

    def __init__(self) -> None:
        super().__init__(
            "the e-mail or the password is wrong, or the account is locked for a while"
        )


@dataclass(frozen=True)
class SignedIn:
    """Who a session belongs to, as the pages need it."""

    session_id: str
    user_id: str
    organisation_id: str
    role: Role
    name: str
    email: str
    locale: str
    expires_at: datetime

    @property
    def sees_all(self) -> bool:
        """An admin or an auditor sees the organisation's envelopes; a sender their own."""
        return self.role in (Role.ADMIN, Role.AUDITOR)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SignIns:
    def __init__(
        self, sessions: sessionmaker[Session], clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.sessions, self.clock = sessions, clock

    def sign_in(self, email: str, password: str, origin: Origin = NOWHERE) -> tuple[str, datetime]:
        """The new session's token and expiry; `SignInRefused` otherwise (a wrong
        password is counted, committed, before the refusal)."""
        token = secrets.token_urlsafe(32)
        with self.sessions.begin() as session:
            users = session.scalars(
                select(User).where(
                    func.lower(User.email) == email.strip().lower(),
                    User.password_hash.is_not(None),
                    User.disabled_at.is_(None),
                )
            ).all()
            # one account per e-mail signs in with a password; an e-mail shared by two
            # organisations' accounts is refused (they sign in through their SSO)
            user = users[0] if len(users) == 1 else None
            now = self.clock()
            verified = self._verified(user.password_hash if user else None, password)
            if user is None:
                refused = True
            elif user.locked_until is not None and now < user.locked_until:
                refused = True  # even the right password, until the lock ends
            elif not verified:
                refused = True
                user.failed_sign_ins += 1
                if user.failed_sign_ins >= MAX_FAILURES:
                    user.locked_until, user.failed_sign_ins = now + LOCK_FOR, 0
            else:
                refused = False
                user.failed_sign_ins, user.locked_until = 0, None
                agent = origin.user_agent[:300] if origin.user_agent else None
                session.add(
                    WebSession(
                        user_id=user.id, sha256=_digest(token), created_at=now,
                        expires_at=now + SESSION_LIFETIME, ip=origin.ip, user_agent=agent,
                    )
                )  # fmt: skip
        if refused:
            raise SignInRefused()
        return token, now + SESSION_LIFETIME

    @staticmethod
    def _verified(stored: str | None, password: str) -> bool:
        try:
            return _HASHER.verify(stored or _DUMMY, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    def signed_in(self, token: str | None) -> SignedIn | None:
        """The session's person, or None (no cookie, unknown, expired, signed out, or
        the user disabled since)."""
        if not token or len(token) > 100:
            return None
        with self.sessions() as session:
            found = session.execute(
                select(WebSession, User)
                .join(User, User.id == WebSession.user_id)
                .where(WebSession.sha256 == _digest(token))
            ).one_or_none()
            if found is None:
                return None
            row, user = found
            if row.revoked_at is not None or self.clock() >= row.expires_at:
                return None
            if user.disabled_at is not None:
                return None
            return SignedIn(
                row.id, user.id, user.organisation_id, Role(user.role), user.name, user.email,
                user.locale, row.expires_at,
            )  # fmt: skip

    def sign_out(self, token: str | None) -> None:
        if not token or len(token) > 100:
            return
        with self.sessions.begin() as session:
            row = session.scalar(select(WebSession).where(WebSession.sha256 == _digest(token)))
            if row is not None and row.revoked_at is None:
                row.revoked_at = self.clock()
