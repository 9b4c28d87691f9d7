"""`signet verify`'s stdout: a table and a sentence for people, JSON only with `--json`.

Before issue 17's fix a JSON line followed the table; a script piping the table
(or a reader) got a stray machine line, and `--json` was the only way meant for it.
Runs without an HSM: the PDF is signed elsewhere and trusted with `--root`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.foreign import foreign_signed_pdf


def _verify(folder: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    pdf = foreign_signed_pdf(folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")} | {
        "SIGNET_HOME": str(folder / "home"),
        "COLUMNS": "200",
    }
    signet = str(Path(sys.executable).parent / "signet")
    command = [signet, "verify", str(pdf), "--root", str(folder / "foreign-cert.pem"), *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_the_table_is_not_followed_by_json(tmp_path: Path) -> None:
    result = _verify(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Somebody Else" in result.stdout
    for line in result.stdout.splitlines():
        assert not line.lstrip().startswith("{"), f"stray JSON on stdout: {line!r}"
    assert "document valid" in result.stdout


def test_json_prints_only_the_report(tmp_path: Path) -> None:
    result = _verify(tmp_path, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)  # the whole of stdout is one JSON document
    assert report["valid"] is True
    assert report["signatures"][0]["signer"]["subject"].endswith("Common Name: Somebody Else")
