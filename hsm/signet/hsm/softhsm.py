"""A SoftHSM2 token for development, trials and tests, kept under a data folder.

SoftHSM reads its configuration file (``SOFTHSM2_CONF``) once, when the
PKCS#11 module is initialised, so `use_softhsm_dir` must run before the first
`Hsm` of the process is created.  Production HSMs need none of this.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from signet.common.logging import register_secret
from signet.hsm.config import SOFTHSM_MODULE, HsmConfig
from signet.hsm.errors import HsmUnavailable


@dataclass(frozen=True)
class DevToken:
    config: HsmConfig
    conf_file: Path
    created: bool


def use_softhsm_dir(directory: Path) -> Path:
    """Point this process (and its children) at a SoftHSM token folder under `directory`."""
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    conf = directory / "softhsm2.conf"
    if not conf.exists():
        conf.write_text(
            f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
            "log.level = ERROR\nslots.removable = false\n",
            encoding="utf-8",
        )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    return conf


def _softhsm_util() -> str:
    util = shutil.which("softhsm2-util")
    if util is None:
        raise HsmUnavailable("softhsm2-util not found: install the Debian package softhsm2")
    return util


def token_exists(label: str) -> bool:
    out = subprocess.run(
        [_softhsm_util(), "--show-slots"],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ.copy(),
    )
    return any(line.strip() == f"Label:            {label}" for line in out.stdout.splitlines())


def ensure_dev_token(directory: Path, label: str = "signet") -> DevToken:
    """Create (once) a SoftHSM token under `directory` with random PINs kept in 0600 files.

    Returns the token's `HsmConfig`.  Running it again reuses the token and PIN.
    """
    conf = use_softhsm_dir(directory)
    pin_file, so_pin_file = directory / "user.pin", directory / "so.pin"
    created = False
    if not token_exists(label):
        pin, so_pin = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
        for path, value in ((pin_file, pin), (so_pin_file, so_pin)):
            path.touch(mode=0o600)
            path.write_text(value, encoding="utf-8")
        register_secret(pin)
        register_secret(so_pin)
        result = subprocess.run(
            [
                _softhsm_util(),
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                so_pin,
                "--pin",
                pin,
            ],
            capture_output=True,
            text=True,
            check=False,
            env=os.environ.copy(),
        )
        if result.returncode != 0:
            raise HsmUnavailable(
                f"softhsm2-util could not create token {label!r}: "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        created = True
    pin_value = pin_file.read_text(encoding="utf-8").strip()
    register_secret(pin_value)
    return DevToken(HsmConfig(SOFTHSM_MODULE, label, SecretStr(pin_value)), conf, created)
