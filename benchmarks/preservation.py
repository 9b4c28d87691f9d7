"""The preservation job's renewals per second (`python -m benchmarks preservation`).

A signer of its own (a fresh SoftHSM token in a temp dir), BENCH_N B-LTA one-page
seals, each renewed by `signet.signer.pades.renewal.renew_pdf` (what
`POST /v1/documents/renew` runs) on 1 and 2 threads; then the whole job
(`signet.storage.preservation.PreservationJob`, 1 and 2 workers) over a filesystem
vault holding them, which adds reading, storing, the ledger event and the record.  The
table ends with the nights the capacity model's installations need to renew five years of output
(docs/admin/capacity.md: one B-LTA final document per envelope, 250 working days a year,
a night of 8 hours).  Last, the time to check a typical (three-party) evidence package
with `verify-evidence` (`benchmarks.evidence`).
"""

from __future__ import annotations

import io
import os
import secrets
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr
from signet.common.contracts.signer import SignatureLevel, SignOptions
from signet.common.contracts.storage import ObjectKind
from signet.hsm.softhsm import ensure_dev_token
from signet.signer.config import SignerSettings
from signet.signer.pades.renewal import renew_pdf
from signet.signer.service import SignerService
from signet.storage.fs_vault import FilesystemVault
from signet.storage.ledger import Ledger
from signet.storage.preservation import PreservationJob

from benchmarks import evidence
from benchmarks.signer import timed
from tests.support.pdfs import make_pdf

N = int(os.environ.get("BENCH_N", "40"))
#: The benchmark signer's admin token (served on loopback for the evidence package).
ADMIN_TOKEN = secrets.token_urlsafe(24)
NIGHT_S = 8 * 3600


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="signet-bench-preserve-"))
    token = ensure_dev_token(work / "softhsm", label="bench-preserve")
    service = SignerService(
        SignerSettings(
            home=work / "signer",
            hsm_module=token.config.module_path,
            hsm_token_label=token.config.token_label,
            hsm_pin=token.config.pin,
            time_trust="trusted-host",
            service_token=SecretStr(ADMIN_TOKEN),
        )
    )
    service.ca.ceremony()
    service.ca.ensure_seal("bench-seal", "Bench Seal")
    options = SignOptions(key_label="bench-seal", level=SignatureLevel.B_LTA)
    documents = []
    for index in range(N):
        output = io.BytesIO()
        service.sign_document(io.BytesIO(make_pdf(title=f"Contract {index}")), output, options)
        documents.append(output.getvalue())
    rows = []
    for threads in (1, 2):
        queue = iter(documents * 4)
        rate, p50, p99 = timed(
            lambda queue=queue: renew_pdf(service.engine, next(queue)), N, threads
        )
        rows.append((f"renew_pdf, {threads} thread(s)", rate, p50, p99))

    stand_in = service.ca.issuing.certificate  # every document's TSA counts as rolled over
    job_rate = 0.0
    for workers in (1, 2):
        vault = FilesystemVault(work / f"vault-{workers}", retention_years=10)
        for pdf in documents:
            vault.put(io.BytesIO(pdf), content_type="application/pdf", kind=ObjectKind.FINAL)
        ledger = Ledger(vault)
        job = PreservationJob(
            vault,
            ledger,
            renew=lambda pdf: renew_pdf(service.engine, pdf),
            current_tsa=lambda: stand_in,
            workers=workers,
        )
        start = time.perf_counter()
        report = job.run()
        elapsed = time.perf_counter() - start
        ledger.close()
        assert report.renewed == N and not report.failed, report
        job_rate = max(job_rate, N / elapsed)
        what = f"PreservationJob.run ({workers} worker(s), fs vault)"
        rows.append((what, N / elapsed, elapsed / N * 1e3, 0.0))

    print(f"{'what':<44} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, rate, p50, p99 in rows:
        print(f"{name:<44} {rate:>8.1f} {p50:>8.1f} {p99:>8.1f}")
    print()
    print(f"{'envelopes/day':>14} {'5-year documents':>17} {'nights at job rate':>19}")
    for per_day in (1_000, 10_000, 100_000, 1_000_000):
        total = per_day * 250 * 5
        print(f"{per_day:>14,} {total:>17,} {total / job_rate / NIGHT_S:>19.1f}")
    print()
    print(f"{'checking an evidence package':<44} {'p50 ms':>8} {'p99 ms':>8}")
    for name, p50, p99 in evidence.rows(service, work, ADMIN_TOKEN, max(4, N // 2)):
        print(f"{name:<44} {p50:>8.1f} {p99:>8.1f}")
    service.close()


if __name__ == "__main__":
    main()
