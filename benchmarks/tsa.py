"""The TSA's time check: `POST /tsa` with it on and off (`python -m benchmarks tsa`).

Off: ``time_trust=trusted-host`` and no references (the cached verdict is a constant).
On: ``time_trust=kernel`` when this machine's kernel clock is synchronised, else (a
container's clock often is not, and kernel mode would refuse every stamp)
``trusted-host`` with an NTP reference on loopback (tests/support/sntp.py) polled in
the background and judged at every verdict; either way the verdict is re-judged every
second (``time_check_interval_s`` 1).  Rounds alternate off/on (BENCH_REPEAT, default
3), each on a fresh `signet up` with 2 workers, 8 client threads; the medians and
their ratio are printed (goal ≥ 0.9).  The in-process cost of one cached check and
of one ``adjtimex`` read are printed too.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from signet.signer.pki.timesource import KernelClock, TimeGuard, TimeTrust

from benchmarks.signer import _env, timed
from tests.support.sntp import SntpServer

N = int(os.environ.get("BENCH_N", "200"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
PORT = 18121


def _serve(home: Path, extra: dict[str, str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "signet.cli", "up", "--port", str(PORT), "--workers", "2"],
        env={**_env(home), **extra},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("Ctrl-C"):
            break
    return process


def _rate(home: Path, extra: dict[str, str], query: bytes) -> tuple[float, float, float, str]:
    process = _serve(home, extra)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=60) as client:
            time.sleep(1.5)  # a first reference answer, and past the first verdict
            state = str(client.get("/readyz").json().get("time"))
            rate, p50, p99 = timed(
                lambda: client.post("/tsa", content=query).raise_for_status(), N * 10, threads=8
            )
            return rate, p50, p99, state
    finally:
        process.terminate()
        process.wait(timeout=30)


def _per_call_us(call: object, n: int) -> float:
    assert callable(call)
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="signet-bench-tsa-"))
    home = work / "home"
    subprocess.run(
        [sys.executable, "-m", "signet.cli", "ca", "init"],
        env=_env(home),
        capture_output=True,
        check=True,
    )
    query = subprocess.run(
        ["openssl", "ts", "-query", "-digest", "00" * 32, "-sha256", "-cert"],
        capture_output=True,
        check=True,
    ).stdout
    kernel = KernelClock()
    status = kernel.kernel_status()
    synchronised = kernel.read().synchronised
    print(
        f"kernel clock: adjtimex state {status.state}, status {status.status:#x}, esterror "
        f"{status.estimated_error_us} us: {'synchronised' if synchronised else 'unsynchronised'}"
    )
    guard = TimeGuard(TimeTrust.KERNEL, 500, clock=kernel, interval_s=1.0)
    guard.status()
    print(f"in-process: one cached check {_per_call_us(guard.status, 200_000):.3f} us")
    print(f"            one adjtimex read {_per_call_us(kernel.read, 20_000):.2f} us")

    with SntpServer() as reference:
        off = {"SIGNET_SIGNER_TIME_TRUST": "trusted-host"}
        on = {
            "SIGNET_SIGNER_TIME_TRUST": "kernel" if synchronised else "trusted-host",
            "SIGNET_SIGNER_TIME_REFERENCES": f'["{reference.address}"]',
            "SIGNET_SIGNER_TIME_REFERENCE_INTERVAL_S": "1",
            "SIGNET_SIGNER_TIME_CHECK_INTERVAL_S": "1",
        }
        rates: dict[str, list[float]] = {"off": [], "on": []}
        for round_ in range(REPEAT):
            for name, extra in (("off", off), ("on", on)):
                rate, p50, p99, state = _rate(home, extra, query)
                rates[name].append(rate)
                print(
                    f"round {round_ + 1} check {name:3} (time: {state:14}) POST /tsa "
                    f"{rate:8.1f}/s p50 {p50:5.2f} ms p99 {p99:6.2f} ms"
                )
        print(f"reference queries answered: {reference.queries}")
    off_rate, on_rate = statistics.median(rates["off"]), statistics.median(rates["on"])
    print(
        f"\nPOST /tsa, 2 workers, 8 httpx threads, median of {REPEAT}: check off "
        f"{off_rate:.1f}/s, check on {on_rate:.1f}/s, ratio {on_rate / off_rate:.3f} "
        "(goal >= 0.9)"
    )
