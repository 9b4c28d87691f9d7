"""The storage service's settings (environment prefix ``SIGNET_STORAGE_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict
from signet.common.contracts.storage import MINIMUM_RETENTION_YEARS
from signet.common.logging import register_secret
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
    #: Storage's own token for the signer (scopes: timestamps, digest-sign); or a file
    #: holding it (a mounted Secret).  Neither: the legacy `service_token`.
    signer_token: SecretStr | None = None
    signer_token_file: Path | None = None
    #: HSM key (an organisation seal) that signs tree heads.
    ledger_key_label: str = "signet-ledger-seal"
    #: Seconds between signed tree heads (when the log grew); 0 = only on demand.
    tree_head_interval: float = Field(default=60.0, ge=0)
    log_id: str = "signet-ledger"
    #: The Lease that elects the one replica publishing tree heads (the operator sets
    #: `<appliance>-tree-head-publisher`); None: a single process publishes (embedded default).
    lease_name: str | None = None
    #: Namespace of the Lease; default `POD_NAMESPACE`, else the pod's service account's.
    lease_namespace: str | None = None
    #: Seconds the others wait, after the last renewal they saw, before taking the Lease over.
    lease_duration: int = Field(default=15, ge=1)
    #: Seconds the leader keeps publishing without a successful renewal; below lease_duration.
    lease_renew_deadline: float = Field(default=10.0, gt=0)
    #: Seconds between attempts to take or renew the Lease; below lease_renew_deadline.
    lease_retry_period: float = Field(default=2.0, gt=0)
    #: API server reached over plain HTTP without credentials (tests, `kubectl proxy`);
    #: None: the pod's service account.
    kube_api_url: str | None = None
    #: Seconds between passes of the preservation job (renewing archive timestamps,
    #: docs/admin/preservation.md), run by the Lease's holder; 0: only on request
    #: (`signet storage preserve`).
    preservation_interval: float = Field(default=86400.0, ge=0)
    #: Seconds after the start before the first periodic pass.
    preservation_start_delay: float = Field(default=300.0, ge=0)
    #: Documents renewed at once (concurrent requests to the signer, whose replicas and
    #: workers share them); 1 per signer worker is a good start.
    preservation_workers: int = Field(default=2, ge=1, le=64)
    #: Renew a document this many days before its last timestamp's certificate expires.
    preservation_margin_days: float = Field(default=365.0, gt=0, le=36500)
    host: str = "127.0.0.1"
    port: int = 8102
    max_object_bytes: int = 1024 * 1024 * 1024

    @model_validator(mode="after")
    def _lease_timing_is_safe(self) -> StorageSettings:
        # The leader must stop leading before anyone may consider its Lease expired.
        if not self.lease_retry_period < self.lease_renew_deadline < self.lease_duration:
            raise ValueError(
                "lease timing needs lease_retry_period < lease_renew_deadline < lease_duration"
            )
        return self

    def secret(self, value: SecretStr | None, file: Path | None, what: str) -> str:
        if value is not None:
            return value.get_secret_value()
        if file is not None:
            text = file.read_text(encoding="utf-8").strip()
            register_secret(text)
            return text
        raise ValueError(f"{what} is not configured")

    def signer_token_value(self) -> str | None:
        """The token storage presents to the signer."""
        if self.signer_token is None and self.signer_token_file is None:
            legacy = self.service_token
            return legacy.get_secret_value() if legacy is not None else None
        return self.secret(self.signer_token, self.signer_token_file, "signer_token")
