"""Certificate profiles of the internal CA: which extensions each kind carries.

Pure functions over the kind, the key and the issuer: `CertificateAuthority` decides
what is issued and records it; this module says what the certificate looks like, so a
profile change (an EKU, a policy, where CRL and OCSP are found) is read in one place.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from asn1crypto import keys, x509
from signet.common.contracts.signer import (
    LEDGER_SEAL_EKU,
    LEDGER_SEAL_POLICY_OID,
    POLICY_ARC,
    CertificateKind,
    Contact,
    ContactChannel,
)
from signet.signer.pki.names import installation_of
from signet.signer.pki.tsa import TSA_POLICY_OID
from signet.signer.pki.x509 import extension, key_identifier

#: RFC 9336 id-kp-documentSigning, plus emailProtection which NSS-based validators
#: (poppler, Firefox-lineage tools) require for signing certificates.
DOCUMENT_SIGNING_EKU = ("1.3.6.1.5.5.7.3.36", "email_protection")
EVENT_POLICY_OID = f"{POLICY_ARC}.1.1"
LONG_TERM_POLICY_OID = f"{POLICY_ARC}.1.2"


VALIDITY = {
    CertificateKind.ROOT: timedelta(days=20 * 365),
    CertificateKind.ISSUING: timedelta(days=10 * 365),
    CertificateKind.TSA: timedelta(days=6 * 365),
    CertificateKind.PERSON: timedelta(days=2 * 365),
    CertificateKind.SEAL: timedelta(days=3 * 365),
    CertificateKind.EVENT: timedelta(days=1),
}


def status_base(public_url: str, issuer: x509.Certificate) -> str:
    """Where validators find the status of what `issuer` issued: this installation's
    paths (``/i/<installation id>``, the id from the issuer's own subject) under
    `public_url`, so that another installation answering at the same address (two on
    one machine, both on the default loopback URL) says 404, never a foreign CRL or
    OCSP answer; an installation made before ids keeps the bare paths."""
    base = public_url.rstrip("/")
    installation = installation_of(issuer)
    return f"{base}/i/{installation}" if installation else base


def certificate_profile(
    kind: CertificateKind,
    public_key: keys.PublicKeyInfo,
    issuer: x509.Certificate | None,
    public_url: str,
    email: str | None,
    verification: dict[str, Any] | None,
    contact: Contact | None = None,
) -> list[dict[str, Any]]:
    """The extensions of a certificate of `kind`: key ids, where its status is found
    (CRL and OCSP under `status_base`, for all but the root), and the kind's usages and
    policy."""
    ski = key_identifier(public_key)
    exts = [extension("key_identifier", ski)]
    if issuer is not None:
        exts.append(
            extension(
                "authority_key_identifier",
                {"key_identifier": issuer.key_identifier_value.native},
            )
        )
        crl_name = "crl" if kind not in (CertificateKind.ISSUING,) else "root.crl"
        base = status_base(public_url, issuer)
        exts.append(
            extension(
                "crl_distribution_points",
                [
                    {
                        "distribution_point": x509.DistributionPointName(
                            name="full_name", value=[_uri(f"{base}/ca/{crl_name}")]
                        )
                    }
                ],
            )
        )
        parent = "root" if kind is CertificateKind.ISSUING else "issuing"
        exts.append(
            extension(
                "authority_information_access",
                [
                    {"access_method": "ocsp", "access_location": _uri(f"{base}/ocsp")},
                    {
                        "access_method": "ca_issuers",
                        "access_location": _uri(f"{base}/ca/{parent}.cer"),
                    },
                ],
            )
        )
    if kind in (CertificateKind.ROOT, CertificateKind.ISSUING):
        constraints: dict[str, Any] = {"ca": True}
        if kind is CertificateKind.ISSUING:
            constraints["path_len_constraint"] = 0
        exts.append(extension("basic_constraints", constraints, critical=True))
        exts.append(extension("key_usage", {"key_cert_sign", "crl_sign"}, critical=True))
        return exts
    exts.append(extension("basic_constraints", {"ca": False}, critical=True))
    exts.append(extension("key_usage", {"digital_signature", "non_repudiation"}, critical=True))
    if kind is CertificateKind.TSA:
        exts.append(extension("extended_key_usage", ["time_stamping"], critical=True))
        # the policy its tokens are issued under (TSTInfo.policy), for relying parties
        exts.append(extension("certificate_policies", [{"policy_identifier": TSA_POLICY_OID}]))
        return exts
    exts.append(extension("extended_key_usage", list(DOCUMENT_SIGNING_EKU)))
    if alt_names := _alt_names(email, contact):
        exts.append(extension("subject_alt_name", alt_names))
    policy: dict[str, Any] = {"policy_identifier": LONG_TERM_POLICY_OID}
    if kind is CertificateKind.EVENT and verification:
        notice = (
            f"Event certificate for one signature. Identity verified by "
            f"{verification['method']} at {verification['verified_at']}"
            + (f" (ref {verification['reference']})" if verification.get("reference") else "")
        )
        policy = {
            "policy_identifier": EVENT_POLICY_OID,
            "policy_qualifiers": [
                {
                    "policy_qualifier_id": "user_notice",
                    "qualifier": {
                        "explicit_text": x509.DisplayText(name="utf8_string", value=notice[:200])
                    },
                }
            ],
        }
    exts.append(extension("certificate_policies", [policy]))
    return exts


def _alt_names(email: str | None, contact: Contact | None) -> list[x509.GeneralName]:
    """The subject's e-mail, and an event certificate's activation contact: whoever
    validates the signature sees where the signer sent the code (a mobile as a
    ``tel:`` URI, RFC 3966)."""
    names = [x509.GeneralName(name="rfc822_name", value=email)] if email else []
    if contact is not None and contact.channel is ContactChannel.SMS:
        names.append(
            x509.GeneralName(name="uniform_resource_identifier", value=f"tel:{contact.address}")
        )
    elif contact is not None and contact.address.lower() != (email or "").lower():
        names.append(x509.GeneralName(name="rfc822_name", value=contact.address))
    return names


def ledger_profile(extensions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A seal profile turned into the ledger seal's: its own EKU (critical, and nothing
    else: the ledger seal never signs documents) and its own policy."""
    kept = [
        e
        for e in extensions
        if e["extn_id"] not in ("extended_key_usage", "certificate_policies", "subject_alt_name")
    ]
    return [
        *kept,
        extension("extended_key_usage", [LEDGER_SEAL_EKU], critical=True),
        extension("certificate_policies", [{"policy_identifier": LEDGER_SEAL_POLICY_OID}]),
    ]


def has_eku(cert: x509.Certificate, oid: str) -> bool:
    usage = cert.extended_key_usage_value
    return usage is not None and oid in [u.dotted for u in usage]


def _uri(url: str) -> x509.GeneralName:
    return x509.GeneralName(name="uniform_resource_identifier", value=url)
