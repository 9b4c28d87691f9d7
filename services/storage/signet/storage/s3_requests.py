"""Signed S3 requests on the event loop: the storage API's hot path to the object store.

GET, HEAD and the PUT of an upload held in memory go through here (aiohttp),
everything else through the minio client (see `s3_vault`).  Errors come back
as the vault's own: `ObjectNotFound`, `RetentionViolation`, `ServiceUnavailable`,
and `NameTaken` for a write-once PUT that found its name taken.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from urllib.parse import quote

import aiohttp
from signet.common.errors import ServiceUnavailable, SignetError
from signet.storage.sigv4 import SigV4
from signet.storage.vault import CHUNK, ObjectNotFound, RetentionViolation

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_NOT_FOUND = {"NoSuchKey", "NoSuchObject", "NoSuchVersion", "ResourceNotFound"}


class LoopRequests:
    """Signed S3 requests on the event loop (aiohttp), for the API's hot path.

    Why not the minio client in a worker thread there: a thread hop per call, and
    minio's request building, cost about twice the server CPU of this path for a
    100 KB object (measured with `benchmarks/storage.py`'s setup: 0.85 against
    0.45 ms per GET).  Signing is `SigV4`'s (minio's signature, the signing key
    derived once a day).  Connections are kept per event loop;
    `close_loop_sessions` closes this loop's on shutdown.
    """

    _ATTEMPTS = 3

    def __init__(
        self,
        *,
        endpoint: str,
        secure: bool,
        bucket: str,
        region: str,
        access_key: str,
        secret_key: str,
    ) -> None:
        self._base = f"{'https' if secure else 'http'}://{endpoint}/{bucket}/"
        self._path = f"/{bucket}/"
        self._host = endpoint
        self._signer = SigV4(access_key, secret_key, region)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        _LOOP_REQUESTS.add(self)

    def _current_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60),
                auto_decompress=False,
                # Up to 2 x CHUNK of a streamed GET buffered before reading pauses
                # (aiohttp's default, 2 x 256 KiB, paused and resumed the socket so
                # often that a 10 MB GET cost 15% more of the server's CPU).
                read_bufsize=CHUNK,
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._loop is asyncio.get_running_loop():
            await self._session.close()
            self._session = None

    async def send(
        self,
        method: str,
        key: str,
        *,
        body: bytes | None = None,
        content_sha256: str = EMPTY_SHA256,
        headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """One request, retried on outages and 500/502/503 like the minio client's pool.

        Returns the response (2xx) unread: the caller reads or releases it.  Errors are
        the vault's: `ObjectNotFound`, `RetentionViolation`, `ServiceUnavailable`, and
        `NameTaken` for a conditional PUT refused with 412.
        """
        quoted = quote(key, safe="/")
        url, path = self._base + quoted, self._path + quoted
        fixed = {**(headers or {}), "Host": self._host}
        if body is not None:
            fixed["Content-Length"] = str(len(body))
        error: BaseException = ServiceUnavailable("object store unreachable")
        for attempt in range(self._ATTEMPTS):
            if attempt:
                await asyncio.sleep(0.2 * 2 ** (attempt - 1))
            signed = self._signer.sign(method, path, fixed, content_sha256)
            data = _slices(body) if body is not None and len(body) > CHUNK else body
            try:
                response = await self._current_session().request(
                    method, url, data=data, headers=signed
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                error = ServiceUnavailable(f"object store unreachable: {exc}")
                continue
            if response.status < 300:
                return response
            text = await response.read()
            response.release()
            found = re.search(rb"<Code>([^<]+)</Code>", text)
            message = re.search(rb"<Message>([^<]*)</Message>", text)
            code = found.group(1).decode() if found else _STATUS_CODES.get(response.status, "")
            error = s3_error(
                code or f"HTTP {response.status}",
                message.group(1).decode() if message else "",
                key,
            )
            if response.status not in (500, 502, 503):
                break
        raise error


_LOOP_REQUESTS: weakref.WeakSet[LoopRequests] = weakref.WeakSet()
#: Codes for answers without an XML body (HEAD).
_STATUS_CODES = {404: "NoSuchKey", 412: "PreconditionFailed", 403: "AccessDenied"}


async def close_loop_sessions() -> None:
    """Close the connections to object stores opened on the running event loop.

    The API's lifespan calls it on shutdown: aiohttp sessions must be closed on
    the loop that opened them.
    """
    for requests in list(_LOOP_REQUESTS):
        await requests.close()


class NameTaken(Exception):
    """A conditional write found its name taken (412 ``PreconditionFailed``)."""


def s3_error(code: str, message: str, name: str | None) -> Exception:
    """Our error for an S3 error code: 404s named, refusals kept, outages as 503."""
    if code == "PreconditionFailed":
        return NameTaken(message)
    if code in _NOT_FOUND:
        return ObjectNotFound(f"no object {name or ''}".strip())
    if code == "AccessDenied":
        return RetentionViolation(f"the object store refused: {message}")
    error: SignetError = ServiceUnavailable(f"object store error {code}: {message}")
    return error


async def _slices(data: bytes) -> AsyncIterator[memoryview]:
    """`data` in `CHUNK` slices, without copies, each written with the connection's flow
    control: a large body handed to aiohttp at once would be pushed in one go."""
    view = memoryview(data)
    for start in range(0, len(view), CHUNK):
        yield view[start : start + CHUNK]


class Relay(AsyncIterator[bytes]):
    """A streamed GET's body: iterate it (aiohttp's reads), or `detach` it to splice.

    Iterating yields one piece per read from the socket (`iter_chunks`), not what has
    gathered since the last send joined into one (`iter_any`): the join copies most
    of the bytes once more, about 1 ms of the server's CPU per 10 MB, more than the
    extra sends.  The connection goes back to the pool only if read to the end.
    """

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._detached = False
        self._chunks: AsyncGenerator[bytes] | None = None
        #: What a `detach` that fell back had already taken from aiohttp's buffer.
        self._prefix = b""

    async def __anext__(self) -> bytes:
        if self._chunks is None:
            self._chunks = self._read()
        return await anext(self._chunks)

    async def _read(self) -> AsyncGenerator[bytes]:
        try:
            if self._prefix:
                prefix, self._prefix = self._prefix, b""
                yield prefix
            async for chunk, _ in self._response.content.iter_chunks():
                yield chunk
        finally:
            self._response.release()

    def detach(self) -> tuple[bytes, int, int] | None:
        """Stop aiohttp reading the body; return what it had already read, the socket
        the rest comes from, and how many bytes of it remain; None if this body cannot
        be moved that way (chunked or encoded, over TLS, already being iterated, or
        already wholly received: iterating it is then the cheap way).

        After it, the body is the caller's to read from the socket, exactly that many
        bytes; `aclose` then closes the connection (aiohttp's parser never saw the rest).
        """
        response = self._response
        length = response.headers.get("Content-Length", "")
        connection = response.connection
        transport = connection.transport if connection is not None else None
        if (
            not length.isdigit()
            or response.headers.get("Transfer-Encoding")
            or response.headers.get("Content-Encoding")
            or transport is None
            or transport.get_extra_info("sslcontext") is not None
            or transport.get_extra_info("socket") is None
            or self._chunks is not None
            or response.content.is_eof()
            or int(length) - response.content.total_bytes <= 0
        ):
            return None
        # Take everything aiohttp holds.  Each read may resume its parser (flow
        # control: its buffer was over the limit), which feeds the buffer what the
        # parser had held back, and may even end the message: the connection then goes
        # back to aiohttp's pool, where it must stay readable.  So read until empty,
        # then look: no socket read can happen meanwhile (no await).
        pieces: list[bytes] = []
        while piece := response.content.read_nowait():
            pieces.append(piece)
        read = b"".join(pieces)
        remaining = int(length) - response.content.total_bytes
        if (
            remaining <= 0
            or response.connection is not connection
            or response.content.is_eof()
            or connection is None
            or connection.transport is not transport
        ):
            # Whole after all: stream it (from what was taken), the connection is
            # aiohttp's again.
            self._prefix = read
            return None
        # Only now, on a connection that is still this response's, stop the socket's
        # reading (aiohttp's resume above may have restarted it).
        transport.pause_reading()
        self._detached = True
        return read, transport.get_extra_info("socket").fileno(), remaining

    async def aclose(self) -> None:
        if self._chunks is not None:
            await self._chunks.aclose()
        if self._detached:
            self._response.close()
        else:
            self._response.release()


def relay(response: aiohttp.ClientResponse) -> Relay:
    """The body of a 2xx GET as it arrives (see `Relay`)."""
    return Relay(response)
