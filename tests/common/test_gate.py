"""Authentication before any work, against real servers on loopback (raw sockets).

Before the gate, the signer read a whole announced body before it checked the token:
each test here waits a few seconds for an answer that used to come only after the
last byte (or never).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI, Request
from signet.common.auth import Authorizer, TokenRegistry
from signet.common.gate import GateRules, RequestGate
from signet.common.http import install_error_handlers

from tests.conftest import SERVICE_TOKEN, free_port


def _raw(port: int, head: str, body: bytes = b"", *, wait: float = 5.0) -> tuple[str, float]:
    """Send a request head (and the start of a body), return the status line and how long
    the answer took.  The socket is left open, as a slow or lying client would."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        try:
            answer = sock.recv(4096).decode("latin-1", "replace")
        except TimeoutError:
            answer = ""
    return answer.split("\r\n", 1)[0], time.monotonic() - started


def _head(path: str, length: int, *, token: str | None, kind: str = "application/json") -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {kind}"]
    lines.append(f"Content-Length: {length}")
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return "\r\n".join(lines) + "\r\n"


def test_no_token_is_refused_before_the_body(signer_url: str) -> None:
    port = int(signer_url.rsplit(":", 1)[1])
    status, took = _raw(port, _head("/v1/certificates", 500 * 1024 * 1024, token=None), b"{")
    assert status == "HTTP/1.1 401 Unauthorized"
    assert took < 3
    status, _ = _raw(port, _head("/v1/sign", 305 * 1024 * 1024, token="wrong"), b"--x")
    assert status == "HTTP/1.1 401 Unauthorized"


def test_an_oversized_body_is_refused_unread(signer_url: str) -> None:
    port = int(signer_url.rsplit(":", 1)[1])
    status, took = _raw(port, _head("/v1/verify", 2 * 1024**3, token=SERVICE_TOKEN), b"--x")
    assert status == "HTTP/1.1 413 Request Entity Too Large"
    assert took < 3
    # a JSON route takes a small body only
    status, _ = _raw(port, _head("/v1/digests/sign", 20 * 1024 * 1024, token=SERVICE_TOKEN))
    assert status == "HTTP/1.1 413 Request Entity Too Large"


def test_public_protocols_stay_open(signer_url: str) -> None:
    port = int(signer_url.rsplit(":", 1)[1])
    status, _ = _raw(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
    assert status == "HTTP/1.1 200 OK"
    status, _ = _raw(port, "GET /ca/root.cer HTTP/1.1\r\nHost: x\r\n")
    assert status == "HTTP/1.1 200 OK"
    status, _ = _raw(port, _head("/ocsp", 1024 * 1024, token=None, kind="application/ocsp-request"))
    assert status == "HTTP/1.1 413 Request Entity Too Large"  # open, but bounded
    # RFC 3161 clients carry no token either: the TSA is open like OCSP, and bounded
    status, _ = _raw(
        port, _head("/tsa", 1024 * 1024, token=None, kind="application/timestamp-query")
    )
    assert status == "HTTP/1.1 413 Request Entity Too Large"


@pytest.fixture(scope="module")
def gated() -> Iterator[int]:
    """A small service behind the gate with a short idle timeout and a 1 KiB limit."""
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    app.add_middleware(
        RequestGate,
        authorize=Authorizer(TokenRegistry.load(admin_token=SERVICE_TOKEN), rules=()),
        rules=GateRules(default_limit=1024, idle_timeout=0.5),
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(timeout=5)


def test_a_stalled_body_times_out(gated: int) -> None:
    status, took = _raw(gated, _head("/echo", 1000, token=SERVICE_TOKEN), b'{"a"')
    assert status == "HTTP/1.1 408 Request Timeout"
    assert 0.4 < took < 3


@pytest.fixture(scope="module")
def rated() -> Iterator[int]:
    """The gate with a 1 s idle timeout and, after 1 s, at least 1 KiB/s on average."""
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    app.add_middleware(
        RequestGate,
        authorize=Authorizer(TokenRegistry.load(admin_token=SERVICE_TOKEN), rules=()),
        rules=GateRules(idle_timeout=1.0, min_rate=1024, rate_grace=1.0),
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(timeout=5)


def _drip(port: int, pieces: int, size: int, pause: float) -> str:
    """A 100 KiB body announced, sent as `pieces` pieces of `size` bytes `pause` apart
    (each within the idle timeout), the rest at once; the status line."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_head("/echo", 100 * 1024, token=SERVICE_TOKEN).encode() + b"\r\n")
        try:
            for _ in range(pieces):
                sock.sendall(b"a" * size)
                time.sleep(pause)
            sock.sendall(b"a" * (100 * 1024 - pieces * size))
        except OSError:
            pass
        return sock.recv(4096).decode("latin-1").split("\r\n", 1)[0]


def test_a_dripped_body_is_cut_off_at_the_minimum_rate(rated: int) -> None:
    """A byte every 0.5 s never trips the 1 s idle timeout; the average rate does."""
    before = _refused("slow_body")
    assert _drip(rated, pieces=8, size=1, pause=0.5) == "HTTP/1.1 408 Request Timeout"
    assert _refused("slow_body") == before + 1


def test_a_slow_but_steady_body_is_read(rated: int) -> None:
    assert _drip(rated, pieces=8, size=2048, pause=0.25) == "HTTP/1.1 200 OK"


def test_a_chunked_body_is_counted(gated: int) -> None:
    head = (
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        f"Authorization: Bearer {SERVICE_TOKEN}\r\n"
    )
    chunk = b"800\r\n" + b"a" * 0x800 + b"\r\n"
    status, _ = _raw(gated, head, chunk)
    assert status == "HTTP/1.1 413 Request Entity Too Large"


def test_a_body_within_the_limit_is_read(gated: int) -> None:
    status, _ = _raw(gated, _head("/echo", 10, token=SERVICE_TOKEN), b"0123456789")
    assert status == "HTTP/1.1 200 OK"


def _refused(reason: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("signet_gate_refused_total", {"reason": reason}) or 0.0


def test_each_refusal_is_counted_by_reason(gated: int) -> None:
    """signet_gate_refused_total{reason} in /metrics: which guard refused, not just 4xx."""
    before = {r: _refused(r) for r in ("no_token", "too_large", "slow_body")}
    status, _ = _raw(gated, _head("/echo", 10, token=None), b"0123456789")
    assert status == "HTTP/1.1 401 Unauthorized"
    status, _ = _raw(gated, _head("/echo", 5000, token=SERVICE_TOKEN), b"{")
    assert status == "HTTP/1.1 413 Request Entity Too Large"  # declared: refused unread
    status, _ = _raw(gated, _head("/echo", 1000, token=SERVICE_TOKEN), b'{"a"')
    assert status == "HTTP/1.1 408 Request Timeout"
    status, _ = _raw(gated, _head("/echo", 10, token=SERVICE_TOKEN), b"0123456789")
    assert status == "HTTP/1.1 200 OK"  # an accepted request counts nowhere
    after = {r: _refused(r) for r in before}
    assert {r: after[r] - before[r] for r in before} == {
        "no_token": 1,
        "too_large": 1,
        "slow_body": 1,
    }
