"""`signet up` as a supervisor: the real command, in a temp SIGNET_HOME, on free ports.

One appliance serves the module (starting one costs ~15 s on this machine): a
killed storage service is restarted and answers with a new start nonce; then
SIGTERM with a long poll open stops it promptly and leaves no process of its
services' process groups behind.  Batch workers are off in it (an env setting)
so that a batch stays "running" for the long poll.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import free_port_run
from tests.support.pdfs import make_pdf

SIGNET = str(Path(sys.executable).parent / "signet")


def _environment(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("SIGNET_") and k != "SOFTHSM2_CONF"
    }
    return env | {"SIGNET_HOME": str(home), "COLUMNS": "200"} | extra


@dataclass
class Appliance:
    process: subprocess.Popen[bytes]
    port: int
    home: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def readyz(self, port: int) -> dict[str, object] | None:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
        except httpx.HTTPError:
            return None
        body: dict[str, object] = response.json()
        return body if response.status_code == 200 else None

    def service(self, module: str) -> psutil.Process:
        for child in psutil.Process(self.process.pid).children():
            if any(module in part for part in child.cmdline()):
                return child
        raise AssertionError(f"no {module} child of signet up:\n{self.output()}")


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    home = tmp_path_factory.mktemp("home")
    log = home.parent / "up.log"
    port = free_port_run()
    env = _environment(home, SIGNET_SIGNER_BATCH_WORKERS="0")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [SIGNET, "up", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Appliance(process, port, home, log)
    deadline = time.monotonic() + 120
    while "Signet is up" not in running.output():
        assert process.poll() is None, running.output()
        assert time.monotonic() < deadline, running.output()
        time.sleep(0.3)
    yield running
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_ready_answers_carry_the_nonce_of_the_process_started(appliance: Appliance) -> None:
    for port, module in ((appliance.port, "signet.signer.app"), (appliance.port + 1, "storage")):
        body = appliance.readyz(port)
        assert body is not None
        nonce = appliance.service(module).environ()["SIGNET_START_NONCE"]
        assert body["start_nonce"] == nonce and len(nonce) >= 16
    # The embedded default trusts the laptop's clock, and its signer says so.
    signer = appliance.service("signet.signer.app").environ()
    assert signer["SIGNET_SIGNER_TIME_TRUST"] == "trusted-host"
    assert (appliance.readyz(appliance.port) or {})["time"] == "trusted-host"


def test_a_killed_storage_is_restarted_with_a_new_nonce(appliance: Appliance) -> None:
    storage_port = appliance.port + 1
    before = appliance.readyz(storage_port)
    assert before is not None
    appliance.service("signet.storage.app").kill()
    deadline = time.monotonic() + 40
    after = None
    while time.monotonic() < deadline:
        assert appliance.process.poll() is None, appliance.output()
        after = appliance.readyz(storage_port)
        if after is not None and after["start_nonce"] != before["start_nonce"]:
            break
        time.sleep(0.3)
    assert after is not None and after["start_nonce"] != before["start_nonce"], appliance.output()
    # The supervisor polls readiness on its own clock: our poll may see the new
    # process ready a moment before the supervisor logs it.
    while "the storage is ready again" not in appliance.output():
        assert time.monotonic() < deadline, appliance.output()
        time.sleep(0.3)
    assert "the storage exited with signal SIGKILL; restarting it in 1 s" in appliance.output()


def test_sigterm_with_a_long_poll_open_stops_at_once_and_leaves_no_child(
    appliance: Appliance,
) -> None:
    token = (appliance.home / "service-token").read_text().strip()
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{appliance.port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=70,
    )
    created = client.post(
        "/v1/batches",
        files=[("documents", ("a.pdf", make_pdf(1)))],
        data={"options": json.dumps({"key_label": "signet-default-seal", "level": "B-B"})},
    )
    assert created.status_code == 201, created.text
    batch_id = created.json()["id"]
    answers: list[httpx.Response] = []
    poll = threading.Thread(
        target=lambda: answers.append(client.get(f"/v1/batches/{batch_id}?wait=50"))
    )
    poll.start()
    time.sleep(1.5)  # the long poll is open (no worker: the batch stays queued)
    assert not answers
    up = psutil.Process(appliance.process.pid)
    family = [up, *up.children(recursive=True)]
    groups = {os.getpgid(p.pid) for p in family if p.pid != up.pid}
    assert len(family) >= 5  # up, the signer's master and 2 workers, storage

    started = time.monotonic()
    appliance.process.send_signal(signal.SIGTERM)
    appliance.process.wait(timeout=30)
    took = time.monotonic() - started
    poll.join(timeout=10)

    assert took < 8, f"signet up took {took:.1f} s to stop"
    assert answers and answers[0].status_code == 200, answers
    assert answers[0].json()["state"] != "finished"
    left = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) in groups and proc.info["status"] != psutil.STATUS_ZOMBIE:
                left.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    assert not left, f"left behind: {left}"
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family[1:])


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = int(holder.getsockname()[1])
        started = time.monotonic()
        result = subprocess.run(
            [SIGNET, "up", "--port", str(port), "--exit-when-ready"],
            env=_environment(home),
            capture_output=True,
            text=True,
            timeout=120,
        )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"port {port} (127.0.0.1) for the signer is already in use" in output
    assert f"process {os.getpid()}" in output  # psutil names the holder: this test
    assert "Signet is up" not in output
    assert not (home / "softhsm").exists(), "refused before any work"
    assert time.monotonic() - started < 30


def test_up_with_the_s3_vault_says_so(tmp_path: Path) -> None:
    """The banner names the vault the admin configured (it said "filesystem vault" for
    every vault), checked against a real S3 server with Object Lock."""
    from tests.support.appliance import running_appliance
    from tests.support.seaweed import start_seaweedfs, stop

    (tmp_path / "seaweedfs").mkdir()
    s3, weed = start_seaweedfs(tmp_path / "seaweedfs")
    try:
        env = {
            "SIGNET_STORAGE_VAULT": "s3",
            "SIGNET_STORAGE_S3_ENDPOINT": s3.endpoint,
            "SIGNET_STORAGE_S3_ACCESS_KEY": s3.access_key,
            "SIGNET_STORAGE_S3_SECRET_KEY": s3.secret_key,
            "SIGNET_STORAGE_S3_BUCKET": "signet-up-banner",
        }
        with running_appliance(tmp_path / "home", **env) as appliance:
            output = appliance.output()
            assert f"S3 vault {s3.endpoint}/signet-up-banner with Object Lock" in output
            assert "filesystem vault" not in output
            storage = httpx.get(f"http://127.0.0.1:{appliance.port + 1}/readyz").json()
            assert storage["status"] == "ready" and storage["vault"] == "s3"
    finally:
        stop(weed)
