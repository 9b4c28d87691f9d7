"""`signet up` as tests meet it: the real command in a temp SIGNET_HOME on free ports,
three services as separate processes (signer, storage, portal)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import free_port_run

SIGNET = str(Path(sys.executable).parent / "signet")


@dataclass
class Appliance:
    process: subprocess.Popen[bytes]
    port: int
    home: Path
    log: Path
    #: the portal's database: "sqlite" (the embedded default) or "postgresql"
    tier: str = "sqlite"
    #: the environment `signet up` was given beyond SIGNET_HOME (a CLI beside it needs it)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def portal_url(self) -> str:
        return f"http://127.0.0.1:{self.port + 2}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def admin_key(self) -> str:
        return (self.home / "portal" / "admin-api-key").read_text().strip()

    def portal(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.portal_url, headers=headers, timeout=60)

    def printed(self, label: str) -> str:
        found = re.search(rf"^{re.escape(label)}\s+(\S+)", self.output(), re.MULTILINE)
        assert found, self.output()
        return found.group(1)


@contextmanager
def running_appliance(home: Path, **env: str) -> Iterator[Appliance]:
    log = home.parent / f"{home.name}-up.log"
    port = free_port_run(3)
    environment = (
        {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SIGNET_") and k != "SOFTHSM2_CONF"
        }
        | {"SIGNET_HOME": str(home), "COLUMNS": "200"}
        | env
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [SIGNET, "up", "--port", str(port), "--workers", "1"],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    appliance = Appliance(process, port, home, log, extra_env=dict(env))
    try:
        deadline = time.monotonic() + 150
        # the banner's last line: every line before it (credentials, keys) is printed
        while "Ctrl-C stops the appliance" not in appliance.output():
            assert process.poll() is None, appliance.output()
            assert time.monotonic() < deadline, appliance.output()
            time.sleep(0.3)
        yield appliance
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
