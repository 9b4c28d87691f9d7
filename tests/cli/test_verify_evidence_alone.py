"""`signet verify-evidence` starts without the rest of the CLI (`signet.cli`'s fast path).

People outside the appliance run it; the whole CLI imports the signer, the portal and
their databases first (seconds).  Checked by the interpreter's own import log.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SIGNET = str(Path(sys.executable).parent / "signet")


def _imports(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    done = subprocess.run(
        [SIGNET, *args],
        env=env | {"PYTHONPROFILEIMPORTTIME": "1", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    modules = {
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    return done, modules


def test_verify_evidence_imports_only_the_verifier(tmp_path: Path) -> None:
    done, modules = _imports("verify-evidence", "--help")
    assert done.returncode == 0 and "--root" in done.stdout
    assert "signet.storage.evidence_verify" in modules
    # (signet.cli.main is logged too: the import that the fast path's exit interrupted)
    for heavy in ("signet.cli.embedded", "signet.signer.service", "signet.portal", "sqlalchemy"):
        assert heavy not in modules, heavy
    missing, _ = _imports("verify-evidence", str(tmp_path / "none.zip"), "--root", "x")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_other_commands_still_get_the_whole_cli() -> None:
    done, modules = _imports("--help")
    assert done.returncode == 0 and "verify-evidence" in done.stdout
    assert "signet.cli.embedded" in modules and "signet.signer.service" in modules
