"""The three services of a running `signet up` as the hostile-input prober meets them:
their tokens, which known token lacks which route's scope, sample parameters.

The scope tables are the services' own (`signet.signer.api.deps.ROUTES`,
`signet.storage.app`'s rules, `signet.portal.http.access`): this module does not decide
who may call what (`tests/test_trust_boundary.py` holds that, written out), it only
picks, for each route, a token that the route must refuse with 403.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from signet.common.auth import CALLER_SCOPES, Scope, needed_permission
from signet.portal.accounts.service import PortalScope
from signet.portal.http.access import needed_scope
from signet.signer.api.deps import ROUTES as SIGNER_ROUTES
from signet.storage.app import ROUTES as STORAGE_ROUTES

from tests.support.hostile import Operation, Service, path_for

SEAL = {"key_label": "signet-default-seal", "level": "B-B"}
#: OCSP and RFC 3161 answer a malformed request in their own protocol, as HTTP 200
#: (OCSP ``malformedRequest``) or a 4xx with the TSA's rejection: never a 5xx.
PROTOCOLS = {
    "POST /ocsp": frozenset({200, 400, 415, 422}),
    "GET /ocsp/{encoded}": frozenset({200, 400, 404, 422}),
    "POST /tsa": frozenset({200, 400, 415, 422}),
}
UUID = "00000000-0000-4000-8000-000000000000"


def _scope_service(
    name: str, url: str, admin: str, tokens: dict[str, str], rules: object, **extra: Any
) -> Service:
    def needed(operation: Operation) -> Scope | None:
        return needed_permission(rules, operation.method, _concrete(operation))  # type: ignore[arg-type]

    def _concrete(operation: Operation) -> str:
        return path_for(operation, service, None)

    def wrong(operation: Operation) -> str | None:
        scope = needed(operation)
        for caller, token in tokens.items():
            if scope is not None and scope not in CALLER_SCOPES[caller]:
                return token
        return None

    service = Service(
        name=name,
        url=url,
        admin=admin,
        wrong_scope=wrong,
        public=lambda operation: needed(operation) is None,
        samples={
            "serial": "01",
            "activation_id": "act-1",
            "batch_id": "b-1",
            "encoded": "MAA=",
            "sha256": "0" * 64,
            "envelope_id": "env-1",
        },
        forms={
            "POST /v1/sign": {"options": json.dumps(SEAL)},
            "POST /v1/batches": {"options": json.dumps(SEAL)},
            "POST /v1/complete": {"options": json.dumps(SEAL)},
            "POST /v1/certificates/{serial}/revoke": {"reason": "unspecified"},
            "POST /v1/objects/{sha256}/legal-hold": {"on": False},
            "POST /v1/objects/{sha256}/retention": {"retain_until": "2090-01-01T00:00:00Z"},
        },
        protocol=PROTOCOLS,
        **extra,
    )
    return service


def signer(home: Path, port: int, document_limit: int) -> Service:
    """`document_limit`: the signer's max_document_bytes (a batch's part limit)."""
    admin = (home / "service-token").read_text().strip()
    tokens = {c: (home / "tokens" / c).read_text().strip() for c in ("storage", "portal")}
    return _scope_service(
        "signer", f"http://127.0.0.1:{port}", admin, tokens, SIGNER_ROUTES,
        part_limits={"POST /v1/batches": document_limit},
    )  # fmt: skip


def storage(home: Path, port: int) -> Service:
    admin = (home / "service-token").read_text().strip()
    # the portal is the only other caller storage knows (storage's own token is the
    # signer's business: storage answers it 401, as any unknown token)
    tokens = {"portal": (home / "tokens" / "portal").read_text().strip()}
    body = b"not what the headers say"
    liar = {"X-Signet-Sha256": "0" * 64, "X-Signet-Kind": "original"}
    return _scope_service(
        "storage", f"http://127.0.0.1:{port}", admin, tokens, STORAGE_ROUTES,
        malformed={
            # any bytes are a valid object: the malformed upload lies in its headers
            "PUT /v1/objects": [
                (body, "application/pdf", liar),
                (body, "application/pdf", {"X-Signet-Envelope": "../../etc"}),
                (body, "application/pdf", {"X-Signet-Kind": "\x1b[31mred"}),
                (body, "x" * 4096, {}),
            ]
        },
    )  # fmt: skip


def portal(home: Path, port: int) -> Service:
    """The portal with its admin's key and two narrower keys made through its own API."""
    url = f"http://127.0.0.1:{port}"
    admin = (home / "portal" / "admin-api-key").read_text().strip()
    keys: dict[PortalScope, str] = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}) as client:
        for scope in (PortalScope.ENVELOPES_READ, PortalScope.ENVELOPES_WRITE):
            made = client.post("/api/v1/keys", json={"name": f"only {scope}", "scopes": [scope]})
            made.raise_for_status()
            keys[scope] = made.json()["key"]

    def needed(operation: Operation) -> PortalScope | None:
        return needed_scope(operation.method, path_for(operation, service, None))

    def wrong(operation: Operation) -> str | None:
        scope = needed(operation)
        if scope is None:
            return None
        if scope is PortalScope.ENVELOPES_READ:
            return keys[PortalScope.ENVELOPES_WRITE]
        return keys[PortalScope.ENVELOPES_READ]

    def link(operation: Operation) -> bool:
        # the recipient routes carry their credential in the path: "no token" there is
        # an unknown link, which must be refused (401/403/404), never served
        return operation.template.startswith(("/api/v1/links/", "/api/v1/attachments/"))

    envelope = {"title": "Hostile", "recipients": [{"name": "A", "email": "a@x.example"}]}
    successor = {"name": "B", "email": "b@x.example", "reason": "hostile"}
    service = Service(
        name="portal",
        url=url,
        admin=admin,
        wrong_scope=wrong,
        public=lambda operation: needed(operation) is None and not link(operation),
        path_credential=link,
        samples={
            "envelope_id": UUID,
            "field_id": UUID,
            "recipient_id": UUID,
            "key_id": UUID,
            "message_id": UUID,
            "index": "0",
            "token": uuid.UUID(int=7).hex,
        },
        forms={
            "POST /api/v1/envelopes": {"envelope": json.dumps(envelope)},
            "POST /api/v1/envelopes/{envelope_id}/void": {"reason": "hostile"},
            "POST /api/v1/links/{token}/identity/verify": {"code": "123456"},
            "POST /api/v1/links/{token}/decline": {"reason": "hostile"},
            "PUT /api/v1/links/{token}/fields/{field_id}": {"value": "x"},
            "POST /api/v1/links/{token}/delegate": successor,
            "POST /api/v1/envelopes/{envelope_id}/recipients/{recipient_id}/forward": successor,
            "POST /api/v1/links/{token}/sign": {
                "activation_id": "act-1",
                "code": "123456",
                "image": "iVBORw0KGgo=",
            },
        },
    )
    return service
