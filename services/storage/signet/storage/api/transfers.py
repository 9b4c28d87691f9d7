"""The byte routes, `PUT /v1/objects` and `GET`/`HEAD /v1/objects/{sha256}`, as plain ASGI.

Every other route is FastAPI's.  These two carry almost all of the service's
traffic, and a FastAPI route cost them more than a third of the server's CPU
per request (routing, dependency injection, header models, three wrappers around
`send`, `StreamingResponse`'s task group; py-spy under `benchmarks/storage.py`'s
load: 2.1 against 1.0 ms per 100 KB PUT with the signing below, 1.0 against 0.6 ms
per 100 KB GET); here each request is parsed once and answered with two ASGI
messages.  They keep the FastAPI routes' contract: the service token, the
same headers, the same errors (``{"error", "detail"}`` with the `SignetError`'s
status), and the same request metrics, by route template.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from signet.common.contracts.storage import ENVELOPE_ID_PATTERN, ObjectInfo, ObjectKind
from signet.common.errors import PayloadTooLarge, SignetError
from signet.common.metrics import MetricsMiddleware
from signet.storage import metrics
from signet.storage.api.splice import ClientGone, Splice, splice_from
from signet.storage.service import StorageService
from signet.storage.vault import (
    CHUNK,
    IN_MEMORY,
    DigestMismatch,
    Upload,
    UploadBuffer,
    check_sha256,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

PUT_PATH = "/v1/objects"
_PREFIX = PUT_PATH + "/"
_KINDS = {kind.value: kind for kind in ObjectKind}
_JSON = [(b"content-type", b"application/json")]


class _Template:
    """The route template `MetricsMiddleware` reads from ``scope["route"]``."""

    def __init__(self, path: str) -> None:
        self.path = path


_PUT_ROUTE, _OBJECT_ROUTE = _Template(PUT_PATH), _Template(PUT_PATH + "/{sha256}")


#: Status, headers, and the body whole or as it streams.
_Answer = tuple[int, list[tuple[bytes, bytes]], bytes | AsyncIterator[bytes]]


class MethodNotAllowed(SignetError):
    status_code = 405
    code = "method_not_allowed"

    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__(f"only {', '.join(allowed)} here (objects are never deleted)")
        self.allow = ", ".join(allowed)


class InvalidHeader(SignetError):
    """A header outside its allowed values (FastAPI's 422 for a header model)."""

    status_code = 422
    code = "invalid_request"


class ObjectTransfers:
    """ASGI middleware: serves the byte routes itself and passes every other request on.

    Installed by `signet.storage.app.create_app` in front of the routes and of the
    app's `MetricsMiddleware` (inside Starlette's error middleware, which still
    answers 500 for anything unexpected); it counts its own requests with a
    `MetricsMiddleware` of its own (the same metrics, by route template).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: StorageService,
        metrics_service: str,
    ) -> None:
        self.app = app
        self.service = service
        self._metered = MetricsMiddleware(self._serve, service=metrics_service)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path == PUT_PATH or (path.startswith(_PREFIX) and "/" not in path[len(_PREFIX) :]):
                await self._metered(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        scope["route"] = _PUT_ROUTE if path == PUT_PATH else _OBJECT_ROUTE
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)  # the first of repeated headers, as Starlette's
        try:
            if path == PUT_PATH:
                _allow(method, ("PUT",))
                answer = await self._put(headers, receive)
            else:
                _allow(method, ("GET", "HEAD"))
                answer = await self._get(check_sha256(path[len(_PREFIX) :]), method)
        except SignetError as exc:  # before any byte of the answer: once it streams, it stays
            extra = [(b"allow", exc.allow.encode())] if isinstance(exc, MethodNotAllowed) else []
            body = json.dumps({"error": exc.code, "detail": exc.detail}).encode()
            answer = exc.status_code, _JSON + extra, body
        status, response_headers, content = answer
        if isinstance(content, bytes):
            await _answer(send, status, content, response_headers)
        else:
            await _stream(send, receive, response_headers, content, splice_from(scope))

    async def _put(self, headers: dict[bytes, bytes], receive: Receive) -> _Answer:
        """Store the request body; 201 when new, 200 when these bytes were already stored.

        The name is the SHA-256 this server computes from the bytes it received.
        ``X-Signet-Sha256``, when sent, only adds a check: a body that hashes otherwise
        is refused with 400 `digest_mismatch` and nothing is stored.  The answer comes
        once the object is durable.

        The body is gathered on the event loop and hashed once complete: on the loop
        up to `CHUNK` bytes (cheaper than a thread hop), else in a worker thread.  Past
        `IN_MEMORY` bytes each further `CHUNK` is hashed and spilled to the staging
        file off the loop, so memory stays bounded for any size.  Then one call stores
        it (`Vault.put_upload_async`; on S3, one conditional PUT).
        """
        service = self.service
        limit = service.settings.max_object_bytes
        declared = headers.get(b"content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"the object is {declared.decode()} bytes; the limit is {limit}")
        kind_value = headers.get(b"x-signet-kind", b"original").decode("latin-1")
        kind = _KINDS.get(kind_value)
        if kind is None:
            raise InvalidHeader(
                f"X-Signet-Kind must be one of {', '.join(_KINDS)}, not {kind_value[:40]!r}"
            )
        envelope = headers.get(b"x-signet-envelope")
        if envelope is not None and not _ENVELOPE_ID.fullmatch(envelope):
            raise InvalidHeader(
                "X-Signet-Envelope must be 1 to 64 of A-Z a-z 0-9 . _ : - (a letter or digit first)"
            )
        announced = headers.get(b"x-signet-sha256")
        expected = check_sha256(announced.decode("latin-1")) if announced is not None else None
        content_type = _content_type(headers.get(b"content-type", b"application/octet-stream"))
        if declared == b"0":
            raise EmptyObject("an object needs at least one byte; the body is empty")
        vault = service.vault
        buffer = UploadBuffer(vault.staging, limit=limit)
        try:
            pending: list[bytes] = []
            pending_size = 0
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                chunk = message.get("body", b"")
                more = message.get("more_body", False)
                if chunk:
                    pending.append(chunk)
                    pending_size += len(chunk)
                    buffer.check_size(buffer.size + pending_size)
                    if pending_size >= CHUNK and buffer.size + pending_size > IN_MEMORY:
                        await run_in_threadpool(buffer.write, pending)
                        pending, pending_size = [], 0
            if buffer.size + pending_size == 0:
                raise EmptyObject("an object needs at least one byte; the body is empty")
            if buffer.size + pending_size > CHUNK:
                upload = await run_in_threadpool(_received, buffer, pending, expected)
            else:  # hashing up to a chunk costs less than a thread hop
                upload = _received(buffer, pending, expected)
            info, created = await vault.put_upload_async(
                upload,
                content_type=content_type,
                kind=kind,
                envelope_id=envelope.decode("latin-1") if envelope is not None else None,
            )
        finally:
            buffer.close()
        metrics.VAULT_WRITES.labels(kind.value, "created" if created else "existing").inc()
        if created:
            metrics.VAULT_BYTES.inc(info.size)
        location = (b"location", f"/v1/objects/{info.sha256}".encode())
        return 201 if created else 200, [*_JSON, location], info.model_dump_json().encode()

    async def _get(self, sha256: str, method: str) -> _Answer:
        """The object's bytes, relayed from the store as they arrive (one GET to the store).

        An object of at most `CHUNK` bytes goes out as one body; a larger one streams,
        never more than the store client's buffer in memory, and stops when the client
        hangs up.  Bytes are not re-hashed here: the name was verified when they were
        stored (and the S3 store checked them against the upload's SHA-256 checksum);
        `signet storage scrub` re-reads every object to catch later damage.
        """
        vault = self.service.vault
        if method == "HEAD":
            return 200, _headers(await vault.head_async(sha256)), b""
        info, body = await vault.read_async(sha256)
        return 200, _headers(info), body


class EmptyObject(SignetError):
    """A PUT without a byte: the vault never stores an empty object."""

    status_code = 422
    code = "empty_object"


#: The envelope id the ledger and evidence packages use (`ENVELOPE_ID_PATTERN`), as bytes.
_ENVELOPE_ID = re.compile(ENVELOPE_ID_PATTERN.encode())
#: A media type without its parameters: type/subtype, RFC 6838 characters.
_MEDIA_TYPE = re.compile(
    rb"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)
CONTENT_TYPE_MAX = 255


def _content_type(value: bytes) -> str:
    """The media type of a Content-Type header, parameters dropped; refused when odd."""
    if len(value) > CONTENT_TYPE_MAX:
        raise InvalidHeader(f"Content-Type is at most {CONTENT_TYPE_MAX} characters")
    media_type = value.split(b";")[0].strip()
    if not _MEDIA_TYPE.fullmatch(media_type):
        raise InvalidHeader("Content-Type must be a media type (type/subtype)")
    return media_type.decode("ascii")


def _allow(method: str, allowed: tuple[str, ...]) -> None:
    if method not in allowed:
        raise MethodNotAllowed(allowed)


def _received(buffer: UploadBuffer, pending: list[bytes], expected: str | None) -> Upload:
    buffer.write(pending)
    pending.clear()  # held once, by the upload, while it is sent to the store
    upload = buffer.finish()
    if expected is not None and upload.sha256 != expected:
        raise DigestMismatch(
            f"the body's SHA-256 is {upload.sha256}, not the {expected} announced in "
            "X-Signet-Sha256; nothing was stored"
        )
    return upload


def _headers(info: ObjectInfo) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-type", info.content_type.encode("latin-1")),
        (b"content-length", str(info.size).encode()),
        (b"etag", f'"{info.sha256}"'.encode()),
        (b"x-signet-sha256", info.sha256.encode()),
        (b"x-signet-kind", info.kind.value.encode()),
        (b"x-signet-retain-until", info.retain_until.isoformat().encode()),
        (b"x-signet-legal-hold", b"on" if info.legal_hold else b"off"),
    ]
    if info.envelope_id:
        headers.append((b"x-signet-envelope", info.envelope_id.encode("latin-1")))
    return headers


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    if not any(name == b"content-length" for name, _ in headers):
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _stream(
    send: Send,
    receive: Receive,
    headers: list[tuple[bytes, bytes]],
    chunks: AsyncIterator[bytes],
    splice: Splice | None = None,
) -> None:
    """Send `chunks` as they come; stop reading them once the client has hung up.

    With `splice` (the server offers it: `signet.storage.api.splice`) and a body that
    can be taken off its socket (`Relay.detach`: a store's GET over plain TCP), the
    bytes go from socket to socket inside the kernel instead.
    """
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        detach: Callable[[], tuple[bytes, int, int] | None] | None = getattr(chunks, "detach", None)
        source = detach() if splice is not None and detach is not None else None
        if splice is not None and source is not None:
            read, fd, remaining = source
            if read:
                await send({"type": "http.response.body", "body": read, "more_body": True})
            try:
                await splice(fd, remaining)
            except ClientGone:
                logger.debug("client gone during a spliced body")
                return
        else:
            async for chunk in chunks:
                if gone.done():
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        gone.cancel()
        aclose: Any = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
