"""The portal's settings (environment prefix ``SIGNET_PORTAL_``)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict
from signet.common.logging import register_secret
from signet.common.notify.sms import SmsSettings
from signet.common.notify.smtp import SmtpSettings
from signet.common.settings import ServiceSettings, signet_home


class PortalSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SIGNET_PORTAL_")

    home: Path = Field(default_factory=lambda: signet_home() / "portal")
    #: SQLAlchemy URL; None: SQLite at `home`/portal.db (the embedded default).
    database_url: str | None = None
    #: The address people's links point at (the portal as recipients reach it).
    public_url: str = "http://127.0.0.1:8103"
    signer_url: str = "http://127.0.0.1:8101"
    storage_url: str = "http://127.0.0.1:8102"
    #: The portal's own caller token for the signer and storage (`signet.common.auth`
    #: caller ``portal``), or a file holding it (a mounted Secret).
    service_caller_token: SecretStr | None = None
    service_caller_token_file: Path | None = None
    #: The portal's server-side secret (≥ 32 random bytes, hex or text), from which the
    #: link and code keys are derived; the database never holds it.  A file (a Secret).
    secret_key_file: Path | None = None
    secret_key: SecretStr | None = None
    #: The mail server (JSON in ``SIGNET_PORTAL_SMTP``: host, port, security, username,
    #: password, sender, ca_file); None: no e-mail leaves the machine.
    smtp: SmtpSettings | None = None
    #: The SMS gateway (JSON in ``SIGNET_PORTAL_SMS``, `signet.common.notify.sms`).
    sms: SmsSettings | None = None
    #: Keep every message in the outbox for an admin to read, sending none.  Default:
    #: held when neither a mail server nor an SMS gateway is configured (embedded).
    hold_messages: bool | None = None
    #: The platform's seal (an HSM key label at the signer) that seals certificates of
    #: completion; `signet up` makes ``signet-default-seal``.
    seal_key_label: str = Field(default="signet-default-seal", min_length=1, max_length=64)
    #: The font certificates of completion are set in (needs CJK glyphs).
    certificate_font: Path = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
    #: How often envelopes left completing (a crash, a service away) are looked for.
    completion_check_seconds: float = Field(default=15.0, gt=0, le=3600)
    #: How long after its last party acted an envelope is left to the request that
    #: completes it, before the sweep takes it over (seconds).
    completion_grace_seconds: float = Field(default=20.0, ge=0, le=3600)
    #: How often deadlines and reminders are looked at (seconds).
    deadline_check_seconds: float = Field(default=30.0, gt=0, le=3600)
    #: Documents of one envelope, and bytes of each (a contract and its annexes).
    max_documents: int = Field(default=10, ge=1, le=50)
    max_document_bytes: int = 50 * 1024 * 1024
    #: How often the jobs table is looked at for due work (seconds), and how many jobs
    #: one replica runs at once (webhook deliveries wait on receivers).
    job_check_seconds: float = Field(default=1.0, gt=0, le=600)
    job_concurrency: int = Field(default=4, ge=1, le=32)
    #: Webhook deliveries: the first retry's wait (doubling each time up to the cap, less
    #: up to 20 % jitter), how long after the event they are retried, each request's timeout.
    webhook_retry_base_seconds: float = Field(default=30.0, gt=0, le=3600)
    webhook_retry_cap_seconds: float = Field(default=3 * 3600.0, gt=0, le=86400)
    webhook_give_up_seconds: float = Field(default=86400.0, gt=0, le=7 * 86400)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    #: CAs (a PEM file) that receivers' TLS certificates are checked against, besides
    #: the system's: an intranet receiver's internal CA.
    webhook_ca_file: Path | None = None
    #: TEST ONLY: let webhooks reach loopback (a receiver beside the tests).  Off by
    #: default and in every deployment: loopback is the appliance itself.  The
    #: appliance's own service ports stay refused even then.
    webhook_allow_loopback: bool = False
    host: str = "127.0.0.1"
    port: int = 8103

    @property
    def messages_held(self) -> bool:
        if self.hold_messages is not None:
            return self.hold_messages
        return self.smtp is None and self.sms is None

    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'portal.db'}"

    def caller_token(self) -> str:
        """The portal's token for the signer and storage."""
        if self.service_caller_token is not None:
            return self.service_caller_token.get_secret_value()
        if self.service_caller_token_file is not None:
            token = self.service_caller_token_file.read_text(encoding="utf-8").strip()
            register_secret(token)
            return token
        if self.service_token is not None:
            return self.service_token.get_secret_value()
        raise ValueError(
            "the portal needs its caller token (SIGNET_PORTAL_SERVICE_CALLER_TOKEN_FILE)"
        )

    def derived_key(self, purpose: str) -> bytes:
        """A key for one purpose (links, codes), derived from the secret key with HMAC, so
        that one secret to keep gives independent keys."""
        if self.secret_key is not None:
            secret = self.secret_key.get_secret_value().encode()
        elif self.secret_key_file is not None:
            secret = self.secret_key_file.read_bytes().strip()
        else:
            raise ValueError("the portal needs its secret key (SIGNET_PORTAL_SECRET_KEY_FILE)")
        if len(secret) < 32:
            raise ValueError("the portal's secret key must be at least 32 bytes")
        return hmac.new(secret, f"signet-portal\x00{purpose}".encode(), hashlib.sha256).digest()
