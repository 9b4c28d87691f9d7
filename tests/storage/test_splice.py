"""Spliced GET bodies (`signet.storage.api.splice`): the kernel moves exactly the body's
bytes from the store's socket to the client's, and uvicorn's keep-alive, pipelining and
hang-ups behave as with a streamed body.

The server is real: uvicorn with `SpliceProtocol` on loopback, the storage app on
SeaweedFS, a client on a raw socket where the wire matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from signet.storage.api import splice as splice_module
from signet.storage.api.splice import SPLICE_PROTOCOL, ClientGone, SourceEnded, splice
from signet.storage.app import create_app
from signet.storage.vault import CHUNK

from tests.conftest import SERVICE_TOKEN
from tests.storage.test_transfers import _settings
from tests.support.seaweed import S3Server

AUTH = {"Authorization": f"Bearer {SERVICE_TOKEN}"}


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Two ends of a loopback TCP connection, the first non-blocking (as a loop's)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        near = socket.create_connection(listener.getsockname())
        far, _ = listener.accept()
    near.setblocking(False)
    return near, far


def _drain(sock: socket.socket, into: bytearray, stop: threading.Event) -> None:
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            piece = sock.recv(1 << 20)
        except TimeoutError:
            continue
        if not piece:
            return
        into.extend(piece)


def _wait_for(received: bytearray, size: int) -> None:
    deadline = time.monotonic() + 10
    while len(received) < size and time.monotonic() < deadline:
        time.sleep(0.01)


def test_splice_moves_exactly_the_count_and_leaves_what_follows() -> None:
    source, store = _tcp_pair()
    sink, client = _tcp_pair()
    body, after = os.urandom(3 * 1024 * 1024 + 17), b"next response"
    received = bytearray()
    stop = threading.Event()
    reader = threading.Thread(target=_drain, args=(client, received, stop))
    writer = threading.Thread(target=store.sendall, args=(body + after,))
    reader.start()
    writer.start()
    try:
        asyncio.run(splice(source.fileno(), sink.fileno(), len(body)))
        writer.join()
        _wait_for(received, len(body))
        source.setblocking(True)
        assert source.recv(100) == after  # the next bytes are still on the source
    finally:
        stop.set()
        reader.join()
        for s in (source, store, sink, client):
            s.close()
    assert bytes(received) == body


def test_splice_reports_a_source_that_ends_early_and_a_sink_that_is_gone() -> None:
    source, store = _tcp_pair()
    sink, client = _tcp_pair()
    store.sendall(b"x" * 1000)
    store.close()
    received = bytearray()
    stop = threading.Event()
    reader = threading.Thread(target=_drain, args=(client, received, stop))
    reader.start()
    try:
        with pytest.raises(SourceEnded):
            asyncio.run(splice(source.fileno(), sink.fileno(), 5000))
        _wait_for(received, 1000)
    finally:
        stop.set()
        reader.join()
    assert bytes(received) == b"x" * 1000
    client.close()
    source2, store2 = _tcp_pair()

    def send_much() -> None:
        with contextlib.suppress(OSError):  # reset once the splice gives up
            store2.sendall(b"y" * (8 * 1024 * 1024))

    writer = threading.Thread(target=send_much)
    writer.start()
    try:
        with pytest.raises(ClientGone):
            asyncio.run(splice(source2.fileno(), sink.fileno(), 8 * 1024 * 1024))
    finally:
        source2.close()  # the writer's sendall then fails
        writer.join()
        for s in (store2, sink, source):
            s.close()


@contextlib.contextmanager
def serving(app: Any, http: str, loop: str) -> Iterator[int]:
    """`app` under uvicorn with the `http` protocol and `loop`, in a thread; yields the port."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, http=http, loop=loop, log_level="warning", log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class Counting:
    """`splice` counting its calls and bytes (the server runs in this process)."""

    def __init__(self) -> None:
        self.calls = 0
        self.bytes = 0
        self._splice = splice

    async def __call__(self, source: int, sink: int, count: int, **kwargs: Any) -> None:
        self.calls += 1
        self.bytes += count
        await self._splice(source, sink, count, **kwargs)


def _responses(sock: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """Read `count` HTTP responses with Content-Length from a blocking socket."""
    buffer = b""
    answers = []
    while len(answers) < count:
        while b"\r\n\r\n" not in buffer:
            piece = sock.recv(1 << 20)
            assert piece, "connection closed mid-headers"
            buffer += piece
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(buffer) < length:
            piece = sock.recv(1 << 20)
            assert piece, "connection closed mid-body"
            buffer += piece
        answers.append((head, buffer[:length]))
        buffer = buffer[length:]
    assert buffer == b""
    return answers


@pytest.mark.parametrize(
    ("http", "loop"),
    [(SPLICE_PROTOCOL, "uvloop"), (SPLICE_PROTOCOL, "asyncio"), ("httptools", "auto")],
)
def test_a_large_get_is_spliced_and_keeps_keep_alive_pipelining_and_hang_ups(
    s3_server: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    http: str,
    loop: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="uvicorn")
    counting = Counting()
    monkeypatch.setattr(splice_module, "splice", counting)
    app = create_app(_settings(tmp_path, s3_server))
    large, small = os.urandom(3 * CHUNK + 12345), os.urandom(100_000)
    with serving(app, http, loop) as port:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
            big = client.put("/v1/objects", content=large).json()["sha256"]
            little = client.put("/v1/objects", content=small).json()["sha256"]
            assert big == hashlib.sha256(large).hexdigest()
            for _ in range(3):  # one keep-alive connection, large and small answers in turn
                got = client.get(f"/v1/objects/{big}")
                assert got.status_code == 200 and got.content == large
                assert got.headers["content-length"] == str(len(large))
                assert client.get(f"/v1/objects/{little}").content == small
            head = client.head(f"/v1/objects/{big}")
            assert head.headers["content-length"] == str(len(large)) and head.content == b""
        spliced = counting.calls
        if http == SPLICE_PROTOCOL:
            # every large GET's body, less what aiohttp had read with the headers
            assert spliced == 3 and 0 < len(large) * 3 - counting.bytes < 3 * CHUNK
        else:
            assert spliced == 0
        request = (
            "GET /v1/objects/{} HTTP/1.1\r\nHost: t\r\n"
            f"Authorization: {AUTH['Authorization']}\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", port)) as sock:
            # pipelined: both requests at once; the answers come in order, whole
            sock.sendall(
                (request.format(big) + request.format(little) + request.format(big)).encode()
            )
            answers = _responses(sock, 3)
        assert [body for _, body in answers] == [large, small, large]
        assert all(head.startswith(b"HTTP/1.1 200") for head, _ in answers)
        for _ in range(3):  # clients hanging up mid-body
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(request.format(big).encode())
                sock.recv(64 * 1024)
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:  # still serving
            assert client.get(f"/v1/objects/{big}").content == large
            assert client.get("/readyz").status_code == 200
    if http == SPLICE_PROTOCOL:
        assert counting.calls >= spliced + 3
    # a hang-up is no error of the application's, nor a body left unfinished
    assert not [r for r in caplog.records if r.name.startswith("uvicorn")], caplog.text


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_body_wholly_buffered_before_the_detach_leaves_the_store_connection_usable(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loop: str
) -> None:
    """Just over aiohttp's 2 MiB buffer: the whole body is in by the time the route
    detaches, its parser paused short of the message's end.  The store's connection must
    go back to the pool readable, so the next requests on it are answered (a paused one
    would hang for the session's sock_read, then retry: a new PUT would answer 200)."""
    from signet.storage import s3_vault

    info_async = s3_vault.S3Vault._info_async

    async def slow_info(self: Any, *args: Any) -> Any:
        await asyncio.sleep(0.3)  # the rest of the body arrives meanwhile
        return await info_async(self, *args)

    monkeypatch.setattr(s3_vault.S3Vault, "_info_async", slow_info)
    app = create_app(_settings(tmp_path, s3_server))
    body = os.urandom(2 * CHUNK + 100_000)
    with serving(app, SPLICE_PROTOCOL, loop) as port:
        url = f"http://127.0.0.1:{port}"
        # the timeout only guards against a hang (the bug's was 60 s)
        client = httpx.Client(base_url=url, headers=AUTH, timeout=30)
        with client:
            put = client.put("/v1/objects", content=body)
            assert put.status_code == 201
            big = put.json()["sha256"]
            for _ in range(3):
                got = client.get(f"/v1/objects/{big}")
                assert got.status_code == 200 and got.content == body
                assert client.head(f"/v1/objects/{big}").status_code == 200
                fresh = client.put("/v1/objects", content=os.urandom(1000))
                assert fresh.status_code == 201, fresh.text


def _gone_logged(caplog: pytest.LogCaptureFixture, wait: float = 20.0) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if any("client gone" in r.getMessage() for r in caplog.records):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_client_hanging_up_or_not_reading_a_large_body_is_let_go(
    s3_server: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    loop: str,
) -> None:
    """Larger than the sockets' buffers, so the splice is mid-body when the client hangs
    up, or waits on a client that stopped reading (its write timeout, made tiny here):
    the route sees `ClientGone`, the connection is closed, the store is answered next."""
    caplog.set_level(logging.WARNING, logger="uvicorn")
    caplog.set_level(logging.DEBUG, logger="signet.storage.api.transfers")  # (and the handler)
    monkeypatch.setattr(splice_module, "WRITE_TIMEOUT", 0.5)
    app = create_app(_settings(tmp_path, s3_server))
    large = os.urandom(32 * 1024 * 1024)
    with serving(app, SPLICE_PROTOCOL, loop) as port:
        url = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=url, headers=AUTH, timeout=30)  # a hang guard only
        with client:
            big = client.put("/v1/objects", content=large).json()["sha256"]
        request = (
            f"GET /v1/objects/{big} HTTP/1.1\r\nHost: t\r\n"
            f"Authorization: {AUTH['Authorization']}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", port)) as sock:  # hangs up mid-body
            sock.sendall(request)
            assert sock.recv(64 * 1024)
        assert _gone_logged(caplog)
        caplog.clear()
        with socket.socket() as sock:  # stops reading: let go after the write timeout
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.connect(("127.0.0.1", port))
            sock.sendall(request)
            assert _gone_logged(caplog)
            sock.settimeout(30)
            received = 0
            with contextlib.suppress(ConnectionResetError):  # the server aborted it
                while piece := sock.recv(1 << 20):  # what was sent, then the close
                    received += len(piece)
            assert received < len(large)
        with httpx.Client(base_url=url, headers=AUTH, timeout=30) as client:
            assert client.head(f"/v1/objects/{big}").status_code == 200
            assert client.put("/v1/objects", content=os.urandom(1000)).status_code == 201
            assert client.get(f"/v1/objects/{big}").content == large
    assert not [r for r in caplog.records if r.name.startswith("uvicorn")], caplog.text


def test_splice_lets_a_sink_that_takes_nothing_go() -> None:
    source, store = _tcp_pair()
    sink, client = _tcp_pair()  # nobody reads `client`

    def send_much() -> None:
        with contextlib.suppress(OSError):  # reset once the splice gives up
            store.sendall(b"z" * (16 * 1024 * 1024))

    writer = threading.Thread(target=send_much)
    writer.start()
    try:
        with pytest.raises(ClientGone):
            asyncio.run(splice(source.fileno(), sink.fileno(), 16 * 1024 * 1024, write_timeout=0.2))
    finally:
        source.close()
        writer.join()
        for s in (source, store, sink, client):
            s.close()


def test_splice_to_a_closed_sink_is_client_gone() -> None:
    source, store = _tcp_pair()
    try:
        with pytest.raises(ClientGone):
            asyncio.run(splice(source.fileno(), -1, 10))
    finally:
        source.close()
        store.close()
