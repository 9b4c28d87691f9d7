"""Activation codes through real gateways: an SMTP server (aiosmtpd) and an SMS gateway
stand-in on loopback, configured as `SignerSettings.smtp` / `.sms`.

The signer's activation service is rebuilt from the changed settings (the same code
path `SIGNET_SIGNER_SMTP` takes), so what is tested is the signer's own wiring: the
code reaches the bound contact only, the stored row has it masked, and a gateway that
refuses or is down makes `POST /v1/activations` fail (502) with the reason recorded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from signet.common.notify.sms import SmsSettings
from signet.common.notify.smtp import SmtpSettings
from signet.signer.service import SignerService

from tests.conftest import PORTAL_TOKEN, free_port
from tests.signer.conftest import sign_via_api
from tests.support.activation import enrol
from tests.support.mail import Mailbox, smtp_server
from tests.support.pdfs import make_pdf
from tests.support.sms_gateway import Gateway, sms_gateway

Configure = Callable[..., None]


@pytest.fixture
def configure(signer_service: SignerService) -> Iterator[Configure]:
    """Give the live signer gateway settings for one test, then put the default back."""
    original = signer_service.settings

    def _configure(**changes: Any) -> None:
        signer_service.settings = original.model_copy(update=changes)
        signer_service.__dict__.pop("activations", None)  # rebuilt from the settings

    yield _configure
    signer_service.settings = original
    signer_service.__dict__.pop("activations", None)


@pytest.fixture
def portal(signer_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=signer_url, timeout=60, headers={"Authorization": f"Bearer {PORTAL_TOKEN}"}
    ) as client:
        yield client


def _ask(client: httpx.Client, serial: str, pdf: bytes, **extra: object) -> httpx.Response:
    return client.post(
        "/v1/activations",
        json={
            "certificate_serial": serial,
            "document_sha256": [hashlib.sha256(pdf).hexdigest()],
            **extra,
        },
    )


def _row(admin: httpx.Client, activation_id: str) -> dict[str, str]:
    response = admin.get("/v1/outbox", params={"activation_id": activation_id})
    assert response.status_code == 200, response.text
    (row,) = response.json()
    assert isinstance(row, dict)
    return row


def _rows_to(admin: httpx.Client, address: str) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = admin.get("/v1/outbox", params={"limit": 500}).json()
    return [row for row in rows if row["to"] == address]


def _code_in(text: str) -> str:
    found = re.search(r"\b([0-9]{6})\b", text)
    assert found, text
    return found.group(1)


def _smtp(port: int) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, security="none", sender="signer@example.com")


def test_the_code_is_mailed_to_the_bound_contact_only(
    signer_client: httpx.Client,
    portal: httpx.Client,
    issue: Callable[..., str],
    configure: Configure,
) -> None:
    port = free_port()
    serial = issue("Mail Person")
    enrol(signer_client, serial, {"channel": "email", "address": "bound@example.com"})
    pdf = make_pdf(title="Mailed")
    with smtp_server(port) as mailbox:
        configure(smtp=_smtp(port))
        # the request may not name an address of its own
        hijack = _ask(portal, serial, pdf, contact={"channel": "email", "address": "x@evil.test"})
        assert hijack.status_code == 422, hijack.text
        response = _ask(portal, serial, pdf)
        assert response.status_code == 201, response.text
        (message,) = _received(mailbox)
    assert message["To"] == "bound@example.com"
    assert message["From"] == "signer@example.com"
    code = _code_in(message.get_content())
    activation_id = response.json()["activation_id"]
    row = _row(signer_client, activation_id)
    assert row["state"] == "accepted", row
    assert row["to"] == "bound@example.com"
    assert code not in row["body"], "the stored body must have the code masked"
    assert code not in response.text
    # the mailed code is the one that signs
    proof = {"activation_id": activation_id, "code": code}
    assert sign_via_api(signer_client, pdf, serial, activation=proof).status_code == 200


def _received(mailbox: Mailbox) -> list[Any]:
    return list(mailbox.messages)


def test_a_refusing_smtp_server_is_502_and_recorded(
    signer_client: httpx.Client,
    portal: httpx.Client,
    issue: Callable[..., str],
    configure: Configure,
) -> None:
    port = free_port()
    serial = issue("Refused Person")
    enrol(signer_client, serial, {"channel": "email", "address": "refused@example.com"})
    with smtp_server(port) as mailbox:
        configure(smtp=_smtp(port))
        response = _ask(portal, serial, make_pdf(title="Refused"))
        assert mailbox.messages == []
    assert response.status_code == 502, response.text
    body = response.json()
    assert body["error"] == "activation_code_not_sent"
    assert "550" in body["detail"]
    (row,) = _rows_to(signer_client, "refused@example.com")
    assert row["state"] == "failed", row
    assert "550" in row["detail"]
    assert not re.search(r"\b[0-9]{6}\b", row["body"]), row["body"]


def test_a_smtp_server_that_is_down_is_502_and_recorded(
    signer_client: httpx.Client,
    portal: httpx.Client,
    issue: Callable[..., str],
    configure: Configure,
) -> None:
    address = "down.person@example.com"
    serial = issue("Down Person")
    enrol(signer_client, serial, {"channel": "email", "address": address})
    configure(smtp=_smtp(free_port()).model_copy(update={"timeout_seconds": 2.0}))
    response = _ask(portal, serial, make_pdf(title="Down"))
    assert response.status_code == 502, response.text
    assert response.json()["error"] == "activation_code_not_sent"
    (row,) = _rows_to(signer_client, address)
    assert row["state"] == "failed", row
    assert row["detail"]
    assert row["state"] not in ("sent", "accepted")


def _sms(gateway: Gateway) -> SmsSettings:
    return SmsSettings(
        base_url=gateway.url,
        account_sid=gateway.account_sid,
        auth_token=SecretStr(gateway.auth_token),
        sender="Signet",
    )


def test_the_code_goes_by_sms_to_the_bound_mobile_only(
    signer_client: httpx.Client,
    portal: httpx.Client,
    issue: Callable[..., str],
    configure: Configure,
) -> None:
    mobile = "+8613800005555"
    serial = issue("Sms Person")
    enrol(signer_client, serial, {"channel": "sms", "address": mobile})
    pdf = make_pdf(title="Texted")
    with sms_gateway() as gateway:
        configure(sms=_sms(gateway))
        response = _ask(portal, serial, pdf)
        assert response.status_code == 201, response.text
        (sent,) = gateway.messages
    assert sent["To"] == mobile
    code = _code_in(sent["Body"])
    row = _row(signer_client, response.json()["activation_id"])
    assert row["state"] == "accepted", row
    assert code not in row["body"]
    proof = {"activation_id": response.json()["activation_id"], "code": code}
    assert sign_via_api(signer_client, pdf, serial, activation=proof).status_code == 200


def test_a_failing_sms_gateway_is_502_and_recorded(
    signer_client: httpx.Client,
    portal: httpx.Client,
    issue: Callable[..., str],
    configure: Configure,
) -> None:
    mobile = "+8613800009999"  # the stand-in answers 503 for these
    serial = issue("Sms Trouble")
    enrol(signer_client, serial, {"channel": "sms", "address": mobile})
    with sms_gateway() as gateway:
        configure(sms=_sms(gateway))
        response = _ask(portal, serial, make_pdf(title="Sms down"))
        assert gateway.messages == []
    assert response.status_code == 502, response.text
    assert response.json()["error"] == "activation_code_not_sent"
    rows = _rows_to(signer_client, mobile)
    assert rows and rows[0]["state"] == "failed", rows
    assert "503" in rows[0]["detail"] or "unavailable" in rows[0]["detail"].lower()
