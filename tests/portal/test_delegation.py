"""Delegation (代理) and forward (转交) through real processes, over HTTP only.

A signer whose turn it is hands it to a colleague: the colleague gets a link of their
own, passes the identity check with their own code, fills the same fields and signs;
the first link stops working; the certificate of completion says who signed in place
of whom, and the ledger has the hand-over.  The sender replaces a party who has not
acted yet.  And the refusals: before the identity check, out of turn, after signing,
another organisation's envelope, malformed successors.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.portal.test_api_story import (
    _activate,
    _create,
    _handwriting,
    _link_of,
    _timeline_in_ledger,
    _verify,
)
from tests.support.appliance import Appliance, running_appliance

LI, ANA, ZHAO, SOFIA = "+8613800000001", "ana@other.example", "+8613900000002", "sofia@x.example"


def _story() -> dict[str, object]:
    return {
        "title": "Delegated contract 委托签署",
        "recipients": [
            {"name": "Li Wei", "mobile": LI, "group": 0, "locale": "zh-CN"},
            {"name": "Ana García", "email": ANA, "group": 1, "locale": "es"},
        ],
        "fields": [
            {"document": 0, "recipient": r, "kind": "signature", "page": 2, "x": 50 + 250 * r,
             "y": 80, "width": 160, "height": 50}
            for r in (0, 1)
        ] + [{"document": 0, "recipient": 0, "kind": "text", "page": 2, "x": 50, "y": 60,
              "width": 160, "height": 14}],
    }  # fmt: skip


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    with running_appliance(tmp_path_factory.mktemp("home")) as running:
        yield running


@pytest.fixture(scope="module")
def admin(appliance: Appliance) -> Iterator[httpx.Client]:
    with appliance.portal(appliance.admin_key()) as client:
        yield client


def _sign(appliance: Appliance, token: str) -> httpx.Response:
    proof = _activate(appliance, token)
    body = {**proof, "image": base64.b64encode(_handwriting()).decode()}
    return appliance.portal().post(f"/api/v1/links/{token}/sign", json=body)


def _sent(admin: httpx.Client) -> str:
    created = _create(admin, _story())
    assert created.status_code == 201, created.text
    envelope_id: str = created.json()["id"]
    admin.post(f"/api/v1/envelopes/{envelope_id}/send").raise_for_status()
    return envelope_id


def test_a_delegate_signs_in_place_of_the_recipient_with_their_own_checks(
    appliance: Appliance, admin: httpx.Client, tmp_path: Path
) -> None:
    envelope_id = _sent(admin)
    client = appliance.portal()
    li = _link_of(admin, envelope_id, LI)
    successor = {"name": "Zhao Lei 赵磊", "mobile": ZHAO, "locale": "zh-CN",
                 "reason": "On leave; Zhao Lei signs for the purchasing department"}  # fmt: skip
    # not before the identity check
    early = client.post(f"/api/v1/links/{li}/delegate", json=successor)
    assert early.status_code == 403, early.text
    _verify(appliance, admin, envelope_id, li, LI)
    field = next(f for f in admin.get(f"/api/v1/envelopes/{envelope_id}").json()["fields"]
                 if f["kind"] == "text")  # fmt: skip
    filled = client.put(f"/api/v1/links/{li}/fields/{field['id']}", json={"value": "Li's note"})
    assert filled.status_code == 200, filled.text
    handed = client.post(f"/api/v1/links/{li}/delegate", json=successor)
    assert handed.status_code == 200, handed.text
    delegate_id = handed.json()["delegate_id"]
    # the first link is dead for every route
    assert client.get(f"/api/v1/links/{li}").status_code == 404
    assert client.post(f"/api/v1/links/{li}/activation").status_code == 404
    # the delegate: a link of their own, their own code, the same (emptied) fields
    zhao = _link_of(admin, envelope_id, ZHAO)
    assert client.get(f"/api/v1/links/{zhao}").json()["recipient_id"] == delegate_id
    assert client.post(f"/api/v1/links/{zhao}/activation").status_code == 403  # identity first
    _verify(appliance, admin, envelope_id, zhao, ZHAO)
    envelope = admin.get(f"/api/v1/envelopes/{envelope_id}").json()
    mine = [f for f in envelope["fields"] if f["recipient_id"] == delegate_id]
    assert {f["kind"] for f in mine} == {"signature", "text"}
    assert all(f.get("value") in (None, {}) for f in mine if f["kind"] == "text"), mine
    statuses = {r["name"]: r["status"] for r in envelope["recipients"]}
    assert statuses["Li Wei"] == "delegated" and statuses["Zhao Lei 赵磊"] == "active"
    signed = _sign(appliance, zhao)
    assert signed.status_code == 200, signed.text
    ana = _link_of(admin, envelope_id, ANA)
    _verify(appliance, admin, envelope_id, ana, ANA)
    assert _sign(appliance, ana).status_code == 200
    done = admin.get(f"/api/v1/envelopes/{envelope_id}").json()
    assert done["status"] == "completed", done["status"]
    assert "recipient.delegated" in _timeline_in_ledger(admin, envelope_id)
    certificate = admin.get(f"/api/v1/envelopes/{envelope_id}/certificate")
    assert certificate.status_code == 200
    path = tmp_path / "certificate.pdf"
    path.write_bytes(certificate.content)
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True,
                          check=True, timeout=60).stdout  # fmt: skip
    assert "Zhao Lei 赵磊" in text and "Li Wei" in text and "In place of" in text, text


def test_the_sender_forwards_a_waiting_party_and_refusals_change_nothing(
    appliance: Appliance, admin: httpx.Client
) -> None:
    envelope_id = _sent(admin)
    envelope = admin.get(f"/api/v1/envelopes/{envelope_id}").json()
    ana_id = next(r["id"] for r in envelope["recipients"] if r["name"] == "Ana García")
    li_id = next(r["id"] for r in envelope["recipients"] if r["name"] == "Li Wei")
    url = f"/api/v1/envelopes/{envelope_id}/recipients/{ana_id}/forward"
    replacement = {"name": "Sofía Ruiz", "email": SOFIA, "locale": "es",
                   "reason": "Ana left the company"}  # fmt: skip
    for bad in ({**replacement, "email": None}, {**replacement, "name": "a\nb"},
                {**replacement, "reason": ""}, {**replacement, "role": "viewer"}):  # fmt: skip
        assert admin.post(url, json=bad).status_code == 422, bad
    with appliance.portal() as anonymous:
        assert anonymous.post(url, json=replacement).status_code == 401
    forwarded = admin.post(url, json=replacement)
    assert forwarded.status_code == 200, forwarded.text
    recipients = {r["name"]: r for r in forwarded.json()["recipients"]}
    assert recipients["Ana García"]["status"] == "delegated"
    assert recipients["Sofía Ruiz"]["status"] == "waiting"  # her group is not reached yet
    # forwarding the same party again: she is no longer on turn to be replaced
    assert admin.post(url, json=replacement).status_code == 409
    # another sender's key sees no such envelope; a read-only key may not forward
    user = admin.post("/api/v1/users", json={"email": "other@acme.example", "name": "Other"})
    key = admin.post("/api/v1/keys", json={"name": "other", "user_id": user.json()["id"]})
    with appliance.portal(key.json()["key"]) as other_sender:
        assert other_sender.post(url, json=replacement).status_code == 404
    reader = admin.post("/api/v1/keys", json={"name": "ro", "scopes": ["envelopes:read"]})
    with appliance.portal(reader.json()["key"]) as read_only:
        assert read_only.post(url, json=replacement).status_code == 403
    # Li signs; then Li, finished, cannot be forwarded
    li = _link_of(admin, envelope_id, LI)
    _verify(appliance, admin, envelope_id, li, LI)
    assert _sign(appliance, li).status_code == 200
    done_url = f"/api/v1/envelopes/{envelope_id}/recipients/{li_id}/forward"
    assert admin.post(done_url, json=replacement).status_code == 409
    # Sofía's link arrives when her group is reached; Ana never got one
    assert _link_of(admin, envelope_id, SOFIA)
    with pytest.raises(AssertionError):
        _link_of(admin, envelope_id, ANA)
    assert "recipient.forwarded" in _timeline_in_ledger(admin, envelope_id)
