"""The signer on PostgreSQL, as a cluster runs it (the Appliance requires a database).

Each test is a fresh installation (its own SIGNET_HOME and SoftHSM token) driven
through the `signet` command, in subprocesses: the session's token and SQLite
registry stay untouched.  PostgreSQL is a private server started for the session.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from asn1crypto import tsp

from tests.conftest import free_port
from tests.support.pdfs import make_pdf
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _env(home: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNET_", "SOFTHSM2_"))}
    return env | {"SIGNET_HOME": str(home), "SIGNET_SIGNER_DATABASE_URL": database_url}


def _signet(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signet.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ceremony_signing_and_revocation_live_in_postgres(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.create_database("signer_cli")
    env = _env(tmp_path / "home", url)
    assert _signet(env, "ca", "init").returncode == 0
    issued = _signet(env, "ca", "issue", "--name", "Li Wei", "--email", "li@example.com")
    assert issued.returncode == 0, issued.stderr
    document = tmp_path / "contract.pdf"
    document.write_bytes(make_pdf())
    signed = _signet(
        env, "sign", str(document), "--out", str(tmp_path / "s.pdf"), "--level", "B-LT"
    )
    assert signed.returncode == 0, signed.stderr
    verified = _signet(env, "verify", str(tmp_path / "s.pdf"))
    assert verified.returncode == 0, verified.stdout + verified.stderr

    engine = sa.create_engine(url)
    with engine.connect() as connection:
        kinds = [row[0] for row in connection.execute(sa.text("SELECT kind FROM certificates"))]
        counter = sa.text("SELECT value FROM counters WHERE name = 'tsa-serial'")
        serial = connection.execute(counter).scalar_one()
    engine.dispose()
    # root, issuing, TSA, Li Wei's certificate and the organisation seal, all in PostgreSQL
    assert len(kinds) >= 5 and {"root", "issuing", "tsa"} <= set(kinds)
    assert serial >= 1  # the TSA's serial counter lives there too
    assert not (tmp_path / "home" / "signer" / "signer.db").exists()


def _stamp_many(base_url: str, count: int) -> list[int]:
    async def run() -> list[int]:
        limit = asyncio.Semaphore(32)
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:

            async def one() -> int:
                query = tsp.TimeStampReq(
                    {
                        "version": 1,
                        "message_imprint": {
                            "hash_algorithm": {"algorithm": "sha256"},
                            "hashed_message": hashlib.sha256(secrets.token_bytes(16)).digest(),
                        },
                        "nonce": secrets.randbits(62),
                    }
                ).dump()
                async with limit:
                    reply = await client.post(
                        "/tsa",
                        content=query,
                        headers={"Content-Type": "application/timestamp-query"},
                    )
                reply.raise_for_status()
                info = tsp.TimeStampResp.load(reply.content)["time_stamp_token"]["content"][
                    "encap_content_info"
                ]["content"].parsed
                return int(info["serial_number"].native)

            return list(await asyncio.gather(*(one() for _ in range(count))))

    return asyncio.run(run())


def _serve(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "signet.cli",
            "signer",
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the signer did not become ready")


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def test_tsa_serials_stay_unique_across_workers_and_restarts(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """Two worker processes draw serial blocks from one PostgreSQL counter; a restart
    continues above every serial handed out before."""
    env = _env(tmp_path / "home", postgres.create_database("signer_tsa"))
    assert _signet(env, "ca", "init").returncode == 0
    port = free_port()
    server = _serve(env, port)
    try:
        first = _stamp_many(f"http://127.0.0.1:{port}", 600)
    finally:
        _stop(server)
    assert len(set(first)) == len(first)
    server = _serve(env, port)
    try:
        second = _stamp_many(f"http://127.0.0.1:{port}", 200)
    finally:
        _stop(server)
    assert len(set(second)) == len(second)
    assert min(second) > max(first)
