"""The tree head's cryptographic checks in a package: its signature, its seal's
certificate chain to the root the verifier supplies, its RFC 3161 timestamp."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime

from asn1crypto import cms, pem
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509 import load_der_x509_certificate
from pyhanko_certvalidator import ValidationContext
from signet.common.contracts.signer import LEDGER_SEAL_EKU
from signet.common.contracts.storage import (
    TreeHead,
)
from signet.storage.evidence_manifest import (
    Check,
)


def check_head_signature(head: TreeHead, digest: bytes) -> Check:
    if not head.signature or not head.certificate_chain:
        return Check("tree head signature", False, "the tree head is not signed")
    try:
        certificate = load_der_x509_certificate(pem.unarmor(head.certificate_chain[0].encode())[2])
        public_key = certificate.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            return Check("tree head signature", False, "unexpected key type")
        public_key.verify(
            base64.b64decode(head.signature), digest, ec.ECDSA(utils.Prehashed(hashes.SHA256()))
        )
    except (InvalidSignature, ValueError) as exc:
        return Check("tree head signature", False, f"does not verify ({type(exc).__name__})")
    return Check("tree head signature", True, certificate.subject.rfc4514_string())


def _validation_context(
    root: asn1_x509.Certificate,
    others: list[asn1_x509.Certificate],
    crls: list[asn1_crl.CertificateList],
    moment: datetime,
) -> ValidationContext:
    return ValidationContext(
        trust_roots=[root],
        other_certs=others,
        crls=crls,
        allow_fetching=False,
        revocation_mode="soft-fail",
        moment=moment,
        retroactive_revinfo=True,
    )


def check_chain(
    head: TreeHead, root: asn1_x509.Certificate, crls: list[asn1_crl.CertificateList]
) -> Check:
    from pyhanko_certvalidator import CertificateValidator
    from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError

    try:
        chain = [
            asn1_x509.Certificate.load(pem.unarmor(c.encode())[2]) for c in head.certificate_chain
        ]
    except ValueError as exc:
        return Check("ledger seal certificate", False, f"unreadable chain: {exc}")
    if not chain:
        return Check("ledger seal certificate", False, "no certificate")
    context = _validation_context(root, chain[1:], crls, head.time)
    validator = CertificateValidator(
        chain[0], intermediate_certs=chain[1:], validation_context=context
    )
    try:
        asyncio.run(validator.async_validate_usage({"digital_signature"}))  # type: ignore[no-untyped-call]
    except (PathBuildingError, PathValidationError) as exc:
        return Check("ledger seal certificate", False, f"does not chain to the given root: {exc}")
    usage = chain[0].extended_key_usage_value
    if usage is None or LEDGER_SEAL_EKU not in [u.dotted for u in usage]:
        # any other certificate under the root (a seal, a person) cannot speak for the ledger
        return Check(
            "ledger seal certificate",
            False,
            f"{chain[0].subject.human_friendly} is not the ledger seal's certificate "
            f"(no ledger seal usage {LEDGER_SEAL_EKU})",
        )
    return Check("ledger seal certificate", True, chain[0].subject.human_friendly)


def check_timestamp(
    head: TreeHead, digest: bytes, root: asn1_x509.Certificate, crls: list[asn1_crl.CertificateList]
) -> Check:
    from pyhanko.sign.validation.generic_cms import validate_tst_signed_data

    if not head.timestamp_token:
        return Check("tree head timestamp", False, "no timestamp token")
    try:
        token = cms.ContentInfo.load(base64.b64decode(head.timestamp_token))
        signed_data = token["content"]
        others = [c.chosen for c in signed_data["certificates"] or []]
        context = _validation_context(root, others, crls, head.time)
        status = asyncio.run(
            validate_tst_signed_data(signed_data, context, lambda _algorithm: digest)
        )
    except Exception as exc:  # any parse or validation failure is a failed check, named
        return Check("tree head timestamp", False, f"unreadable or invalid: {exc}")
    ok = bool(
        status.get("intact") and status.get("valid") and status.get("trust_problem_indic") is None
    )
    when = status.get("timestamp")
    return Check("tree head timestamp", ok, f"time {when}" if ok else f"failed: {status}")
