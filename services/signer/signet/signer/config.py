"""The signer service's settings (environment prefix ``SIGNET_SIGNER_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict
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
    host: str = "127.0.0.1"
    port: int = 8101
    #: Batch-sealing threads per signer process (0: this process takes no batch work).
    batch_workers: int = Field(default=1, ge=0, le=8)
    #: Where batch documents wait and signed results are kept; default: `home`/batches.
    batch_directory: Path | None = None

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'signer.db'}"
