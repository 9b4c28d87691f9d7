"""`verify-evidence` time for a typical package (part of `python -m benchmarks preservation`).

A three-party envelope as the workflow leaves it: the original, three revisions each
signed at B-LTA over the one before (the third is the final document), a certificate
of completion sealed at B-LTA, and the events of three signers (viewed, identity
code passed, signed) between created/sent and completed: 13 events, 5 PDFs.  Sealed
by the real storage code (`seal_package`) against a real signer served on loopback
(the ledger seal signs the manifest and tree head, its TSA stamps them); then the
package is checked by `verify_package` in-process, and by the `signet verify-evidence`
command as a user runs it (a fresh process: imports included).
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from asn1crypto import pem
from signet.common.contracts.signer import SignatureLevel, SignOptions
from signet.common.contracts.storage import LedgerEventIn, ObjectKind
from signet.signer.service import SignerService
from signet.storage.evidence import seal_package, verify_package
from signet.storage.fs_vault import FilesystemVault
from signet.storage.ledger import Ledger
from signet.storage.signer_client import SignerClient

from benchmarks.signer import timed
from tests.support.pdfs import make_pdf
from tests.support.signer_server import served

ENVELOPE = "bench-3-party"
LEDGER_KEY = "bench-ledger-seal"
SIGNET = str(Path(sys.executable).parent / "signet")


def _sign(service: SignerService, pdf: bytes, seal: str) -> bytes:
    output = io.BytesIO()
    options = SignOptions(key_label=seal, level=SignatureLevel.B_LTA)
    service.sign_document(io.BytesIO(pdf), output, options)
    return output.getvalue()


def three_party_package(service: SignerService, work: Path, url: str, token: str) -> Path:
    """The sealed package of a three-party envelope, written to `work`/package.zip."""
    service.ca.ensure_ledger_seal(LEDGER_KEY)
    service.ca.ensure_seal("bench-seal", "Bench Seal")
    vault = FilesystemVault(work / "evidence-vault", retention_years=10)
    ledger = Ledger(vault)
    signer = SignerClient(url, token, key_label=LEDGER_KEY)
    try:

        def put(pdf: bytes, kind: ObjectKind) -> str:
            info, _ = vault.put(
                io.BytesIO(pdf), content_type="application/pdf", kind=kind, envelope_id=ENVELOPE
            )
            return info.sha256

        def event(event_type: str, actor: str, hashes: list[str]) -> None:
            ledger.append_sync(
                LedgerEventIn(
                    event_type=event_type,
                    envelope_id=ENVELOPE,
                    actor=actor,
                    ip="192.0.2.7",
                    document_hashes=hashes,
                )
            )

        current = make_pdf(3, title="Three-party contract")
        original = put(current, ObjectKind.ORIGINAL)
        event("envelope.created", "owner@bench.example", [original])
        event("envelope.sent", "owner@bench.example", [original])
        revisions = []
        for party in ("first", "second", "third"):
            actor = f"{party}@bench.example"
            event("recipient.viewed", actor, [])
            event("recipient.verified", actor, [])
            current = _sign(service, current, "bench-seal")
            kind = ObjectKind.FINAL if party == "third" else ObjectKind.REVISION
            revisions.append(put(current, kind))
            event("document.signed", actor, [revisions[-1]])
        certificate = put(
            _sign(service, make_pdf(1, title="Certificate of completion"), "bench-seal"),
            ObjectKind.CERTIFICATE,
        )
        event("envelope.completed", "signet", [original, revisions[-1], certificate])
        seal, _ = seal_package(
            ENVELOPE, vault=vault, ledger=ledger, signer=signer, pki=signer.pki()
        )
        target = work / "package.zip"
        target.write_bytes(b"".join(vault.open(seal.package_sha256)))
        return target
    finally:
        signer.close()
        ledger.close()


def rows(service: SignerService, work: Path, token: str, n: int) -> list[tuple[str, float, float]]:
    """(what, p50 ms, p99 ms) of checking the package, in-process and as the command."""
    root = work / "root.pem"
    root.write_bytes(pem.armor("CERTIFICATE", service.ca.root.certificate.dump()))
    with served(service) as url:
        package = three_party_package(service, work, url, token)
    root_pem = root.read_bytes()

    def check() -> None:
        failed = [c for c in verify_package(package, root_pem) if not c.ok]
        assert not failed, failed

    _, p50, p99 = timed(check, n)
    result = [(f"verify_package, 3-party ({package.stat().st_size // 1024} KiB)", p50, p99)]

    def command() -> None:
        done = subprocess.run(
            [SIGNET, "verify-evidence", str(package), "--root", str(root), "--json"],
            capture_output=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-2000:]

    _, p50, p99 = timed(command, max(3, n // 4))
    result.append(("signet verify-evidence --json (a process)", p50, p99))
    return result
