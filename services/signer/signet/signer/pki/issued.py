"""What the CA hands out: a certificate with its HSM key, and its record as the API shows it.

Below `signet.signer.pki.ca` so that the signing engine, batches and the CLI can name
an `Issued` without the CA's issuance machinery.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import pem as asn1_pem
from asn1crypto import x509
from signet.common.contracts.signer import CertificateInfo, CertificateKind
from signet.signer.pki.keys import HsmKey
from signet.signer.registry import CertificateRecord


@dataclass(frozen=True)
class Issued:
    """A certificate with the HSM key that belongs to it."""

    certificate: x509.Certificate
    key: HsmKey
    record: CertificateRecord


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.dump()).hexdigest()


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def certificate_info(record: CertificateRecord) -> CertificateInfo:
    """A certificate record as the API shows it (status, fingerprint, PEM)."""
    cert = x509.Certificate.load(record.der)
    status = (
        "revoked"
        if record.revoked_at
        else ("expired" if record.not_after < datetime.now(UTC) else "good")
    )
    pem = asn1_pem.armor("CERTIFICATE", record.der).decode()
    return CertificateInfo(
        serial=record.serial,
        kind=CertificateKind(record.kind),
        subject=record.subject,
        issuer=cert.issuer.human_friendly,
        key_label=record.key_label,
        not_before=record.not_before,
        not_after=record.not_after,
        fingerprint_sha256=fingerprint(cert),
        status=status,  # type: ignore[arg-type]
        revoked_at=record.revoked_at,
        revocation_reason=record.revocation_reason,
        key_destroyed=record.key_destroyed_at is not None,
        pem=pem,
    )
