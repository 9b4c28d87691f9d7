"""Batch sealing: the API, bad documents among good ones, idempotency, and crash recovery."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

import httpx
import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from signet.common.contracts.signer import CertificateKind, SignatureLevel
from signet.signer.batch import worker as batch_worker_module
from signet.signer.batch.queue import utc_now
from signet.signer.batch.results import Pack, Packed
from signet.signer.batch.store import CLAIM_LEASE, BatchItemRecord, BatchStore, Outcome
from signet.signer.batch.uploads import SPOOL, Upload
from signet.signer.batch.worker import CLAIM_SIZE, BatchWorker
from signet.signer.config import SignerSettings
from signet.signer.database import open_registry_at
from signet.signer.service import SignerService

from tests.conftest import free_port
from tests.signer.conftest import pdfsig
from tests.signer.test_health_and_cli import _signet
from tests.support.pdfs import make_pdf


def _create(
    client: httpx.Client,
    documents: list[tuple[str, bytes]],
    options: dict[str, object],
    key: str | None = None,
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(
        "/v1/batches",
        files=[("documents", (name, data, "application/pdf")) for name, data in documents],
        data={"options": json.dumps(options)},
        headers=headers,
    )


def _wait(client: httpx.Client, batch_id: str, timeout: float = 240) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status: dict[str, object] = client.get(f"/v1/batches/{batch_id}").raise_for_status().json()
        if status["state"] == "finished":
            return status
        time.sleep(0.2)
    counts = {k: status[k] for k in ("done", "failed", "pending")}
    raise AssertionError(f"batch {batch_id} did not finish: {counts}")


def _signature_count(pdf: bytes) -> int:
    return len(PdfFileReader(io.BytesIO(pdf)).embedded_signatures)


def test_batch_seals_good_documents_and_names_the_bad_ones(
    signer_client: httpx.Client,
    batch_worker: BatchWorker,
    issue: Callable[..., str],
    signer_service: SignerService,
    nssdb: str,
    tmp_path: Path,
) -> None:
    serial = issue("Payroll Seal", CertificateKind.SEAL)
    good = [(f"payslip-{i:03d}.pdf", make_pdf(1 + i % 3, title=f"Payslip {i}")) for i in range(300)]
    bad = [
        ("broken.pdf", b"%PDF-1.7\n1 0 obj <<\n% truncated"),
        ("locked.pdf", make_pdf(1, password="secret")),
        ("notes.txt", b"this is not a PDF at all"),
    ]
    documents = good[:150] + bad + good[150:]
    response = _create(signer_client, documents, {"certificate_serial": serial, "level": "B-T"})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["total"] == 303 and created["certificate_serial"] == serial

    status = _wait(signer_client, created["id"])
    assert (status["done"], status["failed"], status["pending"]) == (300, 3, 0)
    errors = {item["filename"]: item["error"] for item in status["items"] if item["error"]}  # type: ignore[attr-defined]
    assert set(errors) == {"broken.pdf", "locked.pdf", "notes.txt"}
    assert "encrypted" in errors["locked.pdf"]
    assert "not a PDF" in errors["notes.txt"]

    results = signer_client.get(f"/v1/batches/{created['id']}/results")
    assert results.status_code == 200 and results.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(results.content))
    signed_names = [n for n in archive.namelist() if n.startswith("signed/")]
    assert len(signed_names) == len(set(signed_names)) == 300
    report = list(csv.DictReader(io.StringIO(archive.read("report.csv").decode())))
    assert len(report) == 303
    assert {r["filename"] for r in report if r["state"] == "failed"} == set(errors)

    context = signer_service.engine.validation_context()
    for name in random.Random(7).sample(signed_names, 100):
        pdf = archive.read(name)
        assert _signature_count(pdf) == 1
        embedded = PdfFileReader(io.BytesIO(pdf)).embedded_signatures[0]
        verdict = validate_pdf_signature(embedded, context)
        assert verdict.intact and verdict.valid and verdict.trusted, name
        path = tmp_path / Path(name).name
        path.write_bytes(pdf)
        report_text = pdfsig(path, nssdb, ocsp=False)
        assert "Signature is Valid" in report_text and "Certificate is Trusted" in report_text


def test_idempotency_key_returns_the_same_batch(
    signer_client: httpx.Client, batch_worker: BatchWorker, issue: Callable[..., str]
) -> None:
    serial = issue("Invoice Seal", CertificateKind.SEAL)
    documents = [("a.pdf", make_pdf(1)), ("b.pdf", make_pdf(2))]
    options = {"certificate_serial": serial, "level": "B-B"}
    first = _create(signer_client, documents, options, key="invoices-2026-11-25")
    again = _create(signer_client, documents, options, key="invoices-2026-11-25")
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    other = _create(signer_client, documents[:1], options, key="invoices-2026-11-25")
    assert other.status_code == 409
    assert _wait(signer_client, first.json()["id"])["done"] == 2


def test_batches_refuse_revoked_event_and_unknown_keys(
    signer_client: httpx.Client, issue: Callable[..., str]
) -> None:
    serial = issue("Retired Seal", CertificateKind.SEAL)
    revoked = signer_client.post(f"/v1/certificates/{serial}/revoke", json={"reason": "superseded"})
    assert revoked.status_code == 200
    response = _create(signer_client, [("a.pdf", make_pdf())], {"certificate_serial": serial})
    assert response.status_code == 409 and "revoked" in response.json()["detail"]
    unknown = _create(signer_client, [("a.pdf", make_pdf())], {"key_label": "no-such-key"})
    assert unknown.status_code == 404
    missing = signer_client.get("/v1/batches/0123456789abcdef0123456789abcdef")
    assert missing.status_code == 404
    assert signer_client.post("/v1/batches", data={"options": "{}"}).status_code in (400, 422)


def test_results_wait_for_the_batch_to_finish(
    signer_service: SignerService, issue: Callable[..., str], tmp_path: Path
) -> None:
    """No worker runs here: the results are refused (409) rather than incomplete."""
    from signet.common.contracts.signer import SignOptions
    from signet.common.errors import Conflict

    store = BatchStore(open_registry_at(tmp_path / "batches.db"), tmp_path / "batches")
    serial = issue("Idle Seal", CertificateKind.SEAL)
    status, _ = store.create(
        [("a.pdf", io.BytesIO(make_pdf()))],
        SignOptions(certificate_serial=serial),
        serial,
        max_document_bytes=10**6,
    )
    with pytest.raises(Conflict, match="still running"):
        store.write_results(status.id, io.BytesIO())


def test_upload_streams_parts_in_any_order_and_refuses_what_breaks_a_limit(
    signer_client: httpx.Client,
    batch_worker: BatchWorker,
    issue: Callable[..., str],
    signer_service: SignerService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The body is parsed as it arrives (documents straight into the spool): options may
    come after the documents; an oversized document or image, a body that is not
    multipart and a request without options are refused with their reason, after the
    body was read, and leave no staging folder behind."""
    from signet.signer.api import batches as batches_api

    serial = issue("Stream Upload Seal", CertificateKind.SEAL)
    options = json.dumps({"certificate_serial": serial, "level": "B-B"})
    sources = [make_pdf(1, title=f"Late {i}") for i in range(3)]
    boundary = "SignetTestBoundary"

    def body(parts: list[tuple[str, str | None, bytes]]) -> bytes:
        out = b""
        for name, filename, data in parts:
            disposition = f'form-data; name="{name}"' + (
                f'; filename="{filename}"' if filename else ""
            )
            out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
            out += data + b"\r\n"
        return out + f"--{boundary}--\r\n".encode()

    def post(content: bytes, content_type: str | None = None) -> httpx.Response:
        return signer_client.post(
            "/v1/batches",
            content=content,
            headers={"Content-Type": content_type or f"multipart/form-data; boundary={boundary}"},
        )

    late = post(
        body(
            [
                *(("documents", f"l{i}.pdf", d) for i, d in enumerate(sources)),
                ("options", None, options.encode()),
            ]
        )
    )
    assert late.status_code == 201, late.text
    status = _wait(signer_client, late.json()["id"])
    assert status["done"] == 3
    assert [i["filename"] for i in status["items"]] == ["l0.pdf", "l1.pdf", "l2.pdf"]  # type: ignore[index]
    assert [i["input_sha256"] for i in status["items"]] == [  # type: ignore[index]
        hashlib.sha256(d).hexdigest() for d in sources
    ]

    staging_before = set(signer_service.batches.directory.glob(".*-*"))
    monkeypatch.setattr(signer_service.settings, "max_document_bytes", 20_000)
    big = post(
        body(
            [
                ("options", None, options.encode()),
                ("documents", "a.pdf", sources[0]),
                ("documents", "big.pdf", b"%PDF-1.7\n" + b"0" * 30_000),
            ]
        )
    )
    assert big.status_code == 413 and "big.pdf" in big.json()["detail"]
    monkeypatch.setattr(batches_api, "_IMAGE_LIMIT", 100)
    image = post(
        body(
            [
                ("options", None, options.encode()),
                ("image", "i.png", b"\x89PNG" * 50),
                ("documents", "a.pdf", sources[0]),
            ]
        )
    )
    assert image.status_code == 413 and "image" in image.json()["detail"]
    missing = post(body([("documents", "a.pdf", sources[0])]))
    assert missing.status_code == 400 and "options" in missing.json()["detail"]
    not_multipart = post(b"{}", "application/json")
    assert not_multipart.status_code == 400
    cut_off = post(
        body([("options", None, options.encode()), ("documents", "a.pdf", sources[0])])[:-40]
    )
    assert cut_off.status_code == 400, cut_off.text
    # Cut off between two parts, or inside the last part's headers: python-multipart's
    # finalize() checks nothing, so without the closing boundary this was a 201 with the
    # later documents (or the image) silently dropped.
    two = body(
        [
            ("options", None, options.encode()),
            ("documents", "a.pdf", sources[0]),
            ("documents", "b.pdf", sources[1]),
        ]
    )
    second = two.index(b'name="documents"; filename="b.pdf"')
    for end in (two.index(b"\r\n", second), second - len("Content-Disposition: form-data; ")):
        between = post(two[:end])
        assert between.status_code == 400, (end, between.text)
        assert "cut off" in between.json()["detail"]
    with_image = (
        body([("options", None, options.encode()), ("documents", "a.pdf", sources[0])])[
            : -len(f"--{boundary}--\r\n")
        ]
        + (
            f"--{boundary}\r\nContent-Disposition: form-data; name=image; filename=i.png\r\n\r\n"
        ).encode()
        + b"\x89PNG"
    )
    assert post(with_image).status_code == 400
    long_header = body([("options", None, options.encode())]).replace(
        b"Content-Disposition", b"X-" + b"h" * 20_000 + b": x\r\nContent-Disposition", 1
    )
    assert post(long_header).status_code == 400
    assert set(signer_service.batches.directory.glob(".*-*")) == staging_before


def test_a_short_write_to_the_upload_spool_is_written_again(tmp_path: Path) -> None:
    """A raw write may write less than it was given (a disk filling up); the spool must
    still hold every byte at the offsets the rows record."""
    upload = Upload(tmp_path, max_document_bytes=10**6)
    documents = [os.urandom(3000), os.urandom(5000)]
    real = upload._spool

    class Stingy:
        def __init__(self) -> None:
            self.calls = 0

        def write(self, data: memoryview) -> int:
            self.calls += 1
            return real.write(data[:1000])

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    stingy = Stingy()
    upload._spool = stingy  # type: ignore[assignment]
    for n, document in enumerate(documents):
        upload.begin(f"{n}.pdf")
        upload.write(document)
        upload.end()
        upload.flush()
    upload.seal(None)
    assert stingy.calls == 8  # 3 + 5 writes of 1,000 bytes each
    spool = (upload.staging / "in" / SPOOL).read_bytes()
    assert spool == b"".join(documents)
    assert [(i.offset, i.size) for i in upload.items] == [(0, 3000), (3000, 5000)]


@pytest.mark.slow
def test_killed_worker_resumes_without_loss_or_double_signing(tmp_path: Path) -> None:
    """A real signer process is SIGKILLed mid-batch; a new one finishes the batch."""
    home = tmp_path / "home"
    assert _signet(home, "ca", "init").returncode == 0
    issued = _signet(home, "ca", "issue", "--name", "HR Seal", "--kind", "seal")
    assert issued.returncode == 0, issued.stderr
    serial = issued.stdout.split()[1]
    token = (home / "service-token").read_text().strip()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    env |= {"SIGNET_HOME": str(home), "SIGNET_SIGNER_PUBLIC_URL": f"http://127.0.0.1:{port}"}

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "signet.cli", "signer", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    return process
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        process.kill()
        raise AssertionError("signer did not start")

    documents = [(f"letter-{i:03d}.pdf", make_pdf(2, title=f"Letter {i}")) for i in range(120)]
    first = start()
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        timeout=60,
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        created = _create(client, documents, {"certificate_serial": serial, "level": "B-T"})
        assert created.status_code == 201, created.text
        batch_id = created.json()["id"]
        while True:
            status = client.get(f"/v1/batches/{batch_id}").json()
            running = [i for i in status["items"] if i["state"] == "running"]
            if status["done"] >= 10 and running:
                break
            assert status["state"] != "finished", "the batch finished before the kill"
            time.sleep(0.01)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    interrupted_done = status["done"]
    assert interrupted_done < 120

    second = start()
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            timeout=60,
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            final = _wait(client, batch_id)
            assert (final["done"], final["failed"]) == (120, 0)
            archive = zipfile.ZipFile(
                io.BytesIO(client.get(f"/v1/batches/{batch_id}/results").content)
            )
    finally:
        second.terminate()
        second.wait(timeout=30)
    signed = [n for n in archive.namelist() if n.startswith("signed/")]
    assert len(signed) == len(set(signed)) == 120
    for name in signed:
        assert _signature_count(archive.read(name)) == 1, name
    report = list(csv.DictReader(io.StringIO(archive.read("report.csv").decode())))
    assert sorted(r["filename"] for r in report) == sorted(n for n, _ in documents)


def test_seal_batch_command_seals_a_folder_and_resumes(tmp_path: Path) -> None:
    home, source, out = tmp_path / "home", tmp_path / "in", tmp_path / "out"
    assert _signet(home, "ca", "init").returncode == 0
    (source / "hr").mkdir(parents=True)
    for i in range(12):
        (source / f"invoice-{i:02d}.pdf").write_bytes(make_pdf(1, title=f"Invoice {i}"))
    (source / "hr" / "letter.pdf").write_bytes(make_pdf(2))
    (source / "hr" / "scan.pdf").write_bytes(b"%PDF-1.4\n%%EOF garbage")
    (source / "readme.txt").write_text("not a PDF, not picked up")

    first = _signet(home, "seal-batch", str(source), "--out", str(out), "--workers", "2")
    assert first.returncode == 1, first.stderr  # one document could not be sealed
    assert "hr/scan.pdf" in first.stdout and "malformed PDF" in first.stdout
    sealed = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.pdf"))
    assert len(sealed) == 13 and "hr/letter.pdf" in sealed and "hr/scan.pdf" not in sealed
    for path in out.rglob("*.pdf"):
        assert _signature_count(path.read_bytes()) == 1

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.pdf")}
    again = _signet(home, "seal-batch", str(source), "--out", str(out))
    assert again.returncode == 1  # the malformed scan still fails, with its reason
    assert "13" in again.stdout and "skipped" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pdf")} == before  # nothing re-signed


# -- group commit: what is recorded was durable first, whatever moment a worker dies ----------


@pytest.fixture
def own_store(tmp_path: Path) -> BatchStore:
    """A batch store with its own database: other tests' idle batches are not claimable."""
    return BatchStore(open_registry_at(tmp_path / "batches.db"), tmp_path / "batches")


def _drain(worker: BatchWorker, store: BatchStore) -> None:
    """Work the queue in this thread (claim, sign, sync, record) until it is empty."""
    while claims := store.claim(worker.worker, CLAIM_SIZE):
        worker._work(claims)
        group = worker._groups.get_nowait()
        assert group is not None
        worker.committer.commit(group)


def _age_claims(store: BatchStore, batch_id: str, age: timedelta) -> None:
    """Make the batch's running claims `age` old, as if that long had passed."""
    from sqlalchemy import update

    with store.registry.session() as session, session.begin():
        session.execute(
            update(BatchItemRecord)
            .where(BatchItemRecord.batch_id == batch_id, BatchItemRecord.state == "running")
            .values(claimed_at=utc_now() - age)
        )


def _record_file_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Log every fsync (by path), rename and replace (by target), in the order they happen."""
    events: list[tuple[str, str]] = []
    real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", str(Path(f"/proc/self/fd/{fd}").readlink())))
        real_fsync(fd)

    def rename(source: str | Path, target: str | Path) -> None:
        events.append(("rename", str(target)))
        real_rename(source, target)

    def replace(source: str | Path, target: str | Path) -> None:
        events.append(("rename", str(target)))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    return events


def _packs(store: BatchStore, batch_id: str) -> dict[str, str]:
    """Every pack of the batch and the SHA-256 of all its bytes (orphan tails included)."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(store.output_folder(batch_id).glob("*.pack"))
    }


def _rows(store: BatchStore, batch_id: str) -> dict[int, BatchItemRecord]:
    from sqlalchemy import select

    with store.registry.session() as session:
        rows = session.scalars(
            select(BatchItemRecord).where(BatchItemRecord.batch_id == batch_id)
        ).all()
    return {row.idx: row for row in rows}


def _results(store: BatchStore, batch_id: str) -> dict[int, bytes]:
    """The signed documents of the results zip by item index; each listed exactly once."""
    buffer = io.BytesIO()
    store.write_results(batch_id, buffer)
    archive = zipfile.ZipFile(buffer)
    signed = [n for n in archive.namelist() if n.startswith("signed/")]
    assert len(signed) == len(set(signed))
    documents = {int(n.split("/")[1].split("-")[0]) - 1: archive.read(n) for n in signed}
    assert len(documents) == len(signed)
    return documents


def test_upload_is_one_fsynced_spool_before_the_batch_exists(
    own_store: BatchStore,
    issue: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from signet.common.contracts.signer import SignOptions

    serial = issue("Spool Seal", CertificateKind.SEAL)
    events = _record_file_calls(monkeypatch)
    documents = [(f"d{i}.pdf", io.BytesIO(make_pdf(1, title=f"D {i}"))) for i in range(50)]
    status, created = own_store.create(
        documents, SignOptions(certificate_serial=serial), serial, max_document_bytes=10**6
    )
    assert created and status.total == 50
    folder = own_store.folder(status.id)
    rename = events.index(("rename", str(folder)))
    before = {path for kind, path in events[:rename] if kind == "fsync"}
    fsynced_names = {Path(p).name for p in before}
    assert "uploads.spool" in fsynced_names  # the documents, once for the whole upload
    assert {"in", "out"} <= fsynced_names  # the spool's directory entry, and out/
    assert ("fsync", str(own_store.directory)) in events[rename:]  # the rename itself
    assert sum(1 for kind, _ in events if kind == "fsync") <= 6  # not one per document
    assert sorted(p.name for p in (folder / "in").iterdir()) == ["uploads.spool"]


def test_group_is_one_pack_fsynced_before_it_is_recorded(
    own_store: BatchStore,
    signer_service: SignerService,
    issue: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each group of 32 costs one fsync of the worker's pack (and the first one fsync of
    ``out/`` for the pack's name), never one per document, and is recorded only after."""
    from signet.common.contracts.signer import SignOptions

    serial = issue("Group Seal", CertificateKind.SEAL)
    status, _ = own_store.create(
        [(f"d{i}.pdf", io.BytesIO(make_pdf(1, title=f"D {i}"))) for i in range(40)],
        SignOptions(certificate_serial=serial, level=SignatureLevel.B_T),
        serial,
        max_document_bytes=10**6,
    )
    events = _record_file_calls(monkeypatch)
    real_finish = own_store.finish_many
    recorded: list[list[Outcome]] = []

    def finish_many(worker: str, outcomes: list[Outcome]) -> int:
        events.append(("record", str(len(recorded))))
        recorded.append(outcomes)
        return real_finish(worker, outcomes)

    monkeypatch.setattr(own_store, "finish_many", finish_many)
    _drain(BatchWorker(signer_service, own_store), own_store)

    out = own_store.output_folder(status.id)
    (pack,) = out.glob("*.pack")  # one worker, one batch: one pack, no file per document
    assert sorted(p.name for p in out.iterdir()) == [pack.name]
    assert [len(group) for group in recorded] == [CLAIM_SIZE, 40 - CLAIM_SIZE]
    relevant = [e for e in events if e[0] == "record" or e[1] in (str(pack), str(out))]
    assert relevant == [
        ("fsync", str(pack)),  # the first group's documents
        ("fsync", str(out)),  # the new pack's name, once
        ("record", "0"),
        ("fsync", str(pack)),  # the second group: its documents only
        ("record", "1"),
    ]
    assert not [e for e in events if e[0] == "rename"]
    rows = _rows(own_store, status.id)
    data = pack.read_bytes()
    end = 0
    for index in range(40):
        row = rows[index]
        assert row.state == "done" and row.output_pack == pack.name
        assert row.output_offset == end  # appended one after the other
        assert row.output_offset is not None and row.output_size is not None
        document = data[row.output_offset : row.output_offset + row.output_size]
        assert hashlib.sha256(document).hexdigest() == row.output_sha256
        assert _signature_count(document) == 1
        end = row.output_offset + row.output_size
    assert end == len(data)
    results = _results(own_store, status.id)
    assert {i: hashlib.sha256(d).hexdigest() for i, d in results.items()} == {
        i: row.output_sha256 for i, row in rows.items()
    }


_DIE_IN_GROUP = """
import os, signal, sys, time
from pathlib import Path
from signet.signer.batch import results as batch_results
from signet.signer.batch import worker as batch_worker
from signet.signer.batch.guard import BatchStoreGuard
from signet.signer.batch.store import BatchStore
from signet.signer.config import SignerSettings
from signet.signer.database import open_registry_at
from signet.signer.service import SignerService

store = BatchStore(open_registry_at(Path(sys.argv[1])), Path(sys.argv[2]))
moment = sys.argv[3]
die = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
if moment == "mid-write":  # half the group written into the pack, nothing synced
    real_write, written = batch_results.Pack.write, []
    def write(pack, produce):
        if len(written) == 16:
            die()
        written.append(1)
        return real_write(pack, produce)
    batch_results.Pack.write = write
elif moment == "before-record":  # the group's pack fsync'd (durable), nothing recorded
    store.finish_many = die
else:  # "after-record": the first group recorded, then the process dies
    real_finish = store.finish_many
    def finish_many(worker, outcomes):
        real_finish(worker, outcomes)
        die()
    store.finish_many = finish_many
service = SignerService(SignerSettings())
service.batch_store = BatchStoreGuard(store.registry, store.directory)  # the store's own
batch_worker.BatchWorker(service, store).start()
time.sleep(120)
"""


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["mid-write", "before-record", "after-record"])
def test_worker_killed_inside_a_group_loses_nothing_and_lists_nothing_twice(
    moment: str,
    own_store: BatchStore,
    signer_service: SignerService,
    signer_settings: SignerSettings,
    issue: Callable[..., str],
    tmp_path: Path,
) -> None:
    """A real process dies while writing a group into its pack, between syncing the pack and
    recording the group, or right after recording it; the next worker finishes the batch
    in a pack of its own, what was recorded stays where it was, nothing in a pack is
    truncated or rewritten, and the results list every document once."""
    from signet.common.contracts.signer import SignOptions

    serial = issue("Kill Seal", CertificateKind.SEAL)
    documents = [(f"n{i:02d}.pdf", make_pdf(2, title=f"Notice {i}")) for i in range(40)]
    status, _ = own_store.create(
        [(name, io.BytesIO(data)) for name, data in documents],
        SignOptions(certificate_serial=serial, level=SignatureLevel.B_T),
        serial,
        max_document_bytes=10**6,
    )
    assert signer_settings.hsm_pin is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    env |= {
        "SIGNET_SIGNER_HOME": str(signer_settings.home),
        "SIGNET_SIGNER_HSM_MODULE": str(signer_settings.hsm_module),
        "SIGNET_SIGNER_HSM_TOKEN_LABEL": signer_settings.hsm_token_label,
        "SIGNET_SIGNER_HSM_PIN": signer_settings.hsm_pin.get_secret_value(),
        # as the session's signer: this machine's kernel clock may be unsynchronised
        "SIGNET_SIGNER_TIME_TRUST": signer_settings.time_trust,
    }
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            _DIE_IN_GROUP,
            str(tmp_path / "batches.db"),
            str(own_store.directory),
            moment,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr

    interrupted = own_store.status(status.id)
    running = [i.index for i in interrupted.items if i.state.value == "running"]
    before = _packs(own_store, status.id)
    (dead_pack,) = before  # the dead worker's one pack, with whatever it wrote
    size = (own_store.output_folder(status.id) / dead_pack).stat().st_size
    recorded_before = {
        i: (r.output_pack, r.output_offset, r.output_size, r.output_sha256)
        for i, r in _rows(own_store, status.id).items()
        if r.state == "done"
    }
    if moment == "after-record":
        assert interrupted.done == CLAIM_SIZE  # the first group, from the dead worker's pack
        assert {pack for pack, *_ in recorded_before.values()} == {dead_pack}
        assert len(running) in (0, 40 - CLAIM_SIZE)  # perhaps the next group, claimed
    else:
        # the first group, and perhaps the next one the worker claimed meanwhile; none recorded
        assert interrupted.done == 0 and len(running) in (CLAIM_SIZE, 40)
        assert size > 0  # written (mid-write: 16 documents) but never referenced

    assert own_store.recover() == len(running)  # the claimant is known dead
    _drain(BatchWorker(signer_service, own_store), own_store)
    final = own_store.status(status.id)
    assert (final.done, final.failed) == (40, 0)

    after = _packs(own_store, status.id)
    assert {name: after[name] for name in before} == before  # the dead pack is untouched
    assert len(after) == 2  # the new worker wrote a pack of its own
    rows = _rows(own_store, status.id)
    for index, recorded in recorded_before.items():  # what was recorded stays recorded
        row = rows[index]
        assert (row.output_pack, row.output_offset, row.output_size, row.output_sha256) == recorded
    if moment != "after-record":
        assert all(row.output_pack != dead_pack for row in rows.values())  # orphan tail
    group = sum(rows[i].output_size or 0 for i in range(CLAIM_SIZE))
    if moment == "mid-write":
        assert size < group  # it died with half of its first group written
    results = _results(own_store, status.id)
    assert sorted(results) == list(range(40))
    for index, data in results.items():
        assert _signature_count(data) == 1, index
        assert hashlib.sha256(data).hexdigest() == rows[index].output_sha256
        assert data.startswith(documents[index][1])  # the document it says it is


def test_two_workers_and_a_restart_never_share_a_pack(
    own_store: BatchStore,
    signer_service: SignerService,
    issue: Callable[..., str],
) -> None:
    """Two workers drain one batch at once, then a third (a restarted process) takes a
    second batch: each writes only packs of its own, and every item is in exactly one."""
    from signet.common.contracts.signer import SignOptions

    serial = issue("Shared Seal", CertificateKind.SEAL)
    options = SignOptions(certificate_serial=serial)
    sources = [make_pdf(1, title=f"T {i}") for i in range(150)]
    first, _ = own_store.create(
        [(f"t{i}.pdf", io.BytesIO(d)) for i, d in enumerate(sources)],
        options,
        serial,
        max_document_bytes=10**6,
    )
    workers = [BatchWorker(signer_service, own_store, idle_poll=0.02) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        deadline = time.monotonic() + 120
        while own_store.status(first.id, with_items=False).state != "finished":
            assert time.monotonic() < deadline, "the batch did not finish"
            time.sleep(0.05)
    finally:
        for worker in workers:
            worker.stop()
    rows = _rows(own_store, first.id)
    by_worker: dict[str, set[str]] = {}
    for row in rows.values():
        assert row.worker is not None and row.output_pack is not None
        by_worker.setdefault(row.worker, set()).add(row.output_pack)
    assert len(by_worker) == 2  # both took part, each in its own pack
    assert all(len(packs) == 1 for packs in by_worker.values())
    assert len(set.union(*by_worker.values())) == 2
    packs_before = _packs(own_store, first.id)

    second, _ = own_store.create(
        [(f"u{i}.pdf", io.BytesIO(d)) for i, d in enumerate(sources[:10])],
        options,
        serial,
        max_document_bytes=10**6,
    )
    _drain(BatchWorker(signer_service, own_store), own_store)
    assert _packs(own_store, first.id) == packs_before  # a finished batch's packs stay as they were
    (new_pack,) = _packs(own_store, second.id)
    assert new_pack not in packs_before
    for batch, count in ((first, 150), (second, 10)):
        results = _results(own_store, batch.id)
        assert sorted(results) == list(range(count))
        for index, data in results.items():
            assert data.startswith(sources[index]) and _signature_count(data) == 1


def test_large_and_legacy_inputs_are_read_without_loading_them_whole(
    own_store: BatchStore,
    signer_service: SignerService,
    issue: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Documents above the in-memory threshold stream from the spool; batches staged
    before the spool (one file per document, no offsets) still seal."""
    from signet.common.contracts.signer import SignOptions
    from signet.signer.batch import store as batches
    from sqlalchemy import update

    serial = issue("Stream Seal", CertificateKind.SEAL)
    monkeypatch.setattr(batches, "_IN_MEMORY", 0)
    sources = [make_pdf(1 + i % 3, title=f"S {i}") for i in range(6)]
    streamed, _ = own_store.create(
        [(f"s{i}.pdf", io.BytesIO(d)) for i, d in enumerate(sources)],
        SignOptions(certificate_serial=serial),
        serial,
        max_document_bytes=10**6,
    )
    legacy, _ = own_store.create(
        [(f"l{i}.pdf", io.BytesIO(d)) for i, d in enumerate(sources)],
        SignOptions(certificate_serial=serial),
        serial,
        max_document_bytes=10**6,
    )
    for index, data in enumerate(sources):  # the layout of earlier versions
        own_store.input_path(legacy.id, index).write_bytes(data)
    (own_store.folder(legacy.id) / "in" / "uploads.spool").unlink()
    with own_store.registry.session() as session, session.begin():
        session.execute(
            update(BatchItemRecord)
            .where(BatchItemRecord.batch_id == legacy.id)
            .values(input_offset=None, input_size=None)
        )
    _drain(BatchWorker(signer_service, own_store), own_store)
    context = signer_service.engine.validation_context()
    for batch in (streamed, legacy):
        final = own_store.status(batch.id)
        assert (final.done, final.failed) == (6, 0), final.items
        results = _results(own_store, batch.id)
        for item, source in zip(final.items, sources, strict=True):
            data = results[item.index]
            assert data.startswith(source)  # an incremental update of exactly that input
            embedded = PdfFileReader(io.BytesIO(data)).embedded_signatures[0]
            assert validate_pdf_signature(embedded, context).intact


def test_results_of_batches_signed_before_packs_still_read_their_files(
    own_store: BatchStore,
    signer_service: SignerService,
    issue: Callable[..., str],
) -> None:
    """Items recorded done by an older signer (one file per document in ``out/``, no pack
    columns) are read from their files, beside items of the same batch done in a pack."""
    from signet.common.contracts.signer import SignOptions
    from sqlalchemy import update

    serial = issue("Legacy Seal", CertificateKind.SEAL)
    sources = [make_pdf(1, title=f"O {i}") for i in range(5)]
    status, _ = own_store.create(
        [(f"o{i}.pdf", io.BytesIO(d)) for i, d in enumerate(sources)],
        SignOptions(certificate_serial=serial),
        serial,
        max_document_bytes=10**6,
    )
    old = {0: sources[0] + b"%old signer 0\n", 3: sources[3] + b"%old signer 3\n"}
    out = own_store.output_folder(status.id)
    with own_store.registry.session() as session, session.begin():
        for index, data in old.items():  # as the old worker left them: file, then row
            (out / f"{index:06d}.pdf").write_bytes(data)
            session.execute(
                update(BatchItemRecord)
                .where(BatchItemRecord.batch_id == status.id, BatchItemRecord.idx == index)
                .values(state="done", output_sha256=hashlib.sha256(data).hexdigest())
            )
    _drain(BatchWorker(signer_service, own_store), own_store)
    rows = _rows(own_store, status.id)
    assert {i for i, r in rows.items() if r.output_pack is None} == set(old)
    results = _results(own_store, status.id)
    assert sorted(results) == list(range(5))
    for index, data in results.items():
        assert hashlib.sha256(data).hexdigest() == rows[index].output_sha256
        if index in old:
            assert data == old[index]
        else:
            assert data.startswith(sources[index]) and _signature_count(data) == 1


def test_a_batch_may_hold_more_than_a_thousand_documents(
    signer_client: httpx.Client, batch_worker: BatchWorker, issue: Callable[..., str]
) -> None:
    """The API allows 10,000 documents; the form parser's default (1,000 files) must not
    refuse a batch first, and 10,001 gets our own clear refusal."""
    serial = issue("Payslip Seal", CertificateKind.SEAL)
    pdf = make_pdf(1)
    created = _create(
        signer_client,
        [(f"p{i}.pdf", pdf) for i in range(1_001)],
        {
            "certificate_serial": serial,
            "level": "B-B",
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["total"] == 1_001
    assert _wait(signer_client, created.json()["id"])["done"] == 1_001
    too_many = _create(
        signer_client,
        [(f"p{i}.pdf", b"%PDF") for i in range(10_001)],
        {
            "certificate_serial": serial,
        },
    )
    assert too_many.status_code == 400, too_many.text
    assert "at most 10000 documents per batch" in too_many.json()["detail"]


# -- claims stay leased while their worker signs them -----------------------------------------


@pytest.mark.parametrize("moment", ["waited before it started", "ran long"])
def test_a_group_renews_its_lease_so_no_other_worker_takes_it_back(
    moment: str,
    own_store: BatchStore,
    signer_service: SignerService,
    issue: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A group claimed ahead that waited behind a long one, or a group whose documents each
    take long, is older than the lease by the time (some of) it is signed: the worker renews
    its claims first, so another worker's `recover` meanwhile takes nothing back (it would
    sign those documents again for nothing).  Time is the worker's injected clock and the
    rows' ``claimed_at``, moved forward by more than the lease."""
    from signet.common.contracts.signer import SignOptions

    serial = issue("Renewing Seal", CertificateKind.SEAL)
    status, _ = own_store.create(
        [(f"d{i}.pdf", io.BytesIO(make_pdf(1, title=f"D {i}"))) for i in range(3)],
        SignOptions(certificate_serial=serial),
        serial,
        max_document_bytes=10**6,
    )
    now = [1000.0]
    worker = BatchWorker(signer_service, own_store, clock=lambda: now[0])

    def time_passes() -> None:
        _age_claims(own_store, status.id, CLAIM_LEASE + timedelta(minutes=1))
        now[0] += CLAIM_LEASE.total_seconds() + 60

    claims = worker._next_claims()
    assert len(claims) == 3
    if moment == "waited before it started":
        time_passes()
    taken_back: list[int] = []
    real_write = Pack.write

    def write(pack: Pack, produce: Callable[[BinaryIO], None]) -> Packed:
        taken_back.append(own_store.recover(is_dead=lambda _worker: False))  # another worker
        packed = real_write(pack, produce)
        if moment == "ran long":
            time_passes()  # this document took longer than the lease
        return packed

    monkeypatch.setattr(Pack, "write", write)
    try:
        worker._work(claims)
    finally:
        worker._release_ahead()
        worker._claimer.shutdown()
    assert taken_back == [0, 0, 0]
    group = worker._groups.get_nowait()
    assert group is not None and len(group.written) == 3
    worker.committer.commit(group)
    rows = _rows(own_store, status.id)
    assert {row.state for row in rows.values()} == {"done"}
    assert {row.worker for row in rows.values()} == {worker.worker}
    assert len(_results(own_store, status.id)) == 3


def test_no_group_is_claimed_ahead_of_large_documents(
    own_store: BatchStore,
    signer_service: SignerService,
    issue: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a group of small documents the next one is claimed ahead (its wait overlaps
    with signing); after one larger than `AHEAD_BYTES` it is not, so those documents stay
    free for the other workers and their lease does not start while they wait."""
    from signet.common.contracts.signer import SignOptions

    serial = issue("Ahead Seal", CertificateKind.SEAL)
    pdf = make_pdf(1)
    own_store.create(
        [(f"d{i}.pdf", io.BytesIO(pdf)) for i in range(CLAIM_SIZE * 4)],
        SignOptions(certificate_serial=serial),
        serial,
        max_document_bytes=10**6,
    )
    worker = BatchWorker(signer_service, own_store)
    try:
        monkeypatch.setattr(batch_worker_module, "AHEAD_BYTES", CLAIM_SIZE * len(pdf))
        assert len(worker._next_claims()) == CLAIM_SIZE
        assert worker._ahead is not None  # a group of small documents: the next is claimed
        assert len(worker._next_claims()) == CLAIM_SIZE  # the one claimed ahead
        monkeypatch.setattr(batch_worker_module, "AHEAD_BYTES", CLAIM_SIZE * len(pdf) - 1)
        assert worker._ahead is not None
        worker._release_ahead()
        assert len(worker._next_claims()) == CLAIM_SIZE
        assert worker._ahead is None  # too large a group: nothing claimed ahead
        assert len(own_store.claim("someone else", CLAIM_SIZE * 3)) == CLAIM_SIZE
    finally:
        worker._release_ahead()
        worker._claimer.shutdown()
