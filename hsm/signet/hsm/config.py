"""How to reach an HSM: module, token and PIN, passed in (never read from globals)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr
from signet.common.logging import register_secret

#: Where Debian's `softhsm2` package puts its PKCS#11 module.
SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")


@dataclass(frozen=True)
class HsmConfig:
    """Everything needed to open sessions on one token.

    `pin` is a SecretStr so that a repr, a log line or a traceback shows
    ``**********`` instead of the PIN.
    """

    module_path: Path
    token_label: str
    pin: SecretStr = field(repr=False)
    #: Upper bound of concurrently open PKCS#11 sessions in this process.
    pool_size: int = 8


def load_pin(*, pin_env: str = "SIGNET_HSM_PIN", pin_file: Path | None = None) -> SecretStr:
    """Read the user PIN from a file (preferred: a mounted Secret) or an environment variable.

    The value is registered with the log redactor so that it can never appear
    in a log line, even through a third-party exception message.
    """
    if pin_file is not None:
        value = pin_file.read_text(encoding="utf-8").strip()
    else:
        env_file = os.environ.get(f"{pin_env}_FILE")
        if env_file:
            value = Path(env_file).read_text(encoding="utf-8").strip()
        elif pin_env in os.environ:
            value = os.environ[pin_env]
        else:
            raise ValueError(f"no HSM PIN: set {pin_env} or {pin_env}_FILE, or pass a PIN file")
    register_secret(value)
    return SecretStr(value)
