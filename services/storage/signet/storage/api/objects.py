"""`/v1/objects`: put (streamed), get (streamed), head, legal hold, retention.  No delete."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from signet.common.contracts.storage import (
    LegalHoldRequest,
    ObjectInfo,
    ObjectKind,
    RetentionRequest,
)
from signet.common.errors import PayloadTooLarge
from signet.storage import metrics
from signet.storage.api.deps import Service
from signet.storage.s3_requests import close_loop_sessions
from signet.storage.vault import (
    CHUNK,
    IN_MEMORY,
    DigestMismatch,
    Upload,
    UploadBuffer,
    check_sha256,
)


@asynccontextmanager
async def _connections(_: object) -> AsyncIterator[None]:
    """Close the object store connections this event loop opened, on shutdown."""
    yield
    await close_loop_sessions()


router = APIRouter(prefix="/v1/objects", tags=["objects"], lifespan=_connections)


def _headers(info: ObjectInfo) -> dict[str, str]:
    headers = {
        "Content-Length": str(info.size),
        "ETag": f'"{info.sha256}"',
        "X-Signet-Sha256": info.sha256,
        "X-Signet-Kind": info.kind.value,
        "X-Signet-Retain-Until": info.retain_until.isoformat(),
        "X-Signet-Legal-Hold": "on" if info.legal_hold else "off",
    }
    if info.envelope_id:
        headers["X-Signet-Envelope"] = info.envelope_id
    return headers


@router.put("", status_code=201, response_model=ObjectInfo)
async def put_object(
    request: Request,
    service: Service,
    content_type: Annotated[str, Header()] = "application/octet-stream",
    x_signet_kind: Annotated[ObjectKind, Header()] = ObjectKind.ORIGINAL,
    x_signet_envelope: Annotated[str | None, Header(max_length=64)] = None,
    x_signet_sha256: Annotated[
        str | None,
        Header(description="the SHA-256 the client expects; other bytes are refused (400)"),
    ] = None,
) -> Response:
    """Store the request body; 201 when new, 200 when these bytes were already stored.

    The name is the SHA-256 this server computes from the bytes it received.
    `X-Signet-Sha256`, when sent, only adds a check: a body that hashes otherwise
    (damaged on the way, or the wrong file) is refused with 400 `digest_mismatch`
    and nothing is stored.  The answer comes once the object is durable.

    A body is gathered on the event loop and hashed once it is complete: on the
    loop up to `CHUNK` bytes (cheaper than a thread hop), else in a worker thread.
    Past `IN_MEMORY` bytes each further `CHUNK` is hashed and spilled to the
    staging file off the loop, so memory stays bounded for any size.  Then one
    call stores it (`Vault.put_upload_async`; on S3, one conditional PUT).
    """
    limit = service.settings.max_object_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the object is {declared} bytes; the limit is {limit}")
    expected = check_sha256(x_signet_sha256) if x_signet_sha256 is not None else None
    vault = service.vault
    buffer = UploadBuffer(vault.staging, limit=limit)
    try:
        pending: list[bytes] = []
        pending_size = 0
        async for chunk in request.stream():
            pending.append(chunk)
            pending_size += len(chunk)
            buffer.check_size(buffer.size + pending_size)
            if pending_size >= CHUNK and buffer.size + pending_size > IN_MEMORY:
                await run_in_threadpool(buffer.write, pending)
                pending, pending_size = [], 0
        if buffer.size + pending_size > CHUNK:
            upload = await run_in_threadpool(_received, buffer, pending, expected)
        else:  # hashing up to a chunk costs less than a thread hop
            upload = _received(buffer, pending, expected)
        info, created = await vault.put_upload_async(
            upload,
            content_type=content_type.split(";")[0].strip(),
            kind=x_signet_kind,
            envelope_id=x_signet_envelope,
        )
    finally:
        buffer.close()
    metrics.VAULT_WRITES.labels(x_signet_kind.value, "created" if created else "existing").inc()
    if created:
        metrics.VAULT_BYTES.inc(info.size)
    return Response(
        info.model_dump_json(),
        status_code=201 if created else 200,
        media_type="application/json",
        headers={"Location": f"/v1/objects/{info.sha256}"},
    )


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


@router.get("/{sha256}", response_class=StreamingResponse)
async def get_object(service: Service, sha256: str) -> Response:
    """The object's bytes, relayed from the store as they arrive (one GET to the store).

    An object of at most `CHUNK` bytes goes out as one plain body; a larger one
    streams, never more than the store client's buffer in memory.  Bytes are not
    re-hashed here: the name was verified when they were stored (and the S3 store
    checked them against the upload's SHA-256 checksum); `signet storage scrub`
    re-reads every object to catch later damage.
    """
    info, body = await service.vault.read_async(check_sha256(sha256))
    if isinstance(body, bytes):
        return Response(body, media_type=info.content_type, headers=_headers(info))
    return StreamingResponse(body, media_type=info.content_type, headers=_headers(info))


@router.head("/{sha256}")
async def head_object(service: Service, sha256: str) -> Response:
    info = await service.vault.head_async(check_sha256(sha256))
    return Response(media_type=info.content_type, headers=_headers(info))


@router.post("/{sha256}/legal-hold", response_model=ObjectInfo)
async def legal_hold(service: Service, sha256: str, request: LegalHoldRequest) -> ObjectInfo:
    return await run_in_threadpool(service.vault.set_legal_hold, check_sha256(sha256), request.on)


@router.post("/{sha256}/retention", response_model=ObjectInfo)
async def extend_retention(service: Service, sha256: str, request: RetentionRequest) -> ObjectInfo:
    """Extend only: an earlier date than the current one is refused (409)."""
    return await run_in_threadpool(
        service.vault.extend_retention, check_sha256(sha256), request.retain_until
    )
