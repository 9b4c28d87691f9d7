"""A SoftHSM2 token for development, trials and tests, kept under a data folder.

SoftHSM reads its configuration file (``SOFTHSM2_CONF``) once, when the
PKCS#11 module is initialised, so `use_softhsm_dir` must run before the first
`Hsm` of the process is created.  Production HSMs need none of this.
"""

from __future__ import annotations

import os
import secrets
import select
import shutil
import subprocess
import time
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
    directory.chmod(0o700)  # mkdir's mode does not apply to a folder that existed
    conf = directory / "softhsm2.conf"
    if not conf.exists():
        conf.touch(mode=0o600)
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


def _init_token(label: str, so_pin: str, pin: str) -> None:
    """`softhsm2-util --init-token` with the PINs typed at its prompts, not in argv.

    Given as --so-pin/--pin they are visible to every user in the process list;
    softhsm2-util reads them from a terminal only (piped stdin is refused: "Could not
    get SO PIN"), so it runs on a pseudo-terminal and each PIN is written when asked
    for.  python-pkcs11 has no C_InitToken to do it in-process.
    """
    master, slave = os.openpty()
    try:
        process = subprocess.Popen(
            [_softhsm_util(), "--init-token", "--free", "--label", label],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=os.environ.copy(),
            start_new_session=True,
        )
    finally:
        os.close(slave)
    answers, seen, output = [so_pin, so_pin, pin, pin], b"", b""
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            readable, _, _ = select.select([master], [], [], 0.2)
            if not readable:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the program closed its terminal
                break
            if not chunk:
                break
            seen, output = seen + chunk, output + chunk
            while b"PIN:" in seen and answers:
                seen = seen.split(b"PIN:", 1)[1]
                os.write(master, answers.pop(0).encode() + b"\n")
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
        returncode = process.wait()
    if returncode != 0 or answers:
        text = output.decode("utf-8", "replace").replace("*", "").strip()
        raise HsmUnavailable(f"softhsm2-util could not create token {label!r}: {text}")


def _restrict(directory: Path) -> None:
    """The token folder and its files for this user only (0700 folders, 0600 files)."""
    for root, dirs, files in os.walk(directory):
        Path(root).chmod(0o700)
        for name in dirs:
            (Path(root) / name).chmod(0o700)
        for name in files:
            (Path(root) / name).chmod(0o600)


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
        _init_token(label, so_pin, pin)
        created = True
    _restrict(directory)
    pin_value = pin_file.read_text(encoding="utf-8").strip()
    register_secret(pin_value)
    return DevToken(HsmConfig(SOFTHSM_MODULE, label, SecretStr(pin_value)), conf, created)
