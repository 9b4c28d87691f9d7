"""`signet up` with a mail server configured: links and codes leave by SMTP (a real
aiosmtpd on loopback), the outbox records `accepted` and keeps neither usable.

Through HTTP only, against the three services as separate processes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from signet.common.notify.messages import MASK

from tests.conftest import free_port
from tests.portal.test_api_story import _create, _story
from tests.support.appliance import Appliance, running_appliance
from tests.support.mail import Mailbox, smtp_server


@pytest.fixture(scope="module")
def mail_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def mailbox(mail_port: int) -> Iterator[Mailbox]:
    with smtp_server(mail_port) as box:
        yield box


@pytest.fixture(scope="module")
def appliance(
    tmp_path_factory: pytest.TempPathFactory, mail_port: int, mailbox: Mailbox
) -> Iterator[Appliance]:
    smtp = {"host": "127.0.0.1", "port": mail_port, "security": "none",
            "sender": "signet@acme.example"}  # fmt: skip
    with running_appliance(
        tmp_path_factory.mktemp("home-mail"), SIGNET_PORTAL_SMTP=json.dumps(smtp)
    ) as running:
        yield running


def _mail_to(mailbox: Mailbox, to: str, pattern: str, seen: int = 0) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for mail in mailbox.messages[seen:]:
            if to in str(mail["To"]):
                found = re.search(pattern, str(mail.get_content()))
                if found:
                    return found.group(1)
        time.sleep(0.1)
    raise AssertionError(f"no mail to {to} matching {pattern}")


def test_links_and_codes_leave_by_mail_and_the_outbox_says_accepted(
    appliance: Appliance, mailbox: Mailbox, tmp_path: Path
) -> None:
    with appliance.portal(appliance.admin_key()) as admin:
        envelope_id = _create(admin, _story()).json()["id"]
        admin.post(f"/api/v1/envelopes/{envelope_id}/send").raise_for_status()
        token = _mail_to(mailbox, "wang.fang@acme.example", r"/s/([A-Za-z0-9_-]{43})")
        recipient = appliance.portal()
        assert recipient.get(f"/api/v1/links/{token}").json()["blocked"] is None
        seen = len(mailbox.messages)
        recipient.post(f"/api/v1/links/{token}/identity/code").raise_for_status()
        code = _mail_to(mailbox, "wang.fang@acme.example", r"\b(\d{6})\b", seen)
        verified = recipient.post(f"/api/v1/links/{token}/identity/verify", json={"code": code})
        assert verified.status_code == 200, verified.text
        outbox = admin.get("/api/v1/outbox", params={"envelope_id": envelope_id}).json()
    mine = [m for m in outbox if m["to"] == "wang.fang@acme.example"]
    assert {m["notice"]: m["state"] for m in mine} == {
        "your_turn": "accepted",
        "identity_code": "accepted",
    }
    for message in mine:
        assert token not in message["body"] and code not in message["body"]
        assert MASK in message["body"]
    # the SMS party has no gateway here: not yet their turn, nothing queued for them
    assert not [m for m in outbox if m["channel"] == "sms"]
    assert httpx.get(f"{appliance.portal_url}/readyz").json()["status"] == "ready"


def test_resend_is_for_admins_and_for_failed_messages_only(appliance: Appliance) -> None:
    with appliance.portal(appliance.admin_key()) as admin:
        envelope_id = _create(admin, _story()).json()["id"]
        admin.post(f"/api/v1/envelopes/{envelope_id}/send").raise_for_status()
        message = admin.get("/api/v1/outbox", params={"envelope_id": envelope_id}).json()[0]
        path = f"/api/v1/outbox/{message['id']}/resend"
        sender = admin.post("/api/v1/keys", json={"name": "erp"}).json()["key"]
        with appliance.portal() as nobody, appliance.portal(sender) as erp:
            assert nobody.post(path).status_code == 401
            assert erp.post(path).status_code == 403  # a sender's key is not an admin's
        assert admin.post("/api/v1/outbox/not-an-id/resend").status_code == 422
        unknown = admin.post(f"/api/v1/outbox/{'0' * 8}-0000-0000-0000-{'0' * 12}/resend")
        assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
        deadline = time.monotonic() + 20
        while _state(admin, envelope_id, message["id"]) != "accepted":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        refused = admin.post(path)
        assert refused.status_code == 409 and refused.json()["error"] == "resend_refused"


def _state(admin: httpx.Client, envelope_id: str, message_id: str) -> str:
    outbox = admin.get("/api/v1/outbox", params={"envelope_id": envelope_id}).json()
    return str(next(m["state"] for m in outbox if m["id"] == message_id))


def test_remind_sends_the_current_link_again_and_refuses_what_it_must(
    appliance: Appliance, mailbox: Mailbox
) -> None:
    with appliance.portal(appliance.admin_key()) as admin:
        envelope_id = _create(admin, _story()).json()["id"]
        before = len(mailbox.messages)  # the module's mailbox holds earlier tests' mail
        admin.post(f"/api/v1/envelopes/{envelope_id}/send").raise_for_status()
        first = _mail_to(mailbox, "wang.fang@acme.example", r"/s/([A-Za-z0-9_-]{43})", before)
        seen = len(mailbox.messages)
        reminded = admin.post(f"/api/v1/envelopes/{envelope_id}/remind")
        assert reminded.status_code == 200, reminded.text
        assert len(reminded.json()["reminded"]) == 1  # the approver: only her turn
        again = _mail_to(mailbox, "wang.fang@acme.example", r"/s/([A-Za-z0-9_-]{43})", seen)
        assert again == first  # the same link, still working
        reader = admin.post(
            "/api/v1/keys", json={"name": "bi", "scopes": ["envelopes:read"]}
        ).json()["key"]
        path = f"/api/v1/envelopes/{envelope_id}/remind"
        with appliance.portal() as nobody, appliance.portal(reader) as bi:
            assert nobody.post(path).status_code == 401
            assert bi.post(path).status_code == 403
        unknown = f"/api/v1/envelopes/{'0' * 8}-0000-0000-0000-{'0' * 12}/remind"
        assert admin.post(unknown).status_code == 404
        admin.post(f"/api/v1/envelopes/{envelope_id}/void").raise_for_status()
        finished = admin.post(path)
        assert finished.status_code == 409 and finished.json()["error"] == "conflict"
