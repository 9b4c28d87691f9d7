"""The CLI is quiet however it is started: ``signet`` or ``python -m signet.cli``.

pyHanko imports DSA, which `cryptography` deprecates with a warning at import time;
`python -m signet.cli` printed it on every run (its package is imported while
``sys.argv[0]`` is still ``-m``), ``signet`` did not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    "command",
    [[sys.executable, "-m", "signet.cli"], [str(Path(sys.executable).with_name("signet"))]],
    ids=["python-m", "signet"],
)
def test_no_library_warning_on_stderr(command: list[str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNET_", "PYTHONWARN"))}
    env["SIGNET_HOME"] = str(tmp_path)
    result = subprocess.run(
        [*command, "ca", "--help"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    verbose = subprocess.run(
        [*command, "--verbose", "ca", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verbose.returncode == 0, verbose.stderr
    assert "CryptographyDeprecationWarning" in verbose.stderr  # --verbose keeps them


def test_a_refusal_no_command_handled_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """`signet hsm keys` before the token exists: what is wrong, in one line; the
    traceback only with --verbose."""
    signet = str(Path(sys.executable).with_name("signet"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNET_", "PYTHONWARN"))}
    env["SIGNET_HOME"] = str(tmp_path / "never-initialised")
    plain = subprocess.run([signet, "hsm", "keys"], env=env, capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert plain.returncode == 1
    assert plain.stderr.startswith("error: no usable HSM PIN"), plain.stderr
    assert "Traceback" not in plain.stderr and len(plain.stderr.splitlines()) == 1
    verbose = subprocess.run([signet, "hsm", "keys", "--verbose"], env=env,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr
