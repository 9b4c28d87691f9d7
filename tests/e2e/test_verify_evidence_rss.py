"""A zip-bomb evidence package to `signet verify-evidence`, in bounded memory.

No service takes a foreign package: the consumer is the offline verifier, run here
as its own process, which writes its own ``VmHWM`` as it exits (a forked child's
``ru_maxrss`` would count the test's pages from before ``exec``).  The issue's 612 KB
bomb grew the verifier to 1.35 GB; after it, each service of `signet up` still answers.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.e2e.test_peak_rss import MIB, MODULES, answers_ok
from tests.support.appliance import SIGNET, Appliance

pytestmark = pytest.mark.slow


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _lie(package: bytes, name: bytes, size: int) -> bytes:
    """The local and central headers claim `size` inflated bytes for `name`."""
    data = bytearray(package)
    for signature, offset, name_at in ((b"PK\x01\x02", 24, 46), (b"PK\x03\x04", 22, 30)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            if data[start + name_at : start + name_at + len(name)] == name:
                struct.pack_into("<I", data, start + offset, size)
            start += 4
    return bytes(data)


#: Runs the real CLI in a process that, as it exits, writes its own VmHWM to a file: a
#: forked child's ``ru_maxrss`` would include the parent's pages from before ``exec``.
_MEASURED_CLI = """
import atexit, os, sys
from pathlib import Path

def _peak():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            Path(os.environ["PEAK_FILE"]).write_text(line.split()[1])

atexit.register(_peak)
from signet.cli.main import app
sys.argv[0] = "signet"
app()
"""


def _verify_evidence(
    package: Path, root: Path, appliance: Appliance, peak_file: Path
) -> tuple[int, str, int]:
    """`signet verify-evidence` as its own process: exit code, its JSON, peak RSS (bytes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    env |= {"SIGNET_HOME": str(appliance.home), "PEAK_FILE": str(peak_file)}
    python = str(Path(SIGNET).parent / "python")
    result = subprocess.run(
        [python, "-c", _MEASURED_CLI, "verify-evidence", str(package), "--root", str(root),
         "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, int(peak_file.read_text()) * 1024


@pytest.mark.parametrize("lying", [False, True], ids=["honest-directory", "lying-directory"])
def test_a_zip_bomb_evidence_package_is_refused_in_bounded_memory(
    appliance: Appliance, tmp_path: Path, lying: bool
) -> None:
    """1 GiB of zeros in about 1 MB; the lying copy's directory claims 1,000 bytes, so
    only the inflating reader's own count can stop it (the issue's 612 KB bomb grew the
    verifier to 1.35 GB)."""
    summary = b"\0" * (1024 * MIB)
    bomb = _zip([("manifest.json", b"{}"), ("summary.txt", summary)])
    del summary
    if lying:
        bomb = _lie(bomb, b"summary.txt", 1000)
    assert len(bomb) < 2 * MIB
    package = tmp_path / "bomb.zip"
    package.write_bytes(bomb)
    root = appliance.home / "signer" / "ca" / "root.pem"
    code, output, peak = _verify_evidence(package, root, appliance, tmp_path / "peak")
    assert code != 0, output
    verdict = json.loads(output)
    assert verdict["intact"] is False and verdict["failed"], verdict
    assert "Traceback" not in output
    print(f"verify-evidence zip bomb ({'lying' if lying else 'honest'}): peak {peak / MIB:.0f} MiB")
    assert peak < 256 * MIB, f"verify-evidence peaked at {peak / MIB:.0f} MiB"
    for service in MODULES:
        answers_ok(appliance, service)
