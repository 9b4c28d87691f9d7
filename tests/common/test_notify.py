"""The notifier against a real SMTP server (aiosmtpd) and a Twilio-API gateway stand-in.

What is checked is the peers' shared bug: a message is "accepted" only when the server
took it, and every failure keeps the server's reason and whether a retry can help.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr
from signet.common.notify import (
    LOCALES,
    Channel,
    DeliveryState,
    Message,
    Notice,
    render,
    retry_delay,
)
from signet.common.notify.messages import MASK, MAX_ATTEMPTS
from signet.common.notify.sms import SmsGateway, SmsSettings, receipt
from signet.common.notify.smtp import SmtpSettings, SmtpTransport
from signet.common.notify.templates import locale_for

from tests.conftest import free_port
from tests.support.mail import loopback_certificate, smtp_server
from tests.support.sms_gateway import sms_gateway

VALUES = {
    "title": "采购合同 / Contrato",
    "code": "482913",
    "minutes": "5",
    "digest": "9f86d081",
    "sender": "Li Wei",
    "message": "Please sign",
    "link": "https://portal.example/s/abc",
    "actor": "María",
    "reason": "wrong amount",
}


def email(to: str, body: str = "Your code is 482913", secret: str | None = "482913") -> Message:
    subject, _ = render(Notice.IDENTITY_CODE, "zh-CN", **VALUES)
    return Message(Channel.EMAIL, to, subject, body, locale="zh-CN", secret=secret)


def test_accepted_mail_arrives_intact_in_utf8() -> None:
    port = free_port()
    settings = SmtpSettings(host="127.0.0.1", port=port, security="none", sender="s@example.com")
    subject, body = render(Notice.YOUR_TURN, "zh-CN", **VALUES)
    with smtp_server(port) as box:
        delivery = SmtpTransport(settings).send(
            Message(Channel.EMAIL, "li@example.com", subject, body, locale="zh-CN")
        )
    assert delivery.state is DeliveryState.ACCEPTED
    (received,) = box.messages
    assert received["Subject"] == subject == "Li Wei 邀请您签署《采购合同 / Contrato》"
    assert received["Message-ID"] == delivery.provider_id
    assert received["Content-Language"] == "zh-CN"
    assert received.get_content().replace("\r\n", "\n").strip() == body.strip()


@pytest.mark.parametrize(
    ("to", "detail", "retryable"),
    [
        ("refused@example.com", "550 5.1.1 <refused@example.com>: mailbox unavailable", False),
        ("busy@example.com", "451 4.3.0 try again later", True),
    ],
)
def test_a_refusal_keeps_the_servers_reason(to: str, detail: str, retryable: bool) -> None:
    port = free_port()
    settings = SmtpSettings(host="127.0.0.1", port=port, security="none", sender="s@example.com")
    with smtp_server(port) as box:
        delivery = SmtpTransport(settings).send(email(to))
    assert delivery.state is DeliveryState.FAILED
    assert delivery.detail == detail
    assert delivery.retryable is retryable
    assert box.messages == []


def test_a_server_that_is_down_is_failed_and_retryable() -> None:
    settings = SmtpSettings(
        host="127.0.0.1", port=free_port(), security="none", sender="s@example.com"
    )
    delivery = SmtpTransport(settings).send(email("li@example.com"))
    assert delivery.state is DeliveryState.FAILED
    assert delivery.retryable and delivery.detail.startswith("unreachable")


def test_starttls_with_login_and_never_a_downgrade(tmp_path: Path) -> None:
    certificate = loopback_certificate(tmp_path)
    port = free_port()
    settings = SmtpSettings(
        host="localhost",
        port=port,
        security="starttls",
        sender="s@example.com",
        username="signet",
        password=SecretStr("relay-pass"),
        ca_file=str(certificate[0]),
    )
    with smtp_server(port, tls="starttls", certificate=certificate, login=("signet", "relay-pass")):
        assert SmtpTransport(settings).send(email("li@example.com")).state is (
            DeliveryState.ACCEPTED
        )
        wrong = settings.model_copy(update={"password": SecretStr("nope")})
        refused = SmtpTransport(wrong).send(email("li@example.com"))
        assert refused.state is DeliveryState.FAILED and refused.detail.startswith("535")
    plain_port = free_port()
    plain = settings.model_copy(update={"port": plain_port})
    with smtp_server(plain_port) as box:  # offers no STARTTLS
        delivery = SmtpTransport(plain).send(email("li@example.com"))
    assert delivery.state is DeliveryState.FAILED
    assert "not sent in clear" in delivery.detail
    assert box.messages == []


def test_implicit_tls_checks_the_certificate(tmp_path: Path) -> None:
    certificate = loopback_certificate(tmp_path)
    port = free_port()
    settings = SmtpSettings(
        host="localhost", port=port, security="tls", sender="s@example.com",
        ca_file=str(certificate[0]),
    )  # fmt: skip
    with smtp_server(port, tls="tls", certificate=certificate) as box:
        assert SmtpTransport(settings).send(email("li@example.com")).state is (
            DeliveryState.ACCEPTED
        )
        untrusted = SmtpTransport(settings.model_copy(update={"ca_file": None}))
        failed = untrusted.send(email("li@example.com"))
    assert failed.state is DeliveryState.FAILED and "CERTIFICATE_VERIFY_FAILED" in failed.detail
    assert len(box.messages) == 1


def test_sms_through_a_twilio_api_gateway() -> None:
    with sms_gateway() as gateway:
        settings = SmsSettings(
            base_url=gateway.url,
            account_sid=gateway.account_sid,
            auth_token=SecretStr(gateway.auth_token),
            sender="Signet",
            status_callback="https://portal.example/receipts/sms",
        )
        sms = SmsGateway(settings)
        ok = sms.send(Message(Channel.SMS, "+8613800000000", "", "code 482913", secret="482913"))
        invalid = sms.send(Message(Channel.SMS, "13800", "", "x"))
        down = sms.send(Message(Channel.SMS, "+8613800009999", "", "x"))
        bad_auth = SmsGateway(settings.model_copy(update={"auth_token": SecretStr("no")}))
        denied = bad_auth.send(Message(Channel.SMS, "+8613800000000", "", "x"))
    assert ok.state is DeliveryState.ACCEPTED and ok.provider_id == gateway.messages[0]["sid"]
    assert gateway.messages[0]["StatusCallback"] == "https://portal.example/receipts/sms"
    assert gateway.messages[0]["Body"] == "code 482913"
    assert invalid.state is DeliveryState.FAILED and not invalid.retryable
    assert invalid.detail == "400 The 'To' number 13800 is not a valid phone number. (code 21211)"
    assert down.state is DeliveryState.FAILED and down.retryable
    assert denied.state is DeliveryState.FAILED and denied.detail.startswith("401")
    assert len(gateway.messages) == 1


def test_sms_gateway_unreachable() -> None:
    settings = SmsSettings(
        base_url=f"http://127.0.0.1:{free_port()}", account_sid="AC1",
        auth_token=SecretStr("secret-token"), sender="Signet",
    )  # fmt: skip
    delivery = SmsGateway(settings).send(Message(Channel.SMS, "+8613800000000", "", "x"))
    assert delivery.state is DeliveryState.FAILED and delivery.retryable


def test_delivery_receipts() -> None:
    sid, delivered = receipt({"MessageSid": "SM1", "MessageStatus": "delivered"}) or ("", None)
    assert sid == "SM1" and delivered is not None and delivered.state is DeliveryState.DELIVERED
    failed = receipt({"MessageSid": "SM2", "MessageStatus": "undelivered", "ErrorCode": "30003"})
    assert failed is not None and failed[1].state is DeliveryState.FAILED
    assert "30003" in failed[1].detail
    assert receipt({"MessageSid": "SM3", "MessageStatus": "teleported"}) is None
    assert receipt({"MessageStatus": "delivered"}) is None


def test_a_code_is_stored_only_while_nothing_left_the_machine() -> None:
    message = email("li@example.com", body="Your code is 482913.")
    assert message.stored_body(DeliveryState.HELD) == "Your code is 482913."
    for state in (DeliveryState.ACCEPTED, DeliveryState.FAILED, DeliveryState.QUEUED):
        assert message.stored_body(state) == f"Your code is {MASK}."


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("notice", list(Notice))
def test_every_notice_renders_in_every_language(locale: str, notice: Notice) -> None:
    subject, body = render(notice, locale, **VALUES)
    assert subject and body
    assert not re.search(r"\$[a-z]", subject + body), (subject, body)
    if notice in (Notice.IDENTITY_CODE, Notice.INTENT_CODE):
        assert "482913" in body and "5" in body


def test_locale_fallbacks() -> None:
    assert locale_for("zh-TW") == "zh-CN"
    assert locale_for("es-MX") == "es"
    assert locale_for("fr") == "en"
    assert locale_for(None) == "en"
    english = render(Notice.EXPIRED, "fr", **VALUES)
    assert english == render(Notice.EXPIRED, "en", **VALUES)


def test_retry_delays_grow_with_jitter_and_end() -> None:
    first = [retry_delay(1) for _ in range(50)]
    assert all(d is not None and 15 <= d <= 30 for d in first)
    assert len(set(first)) > 1
    later = retry_delay(6)
    assert later is not None and 480 <= later <= 960
    capped = retry_delay(MAX_ATTEMPTS - 1)
    assert capped is not None and capped <= 3600
    assert retry_delay(MAX_ATTEMPTS) is None
