"""Settings shared by every component: where the data folder is, how services authenticate.

Each service has its own pydantic-settings class with its own env prefix
(``SIGNET_SIGNER_…``); they inherit from `ServiceSettings` so that the data
folder and the service token are resolved the same way everywhere.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from platformdirs import user_data_path
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings
from signet.common.auth import CallerEntry, TokenRegistry
from signet.common.logging import register_secret


def signet_home() -> Path:
    """The data folder: ``$SIGNET_HOME`` or the user's data directory.

    Several installations can live side by side by pointing SIGNET_HOME elsewhere.
    """
    env = os.environ.get("SIGNET_HOME")
    return Path(env).expanduser().resolve() if env else user_data_path("signet")


def ensure_service_token(home: Path) -> SecretStr:
    """The service-to-service bearer token of an embedded installation, made once (0600)."""
    path = home / "service-token"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32), encoding="utf-8")
    token = path.read_text(encoding="utf-8").strip()
    register_secret(token)
    return SecretStr(token)


class ServiceSettings(BaseSettings):
    """Base of every service's settings."""

    #: Legacy single bearer token, accepted as the ``admin`` caller (for one release;
    #: use `callers_file`).  In a cluster it comes from a Secret.
    service_token: SecretStr | None = None
    #: The hashed tokens this service accepts (`signet.common.auth`): a JSON list of
    #: ``{caller, sha256, scopes}``; in a cluster a mounted Secret.
    callers_file: Path | None = None
    #: More registry entries, e.g. from the environment as JSON.
    callers: list[CallerEntry] = Field(default_factory=list)
    log_level: str = "INFO"
    #: A second port serving only ``GET /metrics`` (for Prometheus, which the cluster's
    #: NetworkPolicies keep off the API port); None: ``/metrics`` on the API port only.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    #: Largest request body accepted, in bytes (documents are the big ones).
    max_document_bytes: int = 256 * 1024 * 1024
    #: Signing policies in force (`signet.common.policies`): in a cluster the operator's
    #: mounted ConfigMap; in the embedded default `$SIGNET_HOME/policies`.
    policy_dir: Path = Field(default_factory=lambda: signet_home() / "policies")

    @model_validator(mode="after")
    def _register_secrets(self) -> ServiceSettings:
        """Every secret given in the settings (environment, constructor) is redacted from
        the logs from the moment it is read: tokens, the HSM PIN, the S3 keys."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                register_secret(value.get_secret_value())
        return self

    def token_registry(self) -> TokenRegistry:
        """The callers this service accepts (read once, when the app is made)."""
        token = self.service_token.get_secret_value() if self.service_token else None
        return TokenRegistry.load(file=self.callers_file, entries=self.callers, admin_token=token)
