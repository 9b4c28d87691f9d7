"""The embedded default installation under ``$SIGNET_HOME``: dev token, settings, service.

Every CLI command that touches keys goes through here, so that all of them
agree on where the SoftHSM token, its PIN, the CA and the tokens live.

Tokens (`signet.common.auth`): ``service-token`` is the admin's (the CLI's, printed by
`signet up`); ``tokens/storage`` is storage's for the signer, ``tokens/portal`` the
portal's (for when it arrives).  Each service is given only the hashes of the callers
it accepts (``callers/<service>.json``) and, for storage, its own token file: no
service process holds another caller's token.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from signet.common.auth import SERVICE_CALLERS, new_token, registry_file
from signet.common.settings import ensure_service_token, signet_home
from signet.hsm import SOFTHSM_MODULE
from signet.hsm.softhsm import DevToken, ensure_dev_token, use_softhsm_dir
from signet.portal.config import PortalSettings
from signet.signer.config import SignerSettings
from signet.signer.service import SignerService
from signet.storage.config import StorageSettings

__all__ = [
    "SignerService",
    "child_environment",
    "dev_token",
    "home",
    "portal_environment",
    "portal_settings",
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


def _private_file(path: Path, text: str) -> None:
    """Write `text` to a file only the owner can read, never readable in between."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


def caller_token_file(caller: str, base: Path | None = None) -> Path:
    """The file holding `caller`'s token (made once, 0600); the admin's is service-token."""
    base = base or home()
    if caller == "admin":
        ensure_service_token(base)
        return base / "service-token"
    path = base / "tokens" / caller
    if not path.exists():
        _private_file(path, new_token())
    return path


def callers_file(service: str, base: Path | None = None) -> Path:
    """`service`'s registry: the hashes and scopes of the callers it accepts (0600)."""
    base = base or home()
    pairs = [
        (caller, caller_token_file(caller, base).read_text(encoding="utf-8").strip())
        for caller in SERVICE_CALLERS[service]
    ]
    path = base / "callers" / f"{service}.json"
    _private_file(path, registry_file(pairs))
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
    if settings.callers_file is None:
        defaults["callers_file"] = callers_file("signer", base)
    if "SIGNET_SIGNER_TIME_TRUST" not in os.environ:  # a laptop: its clock, unchecked
        defaults["time_trust"] = "trusted-host"
    return settings.model_copy(update=defaults)


def signer_service() -> SignerService:
    return SignerService(signer_settings())


def child_environment(settings: SignerSettings) -> dict[str, str]:
    """Environment for a service process started by `signet up` (secrets by file, not argv)."""
    env = dict(os.environ)
    env["SIGNET_SIGNER_HOME"] = str(settings.home)
    if settings.hsm_pin_file is not None:
        env["SIGNET_SIGNER_HSM_PIN_FILE"] = str(settings.hsm_pin_file)
    # the hashes of who may call it, not the admin's token itself
    if settings.callers_file is not None:
        env["SIGNET_SIGNER_CALLERS_FILE"] = str(settings.callers_file)
    env["SIGNET_SIGNER_PUBLIC_URL"] = settings.public_url
    env["SIGNET_SIGNER_PORT"] = str(settings.port)
    env["SIGNET_SIGNER_TIME_TRUST"] = settings.time_trust
    _gateways_from_portal(env)
    return env


def _gateways_from_portal(env: dict[str, str]) -> None:
    """Give the signer the portal's gateways unless it has its own: activation codes are
    sent by the signer itself, and an installation that configured mail for the portal
    means its people to get their codes by mail too, not held in the signer's outbox.
    The SMS receipt callback is the portal's route, so the signer's copy has none."""
    if "SIGNET_SIGNER_SMTP" not in env and env.get("SIGNET_PORTAL_SMTP"):
        env["SIGNET_SIGNER_SMTP"] = env["SIGNET_PORTAL_SMTP"]
    if "SIGNET_SIGNER_SMS" not in env and env.get("SIGNET_PORTAL_SMS"):
        sms = json.loads(env["SIGNET_PORTAL_SMS"])
        if isinstance(sms, dict):
            sms.pop("status_callback", None)
        env["SIGNET_SIGNER_SMS"] = json.dumps(sms)


def storage_settings(**overrides: object) -> StorageSettings:
    """Settings of this installation's storage service (filesystem vault by default)."""
    base = home()
    settings = StorageSettings(**overrides)  # type: ignore[arg-type]
    defaults: dict[str, object] = {}
    if "SIGNET_STORAGE_HOME" not in os.environ:
        defaults["home"] = base / "storage"
    if settings.service_token is None:
        defaults["service_token"] = ensure_service_token(base)
    if settings.callers_file is None:
        defaults["callers_file"] = callers_file("storage", base)
    if settings.signer_token is None and settings.signer_token_file is None:
        defaults["signer_token_file"] = caller_token_file("storage", base)
    return settings.model_copy(update=defaults)


def storage_environment(settings: StorageSettings) -> dict[str, str]:
    env = dict(os.environ)
    env["SIGNET_STORAGE_HOME"] = str(settings.home)
    # the callers' hashes and storage's own token for the signer; never the admin's
    if settings.callers_file is not None:
        env["SIGNET_STORAGE_CALLERS_FILE"] = str(settings.callers_file)
    if settings.signer_token_file is not None:
        env["SIGNET_STORAGE_SIGNER_TOKEN_FILE"] = str(settings.signer_token_file)
    env["SIGNET_STORAGE_SIGNER_URL"] = settings.signer_url
    env["SIGNET_STORAGE_PORT"] = str(settings.port)
    return env


def portal_settings(**overrides: object) -> PortalSettings:
    """Settings of this installation's portal: its SQLite database, its secret key and
    its own caller token for the signer and storage, all under ``$SIGNET_HOME/portal``."""
    base = home()
    settings = PortalSettings(**overrides)  # type: ignore[arg-type]
    defaults: dict[str, object] = {}
    if "SIGNET_PORTAL_HOME" not in os.environ:
        defaults["home"] = base / "portal"
    if settings.secret_key is None and settings.secret_key_file is None:
        key_file = base / "portal" / "secret-key"
        if not key_file.exists():
            _private_file(key_file, secrets.token_hex(32))
        defaults["secret_key_file"] = key_file
    if settings.service_caller_token is None and settings.service_caller_token_file is None:
        defaults["service_caller_token_file"] = caller_token_file("portal", base)
    if "SIGNET_PORTAL_POLICY_DIR" not in os.environ:
        defaults["policy_dir"] = base / "policies"
    return settings.model_copy(update=defaults)


def portal_environment(settings: PortalSettings) -> dict[str, str]:
    """The portal child's environment: files of its secrets, never the admin's token."""
    env = dict(os.environ)
    env["SIGNET_PORTAL_HOME"] = str(settings.home)
    env["SIGNET_PORTAL_PORT"] = str(settings.port)
    env["SIGNET_PORTAL_PUBLIC_URL"] = settings.public_url
    env["SIGNET_PORTAL_SIGNER_URL"] = settings.signer_url
    env["SIGNET_PORTAL_STORAGE_URL"] = settings.storage_url
    env["SIGNET_PORTAL_POLICY_DIR"] = str(settings.policy_dir)
    if settings.secret_key_file is not None:
        env["SIGNET_PORTAL_SECRET_KEY_FILE"] = str(settings.secret_key_file)
    if settings.service_caller_token_file is not None:
        env["SIGNET_PORTAL_SERVICE_CALLER_TOKEN_FILE"] = str(settings.service_caller_token_file)
    return env


def write_private(path: Path, text: str) -> None:
    """`text` into a file only this user can read (0600, never readable in between)."""
    _private_file(path, text)
