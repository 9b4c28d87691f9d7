"""One-time codes and link tokens: made, stored hashed, checked in constant time.

Shared by the portal (identity codes when a link is opened) and the signer (intent
codes that activate a key: DESIGN.md "Signature activation").  A 6-digit code has a
million values, so a bare hash of it is no protection for a stolen database: codes
are stored as HMAC-SHA256 under a server-side key (the *pepper*, a setting the
database never holds) and bound to what they are for (`purpose`: a recipient, a key
and a document digest), so a code issued for one document never checks for another.
Attempts are counted by the caller's row; `check` says what the row must become.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

CODE_DIGITS = 6
CODE_LIFETIME = timedelta(minutes=5)
MAX_ATTEMPTS = 5
#: Link tokens: 32 random bytes (256 bits), URL-safe.
LINK_TOKEN_BYTES = 32


def new_link_token() -> tuple[str, str]:
    """A fresh link token and the SHA-256 (hex) the database keeps of it.

    A link token is random enough that a plain hash suffices: nobody can enumerate
    2^256 values to reverse it, and lookups by hash need no pepper."""
    token = secrets.token_urlsafe(LINK_TOKEN_BYTES)
    return token, link_token_hash(token)


def link_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class CodeVerdict(StrEnum):
    ACCEPTED = "accepted"
    WRONG = "wrong"  # counted; `remaining` attempts left
    EXPIRED = "expired"
    LOCKED = (
        "locked"  # too many wrong attempts: a new code is needed (or, for identity, the sender)
    )
    USED = "used"  # a code checks once


@dataclass(frozen=True)
class IssuedCode:
    """What is stored of a code (never the code itself)."""

    digest: str
    purpose: str
    expires_at: datetime
    attempts: int = 0
    used: bool = False


@dataclass(frozen=True)
class CodeCheck:
    verdict: CodeVerdict
    record: IssuedCode  # the row as it must be stored after this check
    remaining: int


def _digest(pepper: bytes, purpose: str, code: str) -> str:
    message = f"{purpose}\x00{code}".encode("utf-8", "surrogatepass")
    return hmac.new(pepper, message, hashlib.sha256).hexdigest()


def issue_code(
    pepper: bytes, purpose: str, *, now: datetime | None = None, lifetime: timedelta = CODE_LIFETIME
) -> tuple[str, IssuedCode]:
    """A new code for `purpose` and its stored form."""
    if len(pepper) < 16:
        raise ValueError("the one-time code key must be at least 16 bytes")
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    issued_at = now or datetime.now(UTC)
    return code, IssuedCode(_digest(pepper, purpose, code), purpose, issued_at + lifetime)


def check_code(
    pepper: bytes,
    record: IssuedCode,
    presented: str,
    *,
    purpose: str,
    now: datetime | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> CodeCheck:
    """Check `presented` against `record` for `purpose` (constant time).

    The digest is compared even when the answer is already known (expired, locked),
    so the time taken never tells which."""
    candidate = _digest(pepper, purpose, presented.strip())
    matches = hmac.compare_digest(candidate, record.digest) and purpose == record.purpose
    moment = now or datetime.now(UTC)
    left = max(0, max_attempts - record.attempts)
    if record.used:
        return CodeCheck(CodeVerdict.USED, record, left)
    if record.attempts >= max_attempts:
        return CodeCheck(CodeVerdict.LOCKED, record, 0)
    if moment >= record.expires_at:
        return CodeCheck(CodeVerdict.EXPIRED, record, left)
    if matches:
        return CodeCheck(CodeVerdict.ACCEPTED, replace(record, used=True), left)
    counted = replace(record, attempts=record.attempts + 1)
    remaining = max(0, max_attempts - counted.attempts)
    verdict = CodeVerdict.LOCKED if remaining == 0 else CodeVerdict.WRONG
    return CodeCheck(verdict, counted, remaining)
