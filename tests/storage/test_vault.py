"""The vault keeps every object: no delete, no overwrite, no shorter retention, on both kinds.

Each rule is checked through our API on the filesystem vault and the S3 vault,
and, for S3, once more with the raw `minio` client to prove the server itself
enforces Object Lock (what our code enforces is then defence in depth).
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from minio import Minio
from minio.commonconfig import COMPLIANCE
from minio.error import S3Error
from minio.objectlockconfig import YEARS, ObjectLockConfig
from minio.retention import Retention
from signet.common.contracts.storage import ObjectInfo, ObjectKind
from signet.common.errors import PayloadTooLarge, ServiceUnavailable
from signet.storage.fs_vault import FilesystemVault
from signet.storage.s3_multipart import put_multipart
from signet.storage.s3_requests import close_loop_sessions
from signet.storage.s3_vault import S3Vault
from signet.storage.vault import (
    CHUNK,
    IN_MEMORY,
    ObjectNotFound,
    RetentionViolation,
    Upload,
    UploadBuffer,
    Vault,
    VaultMisconfigured,
    scrub,
    years_from,
)

from tests.storage.conftest import S3Server, make_s3_vault, new_bucket


def _put(vault: Vault, data: bytes, kind: ObjectKind = ObjectKind.ORIGINAL) -> str:
    info, _ = vault.put(
        io.BytesIO(data), content_type="application/pdf", kind=kind, envelope_id="env-1"
    )
    return info.sha256


def _raw(s3: S3Server) -> Minio:
    return Minio(s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key, secure=False)


def test_objects_are_content_addressed_and_written_once(vault: Vault) -> None:
    data = os.urandom(100_000)
    info, created = vault.put(
        io.BytesIO(data), content_type="application/pdf", kind=ObjectKind.ORIGINAL, envelope_id="e"
    )
    assert created and info.sha256 == hashlib.sha256(data).hexdigest() and info.size == len(data)
    assert b"".join(vault.open(info.sha256)) == data
    again, created_again = vault.put(
        io.BytesIO(data), content_type="text/plain", kind=ObjectKind.FINAL
    )
    assert not created_again
    assert again.kind is ObjectKind.ORIGINAL and again.content_type == "application/pdf"
    head = vault.head(info.sha256)
    assert head.envelope_id == "e" and head.kind is ObjectKind.ORIGINAL
    assert head.retain_until >= years_from(head.created_at, 5) - timedelta(seconds=2)
    with pytest.raises(ObjectNotFound):
        vault.head("0" * 64)
    with pytest.raises(ObjectNotFound):
        vault.open("0" * 64)


def test_no_code_path_deletes_or_overwrites(vault: Vault) -> None:
    sha = _put(vault, b"the signed contract")
    forbidden = {"delete", "remove", "delete_object", "remove_object", "overwrite", "purge"}
    assert not forbidden & {name.lower() for name in dir(vault)}
    vault.put_record("ledger/segments/000001", b"first")
    with pytest.raises(RetentionViolation):
        vault.put_record("ledger/segments/000001", b"replacement")
    assert vault.get_record("ledger/segments/000001") == b"first"
    assert vault.records("ledger/segments") == ["ledger/segments/000001"]
    assert b"".join(vault.open(sha)) == b"the signed contract"


def test_retention_extends_but_never_shortens(vault: Vault) -> None:
    sha = _put(vault, os.urandom(1000))
    current = vault.head(sha).retain_until
    with pytest.raises(RetentionViolation, match="never shortened"):
        vault.extend_retention(sha, current - timedelta(days=1))
    assert vault.head(sha).retain_until == current
    later = (current + timedelta(days=400)).replace(microsecond=0)
    assert vault.extend_retention(sha, later).retain_until == later
    with pytest.raises(RetentionViolation):
        vault.extend_retention(sha, current)


def test_legal_hold_on_and_off(vault: Vault) -> None:
    sha = _put(vault, os.urandom(1000))
    assert not vault.head(sha).legal_hold
    assert vault.set_legal_hold(sha, True).legal_hold
    assert vault.head(sha).legal_hold
    info, chunks = vault.read(sha)  # metadata from the GET itself matches HEAD
    assert b"".join(chunks) and info == vault.head(sha)
    assert not vault.set_legal_hold(sha, False).legal_hold
    assert vault.read(sha)[0] == vault.head(sha)


def test_scrubber_names_a_corrupted_object(tmp_path: Path) -> None:
    vault = FilesystemVault(tmp_path / "vault", retention_years=5)
    good, bad = _put(vault, b"intact"), _put(vault, b"will rot")
    path = tmp_path / "vault" / "objects" / bad[:2] / bad
    path.chmod(0o644)
    path.write_bytes(b"bit rot!")
    findings = list(scrub(vault))
    assert [f.sha256 for f in findings] == [bad]
    assert good not in {f.sha256 for f in findings}


def test_large_objects_stream_through(vault: Vault) -> None:
    """40 MB: more than one multipart part on S3, chunked both ways."""
    data = os.urandom(40 * 1024 * 1024)
    sha = _put(vault, data)
    digest, size = hashlib.sha256(), 0
    for chunk in vault.open(sha):
        assert len(chunk) <= 1024 * 1024 * 16
        digest.update(chunk)
        size += len(chunk)
    assert size == len(data) and digest.hexdigest() == sha


def test_filesystem_vault_refuses_short_retention(tmp_path: Path) -> None:
    with pytest.raises(VaultMisconfigured, match="statutory minimum of 5"):
        FilesystemVault(tmp_path, retention_years=3)


# -- the S3 server's own enforcement ------------------------------------------------------


def test_s3_server_enforces_object_lock_on_every_path(s3_server: S3Server, tmp_path: Path) -> None:
    vault = make_s3_vault(s3_server, tmp_path)
    sha = _put(vault, os.urandom(5000))
    raw, key = _raw(s3_server), f"objects/{sha}"
    version = raw.stat_object(vault.bucket, key).version_id
    assert version
    retention = raw.get_object_retention(vault.bucket, key)
    assert retention is not None and retention.mode == COMPLIANCE

    with pytest.raises(S3Error) as deleted:
        raw.remove_object(vault.bucket, key, version_id=version)
    assert deleted.value.code == "AccessDenied"
    with pytest.raises(S3Error) as shortened:
        raw.set_object_retention(
            vault.bucket,
            key,
            Retention(COMPLIANCE, retention.retain_until_date - timedelta(days=30)),
            version_id=version,
        )
    assert shortened.value.code == "AccessDenied"
    vault.set_legal_hold(sha, True)
    with pytest.raises(S3Error) as held:
        raw.remove_object(vault.bucket, key, version_id=version)
    assert held.value.code == "AccessDenied"
    with pytest.raises(S3Error) as bucket_gone:
        raw.remove_bucket(vault.bucket)
    assert bucket_gone.value.code == "BucketNotEmpty"
    # A delete without a version id only adds a delete marker: the version stays readable.
    raw.remove_object(vault.bucket, key)
    data = raw.get_object(vault.bucket, key, version_id=version)
    assert hashlib.sha256(data.read()).hexdigest() == sha


def test_s3_bootstrap_refuses_unsafe_buckets(s3_server: S3Server, tmp_path: Path) -> None:
    raw = _raw(s3_server)
    unlocked = new_bucket()
    raw.make_bucket(unlocked)
    with pytest.raises(VaultMisconfigured, match="no Object Lock"):
        make_s3_vault(s3_server, tmp_path, bucket=unlocked)
    short = new_bucket()
    raw.make_bucket(short, object_lock=True)
    raw.set_object_lock_config(short, ObjectLockConfig(COMPLIANCE, 3, YEARS))
    with pytest.raises(VaultMisconfigured, match="statutory minimum"):
        make_s3_vault(s3_server, tmp_path, bucket=short)
    with pytest.raises(VaultMisconfigured, match="statutory minimum"):
        make_s3_vault(s3_server, tmp_path, years=4)
    created = make_s3_vault(s3_server, tmp_path, years=7)
    assert created.status().retention_years == 7 and created.status().object_lock == COMPLIANCE


def test_s3_scrubber_sees_a_replaced_version(s3_server: S3Server, tmp_path: Path) -> None:
    """Someone with the bucket's keys writes other bytes under an object's name: the old
    version is retained by Object Lock, and the scrubber reports the mismatch."""
    vault: S3Vault = make_s3_vault(s3_server, tmp_path)
    sha = _put(vault, b"genuine contract")
    _raw(s3_server).put_object(vault.bucket, f"objects/{sha}", io.BytesIO(b"forged"), 6)
    assert [f.sha256 for f in scrub(vault)] == [sha]


# -- uploads: hashed as received, bounded memory ------------------------------------------


def test_upload_buffer_keeps_small_uploads_in_memory_and_spills_large_ones(
    tmp_path: Path,
) -> None:
    small = UploadBuffer(tmp_path, limit=100)
    small.write([b"ab", b"cd"])
    upload = small.finish()
    assert upload.data == b"abcd" and upload.path is None
    assert upload.sha256 == hashlib.sha256(b"abcd").hexdigest() and upload.size == 4

    pieces = [os.urandom(700) for _ in range(5)]
    with UploadBuffer(tmp_path, in_memory=1000) as large:
        large.write(pieces)
        upload = large.finish()
        assert upload.data is None and upload.path is not None
        assert upload.path.read_bytes() == b"".join(pieces)
        assert upload.sha256 == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert not upload.path.exists()  # the buffer removes its staging file

    with pytest.raises(PayloadTooLarge), UploadBuffer(tmp_path, limit=10, in_memory=4) as over:
        over.write([b"12345", b"678901"])
    assert not list(tmp_path.glob("upload-*"))


def _upload(vault: Vault, data: bytes) -> Upload:
    buffer = UploadBuffer(vault.staging)
    buffer.write([data])
    return buffer.finish()


async def test_the_event_loop_paths_keep_the_same_promises(vault: Vault) -> None:
    """`put_upload_async`, `read_async` and `head_async` (the API's) agree with the
    blocking methods: content-addressed, first write wins, whole or streamed bytes."""
    try:
        small, large = os.urandom(100_000), os.urandom(3 * CHUNK + 5)
        info, created = await vault.put_upload_async(
            _upload(vault, small), content_type="application/pdf", kind=ObjectKind.FINAL
        )
        assert created and info.sha256 == hashlib.sha256(small).hexdigest()
        again, created_again = await vault.put_upload_async(
            _upload(vault, small), content_type="text/plain", kind=ObjectKind.ORIGINAL
        )
        assert not created_again and again == vault.head(info.sha256)
        assert again.kind is ObjectKind.FINAL and again.content_type == "application/pdf"
        assert await vault.head_async(info.sha256) == vault.head(info.sha256)
        read_info, body = await vault.read_async(info.sha256)
        assert read_info == vault.head(info.sha256) and body == small

        big, _ = await vault.put_upload_async(
            _upload(vault, large), content_type="application/pdf", kind=ObjectKind.ORIGINAL
        )
        read_info, body = await vault.read_async(big.sha256)
        assert read_info.size == len(large) and not isinstance(body, bytes)
        assert b"".join([chunk async for chunk in body]) == large
        with pytest.raises(ObjectNotFound):
            await vault.read_async("0" * 64)
        with pytest.raises(ObjectNotFound):
            await vault.head_async("0" * 64)
    finally:
        await close_loop_sessions()


def test_s3_put_is_one_conditional_request_and_never_a_second_version(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """Eight threads put the same new bytes at once: the store's `If-None-Match: *`
    lets exactly one write; retention, metadata and checksum came with that PUT."""
    vault = make_s3_vault(s3_server, tmp_path)
    if s3_server.name == "seaweedfs":
        assert vault.conditional_writes
    data = os.urandom(200_000)
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(
                lambda _: vault.put_upload(
                    _upload(vault, data), content_type="application/pdf", kind=ObjectKind.FINAL
                ),
                range(8),
            )
        )
    assert sum(created for _, created in results) == 1
    info = next(info for info, created in results if created)
    raw, key = _raw(s3_server), f"objects/{info.sha256}"
    versions = list(raw.list_objects(vault.bucket, key, include_version=True))
    assert len(versions) == 1
    retention = raw.get_object_retention(vault.bucket, key)
    assert retention is not None and retention.mode == COMPLIANCE
    assert retention.retain_until_date == info.retain_until
    metadata = raw.stat_object(vault.bucket, key).metadata or {}
    assert metadata["x-amz-meta-signet-sha256"] == info.sha256
    assert vault.head(info.sha256) == info


def test_s3_large_uploads_past_the_head_at_once_leave_one_version(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three identical uploads too large for one PUT, all past the HEAD before any is
    stored: the completion of each multipart upload carries ``If-None-Match: *``, so
    the first to complete is the one version, the others are refused, their parts
    discarded, and they answer with the stored object.

    The completions are taken one at a time here: SeaweedFS 4.48 checks the header on
    completion but not atomically (two completions in the same instant both succeeded
    in a loaded run), so that window is the store's, and this test keeps to what it
    promises; without the header all three would become versions."""
    vault = make_s3_vault(s3_server, tmp_path)
    if not vault.conditional_writes:
        pytest.skip("this S3 server ignores If-None-Match: the vault checks with a HEAD first")
    data = os.urandom(IN_MEMORY + CHUNK)
    everyone_checked = threading.Barrier(3, timeout=30)
    exists = vault._exists

    def exists_then_wait(key: str) -> bool:
        found = exists(key)
        everyone_checked.wait()  # nobody uploads before all three saw the name free
        return found

    vault._exists = exists_then_wait  # type: ignore[method-assign]
    one_at_a_time = threading.Lock()

    def serialized(*args: Any, **kwargs: Any) -> bool:
        with one_at_a_time:
            return put_multipart(*args, **kwargs)

    monkeypatch.setattr("signet.storage.s3_vault.put_multipart", serialized)

    def put(_: int) -> tuple[ObjectInfo, bool]:
        with UploadBuffer(vault.staging) as buffer:
            buffer.write([data])
            upload = buffer.finish()
            assert upload.path is not None  # spilled: the multipart path
            return vault.put_upload(upload, content_type="application/pdf", kind=ObjectKind.FINAL)

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(put, range(3)))
    assert sum(created for _, created in results) == 1
    info = next(info for info, created in results if created)
    assert all(other == vault.head(info.sha256) for other, _ in results)
    raw, key = _raw(s3_server), f"objects/{info.sha256}"
    assert len(list(raw.list_objects(vault.bucket, key, include_version=True))) == 1
    retention = raw.get_object_retention(vault.bucket, key)
    assert retention is not None and retention.mode == COMPLIANCE
    assert b"".join(vault.open(info.sha256)) == data
    assert not list(vault.staging.glob("upload-*"))


def test_s3_record_names_are_taken_once_even_by_racing_writers(
    s3_server: S3Server, tmp_path: Path
) -> None:
    vault = make_s3_vault(s3_server, tmp_path)

    def write(n: int) -> bool:
        try:
            vault.put_record("ledger/segments/000007", f"writer {n}".encode())
        except RetentionViolation:
            return False
        return True

    with ThreadPoolExecutor(6) as pool:
        assert sum(pool.map(write, range(6))) == 1
    versions = list(
        _raw(s3_server).list_objects(
            vault.bucket, "records/ledger/segments/000007", include_version=True
        )
    )
    assert len(versions) == 1


async def test_s3_event_loop_path_reports_an_unreachable_store_as_503(
    s3_server: S3Server, tmp_path: Path
) -> None:
    vault = make_s3_vault(s3_server, tmp_path)
    sha = _put(vault, b"kept")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/{vault.bucket}/"
    vault._loop_requests._base = dead
    try:
        with pytest.raises(ServiceUnavailable, match="unreachable"):
            await vault.head_async(sha)
    finally:
        await close_loop_sessions()


def test_the_content_type_survives_retention_and_legal_hold(vault: Vault) -> None:
    """An S3 store may rewrite an object's Content-Type when its retention or legal hold
    changes (SeaweedFS makes it application/octet-stream): Signet keeps its own copy."""
    sha = _put(vault, os.urandom(1000))
    later = (vault.head(sha).retain_until + timedelta(days=30)).replace(microsecond=0)
    vault.extend_retention(sha, later)
    assert vault.head(sha).content_type == "application/pdf"
    vault.set_legal_hold(sha, True)
    vault.set_legal_hold(sha, False)
    assert vault.head(sha).content_type == "application/pdf"
    assert vault.read(sha)[0].content_type == "application/pdf"
