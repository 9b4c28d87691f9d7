"""`signet up`'s process supervision: start, check, restart and stop the services.

Each service runs in its own process group (uvicorn's master and its workers), so
that stopping it reaches every worker, also one whose master was killed and which
still serves the port.  A readiness answer counts only if it echoes the start nonce
given to the process just started (`NONCE_ENV`): leftovers of an earlier start
answer with another one, or none.  A crashed service is started again after a
back-off that doubles from `FIRST_DELAY` to `MAX_DELAY` and starts over once the
service has stayed up for `STABLE_AFTER` seconds.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

#: The environment variable that carries a process's start nonce to its `/readyz`.
NONCE_ENV = "SIGNET_START_NONCE"
FIRST_DELAY, MAX_DELAY, STABLE_AFTER = 1.0, 30.0, 60.0
#: How long a stopping service may take before its group is killed.
STOP_DEADLINE = 10.0


class PortTaken(Exception):
    """The port of a service is held by another process: nothing is started on it."""

    def __init__(self, name: str, host: str, port: int) -> None:
        holder = port_holder(port)
        super().__init__(
            f"port {port} ({host}) for the {name} is already in use"
            + (f" by {holder}" if holder else "")
            + ": stop that process or choose another --port"
        )


def port_holder(port: int) -> str | None:
    """Which process listens on `port`, if psutil is installed and may tell."""
    try:
        import psutil
    except ImportError:  # psutil is optional: the message then names the port only
        return None
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid is None:
                    return "another process"
                proc = psutil.Process(conn.pid)
                return f"process {conn.pid} ({' '.join(proc.cmdline())[:120] or proc.name()})"
    return None


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on `host:port` now (as uvicorn binds: SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"status {code}"


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@dataclass
class Service:
    """One supervised service: how to start it and what its current process is."""

    name: str
    command: list[str]
    env: dict[str, str]
    host: str
    port: int
    log: Callable[[str], None] = print
    process: subprocess.Popen[bytes] | None = None
    nonce: str = ""
    ready: bool = False
    started_at: float = 0.0
    delay: float = FIRST_DELAY
    next_start: float = 0.0
    _groups: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Start a new process (own session and process group) with a fresh nonce."""
        if not port_free(self.host, self.port):
            raise PortTaken(self.name, self.host, self.port)
        self.nonce = secrets.token_hex(12)
        self.ready = False
        # Own session: a terminal's Ctrl-C reaches `signet up` alone, which then stops
        # each service's group exactly once (a second SIGINT makes uvicorn abort).
        self.process = subprocess.Popen(
            self.command, env=self.env | {NONCE_ENV: self.nonce}, start_new_session=True
        )
        self._groups.append(self.process.pid)
        self.started_at = time.monotonic()

    def check_ready(self) -> bool:
        """True once the process just started answers ready with its own nonce."""
        try:
            response = httpx.get(f"{self.url}/readyz", timeout=2)
            body = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return False
        self.ready = isinstance(body, dict) and body.get("start_nonce") == self.nonce
        return self.ready

    def wait_ready(self, timeout: float = 60) -> str | None:
        """None once ready; otherwise why not (exited, or still not ready at the deadline)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return f"the {self.name} exited with {describe_exit(self.process.returncode)}"
            if self.check_ready():
                return None
            time.sleep(0.3)
        return f"the {self.name} did not become ready in {timeout:.0f} s"

    def supervise(self) -> None:
        """One look: restart a crashed process after its back-off, note readiness."""
        now = time.monotonic()
        if self.process is not None and self.process.poll() is not None:
            code = self.process.returncode
            if now - self.started_at >= STABLE_AFTER:
                self.delay = FIRST_DELAY
            self.stop_groups(deadline=3.0)  # its workers may still hold the port
            self.process = None
            self.next_start = now + self.delay
            self.log(
                f"the {self.name} exited with {describe_exit(code)}; "
                f"restarting it in {self.delay:.0f} s"
            )
            self.delay = min(self.delay * 2, MAX_DELAY)
        elif self.process is None and now >= self.next_start:
            try:
                self.start()
            except PortTaken as exc:
                self.next_start = now + self.delay
                self.log(f"{exc}; trying again in {self.delay:.0f} s")
                self.delay = min(self.delay * 2, MAX_DELAY)
                return
            self.log(f"the {self.name} started again (pid {self.pid})")
        elif self.process is not None and not self.ready and self.check_ready():
            self.log(f"the {self.name} is ready again at {self.url}")

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def stop_groups(self, deadline: float = STOP_DEADLINE) -> None:
        stop_all([self], deadline)


def stop_all(services: Sequence[Service], deadline: float = STOP_DEADLINE) -> None:
    """SIGTERM every service's process groups, wait until `deadline`, then SIGKILL.

    SIGTERM, not SIGINT: uvicorn's master passes it on to its workers, and a worker
    that gets it twice (from us and from its master) still shuts down gracefully.
    """
    groups = [g for s in services for g in s._groups if group_alive(g)]
    for pgid in groups:
        signal_group(pgid, signal.SIGTERM)
    if not _wait_gone(services, groups, deadline):
        for pgid in groups:
            signal_group(pgid, signal.SIGKILL)
        _wait_gone(services, groups, 3.0)
    for service in services:
        service._groups = [g for g in service._groups if group_alive(g)]


def _wait_gone(services: Sequence[Service], groups: list[int], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while True:
        _reap(services)
        if not any(group_alive(g) for g in groups):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)


def _reap(services: Sequence[Service]) -> None:
    """Collect exited masters (a zombie still counts as a member of its group)."""
    for service in services:
        if service.process is not None:
            service.process.poll()
