"""Evidence packages: everything a court needs about one envelope, checkable offline.

A package is a zip:

    manifest.json              SHA-256 of every other member (names what was altered)
    summary.txt                the story in plain words, for people
    documents/<sha256>.pdf     every document the envelope's events name
    ledger/entries/<n>.json    the envelope's ledger leaves, byte for byte
    ledger/proofs.json         an RFC 9162 inclusion proof of each leaf
    ledger/tree-head.json      the signed tree head the proofs lead to, with its
                               signature, RFC 3161 timestamp and certificate chain
    pki/root.cer issuing.cer   the CA certificates, and their current CRLs
    pki/issuing.crl root.crl

`verify_package` checks it all without a server: members against the
manifest, documents against their hashes and against the leaves that name
them, each leaf against the tree head by its proof, the tree head's
signature and certificate chain up to the root *the verifier supplies*, and
the timestamp token (pyHanko's RFC 3161 validation) over the same head.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from asn1crypto import cms, pem
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509 import load_der_x509_certificate
from pyhanko_certvalidator import ValidationContext
from signet.common.contracts.signer import LEDGER_SEAL_EKU
from signet.common.contracts.storage import InclusionProof, TreeHead
from signet.common.errors import NotFound
from signet.storage.ledger import Ledger, TreeHeadSigner, canonical_json, tree_head_payload
from signet.storage.merkle import leaf_hash, verify_inclusion
from signet.storage.vault import Vault

FORMAT = "signet-evidence/1"


# -- building -------------------------------------------------------------------------------


def build_package(
    envelope_id: str,
    *,
    vault: Vault,
    ledger: Ledger,
    signer: TreeHeadSigner,
    pki: dict[str, bytes],
    target: IO[bytes],
) -> None:
    """Write the package of `envelope_id` to `target` (documents streamed, not held)."""
    indexes = ledger.envelope_indexes(envelope_id)
    if not indexes:
        raise NotFound(f"the ledger has no events for envelope {envelope_id}")
    head = ledger.publish_head(signer)
    entries = {index: ledger.leaf(index) for index in indexes if index < head.tree_size}
    proofs = {str(i): ledger.inclusion(i, head.tree_size).model_dump() for i in entries}
    hashes = sorted(
        {h for leaf in entries.values() for h in json.loads(leaf).get("document_hashes", [])}
    )
    manifest: dict[str, str] = {}
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:

        def add(name: str, data: bytes) -> None:
            manifest[name] = hashlib.sha256(data).hexdigest()
            archive.writestr(name, data)

        documents: list[tuple[str, int, str]] = []
        for sha256 in hashes:
            info = vault.head(sha256)
            name = f"documents/{sha256}{_extension(info.content_type)}"
            digest = hashlib.sha256()
            with archive.open(name, "w", force_zip64=True) as member:
                for chunk in vault.open(sha256):
                    digest.update(chunk)
                    member.write(chunk)
            manifest[name] = digest.hexdigest()
            documents.append((name, info.size, info.kind.value))
        for index, leaf in entries.items():
            add(f"ledger/entries/{index:012d}.json", leaf)
        add("ledger/proofs.json", canonical_json(proofs))
        add("ledger/tree-head.json", head.model_dump_json(indent=2).encode())
        for name, data in sorted(pki.items()):
            add(f"pki/{name}", data)
        add("summary.txt", _summary(envelope_id, entries, documents, head).encode())
        archive.writestr(
            "manifest.json",
            json.dumps(
                {
                    "format": FORMAT,
                    "envelope_id": envelope_id,
                    "created": datetime.now(UTC).isoformat(),
                    "files": manifest,
                },
                indent=2,
                sort_keys=True,
            ),
        )


def _extension(content_type: str) -> str:
    return {"application/pdf": ".pdf", "application/json": ".json", "text/plain": ".txt"}.get(
        content_type, ".bin"
    )


def _summary(
    envelope_id: str,
    entries: dict[int, bytes],
    documents: list[tuple[str, int, str]],
    head: TreeHead,
) -> str:
    lines = [
        f"Evidence package for envelope {envelope_id}",
        f"Made {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC by Signet.",
        "",
        "What happened (from the evidence ledger, in order):",
    ]
    for index, leaf in sorted(entries.items()):
        event = json.loads(leaf)
        lines.append(
            f"  #{index:<8} {event['time']:<32} {event['event_type']:<24} by {event['actor']}"
            + (f" from {event['ip']}" if event.get("ip") else "")
            + (f" ({event['auth_method']})" if event.get("auth_method") else "")
        )
    lines += ["", "Documents:"]
    for name, size, kind in documents:
        lines.append(f"  {name}  {size} bytes  ({kind})")
    signer = "unsigned"
    if head.certificate_chain:
        cert = asn1_x509.Certificate.load(pem.unarmor(head.certificate_chain[0].encode())[2])
        signer = cert.subject.human_friendly
    lines += [
        "",
        f"Every event above is a leaf of the ledger '{head.log_id}', whose tree of "
        f"{head.tree_size} entries has the root {head.root_hash},",
        f"signed at {head.time.isoformat()} by {signer} and timestamped by the appliance's TSA.",
        "",
        "To check this package without any server:",
        "  signet verify-evidence THIS.zip --root root-you-trust.pem",
        "It recomputes every hash, every proof, the signature and the timestamp, and names",
        "anything that does not match.",
    ]
    return "\n".join(lines) + "\n"


# -- verifying ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    detail: str = ""


def verify_package(package: Path | IO[bytes], root_pem: bytes) -> list[Check]:
    """Every check, in order; the package is good when all are ok."""
    checks: list[Check] = []
    try:
        archive = zipfile.ZipFile(package)
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        return [Check("package", False, f"not a readable evidence package: {exc}")]
    if manifest.get("format") != FORMAT:
        return [Check("package", False, f"unknown format {manifest.get('format')!r}")]
    files: dict[str, str] = manifest.get("files", {})
    envelope_id = manifest.get("envelope_id", "")

    # 1. Every member is what the manifest says, and nothing was added or removed.
    bad_members = []
    for name, expected in sorted(files.items()):
        if name not in names:
            bad_members.append(f"{name} is missing")
            continue
        digest = hashlib.sha256()
        with archive.open(name) as member:
            while chunk := member.read(1024 * 1024):
                digest.update(chunk)
        if digest.hexdigest() != expected:
            bad_members.append(f"{name} was altered")
    extra = names - set(files) - {"manifest.json"}
    bad_members += [f"{name} was added" for name in sorted(extra)]
    checks.append(Check("package members", not bad_members, "; ".join(bad_members)))

    def read(name: str) -> bytes:
        return archive.read(name) if name in names else b""

    # 2. The tree head: its signature, its signer's chain to the supplied root, its timestamp.
    try:
        head = TreeHead.model_validate_json(read("ledger/tree-head.json"))
    except ValueError as exc:
        checks.append(Check("tree head", False, f"unreadable: {exc}"))
        return checks
    root = asn1_x509.Certificate.load(
        pem.unarmor(root_pem)[2] if pem.detect(root_pem) else root_pem
    )
    payload_digest = hashlib.sha256(tree_head_payload(head)).digest()
    crls = [
        asn1_crl.CertificateList.load(read(name))
        for name in ("pki/issuing.crl", "pki/root.crl")
        if read(name)
    ]
    checks.append(_check_head_signature(head, payload_digest))
    checks.append(_check_chain(head, root, crls))
    checks.append(_check_timestamp(head, payload_digest, root, crls))

    # 3. Each ledger entry is in the signed tree, and belongs to this envelope.
    try:
        proofs = {
            int(k): InclusionProof.model_validate(v)
            for k, v in json.loads(read("ledger/proofs.json")).items()
        }
    except ValueError as exc:
        checks.append(Check("inclusion proofs", False, f"unreadable: {exc}"))
        return checks
    root_hash = bytes.fromhex(head.root_hash)
    named_documents: set[str] = set()
    entries = sorted(n for n in names if n.startswith("ledger/entries/"))
    if not entries:
        checks.append(Check("ledger entries", False, "the package holds no ledger entries"))
    for name in entries:
        leaf = archive.read(name)
        index = int(name.rsplit("/", 1)[1].split(".")[0])
        proof = proofs.get(index)
        what = f"ledger entry {index}"
        try:
            event = json.loads(leaf)
        except ValueError:
            checks.append(Check(what, False, "not JSON"))
            continue
        problems = []
        if proof is None:
            problems.append("no inclusion proof")
        elif (
            not verify_inclusion(
                index,
                head.tree_size,
                leaf_hash(leaf),
                [bytes.fromhex(p) for p in proof.audit_path],
                root_hash,
            )
            or proof.tree_size != head.tree_size
        ):
            problems.append("not in the signed tree (altered entry or proof)")
        if event.get("envelope_id") != envelope_id or event.get("index") != index:
            problems.append("belongs to another envelope or position")
        named_documents.update(event.get("document_hashes", []))
        checks.append(Check(what, not problems, "; ".join(problems) or event.get("event_type", "")))

    # 4. Each document is the one the ledger names.
    present = {}
    for name in sorted(n for n in names if n.startswith("documents/")):
        digest = hashlib.sha256()
        with archive.open(name) as member:
            while chunk := member.read(1024 * 1024):
                digest.update(chunk)
        claimed = name.removeprefix("documents/").split(".")[0]
        present[claimed] = name
        ok = digest.hexdigest() == claimed and claimed in named_documents
        detail = (
            ""
            if ok
            else "content does not match its hash"
            if digest.hexdigest() != claimed
            else "not named by any ledger entry"
        )
        checks.append(Check(f"document {name}", ok, detail))
    missing = sorted(named_documents - set(present))
    if missing:
        checks.append(
            Check("documents", False, f"named by the ledger but absent: {', '.join(missing)}")
        )
    return checks


def _check_head_signature(head: TreeHead, digest: bytes) -> Check:
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


def _check_chain(
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


def _check_timestamp(
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


def manifest_of(package: bytes) -> dict[str, str]:
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        files: dict[str, str] = json.loads(archive.read("manifest.json"))["files"]
    return files
