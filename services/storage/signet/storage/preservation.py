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

An envelope whose documents were renewed also gets a newer evidence package (the
`reseal` hook), naming the one it supersedes.  The service runs the job on a period,
on the replica that holds the storage Lease (`signet.storage.preservation_runner`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from asn1crypto import cms, x509
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.pdf_utils.reader import PdfFileReader
from signet.common.contracts.storage import LedgerEventIn, ObjectInfo, ObjectKind
from signet.common.errors import SignetError
from signet.storage.ledger import Ledger
from signet.storage.vault import ObjectNotFound, RetentionViolation, Vault

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
    #: envelopes whose sealed evidence package a newer one superseded in this run
    packages_renewed: list[str] = field(default_factory=list)
    #: why the pass stopped before the end (this replica lost the Lease, a shutdown)
    stopped: str | None = None
    #: documents due and not renewed by this run -> when their last timestamp's
    #: certificate expires (the backlog, and the moment it must be cleared by)
    pending: dict[str, datetime] = field(default_factory=dict)

    @property
    def backlog(self) -> int:
        return len(self.pending)

    @property
    def backlog_deadline(self) -> datetime | None:
        return min(self.pending.values(), default=None)


def _merge(total: PreservationReport, seen: PreservationReport) -> None:
    total.scanned += seen.scanned
    total.due += seen.due
    total.already_preserved += seen.already_preserved
    total.waiting_for_rollover += seen.waiting_for_rollover
    total.failed |= seen.failed
    total.pending |= seen.pending


@dataclass(frozen=True)
class _Renewal:
    original: ObjectInfo
    renewed: ObjectInfo
    reason: str


@dataclass
class PreservationJob:
    vault: Vault
    ledger: Ledger
    #: the signer's `POST /v1/documents/renew`: a B-LTA PDF in, the renewed PDF out
    renew: Callable[[bytes], bytes]
    #: the signer's current TSA certificate (what stamps now)
    current_tsa: Callable[[], x509.Certificate]
    margin: timedelta = DEFAULT_MARGIN
    #: after an envelope's documents were renewed: supersede its sealed evidence package
    #: by a newer one (True), or say it has none (False); `signet.storage.evidence_seal`
    reseal: Callable[[str], bool] | None = None
    #: asked before each object: why to stop now (None: go on), e.g. the Lease lost
    stop: Callable[[], str | None] | None = None
    #: objects looked at (and renewed: requests to the signer) at once
    workers: int = 1

    def run(
        self, *, dry_run: bool = False, progress: Callable[[int, int], None] | None = None
    ) -> PreservationReport:
        """One pass over the vault; `progress(done, total)` after each object.

        Objects are taken envelope by envelope, so that an envelope whose documents
        were renewed gets one newer evidence package, made before the renewals are
        recorded as done (`_complete`): a pass stopped in between renews them again
        next time, and the package follows.  Up to `workers` objects are looked at
        (and renewed) at once, in order; `stop` is asked before each is started."""
        report = PreservationReport()
        superseded = {
            name.removeprefix(RECORD_PREFIX) for name in self.vault.records(RECORD_PREFIX)
        }
        current = self.current_tsa()
        at = datetime.now(UTC)
        # Only the signed PDFs are kept, as (envelope, hash): a pass holds the vault's
        # listing, not every object's metadata
        names = list(self.vault.objects())
        candidates: list[tuple[str, str]] = []
        for sha in names:
            try:
                info = self.vault.head(sha)
            except ObjectNotFound:
                continue
            if info.kind in SIGNED_KINDS and info.content_type == "application/pdf":
                candidates.append((info.envelope_id or "", sha))
        candidates.sort()
        done = len(names) - len(candidates)  # the rest is looked at below
        if progress is not None and done:
            progress(done, len(names))

        def look(sha: str) -> tuple[PreservationReport, _Renewal | None]:
            seen = PreservationReport()  # this object's counts, merged in order below
            try:
                info = self.vault.head(sha)
                return seen, self._one(info, superseded, current, at, dry_run, seen)
            except ObjectNotFound:
                return seen, None
            except (SignetError, OSError) as exc:
                seen.failed[sha] = getattr(exc, "detail", None) or str(exc)
                return seen, None

        group: list[_Renewal] = []
        window: deque[tuple[str, Future[tuple[PreservationReport, _Renewal | None]]]]
        window = deque()
        queue = iter(candidates)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="preserve") as pool:
            while True:
                while report.stopped is None and len(window) < 2 * self.workers:
                    candidate = next(queue, None)
                    if candidate is None:
                        break
                    if self.stop is not None and (why := self.stop()) is not None:
                        report.stopped = why
                        break
                    envelope, sha = candidate
                    window.append((envelope, pool.submit(look, sha)))
                if not window:
                    break
                envelope, future = window.popleft()
                if group and (group[-1].original.envelope_id or "") != envelope:
                    self._complete(group, report)  # the envelope's last object is done
                    group = []
                seen, renewal = future.result()
                _merge(report, seen)
                if renewal is not None:
                    group.append(renewal)
                    if not envelope:  # nothing to group with
                        self._complete(group, report)
                        group = []
                done += 1
                if progress is not None:
                    progress(done, len(names))
        self._complete(group, report)
        return report

    def _one(
        self,
        info: ObjectInfo,
        superseded: set[str],
        current: x509.Certificate,
        at: datetime,
        dry_run: bool,
        report: PreservationReport,
    ) -> _Renewal | None:
        sha = info.sha256
        if info.kind not in SIGNED_KINDS or info.content_type != "application/pdf":
            return None
        report.scanned += 1
        if sha in superseded:
            report.already_preserved += 1
            return None
        pdf = b"".join(self.vault.open(sha))
        stamp = last_timestamp(pdf)
        if stamp is None:
            return None
        reason = due_reason(stamp, current, self.margin, at)
        if reason is None:
            return None
        report.pending[sha] = stamp.certificate["tbs_certificate"]["validity"]["not_after"].native
        if reason == WAITING:
            report.waiting_for_rollover += 1
            return None
        report.due += 1
        if dry_run:
            return None
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
        return _Renewal(info, renewed, reason)

    def _complete(self, renewals: list[_Renewal], report: PreservationReport) -> None:
        """An envelope's renewals: its newer evidence package, then the records that
        make them done.  A package that cannot be made leaves them undone (reported
        failed, still in the backlog): the next pass renews them again and retries."""
        if not renewals:
            return
        envelope = renewals[0].original.envelope_id
        if envelope is not None and self.reseal is not None:
            try:
                if self.reseal(envelope):
                    report.packages_renewed.append(envelope)
            except (SignetError, OSError) as exc:
                why = getattr(exc, "detail", None) or str(exc)
                for renewal in renewals:
                    report.failed[renewal.original.sha256] = f"evidence package not renewed: {why}"
                return
        at = datetime.now(UTC).isoformat()
        for renewal in renewals:
            original = renewal.original.sha256
            record = {"renewed": renewal.renewed.sha256, "reason": renewal.reason, "at": at}
            if envelope is not None:
                record["envelope_id"] = envelope
            # another replica's pass (the Lease handed over mid-pass) may have recorded it
            with contextlib.suppress(RetentionViolation):
                self.vault.put_record(f"{RECORD_PREFIX}{original}", json.dumps(record).encode())
            report.pending.pop(original, None)
            report.renewed += 1
            report.renewals.append((original, renewal.renewed.sha256))

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
