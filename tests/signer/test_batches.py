"""Batch sealing: the API, bad documents among good ones, idempotency, and crash recovery."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from signet.common.contracts.signer import CertificateKind
from signet.signer.batch_worker import BatchWorker
from signet.signer.batches import BatchStore
from signet.signer.service import SignerService

from tests.conftest import free_port
from tests.signer.conftest import pdfsig
from tests.signer.test_health_and_cli import _signet
from tests.support.pdfs import make_pdf


@pytest.fixture
def batch_worker(signer_service: SignerService) -> Iterator[BatchWorker]:
    """One worker thread beside the live test server (which runs without lifespan)."""
    worker = BatchWorker(signer_service, signer_service.batches, idle_poll=0.05)
    worker.start()
    yield worker
    worker.stop()


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

    store = BatchStore(signer_service.registry, tmp_path / "batches")
    serial = issue("Idle Seal", CertificateKind.SEAL)
    status, _ = store.create(
        [("a.pdf", io.BytesIO(make_pdf()))],
        SignOptions(certificate_serial=serial),
        serial,
        max_document_bytes=10**6,
    )
    with pytest.raises(Conflict, match="still running"):
        store.write_results(status.id, io.BytesIO())


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
