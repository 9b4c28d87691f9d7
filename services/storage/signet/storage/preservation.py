"""The preservation job: every retained signed PDF renewed before its last timestamp lapses.

A B-LTA document stays verifiable only while the certificate of its last document
timestamp does (issue 19).  This job scans the vault's signed documents (`SIGNED_KINDS`),
and asks the signer to renew (`POST /v1/documents/renew`) each one whose last document
timestamp's certificate expires within the margin, or was issued to a TSA key that has
since been rolled over (its certificate is not the signer's current one).  The renewed
document is a new vault object, of the same kind and envelope, retained at least as long
as the original; the original is never touched.  The ledger gets ``document.preserved``
with both hashes, and the vault an immutable record ``preserved/<original>`` naming the
successor: a superseded document is never renewed again (its successor is, in its
turn), so a second run in one window renews nothing (idempotent), and a run stopped
half-way goes on where it stopped (resumable).

What is not here yet: the storage Lease (one replica runs it), the readiness/metrics
progress and the API route behind `signet storage preserve` (docs/admin/preservation.md).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from asn1crypto import cms, x509
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.pdf_utils.reader import PdfFileReader
from signet.common.contracts.storage import LedgerEventIn, ObjectInfo, ObjectKind
from signet.common.errors import SignetError
from signet.storage.ledger import Ledger
from signet.storage.vault import ObjectNotFound, Vault

#: Vault objects that hold signed PDFs (revisions, finals, certificates of completion;
#: originals are unsigned; reports, ledger segments
#: and evidence packages are not PDFs the signer timestamps).
SIGNED_KINDS = (ObjectKind.REVISION, ObjectKind.FINAL, ObjectKind.CERTIFICATE)
#: The default margin: renew a year before the last timestamp's certificate expires.
DEFAULT_MARGIN = timedelta(days=365)
RECORD_PREFIX = "preserved/"
#: The ledger needs an envelope; a document stored without one is logged under this.
NO_ENVELOPE = "preservation"
#: `due_reason` when the last timestamp's certificate expires soon but is still current.
WAITING = "waiting_for_rollover"


@dataclass(frozen=True)
class LastTimestamp:
    time: datetime
    certificate: x509.Certificate

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.certificate.dump()).hexdigest()


def last_timestamp(pdf: bytes) -> LastTimestamp | None:
    """The newest document timestamp of `pdf` and its TSA certificate (None: not B-LTA,
    or not a PDF pyHanko can read)."""
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        stamps = reader.embedded_timestamp_signatures
    except (PdfReadError, ValueError, KeyError, TypeError):
        return None
    if not stamps:
        return None
    signed_data: cms.SignedData = stamps[-1].signed_data
    sid = signed_data["signer_infos"][0]["sid"].chosen
    info = signed_data["encap_content_info"]["content"].parsed
    for choice in signed_data["certificates"]:
        cert = choice.chosen
        if (
            isinstance(cert, x509.Certificate)
            and cert.serial_number == sid["serial_number"].native
            and cert.issuer == sid["issuer"]
        ):
            return LastTimestamp(info["gen_time"].native, cert)
    return None


def due_reason(
    stamp: LastTimestamp, current_tsa: x509.Certificate, margin: timedelta, at: datetime
) -> str | None:
    """Why a document whose last timestamp is `stamp` must be renewed now, or None.

    A renewal only helps when the current TSA certificate is another than the one that
    made the last timestamp: one expiring within the margin while still current waits
    for the rollover (`WAITING`; readiness names that step)."""
    not_after: datetime = stamp.certificate["tbs_certificate"]["validity"]["not_after"].native
    rolled_over = stamp.certificate.dump() != current_tsa.dump()
    if not_after - margin <= at:
        return f"tsa_expires {not_after:%Y-%m-%d}" if rolled_over else WAITING
    return "tsa_rolled_over" if rolled_over else None


@dataclass
class PreservationReport:
    scanned: int = 0
    due: int = 0
    renewed: int = 0
    #: superseded by an earlier renewal (remembered in the vault's records)
    already_preserved: int = 0
    #: due by the margin, but stamped by the current TSA: roll it over first
    waiting_for_rollover: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    #: (original, renewed) hashes of this run
    renewals: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class PreservationJob:
    vault: Vault
    ledger: Ledger
    #: the signer's `POST /v1/documents/renew`: a B-LTA PDF in, the renewed PDF out
    renew: Callable[[bytes], bytes]
    #: the signer's current TSA certificate (what stamps now)
    current_tsa: Callable[[], x509.Certificate]
    margin: timedelta = DEFAULT_MARGIN

    def run(
        self, *, dry_run: bool = False, progress: Callable[[int, int], None] | None = None
    ) -> PreservationReport:
        """One pass over the vault; `progress(done, total)` after each object."""
        report = PreservationReport()
        superseded = {
            name.removeprefix(RECORD_PREFIX) for name in self.vault.records(RECORD_PREFIX)
        }
        names = sorted(self.vault.objects())
        current = self.current_tsa()
        at = datetime.now(UTC)
        for done, sha in enumerate(names, 1):
            try:
                self._one(sha, superseded, current, at, dry_run, report)
            except (SignetError, OSError) as exc:
                report.failed[sha] = getattr(exc, "detail", None) or str(exc)
            if progress is not None:
                progress(done, len(names))
        return report

    def _one(
        self,
        sha: str,
        superseded: set[str],
        current: x509.Certificate,
        at: datetime,
        dry_run: bool,
        report: PreservationReport,
    ) -> None:
        try:
            info = self.vault.head(sha)
        except ObjectNotFound:
            return
        if info.kind not in SIGNED_KINDS or info.content_type != "application/pdf":
            return
        report.scanned += 1
        if sha in superseded:
            report.already_preserved += 1
            return
        pdf = b"".join(self.vault.open(sha))
        stamp = last_timestamp(pdf)
        if stamp is None:
            return
        reason = due_reason(stamp, current, self.margin, at)
        if reason is None:
            return
        if reason == WAITING:
            report.waiting_for_rollover += 1
            return
        report.due += 1
        if dry_run:
            return
        renewed = self._store(info, self.renew(pdf))
        self.ledger.append_sync(
            LedgerEventIn(
                event_type="document.preserved",
                envelope_id=info.envelope_id or NO_ENVELOPE,
                actor="storage",
                document_hashes=[sha, renewed.sha256],
                details={"supersedes": sha, "reason": reason},
            )
        )
        record = {"renewed": renewed.sha256, "reason": reason, "at": at.isoformat()}
        self.vault.put_record(f"{RECORD_PREFIX}{sha}", json.dumps(record).encode())
        superseded.add(sha)
        report.renewed += 1
        report.renewals.append((sha, renewed.sha256))

    def _store(self, original: ObjectInfo, pdf: bytes) -> ObjectInfo:
        """The renewed PDF as a new object, retained at least as long as the original."""
        info, _ = self.vault.put(
            io.BytesIO(pdf),
            content_type="application/pdf",
            kind=original.kind,
            envelope_id=original.envelope_id,
        )
        if info.retain_until < original.retain_until:
            info = self.vault.extend_retention(info.sha256, original.retain_until)
        return info
