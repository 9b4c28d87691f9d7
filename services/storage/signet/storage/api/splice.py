"""Zero-copy relay of a large GET's body: `splice(2)` from the store's socket to the client's.

A streamed 10 MB GET through Python costs the server three copies of every byte
(the store's socket into the loop's read buffer, into a `bytes` for aiohttp, into
the client's socket) and a few hundred syscalls: under `benchmarks/storage.py`,
6.9 ms of server CPU per 10 MB on a quiet machine, 10.2-11.0 ms on a loaded one.
`splice(2)` through a pipe moves the pages from one socket to the other inside the
kernel; only what aiohttp had read together with the headers (a few hundred KB at
most) passes through Python.  Measured in the same load windows: 6.2 ms, most of it
the kernel's TCP work, which a second hop over loopback costs whatever we do.

Only the body moves this way.  uvicorn writes the status line and headers (the
route's own, with the ``Content-Length`` of the object), this module then moves
exactly that many bytes and tells uvicorn's response cycle they were sent, so
keep-alive, pipelining and the end of the response stay uvicorn's.  It needs the
client's socket, which ASGI does not give an application: `SpliceProtocol` is
uvicorn's httptools protocol that offers, per request, an ASGI extension
(`EXTENSION` in ``scope["extensions"]``) holding a function that does it.  The
server runs it with ``--http signet.storage.api.splice:SpliceProtocol`` (as
`signet storage serve` and `signet up` do); under any other server, over TLS, or
off Linux the extension is absent and the route streams the body as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import os
from collections.abc import Awaitable, Callable
from typing import Any

from signet.common.protocol import GuardedProtocol
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

#: uvicorn's ``--http`` (``http=``) for a server that offers the extension.
SPLICE_PROTOCOL = "signet.storage.api.splice:SpliceProtocol"
#: The key of the extension in ``scope["extensions"]``; its value is ``{"splice": fn}``
#: with ``fn(source_fd, count)`` an awaitable that sends `count` body bytes from
#: `source_fd` (a connected, non-blocking socket) after the response's start.
EXTENSION = "signet.splice"
#: Bytes moved per pair of splices: the pipe is grown to this (Linux's default
#: maximum for unprivileged processes, /proc/sys/fs/pipe-max-size).
PIPE_SIZE = 1024 * 1024
#: How long the store may stay silent mid-body (the aiohttp session's `sock_read`).
READ_TIMEOUT = 60.0
#: How long the client may take no bytes before it counts as gone (`ClientGone`): a
#: client that stops reading would otherwise hold a task and a store connection.
WRITE_TIMEOUT = 120.0
#: Bytes moved between yields to the event loop, when neither socket ever waits.
YIELD_EVERY = 8 * 1024 * 1024

Splice = Callable[[int, int], Awaitable[None]]
_AVAILABLE = hasattr(os, "splice") and hasattr(fcntl, "F_SETPIPE_SZ")
_MOVE = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
_MORE = getattr(os, "SPLICE_F_MORE", 0)


class ClientGone(Exception):
    """The client closed its connection during a spliced body, or stopped reading it
    for `WRITE_TIMEOUT` seconds (its connection is then closed)."""


class SourceEnded(Exception):
    """The store's connection ended before the body's announced length."""


class SpliceProtocol(GuardedProtocol):
    """The services' protocol (`signet.common.protocol`: uvicorn's httptools protocol with
    a bounded head), offering `EXTENSION` to requests on a plain TCP socket."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        # Not for an upgrade (the cycle is not this request's) nor over TLS.
        if cycle is None or cycle.scope is not self.scope or not _AVAILABLE:
            return
        if self.transport.get_extra_info("sslcontext") is not None:
            return
        if self.transport.get_extra_info("socket") is None:
            return
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
        extensions[EXTENSION] = {"splice": functools.partial(_splice_body, cycle)}


def splice_from(scope: dict[str, Any] | Any) -> Splice | None:
    """The request's splice function, if the server offers one."""
    offered = (scope.get("extensions") or {}).get(EXTENSION)
    return offered["splice"] if offered else None


async def _splice_body(cycle: RequestResponseCycle, source: int, count: int) -> None:
    """Send `count` bytes of the body from `source`, after what uvicorn already wrote.

    Raises `ClientGone` (the cycle is then marked disconnected, as uvicorn's own
    `connection_lost` would, and the connection closed), `SourceEnded`, or
    `TimeoutError` when the store stalls (the caller lets it propagate: uvicorn then
    closes the connection, the client sees a body shorter than announced).
    """
    if not cycle.response_started or cycle.response_complete:
        raise RuntimeError("splice needs a started response")
    if cycle.chunked_encoding or count > cycle.expected_content_length:
        raise RuntimeError("splice needs a Content-Length covering the spliced bytes")
    transport = cycle.transport
    write_timeout = WRITE_TIMEOUT
    try:
        # uvicorn's writes (the headers, a prefix of the body) must reach the socket
        # first.  They are small and the socket takes them at once: this loop rarely
        # runs twice, unless the client does not read.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + write_timeout
        delay = 0.0
        while not cycle.disconnected and not transport.is_closing():
            if not transport.get_write_buffer_size():
                break
            if loop.time() >= deadline:
                raise ClientGone()
            await asyncio.sleep(delay)
            delay = min(0.01, delay * 2 or 0.0005)
        # A hang-up during the flush closes the transport: its socket is then gone.
        if cycle.disconnected or transport.is_closing():
            raise ClientGone()
        sock = transport.get_extra_info("socket")
        sink = sock.fileno() if sock is not None else -1
        if sink < 0:
            raise ClientGone()
        await splice(source, sink, count, write_timeout=write_timeout)
    except ClientGone:
        cycle.disconnected = True
        # Not `close`: that waits for the write buffer to drain, which a client that
        # stopped reading never lets happen.
        transport.abort()
        raise
    cycle.expected_content_length -= count


async def splice(
    source: int,
    sink: int,
    count: int,
    *,
    read_timeout: float = READ_TIMEOUT,
    write_timeout: float = WRITE_TIMEOUT,
) -> None:
    """Move exactly `count` bytes from socket `source` to socket `sink` (both non-blocking)
    through a pipe, waiting on the event loop whenever either side is not ready.

    Both descriptors are duplicated for the duration: whoever owns the originals may
    close them meanwhile (a client hanging up) without this writing to a reused
    number.  Raises `ClientGone` when the sink's peer is gone, `SourceEnded` when the
    source ends early, `TimeoutError` when it is silent for `read_timeout` seconds;
    a sink that takes nothing for `write_timeout` seconds counts as gone too.
    """
    loop = asyncio.get_running_loop()
    try:
        sink = os.dup(sink)
    except OSError as exc:
        if exc.errno == errno.EBADF:  # closed under us: the client hung up
            raise ClientGone() from exc
        raise
    try:
        source = os.dup(source)
    except BaseException:
        os.close(sink)
        raise
    try:
        pipe_out, pipe_in = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    except BaseException:
        os.close(source)
        os.close(sink)
        raise
    try:
        with contextlib.suppress(OSError):  # a smaller pipe only costs more syscalls
            fcntl.fcntl(pipe_in, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        size = fcntl.fcntl(pipe_in, fcntl.F_GETPIPE_SZ)
        left = count
        since_yield = 0
        while left:
            if since_yield >= YIELD_EVERY:  # both sides fast: let the loop run others
                since_yield = 0
                await asyncio.sleep(0)
            # The pipe is empty here, so EAGAIN means the socket has nothing yet.
            try:
                moved = os.splice(source, pipe_in, min(left, size), flags=_MOVE)
            except BlockingIOError:
                await _ready(loop, source, reading=True, timeout=read_timeout)
                continue
            if moved == 0:
                raise SourceEnded(f"the store's connection ended {left} bytes early")
            left -= moved
            since_yield += moved
            while moved:
                try:
                    moved -= os.splice(pipe_out, sink, moved, flags=_MOVE | (_MORE if left else 0))
                except BlockingIOError:
                    try:
                        await _ready(loop, sink, reading=False, timeout=write_timeout)
                    except TimeoutError as exc:
                        raise ClientGone(f"the client took nothing for {write_timeout} s") from exc
                except (BrokenPipeError, ConnectionResetError) as exc:
                    raise ClientGone() from exc
    finally:
        for fd in (pipe_out, pipe_in, source, sink):
            os.close(fd)


async def _ready(
    loop: asyncio.AbstractEventLoop, fd: int, *, reading: bool, timeout: float | None
) -> None:
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if reading:
        loop.add_reader(fd, wake)
    else:
        loop.add_writer(fd, wake)
    try:
        async with asyncio.timeout(timeout):
            await ready
    finally:
        if reading:
            loop.remove_reader(fd)
        else:
            loop.remove_writer(fd)
