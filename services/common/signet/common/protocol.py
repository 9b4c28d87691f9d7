"""The HTTP/1.1 protocol every service runs under uvicorn: httptools', with a bounded
request head and JSON refusals.

uvicorn's httptools protocol keeps a request line and headers of any length until
their blank line: a client sending a 32 MiB header without any token made each service
hold 64 MiB for that one connection (measured against `signet up`; the ASGI gate runs
only once the head is complete, too late).  Here the bytes of a head still incomplete
are counted as they arrive, and past `HEAD_LIMIT` the connection gets 431 and is
closed.  The count is of whole reads (asyncio hands over at most 256 KiB at a time), so
a read that ends one request's body and starts the next one's head counts in full:
the limit is well above one read, far below what hurts.

A connection that sends no head, or sends it a header line every few seconds, was
held for as long as the client liked (uvicorn times out only idle kept-alive
connections, after a response): each request head must be complete within
`HEAD_TIMEOUT` seconds of the connection or of its first byte, else 408 and close.

A request the parser cannot read at all (a control character in a header) got
uvicorn's plain-text ``Invalid HTTP request received.``; it is JSON
``{"error", "detail"}`` here, like every other refusal of the services.

Each refusal is counted in ``signet_gate_refused_total`` (reasons ``head_too_large``,
``slow_head``, ``bad_head``), as the gate's are.

Run a service with ``--http signet.common.protocol:GuardedProtocol`` (``http=`` for
``uvicorn.run``); storage's `signet.storage.api.splice.SpliceProtocol` builds on it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from signet.common.metrics import GATE_REFUSED
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: The most bytes a request line and its headers may take together.
HEAD_LIMIT = 1024 * 1024
#: Seconds a request head may take, from the connection (or the head's first byte on
#: a kept-alive connection) to its blank line.
HEAD_TIMEOUT = 15.0
#: uvicorn's ``--http`` value for this protocol.
GUARDED_PROTOCOL = "signet.common.protocol:GuardedProtocol"

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
}


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded head and JSON refusals."""

    #: a class attribute, so that a test's subclass can shorten it
    head_timeout = HEAD_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        if self._head_timer is None:
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        self._cancel_head_timer()
        super().on_headers_complete()

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            GATE_REFUSED.labels(reason="slow_head").inc()
            self._refuse(
                408, "request_timeout",
                f"the request head took more than {self.head_timeout:g} s",
            )  # fmt: skip

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > HEAD_LIMIT:
            self.logger.warning("a request head over %d bytes was refused", HEAD_LIMIT)
            GATE_REFUSED.labels(reason="head_too_large").inc()
            self._refuse(
                431, "headers_too_large",
                f"the request line and headers are longer than {HEAD_LIMIT} bytes",
            )  # fmt: skip

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what its parser cannot read, as JSON."""
        GATE_REFUSED.labels(reason="bad_head").inc()
        self._refuse(400, "invalid_request", "the request is not valid HTTP/1.1")

    def _refuse(self, status: int, error: str, detail: str) -> None:
        body = json.dumps({"error": error, "detail": detail}).encode()
        content = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(body),
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
