"""Webhooks in the running appliance (`signet up`: signer, storage and portal as separate
processes, SQLite): an envelope sent, approved, signed and completed at B-LTA through
the API only, and a real receiver on loopback gets every envelope and recipient step
signed, each verified with the docs' snippet, in the order of the envelope's timeline.
And a template saved through the API (its documents in the vault) makes an envelope
that completes the same way.

Loopback is a target here only because the test sets the test-only
``SIGNET_PORTAL_WEBHOOK_ALLOW_LOOPBACK``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.portal.test_api_story import (
    ANNEX,
    CONTRACT,
    _activate,
    _create,
    _handwriting,
    _link_of,
    _sign_body,
    _story,
    _timeline_in_ledger,
    _verify,
)
from tests.portal.test_webhooks import Receiver, _docs_verify
from tests.support.appliance import Appliance, running_appliance


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    with running_appliance(
        tmp_path_factory.mktemp("home-webhooks"),
        SIGNET_PORTAL_WEBHOOK_ALLOW_LOOPBACK="true",
        SIGNET_PORTAL_JOB_CHECK_SECONDS="0.2",
        SIGNET_PORTAL_WEBHOOK_RETRY_BASE_SECONDS="0.5",
        SIGNET_PORTAL_WEBHOOK_RETRY_CAP_SECONDS="1",
    ) as running:
        yield running


def test_send_approve_sign_complete_arrives_signed_and_in_order(
    appliance: Appliance, tmp_path: Path
) -> None:
    receiver = Receiver(free_port())
    with appliance.portal(appliance.admin_key()) as admin:
        made = admin.post("/api/v1/webhooks", json={"url": receiver.url})
        assert made.status_code == 201, made.text
        secret = made.json()["secret"]
        story = _story()
        story["recipients"] = [
            {"name": "Wang Fang", "email": "wang.fang@acme.example", "role": "approver"},
            {"name": "Ana Completes", "email": "ana.c@other.example", "group": 1},
        ]
        story["fields"] = [
            {"document": 1, "recipient": 1, "kind": kind, "page": 1, "x": 50,
             "y": 100 + 40 * i, "width": 140, "height": 24}
            for i, kind in enumerate(["signature", "date"])
        ]  # fmt: skip
        envelope_id = _create(admin, story).json()["id"]
        admin.post(f"/api/v1/envelopes/{envelope_id}/send").raise_for_status()
        # the receiver is down for the first steps: they wait, in order
        deadline = time.monotonic() + 30
        while not _tried(admin, made.json()["id"]):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        receiver.start()
        try:
            with httpx.Client(base_url=appliance.portal_url, timeout=60) as recipient:
                approver = _link_of(admin, envelope_id, "wang.fang@acme.example")
                _verify(appliance, admin, envelope_id, approver, "wang.fang@acme.example")
                recipient.post(f"/api/v1/links/{approver}/approve").raise_for_status()
                ana = _link_of(admin, envelope_id, "ana.c@other.example")
                _verify(appliance, admin, envelope_id, ana, "ana.c@other.example")
                body = _sign_body(_handwriting(), **_activate(appliance, ana))
                signed = recipient.post(f"/api/v1/links/{ana}/sign", json=body)
                assert signed.status_code == 200 and signed.json()["envelope_status"] == "completed"
            types = _timeline_in_ledger(admin, envelope_id)
            wanted = [t for t in types if t.startswith(("envelope.", "recipient."))]
            deadline = time.monotonic() + 60
            while len({r.event["id"] for r in receiver.got}) < len(wanted):
                assert time.monotonic() < deadline, [r.event["type"] for r in receiver.got]
                time.sleep(0.2)
        finally:
            receiver.stop()
        verify = _docs_verify()
        assert all(verify(secret, r.headers, r.body) for r in receiver.got)
        first_seen: dict[str, int] = {}
        for got in receiver.got:
            first_seen.setdefault(got.event["id"], got.event["sequence"])
        arrival = list(first_seen.values())
        assert arrival == sorted(arrival), arrival  # in timeline order, despite the outage
        events = admin.get(f"/api/v1/envelopes/{envelope_id}/events").json()
        by_id = {e["id"]: e["type"] for e in events}
        assert [by_id[i] for i in first_seen] == wanted
        assert wanted[-1] == "envelope.completed" and "recipient.signed" in wanted
        log = admin.get(f"/api/v1/webhooks/{made.json()['id']}/deliveries").json()
        assert {d["state"] for d in log} == {"delivered"}
        assert any(a["error"] for d in log for a in d["log"])  # the outage is in the log


def _tried(admin: httpx.Client, webhook_id: str) -> bool:
    log = admin.get(f"/api/v1/webhooks/{webhook_id}/deliveries").json()
    return any(d["attempts"] >= 2 for d in log)


def test_a_template_saved_through_the_api_makes_an_envelope_that_completes(
    appliance: Appliance,
) -> None:
    """Template → envelope → sent → approved → signed → completed, through HTTP only."""
    spec = {
        "name": "Annex sign-off",
        "title": "Annex sign-off",
        "roles": [{"key": "legal", "role": "approver"}, {"key": "customer", "group": 1}],
        "fields": [
            {"document": 1, "role": "customer", "kind": kind, "page": 1, "x": 50,
             "y": 100 + 40 * i, "width": 140, "height": 24}
            for i, kind in enumerate(["signature", "date"])
        ],
    }  # fmt: skip
    with appliance.portal(appliance.admin_key()) as admin:
        saved = admin.post(
            "/api/v1/templates", data={"template": json.dumps(spec)},
            files=[("documents", ("contract.pdf", CONTRACT, "application/pdf")),
                   ("documents", ("annex.pdf", ANNEX, "application/pdf"))],
        )  # fmt: skip
        assert saved.status_code == 201, saved.text
        template = saved.json()
        assert [d["pages"] for d in template["documents"]] == [2, 1]
        assert template["documents"][0]["sha256"] == hashlib.sha256(CONTRACT).hexdigest()
        too_big = admin.post(
            "/api/v1/templates", data={"template": json.dumps(spec)},
            files=[("documents", ("a.pdf", b"%PDF-1.7\n" + b"0" * (51 * 1024 * 1024),
                                  "application/pdf"))],
        )  # fmt: skip
        assert too_big.status_code == 413, too_big.text
        hello = [("documents", ("a.pdf", b"hello", "application/pdf"))]
        not_pdf = admin.post("/api/v1/templates", data={"template": json.dumps(spec)}, files=hello)
        assert not_pdf.status_code in (400, 422), not_pdf.text
        parties = {
            "legal": {"name": "Wang Fang", "email": "wang.fang@acme.example"},
            "customer": {"name": "Ana Template", "email": "ana.t@other.example", "locale": "es"},
        }
        made = admin.post(f"/api/v1/templates/{template['id']}/envelopes",
                          json={"parties": parties})  # fmt: skip
        assert made.status_code == 201, made.text
        envelope_id = made.json()["id"]
        admin.post(f"/api/v1/envelopes/{envelope_id}/send").raise_for_status()
        with httpx.Client(base_url=appliance.portal_url, timeout=60) as recipient:
            approver = _link_of(admin, envelope_id, "wang.fang@acme.example")
            _verify(appliance, admin, envelope_id, approver, "wang.fang@acme.example")
            recipient.post(f"/api/v1/links/{approver}/approve").raise_for_status()
            ana = _link_of(admin, envelope_id, "ana.t@other.example")
            _verify(appliance, admin, envelope_id, ana, "ana.t@other.example")
            body = _sign_body(_handwriting(), **_activate(appliance, ana))
            signed = recipient.post(f"/api/v1/links/{ana}/sign", json=body)
            assert signed.status_code == 200, signed.text
            assert signed.json()["envelope_status"] == "completed"
        final = admin.get(f"/api/v1/envelopes/{envelope_id}").json()
        assert final["status"] == "completed"
        assert final["documents"][0]["current_sha256"] == hashlib.sha256(CONTRACT).hexdigest()
        assert final["documents"][1]["current_sha256"] != hashlib.sha256(ANNEX).hexdigest()
