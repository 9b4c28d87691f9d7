"""The dev token's PINs stay out of every process's argv, and its files are the user's.

softhsm2-util is wrapped by a script that records each argv it is started with and
then runs the real program, so the test sees exactly what the process list showed.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from signet.cli import embedded


def test_init_puts_no_pin_on_a_command_line_and_keeps_the_files_private(
    tmp_path: Path,
) -> None:
    real = shutil.which("softhsm2-util")
    assert real is not None
    wrappers, record = tmp_path / "bin", tmp_path / "argv.txt"
    wrappers.mkdir()
    wrapper = wrappers / "softhsm2-util"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {record}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    directory = tmp_path / "softhsm"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)  # an existing, too open folder is narrowed too
    script = (
        "import sys; from pathlib import Path; from signet.hsm.softhsm import "
        "ensure_dev_token, token_exists; t = ensure_dev_token(Path(sys.argv[1])); "
        "assert t.created and token_exists('signet')"
    )
    env = {"PATH": f"{wrappers}:/usr/bin:/bin", "HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-c", script, str(directory)], env=env, check=True)

    calls = record.read_text()
    assert "--init-token" in calls
    for pin_file in ("user.pin", "so.pin"):
        pin = (directory / pin_file).read_text().strip()
        assert len(pin) >= 16 and pin not in calls, f"{pin_file}'s PIN was in argv"
    assert "--pin" not in calls and "--so-pin" not in calls
    for path in [directory, *directory.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {oct(mode)}"


def test_the_data_folder_is_the_users_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "signet-home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    monkeypatch.setenv("SIGNET_HOME", str(home))
    assert embedded.home() == home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
