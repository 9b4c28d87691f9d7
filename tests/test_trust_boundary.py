"""The trust boundary of DESIGN.md: each caller's token opens only its own routes.

The real signer (SoftHSM, the session CA) and a real storage service, in process,
called with storage's token, the portal's, the admin's and none.  The expected
table is written out here, independently of `signet.common.auth.CALLER_SCOPES`,
so that a change of anyone's privileges shows up as a failing line; and every
route the apps serve must appear in it, so that a new route cannot slip in
without a decision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import SecretStr
from signet.signer.app import create_app as signer_app
from signet.signer.pki.ca import ISSUING_LABEL, ROOT_LABEL, TSA_LABEL
from signet.signer.service import SignerService
from signet.storage.app import create_app as storage_app
from signet.storage.config import StorageSettings

from tests.conftest import PORTAL_TOKEN, SERVICE_TOKEN, STORAGE_TOKEN, caller_entries

LEDGER_KEY = "signet-ledger-seal"
TOKENS = {"admin": SERVICE_TOKEN, "storage": STORAGE_TOKEN, "portal": PORTAL_TOKEN, "none": None}
SHA = "0" * 64
ADMIN, STORAGE, PORTAL = "admin", "storage", "portal"
ANYONE = frozenset({ADMIN, STORAGE, PORTAL, "none"})

#: (method, path, callers allowed) for every signer route.
SIGNER_ROUTES: list[tuple[str, str, frozenset[str]]] = [
    ("GET", "/healthz", ANYONE),
    ("GET", "/readyz", ANYONE),
    ("GET", "/metrics", ANYONE),
    ("GET", "/openapi.json", ANYONE),
    ("GET", "/ca/crl", ANYONE),
    ("GET", "/ca/issuing.crl", ANYONE),
    ("GET", "/ca/root.crl", ANYONE),
    ("GET", "/ca/root.cer", ANYONE),
    ("GET", "/ca/issuing.cer", ANYONE),
    ("POST", "/ocsp", ANYONE),
    ("GET", "/ocsp/MAA=", ANYONE),
    ("POST", "/tsa", ANYONE),  # RFC 3161, open as OCSP is
    ("POST", "/v1/digests/sign", frozenset({ADMIN, STORAGE})),
    ("POST", "/v1/certificates", frozenset({ADMIN, PORTAL})),
    ("GET", "/v1/certificates/01", frozenset({ADMIN, PORTAL})),
    ("POST", "/v1/certificates/01/revoke", frozenset({ADMIN})),
    ("POST", "/v1/sign", frozenset({ADMIN, PORTAL})),
    ("POST", "/v1/verify", frozenset({ADMIN, PORTAL})),
    ("POST", "/v1/documents/renew", frozenset({ADMIN, STORAGE})),
    ("POST", "/v1/batches", frozenset({ADMIN, PORTAL})),
    ("GET", "/v1/batches/b-1", frozenset({ADMIN, PORTAL})),
    ("GET", "/v1/batches/b-1/results", frozenset({ADMIN, PORTAL})),
    ("POST", "/v1/not-a-route", frozenset({ADMIN})),  # unknown: closed, not open
]

#: The same for storage (it never calls itself: storage's token is not in its registry).
STORAGE_ROUTES: list[tuple[str, str, frozenset[str]]] = [
    ("GET", "/healthz", ANYONE),
    ("GET", "/readyz", ANYONE),
    ("GET", "/metrics", ANYONE),
    ("GET", "/openapi.json", ANYONE),
    ("PUT", "/v1/objects", frozenset({ADMIN, PORTAL})),
    ("GET", f"/v1/objects/{SHA}", frozenset({ADMIN, PORTAL})),
    ("HEAD", f"/v1/objects/{SHA}", frozenset({ADMIN, PORTAL})),
    ("POST", f"/v1/objects/{SHA}/legal-hold", frozenset({ADMIN})),
    ("POST", f"/v1/objects/{SHA}/retention", frozenset({ADMIN})),
    ("POST", "/v1/ledger/events", frozenset({ADMIN, PORTAL})),
    ("GET", "/v1/ledger/tree-head", frozenset({ADMIN, PORTAL})),
    ("GET", "/v1/ledger/proof/inclusion", frozenset({ADMIN, PORTAL})),
    ("GET", "/v1/ledger/proof/consistency", frozenset({ADMIN, PORTAL})),
    ("GET", "/v1/envelopes/env-1/evidence", frozenset({ADMIN, PORTAL})),
    ("DELETE", f"/v1/objects/{SHA}", frozenset({ADMIN})),
]


@pytest.fixture(scope="module")
def signer(signer_service: SignerService) -> TestClient:
    # No lifespan: the app's shutdown would close the session's shared service.
    return TestClient(signer_app(service=signer_service), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def storage(
    signer_service: SignerService, signer_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    signer_service.ca.ensure_ledger_seal(LEDGER_KEY)
    settings = StorageSettings(
        home=tmp_path_factory.mktemp("storage"),
        service_token=SecretStr(SERVICE_TOKEN),
        callers=caller_entries(("portal", PORTAL_TOKEN)),
        signer_url=signer_url,
        signer_token=SecretStr(STORAGE_TOKEN),
        ledger_key_label=LEDGER_KEY,
        tree_head_interval=0,
    )
    with TestClient(storage_app(settings), raise_server_exceptions=False) as client:
        yield client


def _headers(caller: str) -> dict[str, str]:
    token = TOKENS[caller]
    return {"Authorization": f"Bearer {token}"} if token else {}


def _check(
    client: TestClient, method: str, path: str, allowed: frozenset[str], known: frozenset[str]
) -> None:
    """Allowed callers get past the guard; a known token without the scope gets 403, an
    unknown or missing one 401."""
    for caller in TOKENS:
        status = client.request(method, path, headers=_headers(caller)).status_code
        if caller in allowed:
            assert status not in (401, 403), (caller, method, path, status)
        else:
            assert status == (403 if caller in known else 401), (caller, method, path, status)


@pytest.mark.parametrize(("method", "path", "allowed"), SIGNER_ROUTES)
def test_signer_route_answers_as_its_scope_says(
    signer: TestClient, method: str, path: str, allowed: frozenset[str]
) -> None:
    _check(signer, method, path, allowed, frozenset({ADMIN, STORAGE, PORTAL}))


@pytest.mark.parametrize(("method", "path", "allowed"), STORAGE_ROUTES)
def test_storage_route_answers_as_its_scope_says(
    storage: TestClient, method: str, path: str, allowed: frozenset[str]
) -> None:
    _check(storage, method, path, allowed, frozenset({ADMIN, PORTAL}))


def _templates(client: TestClient) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in client.app.routes  # type: ignore[attr-defined]
        if isinstance(route, APIRoute)
        for method in route.methods
    }


@pytest.mark.parametrize(("app", "table"), [("signer", SIGNER_ROUTES), ("storage", STORAGE_ROUTES)])
def test_every_route_is_in_the_table(
    request: pytest.FixtureRequest, app: str, table: list[tuple[str, str, frozenset[str]]]
) -> None:
    """Each route the app serves has a line above: its callers were decided, not inherited."""
    client: TestClient = request.getfixturevalue(app)
    covered = {(m, p) for m, p, _ in table}
    for method, template in _templates(client):
        concrete = (
            template.replace("{serial}", "01")
            .replace("{batch_id}", "b-1")
            .replace("{sha256}", SHA)
            .replace("{envelope_id}", "env-1")
            .replace("{encoded:path}", "MAA=")
        )
        if concrete.startswith("/docs"):
            continue
        assert (method, concrete) in covered, (app, method, template)


CA_KEYS = [ROOT_LABEL, ISSUING_LABEL, TSA_LABEL]


@pytest.mark.parametrize("label", CA_KEYS)
@pytest.mark.parametrize("caller", ["portal", "none"])
def test_no_caller_without_the_scope_can_sign_a_digest_with_a_ca_key(
    signer: TestClient, caller: str, label: str
) -> None:
    digest = hashlib.sha256(b"Forged: Chief Executive Officer").hexdigest()
    response = signer.post(
        "/v1/digests/sign", json={"key_label": label, "digest": digest}, headers=_headers(caller)
    )
    assert response.status_code == (403 if TOKENS[caller] else 401), response.text


@pytest.mark.parametrize("label", CA_KEYS)
@pytest.mark.parametrize("caller", ["storage", "none"])
def test_no_caller_without_the_scope_can_certify_a_ca_key(
    signer: TestClient, caller: str, label: str
) -> None:
    body = {"kind": "seal", "key_label": label, "subject": {"common_name": "Forged"}}
    response = signer.post("/v1/certificates", json=body, headers=_headers(caller))
    assert response.status_code == (403 if TOKENS[caller] else 401), response.text


@pytest.mark.parametrize("label", CA_KEYS)
@pytest.mark.parametrize("caller", ["storage", "admin"])
def test_not_even_a_scoped_caller_signs_a_digest_with_a_ca_key(
    signer: TestClient, caller: str, label: str
) -> None:
    digest = hashlib.sha256(b"Forged: Chief Executive Officer").hexdigest()
    response = signer.post(
        "/v1/digests/sign", json={"key_label": label, "digest": digest}, headers=_headers(caller)
    )
    assert response.status_code in (403, 404, 409, 422), response.text


@pytest.mark.parametrize("label", CA_KEYS)
@pytest.mark.parametrize("caller", ["portal", "admin"])
def test_not_even_a_scoped_caller_certifies_a_ca_key(
    signer: TestClient, caller: str, label: str
) -> None:
    body = {"kind": "seal", "key_label": label, "subject": {"common_name": "Forged"}}
    response = signer.post("/v1/certificates", json=body, headers=_headers(caller))
    assert response.status_code in (403, 409, 422), response.text


def test_storage_seals_its_ledger_with_its_own_token(storage: TestClient) -> None:
    """Least privilege is enough: storage's own token (timestamps and digest-sign, no
    admin) gets its tree head signed and timestamped by the real signer."""
    event = {
        "event_type": "envelope.created",
        "envelope_id": "env-tb",
        "actor": "portal",
        "ip": "192.0.2.10",
        "user_agent": "test",
        "document_hashes": [],
        "auth_method": "otp-email",
    }
    sent = storage.post("/v1/ledger/events", json=event, headers=_headers("portal"))
    assert sent.status_code == 201, sent.text
    head = storage.get("/v1/ledger/tree-head?fresh=true", headers=_headers("portal"))
    assert head.status_code == 200, head.text
    assert head.json()["tree_size"] >= 1


def test_a_file_registry_is_what_the_service_accepts(
    signer_service: SignerService, tmp_path: Path
) -> None:
    """The form `signet up` and the operator write: hashes only, no token in clear."""
    from signet.common.auth import registry_file

    path = tmp_path / "callers.json"
    path.write_text(registry_file([("portal", "portal-file-token-0123456789")]))
    assert "portal-file-token" not in path.read_text()
    settings = signer_service.settings.model_copy(update={"service_token": None, "callers": []})
    settings = settings.model_copy(update={"callers_file": path})
    client = TestClient(signer_app(settings, signer_service), raise_server_exceptions=False)
    ok = {"Authorization": "Bearer portal-file-token-0123456789"}
    assert client.get("/v1/certificates/01", headers=ok).status_code == 404
    assert client.post("/v1/digests/sign", json={}, headers=ok).status_code == 403
    admin = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    assert client.get("/v1/certificates/01", headers=admin).status_code == 401


# --- The network boundary: what the operator's NetworkPolicies let through. ----------
# A small evaluator of NetworkPolicy semantics (the ones the operator uses: pod and
# namespace selectors by matchLabels, ipBlock CIDRs, TCP ports) over its desired objects.

Pod = tuple[dict[str, str], dict[str, str]]  # (namespace labels, pod labels)


def _matches(selector: dict[str, object] | None, labels: dict[str, str]) -> bool:
    wanted = (selector or {}).get("matchLabels", {})
    assert isinstance(wanted, dict)
    return all(labels.get(k) == v for k, v in wanted.items())


def _peer_admits(peer: dict[str, object], pod: Pod, own_namespace: dict[str, str]) -> bool:
    if "ipBlock" in peer:
        return False
    namespace, labels = pod
    if "namespaceSelector" in peer:
        if not _matches(peer["namespaceSelector"], namespace):  # type: ignore[arg-type]
            return False
    elif namespace != own_namespace:
        return False
    return "podSelector" not in peer or _matches(peer["podSelector"], labels)  # type: ignore[arg-type]


def _ingress_allowed(policy: dict[str, object], pod: Pod, port: int, ns: dict[str, str]) -> bool:
    rules = policy["ingress"]
    assert isinstance(rules, list)
    return any(
        any(p["port"] == port for p in rule["ports"])
        and any(_peer_admits(peer, pod, ns) for peer in rule["from"])
        for rule in rules
    )


def _spec_with_portal() -> object:
    from signet.common.contracts.appliance import ApplianceSpec

    return ApplianceSpec.model_validate(
        {
            "publicUrl": "https://sign.example.com",
            "hsm": {"softhsm": True},
            "objectStore": {
                "endpoint": "minio.minio.svc:9000",
                "accessKey": {"name": "m", "key": "a"},
                "secretKey": {"name": "m", "key": "s"},
            },
            "database": {"url": {"name": "pg", "key": "url"}},
            "metrics": {
                "scraper": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                }
            },
            "portal": {
                "enabled": True,
                "hostname": "contracts.example.com",
                "database": {"name": "pdb", "key": "url"},
                "egress": [{"cidrs": ["10.1.0.25/32"], "ports": [587]}],
            },
        }
    )


def test_the_scraper_reaches_every_metrics_port_and_no_api_port() -> None:
    from signet.operator.desired import COMPONENTS, desired_objects

    spec = _spec_with_portal()
    objects = desired_objects("acme", "signet", spec)  # type: ignore[arg-type]
    policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
    own = {"kubernetes.io/metadata.name": "signet"}
    scraper: Pod = (
        {"kubernetes.io/metadata.name": "mon"},
        {"app.kubernetes.io/name": "prometheus"},
    )
    ingress_nginx: Pod = ({"kubernetes.io/metadata.name": "ingress-nginx"}, {"app": "nginx"})
    stranger: Pod = ({"kubernetes.io/metadata.name": "other"}, {"app": "x"})
    for component in COMPONENTS:
        policy = policies[f"acme-{component.name}"]
        assert _ingress_allowed(policy, scraper, component.metrics_port, own), component.name
        assert not _ingress_allowed(policy, scraper, component.port, own), component.name
        assert not _ingress_allowed(policy, stranger, component.port, own), component.name
        # the ingress controller reaches the portal's API port, and nothing else
        reaches = _ingress_allowed(policy, ingress_nginx, component.port, own)
        assert reaches == (component.name == "portal"), component.name


def test_the_portal_leaves_only_for_what_its_policy_lists() -> None:
    from signet.operator.desired import desired_objects

    spec = _spec_with_portal()
    objects = desired_objects("acme", "signet", spec)  # type: ignore[arg-type]
    (portal,) = [
        o["spec"]
        for o in objects
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "acme-portal"
    ]
    allowed = set()
    for rule in portal["egress"]:
        ports = tuple(sorted(p["port"] for p in rule.get("ports", [])))
        for peer in rule.get("to", [{"anywhere": True}]):
            if "ipBlock" in peer:
                allowed.add((peer["ipBlock"]["cidr"], ports))
            elif "podSelector" in peer:
                allowed.add(
                    (peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"], ports)
                )
            else:
                allowed.add(("any", ports))
    assert allowed == {
        ("any", (53, 53)),  # DNS (UDP and TCP)
        ("signer", (8101,)),
        ("storage", (8102,)),
        ("any", (5432,)),  # PostgreSQL
        ("10.1.0.25/32", (587,)),  # the mail relay the admin listed
    }
