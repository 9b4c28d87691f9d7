"""E-mail over SMTP (the standard library's `smtplib`), reporting what the server said.

TLS is never downgraded: with ``starttls`` a server that does not offer STARTTLS is a
failure, not a plain-text send.  Every refusal keeps the server's own code and text,
so an admin reads "550 5.1.1 mailbox unavailable", not "failed".
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from signet.common.logging import register_secret
from signet.common.notify.messages import Channel, Delivery, DeliveryState, Message


class SmtpSettings(BaseModel):
    """Where mail goes.  In a cluster the password comes from a Secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=587, ge=1, le=65535)
    #: ``starttls`` (587), ``tls`` (implicit TLS, 465) or ``none`` (a relay on loopback).
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", examples=["signet@example.com"])
    #: A private CA's bundle for the relay's certificate; None: the system's.
    ca_file: str | None = None
    timeout_seconds: float = Field(default=15.0, gt=0, le=120)


def _reply(code: int, text: bytes | str) -> str:
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {' '.join(words.split())}"


class SmtpTransport:
    """One connection per message: notifications are few, and a fresh connection never
    carries a half-broken session from the previous one."""

    channel = Channel.EMAIL

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        if settings.password is not None:
            register_secret(settings.password.get_secret_value())

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.settings.ca_file)

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.security == "tls":
            return smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_seconds, context=self._tls())
        client = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
        if s.security == "starttls":
            client.ehlo()
            if not client.has_extn("starttls"):
                client.close()
                raise _NoTls
            client.starttls(context=self._tls())
            client.ehlo()
        return client

    def envelope(self, message: Message) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.settings.sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email["Date"] = formatdate(localtime=False)
        email["Message-ID"] = make_msgid(domain=self.settings.sender.rpartition("@")[2])
        email.set_content(message.body, charset="utf-8")
        email["Content-Language"] = message.locale  # after set_content, which clears Content-*
        return email

    def send(self, message: Message) -> Delivery:
        email = self.envelope(message)
        message_id = email["Message-ID"]
        try:
            client = self._connect()
        except _NoTls:
            return Delivery(
                DeliveryState.FAILED, "the server offers no STARTTLS; not sent in clear"
            )
        except (OSError, smtplib.SMTPException) as exc:
            return Delivery(DeliveryState.FAILED, f"unreachable: {exc}", retryable=True)
        try:
            with client:
                if self.settings.username and self.settings.password:
                    client.login(self.settings.username, self.settings.password.get_secret_value())
                client.send_message(email)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            return Delivery(DeliveryState.FAILED, _reply(code, text), retryable=code < 500)
        except smtplib.SMTPResponseException as exc:  # sender refused, data refused, auth
            detail = _reply(exc.smtp_code, exc.smtp_error)
            return Delivery(DeliveryState.FAILED, detail, retryable=exc.smtp_code < 500)
        except (OSError, smtplib.SMTPException) as exc:
            return Delivery(DeliveryState.FAILED, f"connection lost: {exc}", retryable=True)
        return Delivery(DeliveryState.ACCEPTED, "accepted by the SMTP server", message_id)


class _NoTls(Exception):
    pass
