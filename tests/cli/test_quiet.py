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
