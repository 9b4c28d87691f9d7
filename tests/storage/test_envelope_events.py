"""`GET /v1/ledger/envelopes/{id}/events`: an envelope's timeline, in ledger order, with proofs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from signet.storage.app import create_app
from signet.storage.config import StorageSettings
from signet.storage.merkle import verify_inclusion

from tests.conftest import PORTAL_TOKEN, SERVICE_TOKEN, caller_entries


def _app(home: Path) -> TestClient:
    settings = StorageSettings(
        home=home,
        service_token=SecretStr(SERVICE_TOKEN),
        callers=caller_entries(("portal", PORTAL_TOKEN)),
        tree_head_interval=0,
    )
    client = TestClient(create_app(settings))
    client.headers["Authorization"] = f"Bearer {PORTAL_TOKEN}"  # the portal's own scopes
    return client


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    with _app(tmp_path / "storage") as client:
        yield client


def _event(envelope: str, n: int, event_id: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {
        "event_type": "link.opened",
        "envelope_id": envelope,
        "actor": f"r{n}@example.com",
        "ip": "192.0.2.9",
        "details": {"n": str(n)},
    }
    return body | ({"event_id": event_id} if event_id else {})


def test_an_envelopes_events_in_order_with_a_proof_for_each(api: TestClient) -> None:
    receipts = []
    for n in range(7):
        receipts.append(api.post("/v1/ledger/events", json=_event("env-A", n, f"a-{n}")).json())
        api.post("/v1/ledger/events", json=_event("env-B", n))
    api.post("/v1/ledger/events", json=_event("env-A", 0, "a-0"))  # a replay: not listed twice
    answer = api.get("/v1/ledger/envelopes/env-A/events")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["envelope_id"] == "env-A" and body["tree_size"] == 14
    assert body["next_after"] is None
    events = body["events"]
    assert [e["index"] for e in events] == [r["index"] for r in receipts] == list(range(0, 14, 2))
    assert [e["leaf_hash"] for e in events] == [r["leaf_hash"] for r in receipts]
    assert [e["event_id"] for e in events] == [f"a-{n}" for n in range(7)]
    first = events[0]
    assert first["event_type"] == "link.opened" and first["actor"] == "r0@example.com"
    assert first["details"] == {"n": "0"} and first["previous"] is None
    assert events[1]["previous"] == events[0]["leaf_hash"]  # the envelope's chain
    head = api.get("/v1/ledger/tree-head", params={"fresh": True})
    assert head.status_code == 503  # no signer here: proofs still verify against the root
    service = api.app.state.service  # type: ignore[attr-defined]
    root = service.ledger.root(body["tree_size"])
    for event in events:
        proof = api.get(
            "/v1/ledger/proof/inclusion",
            params={"index": event["index"], "tree_size": body["tree_size"]},
        ).json()
        assert proof["leaf_hash"] == event["leaf_hash"]
        assert verify_inclusion(
            event["index"],
            body["tree_size"],
            bytes.fromhex(event["leaf_hash"]),
            [bytes.fromhex(p) for p in proof["audit_path"]],
            root,
        )

    page = api.get("/v1/ledger/envelopes/env-A/events", params={"limit": 3}).json()
    assert [e["index"] for e in page["events"]] == [0, 2, 4] and page["next_after"] == 4
    rest = api.get("/v1/ledger/envelopes/env-A/events", params={"after": 4}).json()
    assert [e["index"] for e in rest["events"]] == [6, 8, 10, 12] and rest["next_after"] is None

    none = api.get("/v1/ledger/envelopes/env-unknown/events")
    assert none.status_code == 200 and none.json()["events"] == []


@pytest.mark.parametrize(
    "path", ["..", "a%20b", "-x", "%2e%2e", "e" * 65, "env%0A1", "%E2%80%AEenv"]
)
def test_an_envelope_id_out_of_pattern_is_refused(api: TestClient, path: str) -> None:
    answer = api.get(f"/v1/ledger/envelopes/{path}/events")
    if path == "..":  # the client resolves it: another route, admin only
        assert answer.status_code in (403, 404), answer.text
    else:
        assert answer.status_code == 422, answer.text


def test_the_timeline_needs_the_ledger_read_scope(tmp_path: Path) -> None:
    with _app(tmp_path / "storage") as client:
        client.post("/v1/ledger/events", json=_event("env-A", 0))
        assert client.get("/v1/ledger/envelopes/env-A/events").status_code == 200
        client.headers["Authorization"] = "Bearer wrong-token"
        assert client.get("/v1/ledger/envelopes/env-A/events").status_code == 401
