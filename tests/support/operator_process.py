"""The real operator as the chart's Deployment runs it (`kopf run` on our handlers), for
tests and benchmarks against the Kubernetes emulator."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

NAMESPACE = "signet"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class OperatorProcess:
    process: subprocess.Popen[str]
    metrics_url: str
    health_url: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()


def start_operator(
    url: str | None,
    readiness: Path,
    interval: float = 1,
    namespace: str = NAMESPACE,
    kubeconfig: Path | None = None,
) -> OperatorProcess:
    """Start `signet operator run` (the chart's entry point) against the API at `url`.

    `url`: the emulator, reached without credentials; None: a real cluster, reached
    with `kubeconfig` as an admin's `kopf run` would.  `readiness` is a JSON file
    ``{component: [status, body]}`` standing in for the services' /readyz (no pod runs
    here); `interval` is the Appliance timer's period.
    """
    env = {
        **os.environ,
        "SIGNET_OPERATOR_READINESS_FILE": str(readiness),
        "SIGNET_OPERATOR_INTERVAL": str(interval),
    }
    if url is not None:
        env["SIGNET_OPERATOR_API_URL"] = url
    elif kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    metrics, health = free_port(), free_port()
    command = [sys.executable, "-m", "signet.cli", "operator", "run", "--namespace", namespace]
    command += ["--metrics-port", str(metrics), "--liveness-port", str(health)]
    process = subprocess.Popen(
        [*command, "--bind", "127.0.0.1", "--verbose"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return OperatorProcess(
        process, f"http://127.0.0.1:{metrics}/metrics", f"http://127.0.0.1:{health}/healthz"
    )


def stop_operator(operator: OperatorProcess) -> None:
    process = operator.process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
