"""The storage service's settings (environment prefix ``SIGNET_STORAGE_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict
from signet.common.contracts.storage import MINIMUM_RETENTION_YEARS
from signet.common.settings import ServiceSettings, signet_home


class StorageSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SIGNET_STORAGE_")

    home: Path = Field(default_factory=lambda: signet_home() / "storage")
    #: `filesystem` (embedded default) or `s3` (MinIO with Object Lock).
    vault: Literal["filesystem", "s3"] = "filesystem"
    #: Folder of the filesystem vault; default `home`/vault.
    vault_path: Path | None = None
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_access_key_file: Path | None = None
    s3_secret_key_file: Path | None = None
    s3_bucket: str = "signet"
    s3_secure: bool = False
    #: Years every object is kept at least; never below the statutory minimum.
    retention_years: int = Field(default=10, ge=MINIMUM_RETENTION_YEARS, le=100)
    #: The signer that signs and timestamps tree heads.
    signer_url: str = "http://127.0.0.1:8101"
    #: HSM key (an organisation seal) that signs tree heads.
    ledger_key_label: str = "signet-ledger-seal"
    #: Seconds between signed tree heads (when the log grew); 0 = only on demand.
    tree_head_interval: float = Field(default=60.0, ge=0)
    log_id: str = "signet-ledger"
    host: str = "127.0.0.1"
    port: int = 8102
    max_object_bytes: int = 1024 * 1024 * 1024

    def secret(self, value: SecretStr | None, file: Path | None, what: str) -> str:
        if value is not None:
            return value.get_secret_value()
        if file is not None:
            return file.read_text(encoding="utf-8").strip()
        raise ValueError(f"{what} is not configured")
