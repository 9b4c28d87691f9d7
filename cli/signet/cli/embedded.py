"""The embedded default installation under ``$SIGNET_HOME``: dev token, settings, service.

Every CLI command that touches keys goes through here, so that all of them
agree on where the SoftHSM token, its PIN, the CA and the service token live.
"""

from __future__ import annotations

import os
from pathlib import Path

from signet.common.settings import ensure_service_token, signet_home
from signet.hsm import SOFTHSM_MODULE
from signet.hsm.softhsm import DevToken, ensure_dev_token, use_softhsm_dir
from signet.signer.config import SignerSettings
from signet.signer.service import SignerService
from signet.storage.config import StorageSettings

__all__ = [
    "SignerService",
    "child_environment",
    "dev_token",
    "home",
    "signer_service",
    "signer_settings",
    "storage_environment",
    "storage_settings",
    "uses_dev_token",
]


def home() -> Path:
    path = signet_home()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)  # keys' PINs, the service token, the databases: this user's only
    return path


def dev_token() -> DevToken:
    return ensure_dev_token(home() / "softhsm")


def uses_dev_token() -> bool:
    """True on the embedded default; False where SIGNET_SIGNER_HSM_MODULE names a vendor's
    module (a cluster pod, where `kubectl exec … signet ca init` runs the key ceremony)."""
    return SignerSettings().hsm_module == SOFTHSM_MODULE


def signer_settings(**overrides: object) -> SignerSettings:
    """Settings of this installation's signer; the environment may still override them."""
    base = home()
    settings = SignerSettings(**overrides)  # type: ignore[arg-type]
    defaults: dict[str, object] = {}
    if "SIGNET_SIGNER_HOME" not in os.environ:
        defaults["home"] = base / "signer"
    if settings.hsm_module == SOFTHSM_MODULE:
        use_softhsm_dir(base / "softhsm")
        if settings.hsm_pin is None and settings.hsm_pin_file is None:
            defaults["hsm_pin_file"] = base / "softhsm" / "user.pin"
    if settings.service_token is None:
        defaults["service_token"] = ensure_service_token(base)
    return settings.model_copy(update=defaults)


def signer_service() -> SignerService:
    return SignerService(signer_settings())


def child_environment(settings: SignerSettings) -> dict[str, str]:
    """Environment for a service process started by `signet up` (secrets by file, not argv)."""
    env = dict(os.environ)
    env["SIGNET_SIGNER_HOME"] = str(settings.home)
    if settings.hsm_pin_file is not None:
        env["SIGNET_SIGNER_HSM_PIN_FILE"] = str(settings.hsm_pin_file)
    if settings.service_token is not None:
        env["SIGNET_SIGNER_SERVICE_TOKEN"] = settings.service_token.get_secret_value()
    env["SIGNET_SIGNER_PUBLIC_URL"] = settings.public_url
    env["SIGNET_SIGNER_PORT"] = str(settings.port)
    return env


def storage_settings(**overrides: object) -> StorageSettings:
    """Settings of this installation's storage service (filesystem vault by default)."""
    base = home()
    settings = StorageSettings(**overrides)  # type: ignore[arg-type]
    defaults: dict[str, object] = {}
    if "SIGNET_STORAGE_HOME" not in os.environ:
        defaults["home"] = base / "storage"
    if settings.service_token is None:
        defaults["service_token"] = ensure_service_token(base)
    return settings.model_copy(update=defaults)


def storage_environment(settings: StorageSettings) -> dict[str, str]:
    env = dict(os.environ)
    env["SIGNET_STORAGE_HOME"] = str(settings.home)
    if settings.service_token is not None:
        env["SIGNET_STORAGE_SERVICE_TOKEN"] = settings.service_token.get_secret_value()
    env["SIGNET_STORAGE_SIGNER_URL"] = settings.signer_url
    env["SIGNET_STORAGE_PORT"] = str(settings.port)
    return env
