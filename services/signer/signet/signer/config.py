"""The signer service's settings (environment prefix ``SIGNET_SIGNER_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict
from signet.common.notify.sms import SmsSettings
from signet.common.notify.smtp import SmtpSettings
from signet.common.settings import ServiceSettings, signet_home
from signet.hsm import SOFTHSM_MODULE


class SignerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SIGNET_SIGNER_")

    home: Path = Field(default_factory=lambda: signet_home() / "signer")
    hsm_module: Path = SOFTHSM_MODULE
    hsm_token_label: str = "signet"  # noqa: S105 - a label, not a secret
    #: File holding the HSM user PIN (a mounted Secret in a cluster).
    hsm_pin_file: Path | None = None
    hsm_pin: SecretStr | None = None
    hsm_pool_size: int = 8
    #: SQLAlchemy URL; default: SQLite under `home`.
    database_url: str | None = None
    #: URL validators use to reach /ca/crl and /ocsp; baked into issued certificates.
    public_url: str = "http://127.0.0.1:8101"
    organization: str = "Signet"
    #: Use this RFC 3161 TSA instead of the built-in one.
    external_tsa_url: str | None = None
    #: Named external RFC 3161 TSAs a sign or complete request may pick by name
    #: (`timestamp_authority`); JSON in the environment:
    #: ``SIGNET_SIGNER_TIMESTAMP_AUTHORITIES='{"qtsp": "https://tsa.example/rfc3161"}'``.
    timestamp_authorities: dict[str, str] = Field(default_factory=dict)
    #: The accuracy every token of the built-in TSA claims (TSTInfo.accuracy, ms); the
    #: time check refuses stamps when the clock cannot show it (docs/admin/time.md).
    tsa_accuracy_ms: int = Field(default=500, ge=1, le=60_000)
    #: How long each TSA certificate is valid, in seconds (the ceremony's and every
    #: rollover's; default six years): docs/admin/preservation.md.
    tsa_validity_s: int = Field(default=6 * 365 * 86_400, ge=60)
    #: Readiness names the rollover due this many days before the TSA certificate
    #: expires (the preservation job's margin: every document renewed in time).
    tsa_rollover_margin_days: int = Field(default=365, ge=0, le=3650)
    #: `kernel`: stamp only while the kernel says the clock is synchronised within the
    #: accuracy; `trusted-host`: take the host's clock unchecked (the laptop trial).
    time_trust: Literal["kernel", "trusted-host"] = "kernel"
    #: NTP servers (`host`, `host:port`) to cross-check the clock against; none: no check.
    time_references: list[str] = Field(default_factory=list)
    #: Seconds between two queries of each reference (a background thread, not per stamp).
    time_reference_interval_s: float = Field(default=16.0, gt=0, le=3600)
    #: A reference's last good answer counts this long; past it, and none newer: refuse.
    time_reference_expiry_s: float = Field(default=64.0, gt=0, le=86_400)
    #: How long one verdict of the time check is reused (seconds).
    time_check_interval_s: float = Field(default=1.0, ge=0, le=60)
    host: str = "127.0.0.1"
    port: int = 8101
    #: Batch-sealing threads per signer process (0: this process takes no batch work).
    batch_workers: int = Field(default=1, ge=0, le=8)
    #: Where batch documents wait and signed results are kept; default: `home`/batches.
    batch_directory: Path | None = None
    #: Where activation codes go by e-mail (JSON in ``SIGNET_SIGNER_SMTP``, see
    #: `signet.common.notify.smtp`); with neither gateway, codes are held in the
    #: signer's outbox for an admin (the embedded default, docs/admin/activation.md).
    smtp: SmtpSettings | None = None
    #: The SMS gateway for activation codes (JSON in ``SIGNET_SIGNER_SMS``).
    sms: SmsSettings | None = None
    #: The key activation codes are kept under (HMAC), shared by every signer replica;
    #: default: a random one made once in `home`/activation-pepper (mode 0600).
    activation_pepper: SecretStr | None = None

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'signer.db'}"
