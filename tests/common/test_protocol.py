"""The services' HTTP protocol (`signet.common.protocol`) on a real uvicorn server.

uvicorn kept a request head of any length: a 32 MiB header, without a token, cost each
service 64 MiB for the connection (the ASGI gate only sees complete heads).  Each test
talks raw HTTP/1.1 over loopback, as a hostile client would.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI, Request
from signet.common.protocol import HEAD_LIMIT, GuardedProtocol

from tests.conftest import free_port

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    app = FastAPI()

    @app.api_route("/echo", methods=["GET", "POST"])
    async def echo(request: Request) -> dict[str, int]:
        return {"body": len(await request.body()), "headers": len(request.headers)}

    chosen = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=chosen, log_level="error", http=GuardedProtocol)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield chosen
    server.should_exit = True
    thread.join(timeout=10)


def _refused(reason: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("signet_gate_refused_total", {"reason": reason}) or 0.0


def _answer(sock: socket.socket) -> tuple[int, dict[str, object]]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body[: _length(data)])


def _answers(sock: socket.socket, count: int) -> list[tuple[int, dict[str, object]]]:
    """`count` pipelined answers, read from one buffer (a read may hold several)."""
    data, found = b"", []
    while len(found) < count:
        if b"\r\n\r\n" in data and len(data.split(b"\r\n\r\n", 1)[1]) >= _length(data):
            head, _, rest = data.partition(b"\r\n\r\n")
            length = _length(data)
            found.append((int(head.split(b" ")[1]), json.loads(rest[:length])))
            data = rest[length:]
            continue
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return found


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def _flood(port: int, start: bytes, total: int) -> tuple[int, dict[str, object], int]:
    """`start`, then up to `total` bytes of one header value: the answer and how much
    the server took before it closed."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(start)
        try:
            while sent < total:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except OSError:  # closed after its answer
            pass
        return (*_answer(sock), sent)


@pytest.mark.parametrize(
    "start",
    [b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: ", b"GET /echo?"],
    ids=["a-32-mib-header", "a-32-mib-request-line"],
)
def test_a_head_over_the_limit_is_refused_431(port: int, start: bytes) -> None:
    before = _refused("head_too_large")
    status, body, sent = _flood(port, start, 32 * MIB)
    assert status == 431
    assert _refused("head_too_large") == before + 1
    assert body["error"] == "headers_too_large"
    # closed long before the 32 MiB (what was sent includes both sockets' kernel
    # buffers, a few MiB on loopback; the process's memory is tests/e2e/test_peak_rss.py's)
    assert HEAD_LIMIT < sent < 16 * MIB, f"the client got {sent / MIB:.1f} MiB out"


def test_a_head_the_parser_cannot_read_is_a_json_400(port: int) -> None:
    before = _refused("bad_head")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Bad: a\x1bb\x00\r\n\r\n")
        status, body = _answer(sock)
    assert status == 400
    assert body == {"error": "invalid_request", "detail": "the request is not valid HTTP/1.1"}
    assert _refused("bad_head") == before + 1


def test_large_heads_under_the_limit_and_bodies_after_them_pass(port: int) -> None:
    """100 KiB of headers is served, and on one kept-alive connection a 4 MiB body
    followed by the next request's head never counts as a head."""
    headers = b"".join(b"X-H%d: %s\r\n" % (n, b"v" * 1000) for n in range(100))
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        assert _answer(sock) == (200, {"body": 0, "headers": 101})
        body = b"b" * (4 * MIB)
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
            + b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"
        )  # fmt: skip
        # both answers may come in one read: parse them from one buffer
        assert _answers(sock, 2) == [
            (200, {"body": len(body), "headers": 2}),
            (200, {"body": 0, "headers": 1}),
        ]


class _QuickHeads(GuardedProtocol):
    head_timeout = 1.0


@pytest.fixture(scope="module")
def quick_port() -> Iterator[int]:
    """A server whose heads must be complete within 1 s (the default is `HEAD_TIMEOUT`)."""
    app = FastAPI()

    @app.get("/echo")
    async def echo() -> dict[str, str]:
        return {"status": "ok"}

    chosen = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=chosen, log_level="error", http=_QuickHeads)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield chosen
    server.should_exit = True
    thread.join(timeout=10)


def test_a_connection_that_sends_nothing_is_closed_with_408(quick_port: int) -> None:
    before = _refused("slow_head")
    with socket.create_connection(("127.0.0.1", quick_port), timeout=10) as sock:
        started = time.monotonic()
        status, body = _answer(sock)
        took = time.monotonic() - started
    assert status == 408 and body["error"] == "request_timeout"
    assert 0.8 < took < 5
    assert _refused("slow_head") == before + 1


def test_a_head_dripped_line_by_line_is_cut_off(quick_port: int) -> None:
    """A header line every 0.3 s kept a connection for as long as the client liked."""
    with socket.create_connection(("127.0.0.1", quick_port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        try:
            for n in range(30):
                sock.sendall(b"X-Drip-%d: a\r\n" % n)
                time.sleep(0.3)
        except OSError:  # closed
            pass
        status, body = _answer(sock)
    assert status == 408 and body["error"] == "request_timeout"
    assert time.monotonic() - started < 5


def test_a_kept_alive_connection_times_each_head_from_its_first_byte(quick_port: int) -> None:
    with socket.create_connection(("127.0.0.1", quick_port), timeout=10) as sock:
        for _ in range(3):  # each request within the limit, together over it
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
            time.sleep(0.6)
            sock.sendall(b"\r\n")
            assert _answer(sock) == (200, {"status": "ok"})
