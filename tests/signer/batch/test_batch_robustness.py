"""Batch workers under a failing volume: a store gone at the pack's fsync, fsync errors
(signed again into a new pack, a bounded number of times), a full disk (postponed), and
an appearance image gone (never sealed without it)."""

from __future__ import annotations

import errno
import hashlib
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from signet.common.contracts.signer import CertificateKind, SignatureLevel, SignOptions
from signet.signer.batch import results as batch_results
from signet.signer.batch.committer import SYNC_ATTEMPTS, Retry
from signet.signer.batch.guard import MARKER, BatchStoreGuard
from signet.signer.batch.results import Pack, Packed
from signet.signer.batch.store import BatchStore
from signet.signer.batch.worker import CLAIM_SIZE, BatchWorker
from signet.signer.database import open_registry_at
from signet.signer.pki.timesource import ClockReading, TimeGuard, TimeTrust
from signet.signer.service import SignerService

from tests.signer.batch.test_batches import _packs, _results, _rows, _signature_count
from tests.support.pdfs import make_pdf, make_png


@pytest.fixture
def own_service(
    signer_service: SignerService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> SignerService:
    """The session's signer with a batch store and guard of its own database and directory
    (other tests' batches are not claimable, and the guard judges this directory)."""
    registry = open_registry_at(tmp_path / "batches.db")
    monkeypatch.setattr(signer_service, "batches", BatchStore(registry, tmp_path / "batches"))
    monkeypatch.setattr(
        signer_service, "batch_store", BatchStoreGuard(registry, tmp_path / "batches")
    )
    assert signer_service.batch_store.state().ready
    return signer_service


@pytest.fixture
def worker(own_service: SignerService) -> Iterator[BatchWorker]:
    """A worker driven in the test's thread (`_run`): no thread of its own is started."""
    worker = BatchWorker(own_service, own_service.batches)
    yield worker
    worker._release_ahead()
    worker._claimer.shutdown()


def _batch(
    service: SignerService, serial: str, count: int, image: bytes | None = None
) -> tuple[str, list[bytes]]:
    sources = [make_pdf(1, title=f"R {i}") for i in range(count)]
    options = SignOptions(certificate_serial=serial, level=SignatureLevel.B_B)
    if image is not None:
        options = SignOptions.model_validate(
            {**options.model_dump(), "appearance": {"page": 1, "rect": [72, 72, 272, 152]}}
        )
    status, _ = service.batches.create(
        [(f"r{i}.pdf", io.BytesIO(d)) for i, d in enumerate(sources)],
        options,
        serial,
        image=image,
        max_document_bytes=10**6,
    )
    return status.id, sources


def _run(worker: BatchWorker) -> None:
    """Work the queue as the worker thread does (groups to sign again first, claims ahead),
    committing each group in this thread, until nothing is left to take."""
    while claims := worker._next_claims():
        worker._work(claims)
        group = worker._groups.get_nowait()
        assert group is not None
        worker.committer.commit(group)


def _states(store: BatchStore, batch_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in _rows(store, batch_id).values():
        counts[row.state] = counts.get(row.state, 0) + 1
    return counts


def _failing_pack_fsync(
    monkeypatch: pytest.MonkeyPatch, fails: Callable[[int], int | None]
) -> list[int]:
    """Make the n-th fsync of a pack (from 0) raise OSError(fails(n)) unless that is None;
    returns the errors raised so far (0 for an fsync that succeeded)."""
    calls: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        if not Path(f"/proc/self/fd/{fd}").readlink().name.endswith(".pack"):
            return real(fd)
        code = fails(len(calls))
        calls.append(code or 0)
        if code is not None:
            raise OSError(code, os.strerror(code))
        return real(fd)

    monkeypatch.setattr(batch_results.os, "fsync", fsync)
    return calls


def _check_results(store: BatchStore, batch_id: str, sources: list[bytes]) -> None:
    """Every document once in the results, signed, the one it says it is."""
    rows = _rows(store, batch_id)
    results = _results(store, batch_id)
    assert sorted(results) == list(range(len(sources)))
    for index, data in results.items():
        assert data.startswith(sources[index]) and _signature_count(data) == 1
        assert hashlib.sha256(data).hexdigest() == rows[index].output_sha256


# -- 1. the store gone between signing and the fsync -----------------------------------------


def test_a_volume_gone_at_the_pack_fsync_hands_the_group_back(
    own_service: SignerService,
    worker: BatchWorker,
    issue: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The volume is unmounted after the group was signed, and its pack's fsync fails: the
    documents are not at fault, their items are pending again (never failed), and are
    sealed into a new pack once the volume is back."""
    store = own_service.batches
    batch_id, sources = _batch(own_service, issue("Gone Seal", CertificateKind.SEAL), 40)
    claims = store.claim(worker.worker, CLAIM_SIZE)
    worker._work(claims)
    group = worker._groups.get_nowait()
    assert group is not None and len(group.written) == CLAIM_SIZE
    store.directory.rename(tmp_path / "unmounted")
    with monkeypatch.context() as patch:
        _failing_pack_fsync(patch, lambda _n: errno.EIO)
        worker.committer.commit(group)
    assert _states(store, batch_id) == {"pending": 40}
    assert worker._retries.empty()  # handed back to every worker, not kept
    (tmp_path / "unmounted").rename(store.directory)
    _run(worker)
    assert _states(store, batch_id) == {"done": 40}
    broken = group.written[0][1].pack.name
    assert all(row.output_pack != broken for row in _rows(store, batch_id).values())
    _check_results(store, batch_id, sources)


# -- 2. fsync errors: a new pack, a bounded number of times; a full disk waits ----------------


def test_a_failed_fsync_signs_the_group_again_and_rewrites_nothing_recorded(
    own_service: SignerService,
    worker: BatchWorker,
    issue: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first group is recorded from the pack; the second group's fsync of that pack
    fails (EIO): the pack is broken, the second group is signed again into a new pack and
    recorded from it, and nothing the first group recorded moves or changes."""
    store = own_service.batches
    batch_id, sources = _batch(own_service, issue("EIO Seal", CertificateKind.SEAL), 40)
    claims = worker._next_claims()
    worker._work(claims)
    group = worker._groups.get_nowait()
    assert group is not None
    worker.committer.commit(group)
    first = {
        i: (r.output_pack, r.output_offset, r.output_size, r.output_sha256)
        for i, r in _rows(store, batch_id).items()
        if r.state == "done"
    }
    assert len(first) == CLAIM_SIZE
    (pack,) = {recorded[0] for recorded in first.values()}
    assert pack is not None
    before = (store.output_folder(batch_id) / pack).read_bytes()
    calls = _failing_pack_fsync(monkeypatch, lambda n: errno.EIO if n == 0 else None)
    _run(worker)
    assert calls == [errno.EIO, 0]  # the second group's fsync failed, its retry's did not
    assert _states(store, batch_id) == {"done": 40}
    rows = _rows(store, batch_id)
    for index, recorded in first.items():
        row = rows[index]
        assert (row.output_pack, row.output_offset, row.output_size, row.output_sha256) == recorded
    assert {rows[i].output_pack for i in range(CLAIM_SIZE, 40)} != {pack}  # not the broken one
    assert (store.output_folder(batch_id) / pack).read_bytes().startswith(before)
    assert len(_packs(store, batch_id)) == 2
    _check_results(store, batch_id, sources)


@pytest.mark.parametrize(
    ("code", "attempts"),
    [(errno.EIO, SYNC_ATTEMPTS), (errno.EINVAL, 1)],
    ids=["EIO-retried", "EINVAL-permanent"],
)
def test_documents_fail_only_after_bounded_attempts_or_a_permanent_error(
    code: int,
    attempts: int,
    own_service: SignerService,
    worker: BatchWorker,
    issue: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A disk whose every fsync fails: each group is signed into `SYNC_ATTEMPTS` packs, then
    fails with the reason and the number of attempts; an error no new pack cures (the
    file system cannot sync: EINVAL) fails at once."""
    store = own_service.batches
    batch_id, _ = _batch(own_service, issue("Dead Disk Seal", CertificateKind.SEAL), 40)
    calls = _failing_pack_fsync(monkeypatch, lambda _n: code)
    _run(worker)
    assert len(calls) == 2 * attempts  # two groups (32 and 8), each `attempts` packs
    assert _states(store, batch_id) == {"failed": 40}
    errors = {row.error for row in _rows(store, batch_id).values()}
    plural = "s" if attempts > 1 else ""
    assert errors == {
        f"internal error (cannot store the signed document: {os.strerror(code)}; "
        f"{attempts} attempt{plural})"
    }
    assert len(_packs(store, batch_id)) == 2 * attempts  # a new pack every time


def test_a_full_disk_at_the_fsync_postpones_the_group(
    own_service: SignerService,
    worker: BatchWorker,
    issue: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ENOSPC at the fsync: the group is handed back (pending, no attempt counted), the
    worker claims nothing for a while and says why, then seals it all."""
    store = own_service.batches
    batch_id, sources = _batch(own_service, issue("Full Seal", CertificateKind.SEAL), 40)
    with monkeypatch.context() as patch:
        _failing_pack_fsync(patch, lambda _n: errno.ENOSPC)
        worker._work(worker._next_claims())
        group = worker._groups.get_nowait()
        assert group is not None
        worker.committer.commit(group)
    assert _states(store, batch_id) == {"pending": CLAIM_SIZE, "running": 40 - CLAIM_SIZE}
    assert "batch volume full" in caplog.text and "free space" in caplog.text
    assert not worker._may_claim()  # paused: and the group claimed ahead is handed back
    assert _states(store, batch_id) == {"pending": 40}
    assert worker._retries.empty()
    worker._paused_until = 0.0  # the wait is over
    _run(worker)
    assert _states(store, batch_id) == {"done": 40}
    _check_results(store, batch_id, sources)


def test_a_full_disk_while_writing_postpones_the_rest_of_the_group(
    own_service: SignerService,
    worker: BatchWorker,
    issue: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ENOSPC while a signed document is written into the pack (the usual place a full disk
    shows): the documents written before are recorded, that one and the rest of the group
    are handed back, none failed."""
    store = own_service.batches
    batch_id, sources = _batch(own_service, issue("Write Full Seal", CertificateKind.SEAL), 10)
    real_write, written = Pack.write, []

    def write(pack: Pack, produce: Callable[[BinaryIO], None]) -> Packed:
        if len(written) == 4:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(1)
        return real_write(pack, produce)

    with monkeypatch.context() as patch:
        patch.setattr(Pack, "write", write)
        worker._work(store.claim(worker.worker, CLAIM_SIZE))
        group = worker._groups.get_nowait()
        assert group is not None
        worker.committer.commit(group)
    assert _states(store, batch_id) == {"done": 4, "pending": 6}
    assert not worker._may_claim()
    worker._paused_until = 0.0
    _run(worker)
    assert _states(store, batch_id) == {"done": 10}
    _check_results(store, batch_id, sources)


def test_groups_left_to_sign_again_are_handed_back_when_the_worker_ends(
    own_service: SignerService, worker: BatchWorker, issue: Callable[..., str]
) -> None:
    """A worker stopping with a group queued to be signed again (its committer found the
    pack broken after the worker's last claim) gives those claims back."""
    store = own_service.batches
    batch_id, _ = _batch(own_service, issue("Stop Seal", CertificateKind.SEAL), 5)
    claims = store.claim(worker.worker, CLAIM_SIZE)
    worker._retries.put(Retry(claims, {(c.batch_id, c.index): 1 for c in claims}))
    worker._groups.put(None)
    worker.committer.run()
    assert _states(store, batch_id) == {"pending": 5}


# -- 3. the appearance image ------------------------------------------------------------------


def test_a_missing_appearance_image_fails_the_documents_rather_than_sealing_without_it(
    own_service: SignerService, worker: BatchWorker, issue: Callable[..., str]
) -> None:
    """The batch asked for an image; it is gone from a store that is otherwise intact: its
    documents fail with the reason, none is sealed without the image.  Another batch with
    its image is sealed with it."""
    store = own_service.batches
    serial = issue("Image Seal", CertificateKind.SEAL)
    intact, _ = _batch(own_service, serial, 3, image=make_png())
    _run(worker)
    assert _states(store, intact) == {"done": 3}
    batch_id, _ = _batch(own_service, serial, 3, image=make_png())
    (store.folder(batch_id) / "image.png").unlink()
    worker._contexts.clear()
    _run(worker)
    assert _states(store, batch_id) == {"failed": 3}
    errors = {row.error for row in _rows(store, batch_id).values()}
    assert errors == {
        "the batch's appearance image cannot be read (it is missing): not sealed without it"
    }


def test_a_missing_appearance_image_on_a_store_gone_postpones(
    own_service: SignerService,
    worker: BatchWorker,
    issue: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The image and the store marker go between the worker's store check and the
    document: the store is at fault, not the batch: postponed, handed back."""
    store = own_service.batches
    batch_id, _ = _batch(own_service, issue("Image Gone Seal", CertificateKind.SEAL), 3, make_png())
    (store.folder(batch_id) / "image.png").unlink()
    (store.directory / MARKER).unlink()
    monkeypatch.setattr(own_service.batch_store, "require", lambda: None)
    monkeypatch.setattr(worker._stop, "wait", lambda _timeout=None: False)  # no 1 s pause
    worker._work(store.claim(worker.worker, CLAIM_SIZE))
    group = worker._groups.get_nowait()
    assert group is not None and group.outcomes == [] and group.written == []
    assert _states(store, batch_id) == {"pending": 3}


class _UnsynchronisedKernel:
    """An injected `adjtimex` answer: the clock is not synchronised (ClockReader)."""

    def read(self) -> ClockReading:
        return ClockReading(False, None, "injected: unsynchronised")


def test_an_unsynchronised_clock_postpones_a_b_t_batch_and_never_weakens_it(
    own_service: SignerService,
    worker: BatchWorker,
    issue: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """B-T needs the TSA, which refuses while the clock is unsynchronised: the documents
    wait (pending, none failed, none sealed without a timestamp) and are sealed at B-T
    once the clock is trusted again."""
    store = own_service.batches
    serial = issue("Clock Seal", CertificateKind.SEAL)
    sources = [make_pdf(1, title=f"T {i}") for i in range(6)]
    status, _ = store.create(
        [(f"t{i}.pdf", io.BytesIO(d)) for i, d in enumerate(sources)],
        SignOptions(certificate_serial=serial, level=SignatureLevel.B_T),
        serial,
        max_document_bytes=10**6,
    )
    refusing = TimeGuard(TimeTrust.KERNEL, 500, clock=_UnsynchronisedKernel(), interval_s=0)
    with monkeypatch.context() as patch:
        patch.setattr(own_service.tsa, "time", refusing)
        claims = store.claim(worker.worker, CLAIM_SIZE)
        assert len(claims) == 6
        worker._work(claims)
        group = worker._groups.get_nowait()
        if group is not None:
            worker.committer.commit(group)
        assert _states(store, status.id) == {"pending": 6}
    _run(worker)  # the session's own guard (the host trusted) again
    assert _states(store, status.id) == {"done": 6}
    for signed in _results(store, status.id).values():
        (signature,) = PdfFileReader(io.BytesIO(signed)).embedded_signatures
        unsigned = signature.signer_info["unsigned_attrs"]
        assert "signature_time_stamp_token" in [a["type"].native for a in unsigned]
