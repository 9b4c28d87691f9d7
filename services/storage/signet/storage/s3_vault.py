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
bucket's default.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import urllib3
from minio import Minio
from minio.commonconfig import COMPLIANCE
from minio.error import S3Error
from minio.objectlockconfig import YEARS, ObjectLockConfig
from minio.retention import Retention
from signet.common.contracts.storage import ObjectInfo, ObjectKind
from signet.common.errors import ServiceUnavailable
from signet.storage.vault import (
    CHUNK,
    ObjectNotFound,
    RetentionViolation,
    VaultMisconfigured,
    VaultStatus,
    check_record_name,
    check_sha256,
    now,
    retention_years_checked,
    staged_upload,
    years_from,
)

_META = "x-amz-meta-"
_NOT_FOUND = {"NoSuchKey", "NoSuchObject", "NoSuchVersion", "ResourceNotFound"}


class S3Vault:
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
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=60),
            maxsize=16,
            retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503)),
        )
        self.client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure, http_client=http
        )
        self._bootstrap(create_bucket)

    # -- bucket ----------------------------------------------------------------------------

    def _bootstrap(self, create: bool) -> None:
        """Create the bucket locked, or refuse one that does not keep the promises."""
        try:
            exists = self.client.bucket_exists(self.bucket)
            if not exists:
                if not create:
                    raise VaultMisconfigured(f"bucket {self.bucket} does not exist")
                self.client.make_bucket(self.bucket, object_lock=True)
                self.client.set_object_lock_config(
                    self.bucket, ObjectLockConfig(COMPLIANCE, self.retention_years, YEARS)
                )
        except S3Error as exc:
            raise VaultMisconfigured(f"bucket {self.bucket}: {exc.code}: {exc.message}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ServiceUnavailable(f"object store unreachable: {exc}") from exc
        self.status()

    def status(self) -> VaultStatus:
        try:
            config = self.client.get_object_lock_config(self.bucket)
        except S3Error as exc:
            if exc.code == "ObjectLockConfigurationNotFoundError":
                raise VaultMisconfigured(
                    f"bucket {self.bucket} has no Object Lock: documents could be deleted. "
                    "Create a bucket with Object Lock enabled (it cannot be added later)."
                ) from exc
            raise VaultMisconfigured(f"bucket {self.bucket}: {exc.code}: {exc.message}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ServiceUnavailable(f"object store unreachable: {exc}") from exc
        if config.mode != COMPLIANCE:
            raise VaultMisconfigured(
                f"bucket {self.bucket} default retention is {config.mode or 'not set'}, "
                "not COMPLIANCE: it could be shortened or bypassed"
            )
        duration = int(config.duration or 0)
        years = duration if config.duration_unit == YEARS else duration // 365
        retention_years_checked(years)
        return VaultStatus("s3", str(config.mode), years)

    # -- objects ---------------------------------------------------------------------------

    def put(
        self,
        stream: BinaryIO,
        *,
        content_type: str,
        kind: ObjectKind,
        envelope_id: str | None = None,
        limit: int | None = None,
    ) -> tuple[ObjectInfo, bool]:
        with staged_upload(stream, self.staging, limit=limit, durable=False) as staged:
            if self._exists(f"objects/{staged.sha256}"):
                return self.head(staged.sha256), False
            created_at = now()
            until = years_from(created_at, self.retention_years)
            metadata = {
                "signet-kind": kind.value,
                "signet-created": created_at.isoformat(),
                "signet-sha256": staged.sha256,
            }
            if envelope_id:
                metadata["signet-envelope"] = envelope_id
            with staged.path.open("rb") as data:
                self._call(
                    self.client.put_object,
                    self.bucket,
                    f"objects/{staged.sha256}",
                    data,
                    staged.size,
                    content_type=content_type,
                    metadata=metadata,
                    retention=Retention(COMPLIANCE, until),
                    part_size=16 * 1024 * 1024,
                )
            info = ObjectInfo(
                sha256=staged.sha256,
                size=staged.size,
                content_type=content_type,
                kind=kind,
                envelope_id=envelope_id,
                created_at=created_at,
                retain_until=until,
            )
        return info, True

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
        headers = {k.lower(): v for k, v in response.headers.items()}
        until = headers.get("x-amz-object-lock-retain-until-date")
        info = ObjectInfo(
            sha256=sha256,
            size=int(headers.get("content-length", 0)),
            content_type=headers.get("content-type", "application/octet-stream"),
            kind=ObjectKind(headers.get(f"{_META}signet-kind", "original")),
            envelope_id=headers.get(f"{_META}signet-envelope"),
            created_at=datetime.fromisoformat(
                headers.get(f"{_META}signet-created", now().isoformat())
            ),
            retain_until=_aware(datetime.fromisoformat(until.replace("Z", "+00:00")))
            if until
            else now(),
            legal_hold=headers.get("x-amz-object-lock-legal-hold", "OFF").upper() == "ON",
        )

        def chunks() -> Iterator[bytes]:
            try:
                yield from response.stream(CHUNK)
            finally:
                response.close()
                response.release_conn()

        return info, chunks()

    def head(self, sha256: str) -> ObjectInfo:
        key = f"objects/{check_sha256(sha256)}"
        stat = self._call(self.client.stat_object, self.bucket, key)
        meta = {k.lower(): v for k, v in (stat.metadata or {}).items()}
        retention = self._call(self.client.get_object_retention, self.bucket, key)
        legal_hold = self._legal_hold(key)
        return ObjectInfo(
            sha256=sha256,
            size=int(stat.size or 0),
            content_type=stat.content_type or "application/octet-stream",
            kind=ObjectKind(meta.get(f"{_META}signet-kind", "original")),
            envelope_id=meta.get(f"{_META}signet-envelope"),
            created_at=datetime.fromisoformat(
                meta.get(f"{_META}signet-created", now().isoformat())
            ),
            retain_until=_aware(retention.retain_until_date) if retention else now(),
            legal_hold=bool(legal_hold),
        )

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
        key = f"records/{check_record_name(name)}"
        try:
            self._call(self.client.stat_object, self.bucket, key)
        except ObjectNotFound:
            pass
        else:
            raise RetentionViolation(f"record {name} exists and is immutable")
        until = years_from(now(), self.retention_years)
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
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    def records(self, prefix: str) -> list[str]:
        listing = self._call(
            self.client.list_objects, self.bucket, f"records/{prefix}", recursive=True
        )
        return sorted(str(item.object_name).removeprefix("records/") for item in listing)

    # -- errors ----------------------------------------------------------------------------

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """One S3 call with our errors: 404s named, refusals kept, outages as 503."""
        try:
            result = method(*args, **kwargs)
            if method == self.client.list_objects:
                result = list(result)
            return result
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                raise ObjectNotFound(f"no object {args[1] if len(args) > 1 else ''}") from exc
            if exc.code == "AccessDenied":
                raise RetentionViolation(f"the object store refused: {exc.message}") from exc
            raise ServiceUnavailable(f"object store error {exc.code}: {exc.message}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ServiceUnavailable(f"object store unreachable: {exc}") from exc


def _aware(value: datetime | None) -> datetime:
    if value is None:
        return now()
    return value if value.tzinfo else value.replace(tzinfo=UTC)
