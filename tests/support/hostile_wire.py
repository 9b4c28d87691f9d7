"""The wire side of the hostile-input prober (`tests.support.hostile`): each request as
a hostile client sends it, each answer read whole and judged for its shape."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from tests.support.hostile import Operation, Service

#: Seconds before an answer counts as a hang (the gate's body idle timeout is 30 s:
#: nothing here may wait for it).
TIMEOUT = 15.0

#: One request's answer: its status (None: a hang), the start of its body, and whether
#: the body had the services' error shape (always True for a success).
Reply = tuple[int | None, str, bool]


#: Garbage where a PDF is expected: a header and nothing a parser can use.
GARBAGE_PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n\x00\xff garbage"
GARBAGE_DER = b"\x30\x82\xff\xff\x02\x01\x00 not der"
BOUNDARY = "signet-hostile-boundary"


#: A malformed request: its body, Content-Type and any further headers.
Malformed = tuple[bytes, str, Mapping[str, str]]


def error_shaped(status: int | None, body: bytes, *, head: bool = False) -> bool:
    """A refusal's body is JSON ``{"error": str, "detail": str}`` (a HEAD has no body)."""
    if status is None or status < 400 or head:
        return True
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return (
        isinstance(data, dict)
        and isinstance(data.get("error"), str)
        and isinstance(data.get("detail"), str)
    )


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def send(
    client: httpx.Client,
    operation: Operation,
    path: str,
    token: str | None,
    *,
    content: bytes | Iterable[bytes] | None = None,
    media: str | None = None,
    headers: Mapping[str, str | bytes] | None = None,
    params: Mapping[str, str] | None = None,
    protocol: bool = False,
) -> Reply:
    """One request; `protocol`: the route answers in its own protocol (OCSP, RFC 3161),
    so its body is not held to the JSON error shape."""
    sent: dict[str, str | bytes] = {**bearer(token), **(headers or {})}
    if media:
        sent["Content-Type"] = media
    try:
        response = client.request(
            operation.method, path, headers=sent, content=content, params=params,
            timeout=TIMEOUT,
        )  # fmt: skip
    except httpx.TimeoutException:
        return None, "client timeout", True
    except httpx.HTTPError as exc:  # a dropped connection is no answer either
        return None, f"{type(exc).__name__}: {exc}", True
    shaped = protocol or error_shaped(
        response.status_code, response.content, head=operation.method == "HEAD"
    )
    return response.status_code, response.text[:300], shaped


def oversized(url: str, operation: Operation, path: str, token: str | None) -> Reply:
    """A request head declaring 2 GiB and ten bytes of it, on a raw socket: what a
    client lying about its body does.  The status line is read within `TIMEOUT`."""
    host, port = url.removeprefix("http://").split(":")
    lines = [
        f"{operation.method} {path} HTTP/1.1",
        f"Host: {host}",
        f"Content-Type: {media_of(operation)}",
        f"Content-Length: {2 * 1024**3}",
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    try:
        with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
            sock.sendall(head + b"0123456789")
            answer = _read_answer(sock)
    except TimeoutError:
        return None, "client timeout", True
    except OSError as exc:
        return None, f"{type(exc).__name__}: {exc}", True
    first = answer.split("\r\n", 1)[0].split(" ")
    if len(first) < 2 or not first[1].isdigit():
        return None, f"no status line: {answer[:80]!r}", True
    body = answer.split("\r\n\r\n", 1)[-1]
    status = int(first[1])
    shaped = error_shaped(status, body.encode("latin-1"), head=operation.method == "HEAD")
    return status, body[:300], shaped


def _read_answer(sock: socket.socket) -> str:
    """The whole answer: until the server closes, or its Content-Length is in."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        found = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if _ and found and len(body) >= int(found.group(1)):
            break
    return data.decode("latin-1", "replace")


def media_of(operation: Operation) -> str:
    if operation.media == "multipart/form-data":
        return f"multipart/form-data; boundary={BOUNDARY}"
    return operation.media or "application/json"


def streamed_document(size: int) -> Iterator[bytes]:
    """A complete multipart form of one ``documents`` part of `size` bytes, in 1 MiB
    chunks (sent chunked: no Content-Length for the gate to refuse unread)."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="documents"; '
        'filename="big.pdf"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.7\n'
    ).encode()
    chunk = b"0" * (1024 * 1024)
    left = size
    while left > 0:
        yield chunk[: min(left, len(chunk))]
        left -= len(chunk)
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def malformed_bodies(operation: Operation, service: Service) -> list[Malformed]:
    """The broken bodies for the operation's media type (several for a form)."""
    if operation.name in service.malformed:
        return list(service.malformed[operation.name])
    if operation.media == "application/json":
        return [
            (b'{"truncated": ["no end', "application/json", {}),
            # nested past the JSON parser's recursion limit, inside every body limit
            (b"[" * 20_000 + b"]" * 20_000, "application/json", {}),
            (b'{"name": "\\ud800", "reason": "\\ud800"}', "application/json", {}),
            (b"\xff\xfe not even text", "application/json", {}),
        ]
    if operation.media == "multipart/form-data":
        kind = f"multipart/form-data; boundary={BOUNDARY}"
        cut = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="document"; '
            'filename="a.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
        ).encode() + GARBAGE_PDF
        return [(cut, kind, {}), (_garbage_form(operation, service), kind, {})]
    if operation.media is not None or (
        operation.name in service.protocol and operation.method == "POST"
    ):
        return [(GARBAGE_DER, operation.media or "application/octet-stream", {})]
    return []


def _garbage_form(operation: Operation, service: Service) -> bytes:
    """A complete form: the route's valid fields (`Service.forms`), garbage in each file."""
    parts = []
    for name, value in service.forms.get(operation.name, {}).items():
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        )
    body = "".join(parts).encode()
    for name in operation.file_fields or ("document",):
        body += (
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
                'filename="garbage.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
            ).encode()
            + GARBAGE_PDF
            + b"\r\n"
        )
    return body + f"--{BOUNDARY}--\r\n".encode()
