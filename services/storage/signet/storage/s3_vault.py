"""The S3 vault (MinIO in production): Object Lock in COMPLIANCE mode, and the same rules in code.

The bucket's own Object Lock is the guarantee that survives a compromised
application: in COMPLIANCE mode nobody, root account included, can delete a
version or shorten its retention before the date.  This class still refuses
overwrite and shortening itself (defence in depth: not every S3 server
enforces Object Lock, and a misconfigured bucket must not silently lose the
promise), and refuses to start on a bucket without Object Lock or with a
default retention below the statutory minimum.

Objects live under ``objects/<sha256>``, records under ``records/<name>``;
both are uploaded with an explicit COMPLIANCE retention, not only the
bucket's default, in the write itself (one request: bytes, metadata, retention,
and an ``x-amz-checksum-sha256`` the store verifies before it stores; spelled
by `s3_headers`).  Uploads too large for one PUT go multipart, completed
write-once too (`s3_multipart`).

Two request paths reach the store.  The API's hot calls (GET, HEAD, and the
PUT of an upload held in memory) run on the event loop (`s3_requests`,
aiohttp); everything else (bootstrap, retention, legal hold, records,
multipart uploads of large objects, the scrubber) uses the minio client (`s3_client`).
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import anyio.to_thread
import urllib3
from minio import Minio
from minio.commonconfig import COMPLIANCE
from minio.error import S3Error
from minio.retention import Retention
from signet.common.contracts.storage import ObjectInfo, ObjectKind
from signet.common.errors import ServiceUnavailable
from signet.storage.s3_client import call, create_locked_bucket, lock_status, release
from signet.storage.s3_headers import (
    aware,
    lock_state,
    metadata,
    new_object,
    object_info,
    put_headers,
)
from signet.storage.s3_multipart import put_multipart
from signet.storage.s3_requests import (
    LoopRequests,
    NameTaken,
    relay,
)
from signet.storage.vault import (
    CHUNK,
    ObjectNotFound,
    RetentionViolation,
    Upload,
    Vault,
    VaultStatus,
    check_record_name,
    check_sha256,
    now,
    retention_years_checked,
    years_from,
)

log = logging.getLogger(__name__)

#: Where the vault tests the store's conditional writes; outside objects/ and records/.
_PROBE = "probes/if-none-match"


class S3Vault(Vault):
    def __init__(
        self,
        *,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        retention_years: int,
        secure: bool = False,
        staging: Path,
        create_bucket: bool = True,
    ) -> None:
        self.bucket = bucket
        self.retention_years = retention_years_checked(retention_years)
        self.staging = staging
        #: The store refuses `If-None-Match: *` writes to existing names (probed on start).
        self.conditional_writes = False
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=60),
            maxsize=16,
            retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503)),
        )
        self.client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure, http_client=http
        )
        self._bootstrap(create_bucket)
        self._loop_requests = LoopRequests(
            endpoint=endpoint,
            secure=secure,
            bucket=bucket,
            # The region minio resolved for the bucket (GetBucketLocation, cached): the
            # signatures of both request paths must name the same one.
            region=self.client._get_region(bucket),
            access_key=access_key,
            secret_key=secret_key,
        )

    # -- bucket ----------------------------------------------------------------------------

    def _bootstrap(self, create: bool) -> None:
        """Create the bucket locked, or refuse one that does not keep the promises."""
        create_locked_bucket(self.client, self.bucket, self.retention_years, create=create)
        self.status()
        self.conditional_writes = self._honours_if_none_match()

    def status(self) -> VaultStatus:
        return lock_status(self.client, self.bucket)

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        return call(self.client, method, *args, **kwargs)

    def _honours_if_none_match(self) -> bool:
        """Whether the store refuses a PUT with ``If-None-Match: *`` on an existing name.

        AWS S3 (2024-08), MinIO (2024-11) and SeaweedFS 4 do; an older store ignores
        the header and would write a second version, so this is tested, not assumed:
        a one-byte probe is written (first start of a bucket) and written again, which
        must be refused.  On a store that ignores the header each start leaves one more
        one-byte version of the probe, retained like everything else.
        """
        try:
            if not self._exists(_PROBE):
                self._put_if_absent(_PROBE, b"1", "text/plain", None, None)
            return not self._put_if_absent(_PROBE, b"1", "text/plain", None, None)
        except ServiceUnavailable as exc:  # e.g. 501 for the header: the HEAD-first path
            log.warning("conditional writes not available, checking names first: %s", exc)
            return False

    # -- objects ---------------------------------------------------------------------------

    def put_upload(
        self,
        upload: Upload,
        *,
        content_type: str,
        kind: ObjectKind,
        envelope_id: str | None = None,
    ) -> tuple[ObjectInfo, bool]:
        """One write carries the bytes, the metadata and the COMPLIANCE retention.

        On a store that honours ``If-None-Match: *`` (`conditional_writes`) that write
        is conditional, so the store itself refuses it (412) when the name exists.  An
        upload held in memory is one PUT, checked atomically: two concurrent uploads of
        the same bytes cannot both write.  A spilled one goes multipart
        (`s3_multipart`), after a HEAD that spares re-sending a large object already
        stored, with the completion conditional (atomic where the store makes it so;
        SeaweedFS 4.48 does not, see there).  On a store without conditional writes
        the HEAD is the only check.
        """
        key = f"objects/{upload.sha256}"
        info, headers = new_object(upload, content_type, kind, envelope_id, self.retention_years)
        if upload.data is not None and self.conditional_writes:
            try:
                self._call(
                    self.client._execute, "PUT", self.bucket, key, body=upload.data, headers=headers
                )
            except NameTaken:
                return self.head(upload.sha256), False
            return info, True
        if self._exists(key):
            return self.head(upload.sha256), False
        if upload.data is not None:
            self._call(
                self.client.put_object,
                self.bucket,
                key,
                io.BytesIO(upload.data),
                upload.size,
                content_type=content_type,
                metadata=metadata(kind, info.created_at, upload.sha256, envelope_id, content_type),
                retention=Retention(COMPLIANCE, info.retain_until),
            )
            return info, True
        creation = {
            name: value
            for name, value in headers.items()
            if name not in ("If-None-Match", "x-amz-checksum-sha256")  # not for a whole upload
        }
        stored = self._call(
            put_multipart,
            self.client,
            self.bucket,
            key,
            cast(Path, upload.path),
            upload.size,
            creation,
            conditional=self.conditional_writes,
        )
        if not stored:
            return self.head(upload.sha256), False
        return info, True

    async def put_upload_async(
        self,
        upload: Upload,
        *,
        content_type: str,
        kind: ObjectKind,
        envelope_id: str | None = None,
    ) -> tuple[ObjectInfo, bool]:
        """`put_upload` from the event loop: one conditional PUT without a thread hop.

        The payload hash that signs the request is the object's name, already
        computed, so the bytes are not hashed again here.
        """
        if upload.data is None or not self.conditional_writes:
            return await anyio.to_thread.run_sync(
                functools.partial(
                    self.put_upload,
                    upload,
                    content_type=content_type,
                    kind=kind,
                    envelope_id=envelope_id,
                )
            )
        info, headers = new_object(upload, content_type, kind, envelope_id, self.retention_years)
        try:
            response = await self._loop_requests.send(
                "PUT",
                f"objects/{upload.sha256}",
                body=upload.data,
                content_sha256=upload.sha256,
                headers=headers,
            )
        except NameTaken:
            return await self.head_async(upload.sha256), False
        response.release()
        return info, True

    def _put_if_absent(
        self,
        key: str,
        data: bytes,
        content_type: str,
        metadata: Mapping[str, str] | None,
        until: datetime | None,
    ) -> bool:
        """One conditional PUT through minio's request layer; False when `key` exists (412).

        `Minio.put_object` has no way to send a conditional header, so this uses the
        client's `_execute` (signing, region, retries and S3 error parsing; unchanged
        since minio 7.0).
        """
        headers = put_headers(content_type, metadata, until, hashlib.sha256(data).digest())
        try:
            self._call(self.client._execute, "PUT", self.bucket, key, body=data, headers=headers)
        except NameTaken:
            return False
        return True

    def _exists(self, key: str) -> bool:
        try:
            self._call(self.client.stat_object, self.bucket, key)
        except ObjectNotFound:
            return False
        return True

    def read(self, sha256: str) -> tuple[ObjectInfo, Iterator[bytes]]:
        """One GET: S3 returns the object's metadata, retention and hold in its headers."""
        key = f"objects/{check_sha256(sha256)}"
        response = self._call(self.client.get_object, self.bucket, key)
        try:
            info = self._info(sha256, key, response.headers)
        except BaseException:
            release(response, complete=False)
            raise

        def chunks() -> Iterator[bytes]:
            complete = False
            try:
                yield from response.stream(CHUNK)
                complete = True
            finally:
                release(response, complete=complete)

        return info, chunks()

    async def read_async(self, sha256: str) -> tuple[ObjectInfo, bytes | AsyncIterator[bytes]]:
        """One GET from the event loop: the whole object when it is at most `CHUNK` bytes,
        else its bytes as they arrive (aiohttp's flow control bounds the buffer)."""
        response = await self._loop_requests.send("GET", f"objects/{check_sha256(sha256)}")
        try:
            info = await self._info_async(sha256, response.headers)
            if info.size <= CHUNK:
                return info, await response.read()  # read to the end: the connection is reused
        except BaseException:
            response.close()
            raise
        return info, relay(response)

    def head(self, sha256: str) -> ObjectInfo:
        """One HEAD: it answers retention and legal hold too (S3 `HeadObject`)."""
        key = f"objects/{check_sha256(sha256)}"
        stat = self._call(self.client.stat_object, self.bucket, key)
        return self._info(sha256, key, stat.metadata or {})

    async def head_async(self, sha256: str) -> ObjectInfo:
        response = await self._loop_requests.send("HEAD", f"objects/{check_sha256(sha256)}")
        response.release()
        return await self._info_async(sha256, response.headers)

    def _info(self, sha256: str, key: str, headers: Mapping[str, str]) -> ObjectInfo:
        """An object's info from its GET or HEAD headers.

        A store that leaves out the Object Lock headers (they need the
        `GetObjectRetention` / `GetObjectLegalHold` permissions) is asked with the
        explicit calls instead, so the answer never guesses.
        """
        lower = {k.lower(): v for k, v in headers.items()}
        retain_until, hold = lock_state(lower)
        if retain_until is None:
            retention = self._call(self.client.get_object_retention, self.bucket, key)
            retain_until = aware(retention.retain_until_date) if retention else now()
        if hold is None:
            hold = self._legal_hold(key)
        return object_info(sha256, lower, retain_until, hold)

    async def _info_async(self, sha256: str, headers: Mapping[str, str]) -> ObjectInfo:
        lower = {k.lower(): v for k, v in headers.items()}
        retain_until, hold = lock_state(lower)
        if retain_until is None or hold is None:  # the explicit calls, as `_info` does
            return await anyio.to_thread.run_sync(self.head, sha256)
        return object_info(sha256, lower, retain_until, hold)

    def _legal_hold(self, key: str) -> bool:
        try:
            return bool(self.client.is_object_legal_hold_enabled(self.bucket, key))
        except S3Error as exc:
            if exc.code == "NoSuchObjectLegalHold":  # SeaweedFS: never set means off
                return False
            return bool(self._call(self.client.is_object_legal_hold_enabled, self.bucket, key))

    def open(self, sha256: str) -> Iterator[bytes]:
        return self.read(sha256)[1]

    def extend_retention(self, sha256: str, until: datetime) -> ObjectInfo:
        info = self.head(sha256)
        if until < info.retain_until:
            raise RetentionViolation(
                f"retention of {sha256} ends {info.retain_until:%Y-%m-%d}; it can only be "
                "extended, never shortened"
            )
        self._call(
            self.client.set_object_retention,
            self.bucket,
            f"objects/{sha256}",
            Retention(COMPLIANCE, until),
        )
        return self.head(sha256)

    def set_legal_hold(self, sha256: str, on: bool) -> ObjectInfo:
        key = f"objects/{check_sha256(sha256)}"
        method = (
            self.client.enable_object_legal_hold if on else self.client.disable_object_legal_hold
        )
        self._call(method, self.bucket, key)
        return self.head(sha256)

    def objects(self) -> Iterator[str]:
        for item in self._call(self.client.list_objects, self.bucket, "objects/", recursive=True):
            yield str(item.object_name).removeprefix("objects/")

    # -- records ---------------------------------------------------------------------------

    def put_record(self, name: str, data: bytes) -> None:
        """Write once: a conditional PUT where the store honours it (two writers racing for
        one name cannot both succeed), else a HEAD first."""
        key = f"records/{check_record_name(name)}"
        until = years_from(now(), self.retention_years)
        if self.conditional_writes:
            if not self._put_if_absent(key, data, "application/octet-stream", None, until):
                raise RetentionViolation(f"record {name} exists and is immutable")
            return
        if self._exists(key):
            raise RetentionViolation(f"record {name} exists and is immutable")
        self._call(
            self.client.put_object,
            self.bucket,
            key,
            io.BytesIO(data),
            len(data),
            retention=Retention(COMPLIANCE, until),
        )

    def get_record(self, name: str) -> bytes:
        response = self._call(
            self.client.get_object, self.bucket, f"records/{check_record_name(name)}"
        )
        complete = False
        try:
            data = bytes(response.read())
            complete = True
            return data
        finally:
            release(response, complete=complete)

    def records(self, prefix: str) -> list[str]:
        listing = self._call(
            self.client.list_objects, self.bucket, f"records/{prefix}", recursive=True
        )
        return sorted(str(item.object_name).removeprefix("records/") for item in listing)
