"""A private PostgreSQL server for the tests: initdb in a temp dir, on a free loopback port.

Debian's `postgresql` package (installed by scripts/bootstrap.sh) provides the
binaries; the cluster is the test's own (trust authentication on 127.0.0.1 and
a socket in its folder, fsync off: the tests check behaviour, not durability
of PostgreSQL itself).  PostgreSQL refuses to run as root, so as root the
server runs as the `postgres` system user.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


def _bindir() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not versions:
        raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
    return versions[-1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    data: Path
    port: int
    user: str = "signet"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        _run(
            [
                str(_bindir() / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                name,
            ]
        )
        return self.url(name)

    def stop(self) -> None:
        try:
            _run([str(_bindir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"])
        finally:
            shutil.rmtree(self.data.parent, ignore_errors=True)


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _run(command: list[str]) -> None:
    result = subprocess.run(_as_server_user(command), capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr or result.stdout}")


def start_postgres() -> PostgresServer:
    """Start a server in a new folder directly under the system's temp dir: the server
    user must reach it, and pytest's own temp dirs are private to the test user."""
    folder = Path(tempfile.mkdtemp(prefix="signet-postgres-"))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    bindir = _bindir()
    _run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "signet",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]
    )
    port = _free_port()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    _run(
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(folder / "log"),
            "-w",
            "start",
        ]
    )
    return PostgresServer(data, port)
