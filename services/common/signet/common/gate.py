"""Authentication before any work: the ASGI gate in front of every service.

FastAPI reads and parses a request's body before it runs a route's dependencies, so a
bearer-token dependency alone let anyone make a service read 500 MB of JSON or spool
a 305 MB upload before answering 401.  The gate runs first, as plain ASGI:

1. the caller's token and scope are checked from the headers (`signet.common.auth`,
   each service's route table names its public routes: health, metrics, the CA's
   CRL/OCSP, the API documents), before one byte of the body is read;
2. a ``Content-Length`` above the route's limit is answered 413 unread;
3. the body is counted while the application reads it (413 once it passes the
   limit, for chunked bodies too), and each chunk must arrive within an idle
   timeout (408), so a client announcing 2 GB and sending ten bytes holds nothing;
   after a grace period the body must also keep an average rate (408), so that a
   byte every few seconds cannot hold a connection for days.

The request head itself is bounded before this, by the HTTP protocol
(`signet.common.protocol`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from signet.common.errors import PayloadTooLarge, SignetError, Unauthorized
from signet.common.metrics import GATE_REFUSED
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Seconds a client may stay silent in the middle of a request body.
BODY_IDLE_TIMEOUT = 30.0
#: The slowest average a body may arrive at, once `BODY_RATE_GRACE` seconds have passed
#: since its first byte was asked for (bytes a second): a client dripping one byte
#: every 29 s beat the idle timeout and held its connection for days.
MIN_BODY_RATE = 4 * 1024
BODY_RATE_GRACE = 30.0


class RequestTimeout(SignetError):
    status_code = 408
    code = "request_timeout"


@dataclass(frozen=True)
class GateRules:
    """How much a service reads per route.

    Paths are exact, or prefixes when they end in ``*``.  `limits` maps a path rule to
    its body limit (None: the route bounds its own parts, as batch uploads do);
    `passthrough` routes, once authorized, are left to an inner ASGI layer that bounds
    its own body (storage's spliced object transfers)."""

    default_limit: int = 1024 * 1024
    limits: Mapping[str, int | None] = field(default_factory=dict)
    passthrough: tuple[str, ...] = ()
    idle_timeout: float = BODY_IDLE_TIMEOUT
    min_rate: float = MIN_BODY_RATE
    rate_grace: float = BODY_RATE_GRACE

    def limit_for(self, path: str) -> int | None:
        for rule, limit in self.limits.items():
            if _matches(rule, path):
                return limit
        return self.default_limit


def _matches(rule: str, path: str) -> bool:
    return path.startswith(rule[:-1]) if rule.endswith("*") else path == rule


#: The gate's refusals as signet_gate_refused_total's reason label.
_REASONS = {
    "unauthorized": "no_token",
    "forbidden": "wrong_scope",
    "payload_too_large": "too_large",
    "request_timeout": "slow_body",
}


class RequestGate:
    def __init__(
        self, app: ASGIApp, *, authorize: Callable[[Scope], None], rules: GateRules
    ) -> None:
        """`authorize` raises a `SignetError` (401, 403) for a caller the route refuses
        (`signet.common.auth.Authorizer`)."""
        self.app, self.authorize, self.rules = app, authorize, rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path: str = scope["path"]
        headers = dict(scope["headers"])
        try:
            self.authorize(scope)
        except SignetError as exc:
            return await _refuse(send, exc)
        if any(_matches(rule, path) for rule in self.rules.passthrough):
            return await self.app(scope, receive, send)
        try:
            limit = self.rules.limit_for(path)
            declared = _content_length(headers.get(b"content-length"))
            if limit is not None and declared is not None and declared > limit:
                raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
        except SignetError as exc:
            return await _refuse(send, exc)
        await self.app(scope, _Body(receive, limit, self.rules), send)


class _Body:
    """The application's `receive`, counting bytes and timing each chunk.

    Raises `SignetError`s, which the service's exception handlers answer as JSON
    (413, 408) if nothing was sent yet."""

    def __init__(self, receive: Receive, limit: int | None, rules: GateRules) -> None:
        self.receive, self.limit, self.seen = receive, limit, 0
        self.idle, self.min_rate, self.grace = rules.idle_timeout, rules.min_rate, rules.rate_grace
        self.complete = False
        self.started: float | None = None

    async def __call__(self) -> Message:
        if self.complete:  # after the body, `receive` only waits for a disconnect: untimed
            return await self.receive()
        if self.started is None:
            self.started = time.monotonic()
        try:
            async with asyncio.timeout(self.idle):
                message = await self.receive()
        except TimeoutError:
            GATE_REFUSED.labels(reason="slow_body").inc()
            raise RequestTimeout(
                f"the request body stalled for more than {self.idle:g} s"
            ) from None
        if message["type"] == "http.request":
            self.complete = not message.get("more_body", False)
            self.seen += len(message.get("body", b""))
            self._check_rate()
            if self.limit is not None and self.seen > self.limit:
                GATE_REFUSED.labels(reason="too_large").inc()
                raise PayloadTooLarge(f"the request body is larger than {self.limit} bytes")
        return message

    def _check_rate(self) -> None:
        assert self.started is not None
        elapsed = time.monotonic() - self.started
        if not self.complete and elapsed > self.grace and self.seen < self.min_rate * elapsed:
            GATE_REFUSED.labels(reason="slow_body").inc()
            raise RequestTimeout(
                f"the request body arrives slower than {self.min_rate:g} bytes a second"
            )


def _content_length(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


async def _refuse(send: Send, error: SignetError) -> None:
    GATE_REFUSED.labels(reason=_REASONS.get(error.code, error.code)).inc()
    body = json.dumps({"error": error.code, "detail": error.detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the unread body must not be taken for the next request
    ]
    if isinstance(error, Unauthorized):
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
