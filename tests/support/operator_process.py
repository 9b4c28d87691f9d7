"""The real operator as the chart's Deployment runs it (`kopf run` on our handlers), for
tests and benchmarks against the Kubernetes emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

NAMESPACE = "signet"


def start_operator(
    url: str, readiness: Path, interval: float = 1, namespace: str = NAMESPACE
) -> subprocess.Popen[str]:
    """Start the operator against the API at `url` (no credentials: the emulator).

    `readiness` is a JSON file ``{component: [status, body]}`` standing in for the
    services' /readyz (no pod runs here); `interval` is the Appliance timer's period.
    """
    env = {
        **os.environ,
        "SIGNET_OPERATOR_API_URL": url,
        "SIGNET_OPERATOR_READINESS_FILE": str(readiness),
        "SIGNET_OPERATOR_INTERVAL": str(interval),
    }
    command = [sys.executable, "-m", "kopf", "run", "--standalone", "-n", namespace]
    return subprocess.Popen(
        [*command, "--verbose", "-m", "signet.operator.handlers"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )


def stop_operator(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
