"""The newcomer's first hour, as CI runs it: `signet up` in the background, then the
commands the README and `signet up`'s banner print, run exactly as printed.

The commands are parsed from the README's first-session block and from the banner's
``try`` and ``messages`` lines, not written out here: when the docs change, this test
runs what they say.  Each must exit as the docs promise, with no traceback and no
warning on stderr.  Last, `signet verify` of a PDF signed elsewhere (plain pyHanko, a
self-made certificate this appliance never issued) must say so in words.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.appliance import Appliance, running_appliance
from tests.support.foreign import foreign_signed_pdf
from tests.support.pdfs import make_pdf

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    home = tmp_path_factory.mktemp("newcomer") / "home"
    with running_appliance(home) as running:
        yield running


@pytest.fixture
def shell(tmp_path: Path, appliance: Appliance) -> Path:
    """A working folder as a newcomer's: the repository's `.venv` reachable as `.venv`,
    the PDFs the docs name lying there."""
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    for name in ("contract.pdf", "some.pdf"):
        (tmp_path / name).write_bytes(make_pdf(2))
    return tmp_path


def _run(command: str, cwd: Path, appliance: Appliance) -> subprocess.CompletedProcess[str]:
    env = (
        {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
        | {"SIGNET_HOME": str(appliance.home), "COLUMNS": "200"}
        | appliance.extra_env
    )
    env.pop("SOFTHSM2_CONF", None)
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )


def _clean(result: subprocess.CompletedProcess[str], command: str) -> None:
    shown = f"$ {command}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert "warning" not in result.stderr.lower(), shown


def _readme_commands() -> list[str]:
    text = README.read_text()
    block = re.search(r"A first session.*?```sh\n(.*?)```", text, re.DOTALL)
    assert block, "README lost its first-session block"
    commands = []
    for line in block.group(1).splitlines():
        command = line.split("  #")[0].strip()
        if command:
            commands.append(command)
    return commands


def _banner(appliance: Appliance, label: str) -> str:
    found = re.search(rf"^{label}\s+(.+?)\s*$", appliance.output(), re.MULTILINE)
    assert found, appliance.output()
    return found.group(1)


def test_the_readme_first_session_works_as_printed(appliance: Appliance, shell: Path) -> None:
    commands = _readme_commands()
    assert any(" sign " in c for c in commands) and any(" verify " in c for c in commands)
    for command in commands:
        result = _run(command, shell, appliance)
        _clean(result, command)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
    assert (shell / "signed.pdf").read_bytes().startswith(b"%PDF")


def test_the_banner_try_line_works_as_printed(appliance: Appliance, shell: Path) -> None:
    command = _banner(appliance, "try")
    assert "sign some.pdf" in command and "verify signed.pdf" in command
    result = _run(command, shell, appliance)
    _clean(result, command)
    assert result.returncode == 0, (command, result.stdout, result.stderr)
    assert "signed some.pdf" in result.stdout
    assert "yes" in result.stdout  # verify's table: the signature is OK


def test_the_banner_messages_command_works_as_printed(appliance: Appliance, shell: Path) -> None:
    line = _banner(appliance, "messages")
    command = line.split("  (")[0]
    assert shlex.split(command)[-1] == "outbox"
    result = _run(command, shell, appliance)
    _clean(result, command)
    assert result.returncode == 0, (command, result.stdout, result.stderr)


def test_verify_of_a_foreign_signature_is_a_verdict_in_words(
    appliance: Appliance, shell: Path
) -> None:
    foreign = foreign_signed_pdf(shell)
    verify = _banner(appliance, "try").split("&&")[1].strip()
    command = verify.replace("signed.pdf", foreign.name)
    result = _run(command, shell, appliance)
    _clean(result, command)
    assert result.returncode == 1, (command, result.stdout, result.stderr)  # not OK, no crash
    assert "Somebody Else" in result.stdout
    assert "not issued by this appliance" in result.stdout, result.stdout


def test_ca_init_prints_each_fingerprint_whole_on_a_narrow_terminal(tmp_path: Path) -> None:
    """The admin compares the root's fingerprint out of band: a cell cut to the
    terminal's width ("ee2e42f7…") was useless on an 80-column terminal."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")} | {
        "SIGNET_HOME": str(tmp_path / "home"),
        "SIGNET_SIGNER_TIME_TRUST": "trusted-host",
        "COLUMNS": "80",
    }
    env.pop("SOFTHSM2_CONF", None)
    signet = str(Path(sys.executable).parent / "signet")
    result = subprocess.run(
        [signet, "ca", "init"], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    printed = re.findall(r"^(\w+)\s+SHA-256 ([0-9a-f]{64})$", result.stdout, re.MULTILINE)
    assert [role for role, _ in printed] == ["root", "issuing", "tsa"], result.stdout
    assert "…" not in result.stdout
