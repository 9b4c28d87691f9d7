"""The signed manifest of an evidence package: `manifest.json` and `manifest.p7s`.

`manifest.json` states what the package is (envelope, time, whether sealed, the
tree head its proofs lead to, each document's size and kind) and the SHA-256 of
every other member.  `manifest.p7s` is a detached CMS SignedData over its exact
bytes, by the ledger seal: the signer's `/v1/digests/sign` signs only raw
digests with that seal, so the CMS is assembled here around the digest of its
signed attributes (content type, message digest, signing time), and the
signature value is timestamped by the appliance's TSA (an RFC 3161
`signature-time-stamp-token` unsigned attribute, as CAdES-T does).  Offline,
`verify_manifest_signature` checks it with pyHanko against the root the verifier
supplies, and pins the ledger seal's usage (`LEDGER_SEAL_EKU`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from asn1crypto import algos, cms, core, pem
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from pyhanko_certvalidator import ValidationContext
from signet.common.contracts.signer import LEDGER_SEAL_EKU

#: Packages with a signed manifest; `FORMAT_UNSIGNED` ones (before it) still verify, warned.
FORMAT = "signet-evidence/2"
FORMAT_UNSIGNED = "signet-evidence/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.p7s"


class ManifestSigner(Protocol):
    def sign_digest(self, digest: bytes) -> tuple[bytes, str, list[str]]: ...

    def timestamp(self, digest: bytes) -> bytes: ...


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    detail: str = ""
    #: Passed, but with a reservation the reader should see (an old package's manifest).
    warning: bool = False


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The manifest as stored and signed (sorted keys, indented for people)."""
    return json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")


def sign_manifest(signer: ManifestSigner, data: bytes, when: datetime | None = None) -> bytes:
    """A DER ContentInfo: detached CMS SignedData over `data`, by the ledger seal,
    with a signature timestamp."""
    moment = (when or datetime.now(UTC)).replace(microsecond=0)
    signed_attrs = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(data).digest()]}),
            cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": moment})]}),
        ]
    )
    signature, algorithm, chain = signer.sign_digest(hashlib.sha256(signed_attrs.dump()).digest())
    if algorithm != "sha256_ecdsa":
        raise ValueError(f"unexpected signature algorithm {algorithm}")
    certificates = [asn1_x509.Certificate.load(pem.unarmor(c.encode())[2]) for c in chain]
    seal = certificates[0]
    token = cms.ContentInfo.load(signer.timestamp(hashlib.sha256(signature).digest()))
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                        {"issuer": seal.issuer, "serial_number": seal.serial_number}
                    )
                }
            ),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
            "signature": core.OctetString(signature),
            "unsigned_attrs": cms.CMSAttributes(
                [cms.CMSAttribute({"type": "signature_time_stamp_token", "values": [token]})]
            ),
        }
    )
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "data"},  # detached: no content
            "certificates": [cms.CertificateChoices({"certificate": c}) for c in certificates],
            "signer_infos": [signer_info],
        }
    )
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump())


def _context(
    root: asn1_x509.Certificate,
    others: list[asn1_x509.Certificate],
    crls: list[asn1_crl.CertificateList],
    moment: datetime | None,
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


def verify_manifest_signature(
    data: bytes,
    p7s: bytes,
    root: asn1_x509.Certificate,
    crls: list[asn1_crl.CertificateList],
) -> Check:
    """The manifest's signature: intact over `data`, by the ledger seal under `root`,
    timestamped; a failed check names the manifest."""
    from pyhanko.sign.validation.generic_cms import async_validate_detached_cms

    what = "manifest signature"
    try:
        content = cms.ContentInfo.load(p7s)
        if content["content_type"].native != "signed_data":
            return Check(what, False, "manifest.p7s is not a CMS SignedData")
        signed_data = content["content"]
        others = [c.chosen for c in signed_data["certificates"] or []]
        signer_info = signed_data["signer_infos"][0]
        signed_at = None
        for attribute in signer_info["signed_attrs"]:
            if attribute["type"].native == "signing_time":
                signed_at = attribute["values"][0].native
        context = _context(root, others, crls, signed_at)
        status = asyncio.run(
            async_validate_detached_cms(
                data,
                signed_data,
                signer_validation_context=context,
                ts_validation_context=_context(root, others, crls, signed_at),
            )
        )
    except Exception as exc:  # any parse or validation failure is a failed check, named
        return Check(what, False, f"manifest.p7s is unreadable or invalid: {type(exc).__name__}")
    if not status.intact or not status.valid:
        return Check(
            what,
            False,
            "manifest.json does not match its signature manifest.p7s: the manifest (or the "
            "signature) was changed after it was signed",
        )
    if not status.trusted:
        return Check(
            what, False, "manifest.p7s: the manifest's signer does not chain to the given root"
        )
    usage = status.signing_cert.extended_key_usage_value
    if usage is None or LEDGER_SEAL_EKU not in [u.dotted for u in usage]:
        return Check(
            what,
            False,
            f"manifest.p7s: the manifest is signed by "
            f"{status.signing_cert.subject.human_friendly}, not the ledger seal "
            f"(no ledger seal usage {LEDGER_SEAL_EKU})",
        )
    stamp = status.timestamp_validity
    if stamp is None:
        return Check(what, False, "manifest.p7s: the manifest's signature carries no timestamp")
    if not (stamp.intact and stamp.valid and stamp.trusted):
        return Check(
            what, False, "manifest.p7s: the manifest's signature timestamp does not verify"
        )
    return Check(
        what,
        True,
        f"{status.signing_cert.subject.human_friendly}, timestamped {stamp.timestamp.isoformat()}",
    )
