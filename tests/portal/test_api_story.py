"""The portal's REST API through real processes: `signet up` runs signer, storage and
portal; the tests speak HTTP only, read codes and links from the outbox as a newcomer
would, and check what reached storage's ledger.

The story so far (signing joins with the signer's activation): a sender creates an
envelope with a contract and an annex for three parties in mixed order and sends it;
the approver's link works, a copied link of a later party shows "not your turn" and
reads nothing; the identity code unlocks the documents; a decline stops the envelope
and tells everyone; every step is in the timeline and in storage's ledger.  And the
hostile side of every route: no key, a revoked key, the wrong scope, another
organisation's or another sender's envelope, a malformed or oversized upload.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.appliance import SIGNET, Appliance, running_appliance
from tests.support.pdfs import make_pdf
from tests.support.postgres import start_postgres

CONTRACT, ANNEX = make_pdf(2, title="Contract"), make_pdf(1, title="Annex")


def _story(**extra: object) -> dict[str, object]:
    return {
        "title": "Supply contract 2027 / 供货合同",
        "message": "Please review and sign.",
        "recipients": [
            {"name": "Wang Fang", "email": "wang.fang@acme.example", "role": "approver",
             "group": 0},
            {"name": "Li Wei", "mobile": "+8613800000001", "group": 1, "locale": "zh-CN"},
            {"name": "Ana García", "email": "ana@other.example", "group": 1, "locale": "es"},
        ],
        "fields": [
            {"document": 0, "recipient": 1, "kind": "signature", "page": 2, "x": 50, "y": 80,
             "width": 160, "height": 50},
            {"document": 0, "recipient": 2, "kind": "signature", "page": 2, "x": 300, "y": 80,
             "width": 160, "height": 50},
            {"document": 0, "recipient": 2, "kind": "date", "page": 2, "x": 300, "y": 60,
             "width": 100, "height": 14},
        ],
        "deadline": "2027-01-31T18:00:00+08:00",
    } | extra  # fmt: skip


def _create(client: httpx.Client, story: dict[str, object], **headers: str) -> httpx.Response:
    return client.post(
        "/api/v1/envelopes",
        data={"envelope": json.dumps(story)},
        files=[
            ("documents", ("contract.pdf", CONTRACT, "application/pdf")),
            ("documents", ("annex 1.pdf", ANNEX, "application/pdf")),
        ],
        headers=headers,
    )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def appliance(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Appliance]:
    """The whole story on both tiers: the embedded default's SQLite, and the cluster's
    PostgreSQL (the portal's database only; the signer's tier has its own tests)."""
    if request.param == "sqlite":
        with running_appliance(tmp_path_factory.mktemp("home")) as running:
            yield running
        return
    server = start_postgres()
    try:
        url = server.create_database("portal")
        with running_appliance(
            tmp_path_factory.mktemp("home-pg"), SIGNET_PORTAL_DATABASE_URL=url
        ) as running:
            running.tier = "postgresql"
            yield running
    finally:
        server.stop()


@pytest.fixture(scope="module")
def admin(appliance: Appliance) -> Iterator[httpx.Client]:
    with appliance.portal(appliance.admin_key()) as client:
        yield client


def _outbox(admin: httpx.Client, envelope_id: str) -> list[dict[str, str]]:
    response = admin.get("/api/v1/outbox", params={"envelope_id": envelope_id})
    assert response.status_code == 200, response.text
    messages: list[dict[str, str]] = response.json()
    return messages


def _link_of(admin: httpx.Client, envelope_id: str, to: str) -> str:
    for message in _outbox(admin, envelope_id):
        if message["to"] == to and "/s/" in message["body"]:
            found = re.search(r"/s/([A-Za-z0-9_-]+)", message["body"])
            assert found
            return found.group(1)
    raise AssertionError(f"no link to {to} in the outbox")


def _code_of(admin: httpx.Client, envelope_id: str, to: str) -> str:
    for message in _outbox(admin, envelope_id):  # newest first
        if message["to"] == to and message["notice"] == "identity_code":
            found = re.search(r"\b(\d{6})\b", message["body"])
            assert found
            return found.group(1)
    raise AssertionError(f"no code to {to} in the outbox")


def test_signet_up_prints_the_first_admin_once_and_keeps_the_key_private(
    appliance: Appliance,
) -> None:
    output = appliance.output()
    assert re.search(r"portal admin\s+admin@signet\.local\s+password \S{12,}", output)
    assert appliance.printed("portal API key") == appliance.admin_key()
    assert (appliance.home / "portal" / "admin-api-key").stat().st_mode & 0o077 == 0
    database = appliance.home / "portal" / "portal.db"
    if appliance.tier == "sqlite":
        assert database.stat().st_mode & 0o077 == 0
    else:
        assert not database.exists()  # the portal's rows are in PostgreSQL
    with httpx.Client(base_url=appliance.portal_url) as client:
        ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["signer"] == ready["storage"] == "reachable"


def test_the_story_until_a_decline(appliance: Appliance, admin: httpx.Client) -> None:
    created = _create(admin, _story(), **{"Idempotency-Key": "story-1"})
    assert created.status_code == 201, created.text
    envelope = created.json()
    envelope_id = envelope["id"]
    assert envelope["status"] == "draft"
    assert [d["current_sha256"] for d in envelope["documents"]] == [
        hashlib.sha256(CONTRACT).hexdigest(),
        hashlib.sha256(ANNEX).hexdigest(),
    ]
    assert [d["pages"] for d in envelope["documents"]] == [2, 1]
    assert envelope["documents"][1]["name"] == "annex 1.pdf"
    # the same idempotency key: the same envelope, nothing made twice
    again = _create(admin, _story(), **{"Idempotency-Key": "story-1"})
    assert again.status_code == 201 and again.json()["id"] == envelope_id

    sent = admin.post(f"/api/v1/envelopes/{envelope_id}/send")
    assert sent.status_code == 200, sent.text
    assert sent.json()["status"] in {"sent", "in_progress"}
    assert admin.post(f"/api/v1/envelopes/{envelope_id}/send").status_code == 409

    approver = _link_of(admin, envelope_id, "wang.fang@acme.example")
    recipient = appliance.portal()
    opened = recipient.get(f"/api/v1/links/{approver}")
    assert opened.status_code == 200, opened.text
    assert opened.json()["blocked"] is None and not opened.json()["identity_verified"]
    # documents only after the identity check
    assert recipient.get(f"/api/v1/links/{approver}/documents/0").status_code == 403
    code_sent = recipient.post(f"/api/v1/links/{approver}/identity/code")
    assert code_sent.status_code == 200, code_sent.text
    assert code_sent.json()["to"].startswith("w***@")
    wrong = recipient.post(f"/api/v1/links/{approver}/identity/verify", json={"code": "000000"})
    code = _code_of(admin, envelope_id, "wang.fang@acme.example")
    if code == "000000":  # one in a million: the "wrong" code was right
        pytest.skip("the random code happened to be 000000")
    assert wrong.status_code == 403 and wrong.json()["error"] == "code_wrong"
    verified = recipient.post(f"/api/v1/links/{approver}/identity/verify", json={"code": code})
    assert verified.status_code == 200 and verified.json()["identity_verified"]
    document = recipient.get(f"/api/v1/links/{approver}/documents/0")
    assert document.status_code == 200 and document.content == CONTRACT
    assert document.headers["content-type"] == "application/pdf"

    declined = recipient.post(
        f"/api/v1/links/{approver}/decline", json={"reason": "price is wrong"}
    )
    assert declined.status_code == 200, declined.text
    assert declined.json()["envelope_status"] == "declined"
    final = admin.get(f"/api/v1/envelopes/{envelope_id}").json()
    assert final["status"] == "declined"
    assert final["recipients"][0]["decline_reason"] == "price is wrong"
    # a declined envelope takes no more actions
    assert (
        recipient.post(f"/api/v1/links/{approver}/decline", json={"reason": "again"}).status_code
        == 409
    )

    types = _timeline_in_ledger(admin, envelope_id)
    for step in ("envelope.created", "envelope.sent", "link.opened", "identity.code_sent",
                 "identity.failed", "identity.passed", "recipient.declined"):  # fmt: skip
        assert step in types, types


def _timeline_in_ledger(admin: httpx.Client, envelope_id: str) -> list[str]:
    """The timeline, once every step has its place in storage's ledger (the drain
    appends after each commit; it is given a few seconds)."""
    deadline = time.monotonic() + 20
    while True:
        events = admin.get(f"/api/v1/envelopes/{envelope_id}/events").json()
        if all(e["ledger_index"] is not None for e in events) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert all(e["ledger_index"] is not None for e in events), events
    indexes = [e["ledger_index"] for e in events]
    assert indexes == sorted(indexes) and len(set(indexes)) == len(indexes)
    return [e["type"] for e in events]


def test_a_copied_link_of_a_later_party_shows_whose_turn_and_reads_nothing(
    appliance: Appliance, admin: httpx.Client
) -> None:
    envelope_id = _create(admin, _story()).json()["id"]
    admin.post(f"/api/v1/envelopes/{envelope_id}/send").raise_for_status()
    assert not any(m["to"] == "ana@other.example" for m in _outbox(admin, envelope_id))
    # The approver's link forwarded to someone else still is the approver's: the only
    # links that exist are for the group whose turn it is.  A made-up token is no link.
    recipient = appliance.portal()
    fake = "A" * 43
    assert recipient.get(f"/api/v1/links/{fake}").json()["error"] == "link_invalid"
    assert recipient.get(f"/api/v1/links/{fake}/documents/0").status_code == 404
    assert recipient.post(f"/api/v1/links/{fake}/identity/code").status_code == 404


def test_five_wrong_codes_lock_the_link_and_tell_the_sender(
    appliance: Appliance, admin: httpx.Client
) -> None:
    envelope_id = _create(admin, _story()).json()["id"]
    admin.post(f"/api/v1/envelopes/{envelope_id}/send").raise_for_status()
    link = _link_of(admin, envelope_id, "wang.fang@acme.example")
    recipient = appliance.portal()
    recipient.post(f"/api/v1/links/{link}/identity/code").raise_for_status()
    real = _code_of(admin, envelope_id, "wang.fang@acme.example")
    wrong = "111111" if real != "111111" else "222222"
    answers = [
        recipient.post(f"/api/v1/links/{link}/identity/verify", json={"code": wrong}).json()
        for _ in range(5)
    ]
    assert answers[-1]["error"] == "code_locked", answers
    # locked: even the right code no longer opens it
    after = recipient.post(f"/api/v1/links/{link}/identity/verify", json={"code": real})
    assert after.status_code == 403 and after.json()["error"] == "code_locked"
    assert recipient.get(f"/api/v1/links/{link}/documents/0").status_code == 403
    notices = [m["notice"] for m in _outbox(admin, envelope_id)]
    assert "locked" in notices
    assert "identity.locked" in _timeline_in_ledger(admin, envelope_id)
    # the newcomer's way to read the same outbox: `signet outbox`, from the database
    shown = subprocess.run(
        [SIGNET, "outbox", "--envelope", envelope_id, "--json"],
        env={k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
        | {"SIGNET_HOME": str(appliance.home)}
        | appliance.extra_env,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [m["notice"] for m in lines] == notices
    assert any(real in m["body"] for m in lines)  # held: the code is readable here


# -- hostile callers ----------------------------------------------------------------------


def _raw_head(port: int, request_line: str, length: int, key: str | None = None) -> str:
    """The status line answered to headers announcing `length` bytes, none of them sent:
    the gate must answer from the headers alone."""
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    head = (
        f"{request_line} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: multipart/form-data; "
        f"boundary=b\r\nContent-Length: {length}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        return sock.recv(4096).decode("latin-1").split("\r\n", 1)[0]


def test_no_key_a_bad_key_and_a_revoked_key_are_refused_before_any_work(
    appliance: Appliance, admin: httpx.Client
) -> None:
    anonymous = appliance.portal()
    for method, path in (("GET", "/api/v1/envelopes"), ("POST", "/api/v1/envelopes"),
                         ("GET", "/api/v1/outbox"), ("POST", "/api/v1/keys")):  # fmt: skip
        answer = anonymous.request(method, path)
        assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"
    made = admin.post("/api/v1/keys", json={"name": "erp"}).json()
    assert made["key"].startswith("sgk_")
    with appliance.portal(made["key"]) as erp:
        assert erp.get("/api/v1/envelopes").status_code == 200
        admin.post(f"/api/v1/keys/{made['id']}/revoke").raise_for_status()
        assert erp.get("/api/v1/envelopes").status_code == 401
    with appliance.portal("sgk_" + "x" * 43) as forged:
        assert forged.get("/api/v1/envelopes").status_code == 401
    # an oversized upload without a key is refused on its headers, its body never read
    head = _raw_head(appliance.port + 2, "POST /api/v1/envelopes", 10**10)
    assert head.startswith("HTTP/1.1 401"), head
    keys = admin.get("/api/v1/keys").json()
    assert all("sha256" not in k and "key" not in k for k in keys)


def test_scopes_and_ownership(appliance: Appliance, admin: httpx.Client) -> None:
    reader = admin.post("/api/v1/keys", json={"name": "bi", "scopes": ["envelopes:read"]}).json()
    with appliance.portal(reader["key"]) as bi:
        refused = _create(bi, _story())
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
        assert bi.get("/api/v1/outbox").status_code == 403
        assert bi.post("/api/v1/keys", json={"name": "more"}).status_code == 403
    # a sender's key sees the sender's envelopes only
    user = admin.post(
        "/api/v1/users", json={"email": "sender@acme.example", "name": "Zhao Lei"}
    ).json()
    sender_key = admin.post("/api/v1/keys", json={"name": "zhao", "user_id": user["id"]}).json()
    # and an admin scope is only for an administrator
    assert (
        admin.post(
            "/api/v1/keys", json={"name": "x", "user_id": user["id"], "scopes": ["admin"]}
        ).status_code
        == 403
    )
    admins_envelope = _create(admin, _story()).json()["id"]
    with appliance.portal(sender_key["key"]) as sender:
        own = _create(sender, _story(title="Zhao's NDA")).json()["id"]
        assert sender.get(f"/api/v1/envelopes/{admins_envelope}").status_code == 404
        assert sender.post(f"/api/v1/envelopes/{admins_envelope}/void").status_code == 404
        listed = {e["id"] for e in sender.get("/api/v1/envelopes").json()["items"]}
        assert listed == {own}
    assert admin.get(f"/api/v1/envelopes/{own}").status_code == 200  # the admin sees all


def test_malformed_and_oversized_uploads_store_nothing(
    appliance: Appliance, admin: httpx.Client
) -> None:
    def create(files: list[tuple[str, tuple[str, bytes, str]]], story: object) -> httpx.Response:
        return admin.post("/api/v1/envelopes", data={"envelope": json.dumps(story)}, files=files)

    pdf = [("documents", ("c.pdf", CONTRACT, "application/pdf"))]
    not_pdf = create([("documents", ("c.pdf", b"hello", "application/pdf"))], _story())
    assert not_pdf.status_code == 422 and "not a PDF" in not_pdf.json()["detail"]
    damaged = create([("documents", ("c.pdf", b"%PDF-1.7\n" + b"\x00" * 100, "x"))], _story())
    assert damaged.status_code == 422 and "damaged" in damaged.json()["detail"]
    encrypted = create(
        [("documents", ("c.pdf", make_pdf(1, password="secret"), "application/pdf"))], _story()
    )
    assert encrypted.status_code == 422 and "encrypted" in encrypted.json()["detail"]
    bad_json = admin.post("/api/v1/envelopes", data={"envelope": "{"}, files=pdf)
    assert bad_json.status_code == 400 and bad_json.json()["error"] == "invalid_request"
    no_contact = _story(recipients=[{"name": "Nobody"}], fields=[])
    assert create(pdf, no_contact).status_code == 400
    control = _story(title="Evil\r\nInjected: header")
    assert create(pdf, control).status_code == 400
    # a field on page 3 of a 2-page contract
    bad_page = _story(fields=[{"document": 0, "recipient": 1, "kind": "signature", "page": 3,
                               "x": 1, "y": 1, "width": 10, "height": 10}])  # fmt: skip
    assert create(pdf, bad_page).status_code == 409
    key = admin.headers["Authorization"].split()[1]
    huge = _raw_head(appliance.port + 2, "POST /api/v1/envelopes", 10**10, key)
    assert huge.startswith("HTTP/1.1 413"), huge
    assert admin.get("/api/v1/envelopes", params={"cursor": "!!"}).status_code == 400
    assert admin.post("/api/v1/outbox").status_code in {403, 405}


def test_listing_pages_with_a_cursor_and_finds_by_party(
    appliance: Appliance, admin: httpx.Client
) -> None:
    ids = [_create(admin, _story(title=f"Lease {n}")).json()["id"] for n in range(3)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2, "q": "Lease"}
        if cursor:
            params["cursor"] = cursor
        page = admin.get("/api/v1/envelopes", params=params).json()
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    by_party = admin.get("/api/v1/envelopes", params={"q": "ana@other", "limit": 200}).json()
    assert set(ids) <= {e["id"] for e in by_party["items"]}
    drafts = admin.get("/api/v1/envelopes", params={"status": "draft", "limit": 200}).json()
    assert all(e["status"] == "draft" for e in drafts["items"])


def test_the_portal_database_is_at_the_head_revision(appliance: Appliance) -> None:
    import sqlalchemy as sa
    from signet.common.database import current
    from signet.portal.migrations import PORTAL

    url = appliance.extra_env.get(
        "SIGNET_PORTAL_DATABASE_URL", f"sqlite:///{Path(appliance.home / 'portal' / 'portal.db')}"
    )
    engine = sa.create_engine(url)
    try:
        assert current(engine, PORTAL).at_head
    finally:
        engine.dispose()


def _verify(appliance: Appliance, admin: httpx.Client, envelope_id: str, token: str,
            to: str) -> None:  # fmt: skip
    with appliance.portal() as recipient:
        assert recipient.post(f"/api/v1/links/{token}/identity/code").status_code == 200
        code = _code_of(admin, envelope_id, to)
        verified = recipient.post(f"/api/v1/links/{token}/identity/verify", json={"code": code})
        assert verified.status_code == 200, verified.text


def test_the_approver_approves_and_signers_fill_only_their_own_fields(
    appliance: Appliance, admin: httpx.Client
) -> None:
    envelope = _create(admin, _story()).json()
    envelope_id = envelope["id"]
    admin.post(f"/api/v1/envelopes/{envelope_id}/send").raise_for_status()
    (date_field,) = [f for f in envelope["fields"] if f["kind"] == "date"]
    ana_id = envelope["recipients"][2]["id"]
    signature = next(
        f for f in envelope["fields"] if f["kind"] == "signature" and f["recipient_id"] == ana_id
    )
    approver = _link_of(admin, envelope_id, "wang.fang@acme.example")
    recipient = appliance.portal()
    assert recipient.post(f"/api/v1/links/{approver}/approve").status_code == 403  # identity
    _verify(appliance, admin, envelope_id, approver, "wang.fang@acme.example")
    approved = recipient.post(f"/api/v1/links/{approver}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["recipient_status"] == "approved"
    assert approved.json()["envelope_status"] == "in_progress"
    assert recipient.post(f"/api/v1/links/{approver}/approve").status_code == 409

    ana = _link_of(admin, envelope_id, "ana@other.example")
    li = _link_of(admin, envelope_id, "+8613800000001")
    url = f"/api/v1/links/{ana}/fields/{date_field['id']}"
    assert recipient.put(url, json={"value": "2027-01-15"}).status_code == 403  # identity
    _verify(appliance, admin, envelope_id, ana, "ana@other.example")
    _verify(appliance, admin, envelope_id, li, "+8613800000001")
    filled = recipient.put(url, json={"value": "2027-01-15"})
    assert filled.status_code == 200, filled.text
    assert filled.json() == {"id": date_field["id"], "kind": "date", "value": "2027-01-15"}
    # hostile: another recipient's link, a signature field, a bad value, oversized,
    # malformed JSON, an unknown link, no link at all
    other = recipient.put(f"/api/v1/links/{li}/fields/{date_field['id']}", json={"value": "x"})
    assert other.status_code == 404 and other.json()["error"] == "not_found"
    sig = recipient.put(f"/api/v1/links/{ana}/fields/{signature['id']}", json={"value": "x"})
    assert sig.status_code == 422 and sig.json()["error"] == "field_value_invalid"
    assert recipient.put(url, json={"value": "2027-02-30"}).status_code == 422
    assert recipient.put(url, json={"value": "9" * 5000}).status_code == 422
    assert recipient.put(url, json={"value": "2027-01-15", "x": 1}).status_code == 422
    malformed = recipient.put(
        url, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 422 and "error" in malformed.json()
    unknown = recipient.put(f"/api/v1/links/{'A' * 43}/fields/{date_field['id']}",
                            json={"value": "2027-01-15"})  # fmt: skip
    assert unknown.status_code == 404 and unknown.json()["error"] == "link_invalid"
    assert recipient.put(f"/api/v1/links/fields/{date_field['id']}",
                         json={"value": "2027-01-15"}).status_code == 401  # fmt: skip
    final = admin.get(f"/api/v1/envelopes/{envelope_id}").json()
    values = {f["id"]: f["value"] for f in final["fields"]}
    assert values[date_field["id"]] == "2027-01-15" and values[signature["id"]] is None
    types = _timeline_in_ledger(admin, envelope_id)
    assert "recipient.approved" in types and types.count("field.filled") == 1


def test_activation_only_in_turn_after_the_identity_check_with_one_certificate(
    appliance: Appliance, admin: httpx.Client
) -> None:
    envelope_id = _create(admin, _story()).json()["id"]
    admin.post(f"/api/v1/envelopes/{envelope_id}/send").raise_for_status()
    approver = _link_of(admin, envelope_id, "wang.fang@acme.example")
    recipient = appliance.portal()
    # an approver approves; before that, no signer of group 1 may ask for a code
    _verify(appliance, admin, envelope_id, approver, "wang.fang@acme.example")
    refused = recipient.post(f"/api/v1/links/{approver}/activation")
    assert refused.status_code == 403 and "approver" in refused.json()["detail"]
    assert recipient.post(f"/api/v1/links/{'B' * 43}/activation").status_code == 404
    recipient.post(f"/api/v1/links/{approver}/approve").raise_for_status()
    ana = _link_of(admin, envelope_id, "ana@other.example")
    assert recipient.post(f"/api/v1/links/{ana}/activation").status_code == 403  # identity
    _verify(appliance, admin, envelope_id, ana, "ana@other.example")
    answers = [recipient.post(f"/api/v1/links/{ana}/activation") for _ in range(2)]
    for answer in answers:
        if answer.status_code == 200:  # the signer's activation routes are there
            challenge = answer.json()
            assert challenge["channel"] == "email" and challenge["to"].startswith("a***@")
            assert challenge["attempts_left"] > 0 and "code" not in challenge
        else:  # not yet on this signer: its refusal is passed on, as JSON, never a 500
            assert 400 <= answer.status_code < 500 and "error" in answer.json(), answer.text
    types = _timeline_in_ledger(admin, envelope_id)
    # one event certificate for the step, however often the code is asked for
    assert types.count("recipient.certificate_issued") == 1, types
    if answers[0].status_code == 200:
        assert types.count("recipient.activation_requested") == 2


PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


def _handwriting() -> bytes:
    """A real PNG, as the signing page's canvas would send."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (300, 90), (255, 255, 255, 0))
    ImageDraw.Draw(image).line([(10, 70), (80, 20), (150, 75), (290, 15)], fill="navy", width=4)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _sign_body(image: bytes = PNG, **extra: str) -> dict[str, str]:
    body = {"activation_id": "a" * 32, "code": "123456", "image": base64.b64encode(image).decode()}
    return body | extra


def test_signing_refusals_sign_nothing(appliance: Appliance, admin: httpx.Client) -> None:
    """Out of turn, before the identity check, before an activation, with a bad image or
    body, after a void: each refused, and every document's hash stays what it was."""
    envelope = _create(admin, _story()).json()
    envelope_id = envelope["id"]
    hashes = [d["current_sha256"] for d in envelope["documents"]]
    admin.post(f"/api/v1/envelopes/{envelope_id}/send").raise_for_status()
    recipient = appliance.portal()
    approver = _link_of(admin, envelope_id, "wang.fang@acme.example")
    _verify(appliance, admin, envelope_id, approver, "wang.fang@acme.example")
    as_approver = recipient.post(f"/api/v1/links/{approver}/sign", json=_sign_body())
    assert as_approver.status_code == 403 and "approver" in as_approver.json()["detail"]
    recipient.post(f"/api/v1/links/{approver}/approve").raise_for_status()
    ana = _link_of(admin, envelope_id, "ana@other.example")
    li = _link_of(admin, envelope_id, "+8613800000001")
    url = f"/api/v1/links/{ana}/sign"
    assert recipient.post(url, json=_sign_body()).status_code == 403  # identity first
    _verify(appliance, admin, envelope_id, ana, "ana@other.example")
    early = recipient.post(url, json=_sign_body())
    assert early.status_code == 409 and "activation" in early.json()["detail"]
    not_png = recipient.post(url, json=_sign_body(b"GIF89a" + bytes(64)))
    assert not_png.status_code == 422 and not_png.json()["error"] == "image_invalid"
    big = recipient.post(url, json=_sign_body(PNG + bytes(170 * 1024)))
    assert big.status_code == 422
    huge = recipient.post(url, json=_sign_body(PNG + bytes(300 * 1024)))
    assert huge.status_code == 413
    assert recipient.post(url, json=_sign_body(code="12345")).status_code == 422
    assert recipient.post(url, json=_sign_body() | {"level": "B-B"}).status_code == 422
    malformed = recipient.post(url, content=b"{", headers={"content-type": "application/json"})
    assert malformed.status_code == 422 and "error" in malformed.json()
    assert recipient.post("/api/v1/links/sign", json=_sign_body()).status_code == 401
    assert recipient.post(f"/api/v1/links/{'C' * 43}/sign", json=_sign_body()).status_code == 404
    admin.post(f"/api/v1/envelopes/{envelope_id}/void").raise_for_status()
    _verify(appliance, admin, envelope_id, li, "+8613800000001")
    for token in (ana, li):
        voided = recipient.post(f"/api/v1/links/{token}/sign", json=_sign_body())
        assert voided.status_code == 403, voided.text
    final = admin.get(f"/api/v1/envelopes/{envelope_id}").json()
    assert [d["current_sha256"] for d in final["documents"]] == hashes
    assert "document.signed" not in _timeline_in_ledger(admin, envelope_id)


def _activate(appliance: Appliance, token: str) -> dict[str, str]:
    """The recipient asks for the activation (the signer sends the code itself) and
    reads the code where they would find it on the embedded default: the signer's
    outbox, read here from the signer's database as ``signet outbox`` does."""
    import re

    import sqlalchemy as sa

    asked = appliance.portal().post(f"/api/v1/links/{token}/activation")
    assert asked.status_code == 200, asked.text
    activation_id = asked.json()["activation_id"]
    url = appliance.extra_env.get(
        "SIGNET_SIGNER_DATABASE_URL", f"sqlite:///{appliance.home / 'signer' / 'signer.db'}"
    )
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as connection:
            body = connection.execute(
                sa.text("SELECT body FROM signer_outbox WHERE activation_id = :a"),
                {"a": activation_id},
            ).scalar_one()
    finally:
        engine.dispose()
    found = re.search(r"\b([0-9]{6})\b", body)
    assert found, body
    return {"activation_id": activation_id, "code": found.group(1)}


def test_a_signer_signs_with_their_fields_stamped_and_only_once(
    appliance: Appliance, admin: httpx.Client
) -> None:
    story = _story()
    story["recipients"][2]["name"] = "Ana Signs"  # type: ignore[index]
    # Ana's fields on the annex only: this signer destroys an event key after its first
    # signature, so one event certificate cannot yet sign two documents (see the report)
    kept = [f for f in story["fields"] if f["recipient"] != 2]  # type: ignore[attr-defined]
    story["fields"] = [*kept, *[
        {"document": 1, "recipient": 2, "kind": kind, "page": 1, "x": 50, "y": 100 + 40 * i,
         "width": 140, "height": 24}
        for i, kind in enumerate(["signature", "signature", "date", "text", "initials",
                                  "checkbox"])
    ]]  # fmt: skip
    envelope = _create(admin, story).json()
    envelope_id = envelope["id"]
    before = [d["current_sha256"] for d in envelope["documents"]]
    admin.post(f"/api/v1/envelopes/{envelope_id}/send").raise_for_status()
    recipient = appliance.portal()
    approver = _link_of(admin, envelope_id, "wang.fang@acme.example")
    _verify(appliance, admin, envelope_id, approver, "wang.fang@acme.example")
    recipient.post(f"/api/v1/links/{approver}/approve").raise_for_status()
    ana = _link_of(admin, envelope_id, "ana@other.example")
    _verify(appliance, admin, envelope_id, ana, "ana@other.example")
    for f in envelope["fields"]:
        if f["recipient_id"] == envelope["recipients"][2]["id"]:
            value = {"text": "Calle Mayor 1", "initials": "AG", "checkbox": True}.get(f["kind"])
            if value is not None:
                url = f"/api/v1/links/{ana}/fields/{f['id']}"
                assert recipient.put(url, json={"value": value}).status_code == 200
    proof = _activate(appliance, ana)
    body = _sign_body(_handwriting(), **proof)
    wrong = recipient.post(f"/api/v1/links/{ana}/sign", json=_sign_body(activation_id="x" * 32))
    assert wrong.status_code == 403 and "activation" in wrong.json()["detail"]
    # the right activation, a wrong code: the signer refuses and counts it
    bad_code = f"{(int(proof['code']) + 1) % 10**6:06d}"
    mistyped = recipient.post(f"/api/v1/links/{ana}/sign", json=body | {"code": bad_code})
    assert mistyped.status_code == 403, mistyped.text
    assert mistyped.json()["error"] == "activation_code_wrong", mistyped.text
    signed = recipient.post(f"/api/v1/links/{ana}/sign", json=body)
    assert signed.status_code == 200, signed.text
    assert signed.json()["recipient_status"] == "signed"
    after = [d["current_sha256"] for d in admin.get(f"/api/v1/envelopes/{envelope_id}").json()[
        "documents"]]  # fmt: skip
    assert after[0] == before[0] and after[1] != before[1]
    # the same request again: the same answer, nothing signed twice
    again = recipient.post(f"/api/v1/links/{ana}/sign", json=body)
    assert again.status_code == 200 and again.json()["recipient_status"] == "signed"
    final = admin.get(f"/api/v1/envelopes/{envelope_id}").json()
    assert [d["current_sha256"] for d in final["documents"]] == after
    pdf = recipient.get(f"/api/v1/links/{ana}/documents/1")
    assert pdf.status_code == 200 and hashlib.sha256(pdf.content).hexdigest() == after[1]
    # pyHanko: the one signature is intact and cryptographically valid, and covers the
    # whole file (poppler 22.12's pdfsig counts each extra widget as an unsigned field)
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature

    (embedded,) = PdfFileReader(io.BytesIO(pdf.content)).embedded_signatures
    status = validate_pdf_signature(embedded)
    assert status.intact and status.valid and status.coverage is not None
    assert status.coverage.name == "ENTIRE_FILE"
    assert embedded.field_name == "Signature 3"
    types = _timeline_in_ledger(admin, envelope_id)
    assert types.count("document.signed") == 1 and types.count("recipient.signed") == 1


def test_the_last_signature_completes_the_envelope_to_b_lta_with_sealed_evidence(
    appliance: Appliance, admin: httpx.Client
) -> None:
    story = _story()
    story["recipients"] = [  # an approver, then one signer: the signer's act is the last
        {"name": "Wang Fang", "email": "wang.fang@acme.example", "role": "approver"},
        {"name": "Ana Completes", "email": "ana.c@other.example", "group": 1},
    ]
    story["fields"] = [
        {"document": 1, "recipient": 1, "kind": kind, "page": 1, "x": 50, "y": 100 + 40 * i,
         "width": 140, "height": 24}
        for i, kind in enumerate(["signature", "date"])
    ]  # fmt: skip
    envelope = _create(admin, story).json()
    envelope_id = envelope["id"]
    admin.post(f"/api/v1/envelopes/{envelope_id}/send").raise_for_status()
    recipient = appliance.portal()
    approver = _link_of(admin, envelope_id, "wang.fang@acme.example")
    _verify(appliance, admin, envelope_id, approver, "wang.fang@acme.example")
    recipient.post(f"/api/v1/links/{approver}/approve").raise_for_status()
    ana = _link_of(admin, envelope_id, "ana.c@other.example")
    _verify(appliance, admin, envelope_id, ana, "ana.c@other.example")
    early = admin.get(f"/api/v1/envelopes/{envelope_id}/evidence")
    assert early.status_code == 409 and early.json()["error"] == "conflict"
    assert recipient.post(f"/api/v1/envelopes/{envelope_id}/complete").status_code == 401
    body = _sign_body(_handwriting(), **_activate(appliance, ana))
    signed = recipient.post(f"/api/v1/links/{ana}/sign", json=body)
    assert signed.status_code == 200, signed.text
    assert signed.json()["envelope_status"] == "completed"
    types = _timeline_in_ledger(admin, envelope_id)
    assert types.count("document.completed") == 1 and types[-1] == "envelope.completed", types
    final = admin.get(f"/api/v1/envelopes/{envelope_id}/documents/1")
    assert final.status_code == 200
    from pyhanko.pdf_utils.reader import PdfFileReader

    kinds = [s.sig_object.get("/Type") for s in
             PdfFileReader(io.BytesIO(final.content)).embedded_signatures]  # fmt: skip
    assert kinds[-1] == "/DocTimeStamp" and len(kinds) == 2, kinds  # B-LTA: the last step
    mine = recipient.get(f"/api/v1/links/{ana}/documents/1")  # the signer's link, after
    assert mine.status_code == 200 and mine.content == final.content
    # a retry finds nothing left to do and changes nothing
    again = admin.post(f"/api/v1/envelopes/{envelope_id}/complete")
    assert again.status_code == 200, again.text
    assert _timeline_in_ledger(admin, envelope_id).count("envelope.completed") == 1
    evidence = admin.get(f"/api/v1/envelopes/{envelope_id}/evidence")
    assert evidence.status_code == 200, evidence.text
    package = appliance.home / "evidence.zip"
    package.write_bytes(evidence.content)
    checked = subprocess.run(
        [str(SIGNET), "verify-evidence", str(package), "--root",
         str(appliance.home / "signer" / "ca" / "root.pem")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert appliance.portal().get(f"/api/v1/envelopes/{envelope_id}/evidence").status_code == 401
    completed = [m for m in _outbox(admin, envelope_id) if m["notice"] == "completed"]
    assert {m["to"] for m in completed} >= {"wang.fang@acme.example", "ana.c@other.example"}
    _check_certificate(appliance, admin, envelope_id, ana, final, package)


def _check_certificate(
    appliance: Appliance, admin: httpx.Client, envelope_id: str, link: str,
    final: httpx.Response, package: Path,
) -> None:  # fmt: skip
    """The certificate of completion: sealed by the platform (pdfsig), names the party,
    the final document's hash and the ledger, in three languages with CJK glyphs
    embedded, the same for the sender and the party, and inside the evidence package."""
    import zipfile

    certificate = admin.get(f"/api/v1/envelopes/{envelope_id}/certificate")
    assert certificate.status_code == 200, certificate.text
    assert certificate.headers["content-type"] == "application/pdf"
    sha = certificate.headers["x-signet-sha256"]
    assert hashlib.sha256(certificate.content).hexdigest() == sha
    assert appliance.portal().get(f"/api/v1/links/{link}/certificate").content == (
        certificate.content
    )
    assert appliance.portal().get(f"/api/v1/envelopes/{envelope_id}/certificate").status_code == (
        401
    )
    path = appliance.home / "certificate.pdf"
    path.write_bytes(certificate.content)
    pdfsig = subprocess.run(["pdfsig", "-nocert", str(path)], capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert "Signature is Valid." in pdfsig.stdout, pdfsig.stdout
    assert "Certificate of completion" in pdfsig.stdout, pdfsig.stdout
    from pyhanko.pdf_utils.reader import PdfFileReader

    kinds = [s.sig_object.get("/Type") for s in
             PdfFileReader(io.BytesIO(certificate.content)).embedded_signatures]  # fmt: skip
    assert kinds[-1] == "/DocTimeStamp" and len(kinds) == 2, kinds  # the seal, then B-LTA
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                          text=True, timeout=60, check=True).stdout  # fmt: skip
    assert "完成证书" in text and "Certificado de finalización" in text, text
    assert "Ana Completes" in text and envelope_id in text
    assert final.headers["x-signet-sha256"] in text.replace("\n", "")
    assert "email-otp" in text  # the signer's record of the intent check
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True,
                           timeout=60, check=True).stdout  # fmt: skip
    assert "WenQuanYi" in fonts and " yes yes yes " in fonts, fonts
    with zipfile.ZipFile(package) as archive:
        assert f"documents/{sha}.pdf" in archive.namelist()
    types = _timeline_in_ledger(admin, envelope_id)
    assert types.count("certificate.issued") == 1
    assert types.index("certificate.issued") < types.index("envelope.completed")


def test_one_activation_signs_both_documents_with_one_event_key(
    appliance: Appliance, admin: httpx.Client
) -> None:
    """A signer with fields on two documents: one code covers both revisions, the one
    event key signs both, and only then is it destroyed."""
    story = _story()
    story["recipients"] = [
        {"name": "Wang Fang", "email": "wang.fang@acme.example", "role": "approver"},
        {"name": "Ana Twice", "email": "ana.t@other.example", "group": 1},
    ]
    story["fields"] = [
        {"document": d, "recipient": 1, "kind": "signature", "page": 1, "x": 50, "y": 100,
         "width": 140, "height": 40}
        for d in (0, 1)
    ]  # fmt: skip
    envelope = _create(admin, story).json()
    envelope_id = envelope["id"]
    before = [d["current_sha256"] for d in envelope["documents"]]
    admin.post(f"/api/v1/envelopes/{envelope_id}/send").raise_for_status()
    recipient = appliance.portal()
    approver = _link_of(admin, envelope_id, "wang.fang@acme.example")
    _verify(appliance, admin, envelope_id, approver, "wang.fang@acme.example")
    recipient.post(f"/api/v1/links/{approver}/approve").raise_for_status()
    ana = _link_of(admin, envelope_id, "ana.t@other.example")
    _verify(appliance, admin, envelope_id, ana, "ana.t@other.example")
    proof = _activate(appliance, ana)
    signed = recipient.post(f"/api/v1/links/{ana}/sign", json=_sign_body(_handwriting(), **proof))
    assert signed.status_code == 200, signed.text
    after = admin.get(f"/api/v1/envelopes/{envelope_id}").json()
    hashes = [d["current_sha256"] for d in after["documents"]]
    assert hashes[0] != before[0] and hashes[1] != before[1]
    assert after["status"] == "completed"
    types = _timeline_in_ledger(admin, envelope_id)
    assert types.count("document.signed") == 2 and types.count("recipient.certificate_issued") == 1
