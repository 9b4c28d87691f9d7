"""TSA key rollover: a new TSA key and certificate, the old certificates kept (issue 19).

A document timestamp is worth what its TSA certificate is worth: once that certificate
expires (or its key is retired), only a newer timestamp over it keeps the document
verifiable (`signet.signer.pades.renewal`).  Rolling the key over makes a new key of
purpose TSA in the HSM and a certificate for it; from then on every stamp is made with
it.  The old certificates stay in the registry, in every validation context
(`tsa_certificates`) and in the CA files (``tsa-<serial>.pem``), because every token
they signed must still validate; the old private key stays in the HSM but never stamps
again (its record is no longer the newest TSA certificate).

A running signer notices a rollover made by another process (`signet ca rotate-tsa`)
within `TsaWatch.interval_s`: its next stamp reads the registry and switches keys.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, timedelta

from asn1crypto import x509
from signet.common.contracts.signer import CertificateKind, KeyPurpose
from signet.hsm import KeyAlgorithm
from signet.signer.pki.ca import TSA_LABEL, CertificateAuthority, Issued, now
from signet.signer.registry import CertificateRecord, Registry
from sqlalchemy import select

#: What an operator must do when the TSA certificate nears its end (readiness names it).
ROLLOVER_STEP = (
    "roll the TSA key over (`signet ca rotate-tsa`), then renew the archive timestamps "
    "(`signet storage preserve`)"
)


def tsa_records(registry: Registry) -> list[CertificateRecord]:
    """Every TSA certificate ever issued, oldest first (the current one is last)."""
    with registry.session() as session:
        rows = session.scalars(
            select(CertificateRecord)
            .where(CertificateRecord.kind == CertificateKind.TSA.value)
            .order_by(CertificateRecord.created_at, CertificateRecord.not_before)
        ).all()
        return [_aware(row) for row in rows]


def tsa_certificates(registry: Registry) -> list[x509.Certificate]:
    """Every TSA certificate, for validation contexts: tokens of a rolled-over key must
    still find their signer's certificate (even if a token did not embed it)."""
    return [x509.Certificate.load(record.der) for record in tsa_records(registry)]


def rotate_tsa(
    ca: CertificateAuthority,
    *,
    validity: timedelta | None = None,
    algorithm: KeyAlgorithm | None = None,
) -> Issued:
    """A new TSA key (purpose recorded before it is made) and its certificate, which
    becomes the current TSA certificate; the previous one is kept untouched.

    `validity` defaults to the CA's `tsa_validity` setting; `algorithm` to the previous
    key's."""
    previous = ca.tsa
    generation = len(tsa_records(ca.registry)) + 1
    label = f"{TSA_LABEL}-{uuid.uuid4().hex[:12]}"
    key = ca._new_key(label, algorithm or previous.key.algorithm, KeyPurpose.TSA)
    # `Registry.latest` orders by creation time, kept in whole seconds: the new record
    # must be strictly later than the one it replaces, or the two would tie.
    while now() <= previous.record.created_at:
        time.sleep(0.05)
    subject = ca.own_name(f"Time-Stamping Authority {generation}")  # the root's installation
    issued = ca._issue(
        CertificateKind.TSA,
        subject,
        key,
        ca.issuing,
        validity=validity or ca.settings.tsa_validity,
    )
    forget_tsa(ca)
    return issued


def forget_tsa(ca: CertificateAuthority) -> None:
    """Drop the CA's cached TSA certificate: the next `ca.tsa` reads the registry."""
    with ca._lock:
        ca._cache.pop(CertificateKind.TSA, None)


@dataclass
class TsaWatch:
    """Has the TSA been rolled over since `serial` was loaded?  Reads the registry at
    most once per `interval_s` (a stamp must not cost a database query)."""

    registry: Registry
    interval_s: float = 5.0
    _checked_at: float = float("-inf")
    _latest: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def rotated(self, serial: str) -> bool:
        moment = time.monotonic()
        if moment - self._checked_at >= self.interval_s:
            with self._lock:
                record = self.registry.latest(CertificateKind.TSA)
                self._latest = record.serial if record else None
                self._checked_at = moment
        return self._latest is not None and self._latest != serial


def rollover_report(record: CertificateRecord, margin: timedelta) -> dict[str, str]:
    """What readiness adds to the TSA certificate's entry: when it should be rolled over
    (`margin` before it expires: the preservation job needs that time to renew every
    document) and the step then due, which the operator's CertificatesValid names."""
    return {"rollover_due": (record.not_after - margin).isoformat(), "step": ROLLOVER_STEP}


def _aware(record: CertificateRecord) -> CertificateRecord:
    for name in ("not_before", "not_after", "created_at"):
        value = getattr(record, name)
        if value is not None and value.tzinfo is None:
            setattr(record, name, value.replace(tzinfo=UTC))
    return record
