"""How an object's facts are spelled in S3 headers, both ways: the write-once PUT's
headers (metadata, COMPLIANCE retention, checksum, ``If-None-Match``) and an
`ObjectInfo` read back from a GET's or HEAD's headers.  Pure functions, shared by
both request paths of `S3Vault` (the event loop's and minio's).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime

from minio.commonconfig import COMPLIANCE
from signet.common.contracts.storage import ObjectInfo, ObjectKind
from signet.storage.vault import Upload, new_object_info, now

#: The prefix of user metadata headers.
META = "x-amz-meta-"


def new_object(
    upload: Upload, content_type: str, kind: ObjectKind, envelope_id: str | None, years: int
) -> tuple[ObjectInfo, dict[str, str]]:
    """The info of a new object, retained `years` from now, and its write-once PUT's headers."""
    info = new_object_info(upload, content_type, kind, envelope_id, years)
    headers = put_headers(
        content_type,
        metadata(kind, info.created_at, upload.sha256, envelope_id, content_type),
        info.retain_until,
        bytes.fromhex(upload.sha256),
    )
    return info, headers


def metadata(
    kind: ObjectKind,
    created_at: datetime,
    sha256: str,
    envelope_id: str | None,
    content_type: str | None = None,
) -> dict[str, str]:
    """Signet's own facts of an object.  The content type is kept here too because a store
    may rewrite the object's Content-Type when its retention or legal hold changes
    (SeaweedFS makes it application/octet-stream): this copy is the one served."""
    metadata = {
        "signet-kind": kind.value,
        "signet-created": created_at.isoformat(),
        "signet-sha256": sha256,
    }
    if content_type is not None and content_type.isascii():
        metadata["signet-content-type"] = content_type
    if envelope_id:
        metadata["signet-envelope"] = envelope_id
    return metadata


def put_headers(
    content_type: str, metadata: Mapping[str, str] | None, until: datetime | None, digest: bytes
) -> dict[str, str]:
    """Headers of a write-once PUT: metadata, COMPLIANCE retention, the SHA-256 checksum
    (the store refuses bytes that do not match it: `BadDigest`) and ``If-None-Match``."""
    headers = {f"{META}{key}": value for key, value in (metadata or {}).items()}
    if until is not None:
        headers["x-amz-object-lock-mode"] = COMPLIANCE
        headers["x-amz-object-lock-retain-until-date"] = iso8601(until)
    headers["Content-Type"] = content_type
    headers["x-amz-checksum-sha256"] = base64.b64encode(digest).decode()
    headers["If-None-Match"] = "*"
    return headers


def iso8601(moment: datetime) -> str:
    """``2031-12-01T08:00:00.000Z``: minio's `to_iso8601utc` at half its cost."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def lock_state(headers: Mapping[str, str]) -> tuple[datetime | None, bool | None]:
    """Retention date and legal hold from (lower-cased) object headers, None if absent."""
    until = headers.get("x-amz-object-lock-retain-until-date")
    hold = headers.get("x-amz-object-lock-legal-hold")
    return (
        aware(datetime.fromisoformat(until.replace("Z", "+00:00"))) if until else None,
        hold.upper() == "ON" if hold else None,
    )


def object_info(
    sha256: str, headers: Mapping[str, str], retain_until: datetime, legal_hold: bool
) -> ObjectInfo:
    return ObjectInfo(
        sha256=sha256,
        size=int(headers.get("content-length", 0)),
        content_type=headers.get(f"{META}signet-content-type")
        or headers.get("content-type", "application/octet-stream"),
        kind=ObjectKind(headers.get(f"{META}signet-kind", "original")),
        envelope_id=headers.get(f"{META}signet-envelope"),
        created_at=datetime.fromisoformat(headers.get(f"{META}signet-created", now().isoformat())),
        retain_until=retain_until,
        legal_hold=legal_hold,
    )


def aware(value: datetime | None) -> datetime:
    if value is None:
        return now()
    return value if value.tzinfo else value.replace(tzinfo=UTC)
