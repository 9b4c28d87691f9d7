"""Certificates and CRLs whose signatures are made inside the HSM.

`cryptography`'s builders need the private key in memory, which an HSM never
gives; so we assemble the TBS structures with asn1crypto, have the HSM sign
their DER, and wrap the result.  Nothing here decides *what* goes into a
certificate: that is `signet.signer.pki.ca`'s job.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from asn1crypto import crl, keys, x509
from signet.signer.pki.keys import HsmKey


def random_serial() -> int:
    """A positive 159-bit serial: unpredictable, as the CA/Browser Forum asks."""
    return secrets.randbits(159) | (1 << 158)


def key_identifier(public_key: keys.PublicKeyInfo) -> bytes:
    """RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bit string."""
    return hashlib.sha1(public_key["public_key"].contents[1:], usedforsecurity=False).digest()


def extension(name: str, value: Any, *, critical: bool = False) -> dict[str, Any]:
    return {"extn_id": name, "critical": critical, "extn_value": value}


def build_certificate(
    *,
    subject: x509.Name,
    public_key: keys.PublicKeyInfo,
    issuer: x509.Name,
    issuer_key: HsmKey,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    extensions: Sequence[dict[str, Any]],
) -> x509.Certificate:
    """Assemble and HSM-sign an X.509 v3 certificate."""
    tbs = x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": serial,
            "signature": issuer_key.signature_algorithm,
            "issuer": issuer,
            "validity": {
                "not_before": x509.Time({"generalized_time": not_before})
                if not_before.year >= 2050
                else x509.Time({"utc_time": not_before}),
                "not_after": x509.Time({"generalized_time": not_after})
                if not_after.year >= 2050
                else x509.Time({"utc_time": not_after}),
            },
            "subject": subject,
            "subject_public_key_info": public_key,
            "extensions": list(extensions),
        }
    )
    signature = issuer_key.sign(tbs.dump())
    return x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": issuer_key.signature_algorithm,
            "signature_value": signature,
        }
    )


def build_crl(
    *,
    issuer: x509.Certificate,
    issuer_key: HsmKey,
    number: int,
    this_update: datetime,
    next_update: datetime,
    revoked: Sequence[tuple[int, datetime, str | None]],
) -> crl.CertificateList:
    """Assemble and HSM-sign a v2 CRL listing `(serial, revoked_at, reason)` entries."""
    entries = []
    for serial, when, reason in revoked:
        entry: dict[str, Any] = {
            "user_certificate": serial,
            "revocation_date": x509.Time({"utc_time": when}),
        }
        if reason:
            entry["crl_entry_extensions"] = [
                {"extn_id": "crl_reason", "critical": False, "extn_value": reason}
            ]
        entries.append(entry)
    tbs = crl.TbsCertList(
        {
            "version": "v2",
            "signature": issuer_key.signature_algorithm,
            "issuer": issuer.subject,
            "this_update": x509.Time({"utc_time": this_update}),
            "next_update": x509.Time({"utc_time": next_update}),
            "revoked_certificates": entries or None,
            "crl_extensions": [
                {"extn_id": "crl_number", "critical": False, "extn_value": number},
                {
                    "extn_id": "authority_key_identifier",
                    "critical": False,
                    "extn_value": {"key_identifier": issuer.key_identifier_value.native},
                },
            ],
        }
    )
    return crl.CertificateList(
        {
            "tbs_cert_list": tbs,
            "signature_algorithm": issuer_key.signature_algorithm,
            "signature": issuer_key.sign(tbs.dump()),
        }
    )
