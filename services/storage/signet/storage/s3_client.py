"""The vault's minio side: the locked bucket, one call with our errors, pooled connections.

`signet.storage.s3_vault.S3Vault` uses these for everything that is not an API hot path
(those go through `signet.storage.s3_requests`): creating and checking the bucket's
Object Lock, and each minio call, whose errors become the vault's own.
"""

from __future__ import annotations

from typing import Any

import urllib3
from minio import Minio
from minio.commonconfig import COMPLIANCE
from minio.error import S3Error
from minio.objectlockconfig import YEARS, ObjectLockConfig
from signet.common.errors import ServiceUnavailable
from signet.storage.s3_requests import s3_error
from signet.storage.vault import VaultMisconfigured, VaultStatus, retention_years_checked


def create_locked_bucket(client: Minio, bucket: str, years: int, *, create: bool) -> None:
    """Create `bucket` with Object Lock (COMPLIANCE, `years`) unless it exists; refuse a
    missing one without `create`.  `lock_status` then checks what an existing one keeps."""
    try:
        exists = client.bucket_exists(bucket)
        if not exists:
            if not create:
                raise VaultMisconfigured(f"bucket {bucket} does not exist")
            client.make_bucket(bucket, object_lock=True)
            client.set_object_lock_config(bucket, ObjectLockConfig(COMPLIANCE, years, YEARS))
    except S3Error as exc:
        raise VaultMisconfigured(f"bucket {bucket}: {exc.code}: {exc.message}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ServiceUnavailable(f"object store unreachable: {exc}") from exc


def lock_status(client: Minio, bucket: str) -> VaultStatus:
    """The bucket's Object Lock as the vault's status; `VaultMisconfigured` unless it is
    COMPLIANCE with a default retention of at least the statutory minimum."""
    try:
        config = client.get_object_lock_config(bucket)
    except S3Error as exc:
        if exc.code == "ObjectLockConfigurationNotFoundError":
            raise VaultMisconfigured(
                f"bucket {bucket} has no Object Lock: documents could be deleted. "
                "Create a bucket with Object Lock enabled (it cannot be added later)."
            ) from exc
        raise VaultMisconfigured(f"bucket {bucket}: {exc.code}: {exc.message}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ServiceUnavailable(f"object store unreachable: {exc}") from exc
    if config.mode != COMPLIANCE:
        raise VaultMisconfigured(
            f"bucket {bucket} default retention is {config.mode or 'not set'}, "
            "not COMPLIANCE: it could be shortened or bypassed"
        )
    duration = int(config.duration or 0)
    years = duration if config.duration_unit == YEARS else duration // 365
    retention_years_checked(years)
    return VaultStatus("s3", str(config.mode), years)


def call(client: Minio, method: Any, *args: Any, **kwargs: Any) -> Any:
    """One S3 call with our errors: 404s named, refusals kept, outages as 503."""
    try:
        result = method(*args, **kwargs)
        if method == client.list_objects:
            result = list(result)
        return result
    except S3Error as exc:
        raise s3_error(
            exc.code or "", exc.message or "", exc.object_name or exc.bucket_name
        ) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ServiceUnavailable(f"object store unreachable: {exc}") from exc


def release(response: Any, *, complete: bool) -> None:
    """Give a minio GET's connection back to the pool.

    Only a response read to its end leaves the connection reusable; one abandoned
    mid-body (a client that hung up) is closed first.  Closing after every GET, as
    the minio examples do, costs a new TCP connection to the store per request.
    """
    if not complete:
        response.close()
    response.release_conn()
