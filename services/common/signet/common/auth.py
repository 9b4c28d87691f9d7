"""Who may call a service, and what each caller may do: per-caller tokens with scopes.

Every caller (storage, the portal, an admin) has its own random token; a service
keeps only their SHA-256 hashes, each with the caller's name and scopes, so that
a leaked registry lets nobody call anything, and storage's token can timestamp and
seal tree heads but never issue a certificate.  The check runs in the ASGI gate
(`signet.common.gate`), before any route and any body read: an unauthenticated
request costs a header parse and one hash.

Machine tokens are ≥256-bit random values, so a plain SHA-256 (no salt, no slow
KDF) is enough: there is nothing to guess.  Routes not in a service's table need
the admin scope: a route added without a line here is closed, not open.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from signet.common.errors import Forbidden, Unauthorized
from starlette.types import Scope as ASGIScope


class Scope(StrEnum):
    """What a token may do (the ``scopes`` of a registry entry)."""

    TIMESTAMP = "signer:timestamp"
    DIGEST_SIGN = "signer:digest-sign"
    CERTIFICATE_ISSUE = "signer:certificate-issue"
    CERTIFICATE_READ = "signer:certificate-read"
    CERTIFICATE_REVOKE = "signer:certificate-revoke"
    DOCUMENT_SIGN = "signer:sign"
    DOCUMENT_VERIFY = "signer:verify"
    BATCH = "signer:batch"
    #: Renew a retained document's archive-timestamp chain (storage's preservation job).
    DOCUMENT_RENEW = "signer:document-renew"
    VAULT_WRITE = "storage:vault-write"
    VAULT_READ = "storage:vault-read"
    LEGAL_HOLD = "storage:legal-hold"
    RETENTION = "storage:retention"
    LEDGER_APPEND = "storage:ledger-append"
    LEDGER_READ = "storage:ledger-read"
    EVIDENCE_READ = "storage:evidence-read"
    #: Everything, including what no other caller has (revocation, legal hold, retention).
    ADMIN = "admin"


#: The least privilege of each known caller (what `signet up` and the operator grant).
CALLER_SCOPES: Mapping[str, frozenset[Scope]] = {
    # storage seals and timestamps its ledger's tree heads and renews retained
    # documents' archive timestamps (preservation), nothing else
    "storage": frozenset({Scope.TIMESTAMP, Scope.DIGEST_SIGN, Scope.DOCUMENT_RENEW}),
    # the portal runs envelopes: person/event certificates, signing (each with the
    # person's activation), verification, and the documents and events of the vault;
    # never revocation, legal hold or retention
    "portal": frozenset(
        {
            Scope.TIMESTAMP,
            Scope.CERTIFICATE_ISSUE,
            Scope.CERTIFICATE_READ,
            Scope.DOCUMENT_SIGN,
            Scope.DOCUMENT_VERIFY,
            Scope.BATCH,
            Scope.VAULT_WRITE,
            Scope.VAULT_READ,
            Scope.LEDGER_APPEND,
            Scope.LEDGER_READ,
            Scope.EVIDENCE_READ,
        }
    ),
    "admin": frozenset({Scope.ADMIN}),
}

#: Which callers may call which service at all (the registry each service is given).
SERVICE_CALLERS: Mapping[str, tuple[str, ...]] = {
    "signer": ("admin", "storage", "portal"),
    "storage": ("admin", "portal"),
}


class CallerEntry(BaseModel):
    """One line of a service's registry: a caller, its token's hash, its scopes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    caller: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: frozenset[Scope]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh machine token (256 random bits)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Caller:
    name: str
    scopes: frozenset[Scope]

    def may(self, needed: Scope) -> bool:
        return Scope.ADMIN in self.scopes or needed in self.scopes


class TokenRegistry:
    """The hashed tokens a service accepts."""

    def __init__(self, entries: Iterable[CallerEntry]) -> None:
        self._entries = tuple(entries)

    @classmethod
    def load(
        cls,
        *,
        file: Path | None = None,
        entries: Sequence[CallerEntry] = (),
        admin_token: str | None = None,
    ) -> TokenRegistry:
        """Entries from `file` (a JSON list of `CallerEntry`), from settings, and the
        legacy single service token as ``admin`` (kept for one release)."""
        found = list(entries)
        if file is not None:
            found += [CallerEntry.model_validate(e) for e in json.loads(file.read_text("utf-8"))]
        if admin_token:
            found.append(
                CallerEntry(
                    caller="admin", sha256=token_hash(admin_token), scopes=frozenset({Scope.ADMIN})
                )
            )
        return cls(found)

    def identify(self, presented: str) -> Caller | None:
        """The caller whose token this is; every entry is compared, in constant time."""
        digest = token_hash(presented).encode()
        found: Caller | None = None
        for entry in self._entries:
            if hmac.compare_digest(digest, entry.sha256.encode()) and found is None:
                found = Caller(entry.caller, entry.scopes)
        return found

    def authorize(self, header: str, needed: Scope) -> Caller:
        """The caller of an ``Authorization`` header, if it may do `needed` (else 401/403)."""
        scheme, _, presented = header.partition(" ")
        caller = self.identify(presented.strip()) if scheme.lower() == "bearer" else None
        if caller is None:
            raise Unauthorized("a valid bearer token is required")
        if not caller.may(needed):
            raise Forbidden(f"the caller '{caller.name}' may not {needed.value}")
        return caller


def registry_file(entries: Iterable[tuple[str, str]]) -> str:
    """A registry's JSON for (caller, token) pairs, each with its `CALLER_SCOPES`."""
    return json.dumps(
        [
            {"caller": c, "sha256": token_hash(t), "scopes": sorted(CALLER_SCOPES[c])}
            for c, t in entries
        ],
        indent=2,
    )


#: A route rule: methods, a full-match path pattern, and the permission (None: public).
Rule = tuple[frozenset[str], re.Pattern[str], Scope | None]


def rule(methods: str, path: str, needed: Scope | None) -> Rule:
    names = frozenset(methods.split())
    if "GET" in names:
        names |= {"HEAD"}
    return names, re.compile(path), needed


#: What every service serves without a token: liveness, readiness, metrics, its docs.
PUBLIC_HEALTH: tuple[Rule, ...] = (
    rule("GET", r"/healthz|/readyz|/metrics", None),
    rule("GET", r"/docs|/docs/oauth2-redirect|/redoc|/openapi\.json", None),
)


def needed_permission(rules: Sequence[Rule], method: str, path: str) -> Scope | None:
    for methods, pattern, needed in rules:
        if method in methods and pattern.fullmatch(path):
            return needed
    return Scope.ADMIN  # not in the table: closed


class Authorizer:
    """The check `signet.common.gate.RequestGate` runs first, from the headers alone.

    Raises `Unauthorized` (no or an unknown token) or `Forbidden` (a known caller
    without the route's scope); the body is never read when it does.  The caller's
    name goes into ``scope["state"]["caller"]`` for the routes and the logs.
    """

    def __init__(self, registry: TokenRegistry, rules: Sequence[Rule]) -> None:
        self._registry = registry
        self._rules = tuple(rules)

    def __call__(self, scope: ASGIScope) -> None:
        needed = needed_permission(self._rules, scope["method"], scope["path"])
        if needed is None:
            return
        header = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        caller = self._registry.authorize(header.decode("latin-1"), needed)
        scope.setdefault("state", {})["caller"] = caller.name
