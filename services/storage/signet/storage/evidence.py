"""Evidence packages: everything a court needs about one envelope, checkable offline.

A package is a zip:

    manifest.json              what the package is, and the SHA-256 of every other member
    manifest.p7s               CMS signature over manifest.json by the ledger seal, with a
                               signature timestamp (`signet.storage.evidence_manifest`)
    summary.txt                the story in plain words, for people (and in Chinese and
    summary.zh-CN.txt …es.txt  Spanish), each rendered again and compared by the verifier
    documents/<sha256>.pdf     every document the envelope's events name
    ledger/entries/<n>.json    the envelope's ledger leaves, byte for byte
    ledger/proofs.json         an RFC 9162 inclusion proof of each leaf
    ledger/tree-head.json      the signed tree head the proofs lead to, with its
                               signature, RFC 3161 timestamp and certificate chain
    pki/root.cer issuing.cer   the CA certificates, and their current CRLs
    pki/issuing.crl root.crl

An envelope's package is *sealed* once (`seal_package`, when the envelope is
complete): made, stored in the vault (kind `evidence`, the same bytes at every
download) and its manifest's hash appended to the ledger as `evidence.sealed`,
which the next signed tree head covers.  Before that a download is a preview,
made afresh and recorded nowhere.

`verify_package` checks it all without a server, reading the zip as hostile
(`signet.storage.evidence_reading`): the manifest's signature, members against
the manifest, what the manifest states against the package, summary.txt against
what it is rendered from, documents against their hashes and the leaves that
name them, each leaf against the tree head by its proof, the envelope's chain of
events, the tree head's signature and certificate chain up to the root *the
verifier supplies*, and the timestamp token over the same head.  Packages made
before manifests were signed (`signet-evidence/1`) still verify, with a warning.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

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
    EvidenceSeal,
    InclusionProof,
    LedgerEventIn,
    ObjectKind,
    TreeHead,
    printable,
)
from signet.common.errors import Conflict, NotFound
from signet.storage.evidence_manifest import (
    FORMAT,
    FORMAT_UNSIGNED,
    MANIFEST,
    SIGNATURE,
    Check,
    manifest_bytes,
    sign_manifest,
    verify_manifest_signature,
)
from signet.storage.evidence_reading import (
    ChainLink,
    PackageReader,
    PackageRefused,
    chain_problems,
    entry_index,
)
from signet.storage.evidence_summary import SUMMARY_LOCALES, summary_name, summary_text
from signet.storage.ledger import Ledger, TreeHeadSigner, canonical_json, tree_head_payload
from signet.storage.merkle import leaf_hash, verify_inclusion
from signet.storage.vault import ObjectNotFound, Vault

__all__ = ["FORMAT", "Check", "build_package", "seal_package", "sealed", "verify_package"]

#: Where a sealed package is recorded (write-once), by the SHA-256 of its envelope id.
SEALS = "evidence/sealed"
SEALED_EVENT = "evidence.sealed"
_seal_lock = threading.Lock()


# -- building -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    manifest_sha256: str
    created: datetime
    tree_size: int


def build_package(
    envelope_id: str,
    *,
    vault: Vault,
    ledger: Ledger,
    signer: TreeHeadSigner,
    pki: dict[str, bytes],
    target: IO[bytes],
    sealed: bool = False,
) -> Built:
    """Write the package of `envelope_id` to `target` (documents streamed, not held)."""
    indexes = ledger.envelope_indexes(envelope_id)
    if not indexes:
        raise NotFound(f"the ledger has no events for envelope {envelope_id}")
    head = ledger.publish_head(signer)
    created = datetime.now(UTC).replace(microsecond=0)
    entries = {index: ledger.leaf(index) for index in indexes if index < head.tree_size}
    proofs = {str(i): ledger.inclusion(i, head.tree_size).model_dump() for i in entries}
    hashes = sorted(
        {h for leaf in entries.values() for h in json.loads(leaf).get("document_hashes", [])}
    )
    files: dict[str, str] = {}
    documents: dict[str, dict[str, Any]] = {}
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:

        def add(name: str, data: bytes) -> None:
            files[name] = hashlib.sha256(data).hexdigest()
            archive.writestr(name, data)

        for sha256 in hashes:
            info = vault.head(sha256)
            name = f"documents/{sha256}{_extension(info.content_type)}"
            digest = hashlib.sha256()
            with archive.open(name, "w", force_zip64=True) as member:
                for chunk in vault.open(sha256):
                    digest.update(chunk)
                    member.write(chunk)
            files[name] = digest.hexdigest()
            documents[name] = {"size": info.size, "kind": info.kind.value}
        for index, leaf in entries.items():
            add(f"ledger/entries/{index:012d}.json", leaf)
        add("ledger/proofs.json", canonical_json(proofs))
        add("ledger/tree-head.json", head.model_dump_json(indent=2).encode())
        for name, data in sorted(pki.items()):
            add(f"pki/{name}", data)
        listed = [(name, d["size"], d["kind"]) for name, d in documents.items()]
        for locale in ("en", *SUMMARY_LOCALES):
            summary = summary_text(
                envelope_id, entries, listed, head, created, complete=sealed, locale=locale
            )
            add(summary_name(locale), summary.encode())
        manifest = manifest_bytes(
            {
                "format": FORMAT,
                "envelope_id": envelope_id,
                "created": created.isoformat(),
                "sealed": sealed,
                "tree_head": {
                    "log_id": head.log_id,
                    "root_hash": head.root_hash,
                    "tree_size": head.tree_size,
                },
                "entries": sorted(entries),
                "documents": documents,
                "files": files,
            }
        )
        archive.writestr(MANIFEST, manifest)
        archive.writestr(SIGNATURE, sign_manifest(signer, manifest, created))
    return Built(hashlib.sha256(manifest).hexdigest(), created, head.tree_size)


def _extension(content_type: str) -> str:
    return {"application/pdf": ".pdf", "application/json": ".json", "text/plain": ".txt"}.get(
        content_type, ".bin"
    )


# -- sealing: once per envelope, kept in the vault ------------------------------------------


def _seal_record(envelope_id: str) -> str:
    return f"{SEALS}/{hashlib.sha256(envelope_id.encode()).hexdigest()}.json"


def seal_event_id(envelope_id: str) -> str:
    """The ledger event id of an envelope's seal (the same at every retry)."""
    return "evidence-" + hashlib.sha256(envelope_id.encode()).hexdigest()[:48]


def sealed(vault: Vault, envelope_id: str) -> dict[str, Any] | None:
    """The seal record of `envelope_id` (package hash, manifest hash...), None if unsealed."""
    try:
        record: dict[str, Any] = json.loads(vault.get_record(_seal_record(envelope_id)))
    except ObjectNotFound:
        return None
    return record


def seal_package(
    envelope_id: str,
    *,
    vault: Vault,
    ledger: Ledger,
    signer: TreeHeadSigner,
    pki: dict[str, bytes],
) -> tuple[EvidenceSeal, bool]:
    """Seal the envelope's package once: (the seal, whether this call made it).

    Made and stored in the vault, recorded write-once, then its manifest's hash is
    appended to the ledger (an idempotent event: a retry after a crash between the
    steps completes the seal, never makes a second one) and a tree head signed over it.
    """
    with _seal_lock:
        record, made = sealed(vault, envelope_id), False
        if record is None:
            record, made = _make_seal(envelope_id, vault, ledger, signer, pki), True
    receipt = ledger.append_sync(
        LedgerEventIn(
            event_id=seal_event_id(envelope_id),
            event_type=SEALED_EVENT,
            envelope_id=envelope_id,
            actor="signet-storage",
            details={
                "manifest_sha256": record["manifest_sha256"],
                "package_sha256": record["package_sha256"],
                "tree_size": str(record["tree_size"]),
            },
        )
    )
    if not receipt.replayed:
        ledger.publish_head(signer)
    return (
        EvidenceSeal.model_validate(
            record | {"ledger_index": receipt.index, "leaf_hash": receipt.leaf_hash}
        ),
        made,
    )


def _make_seal(
    envelope_id: str, vault: Vault, ledger: Ledger, signer: TreeHeadSigner, pki: dict[str, bytes]
) -> dict[str, Any]:
    vault.staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=vault.staging) as spool:
        built = build_package(
            envelope_id, vault=vault, ledger=ledger, signer=signer, pki=pki, target=spool,
            sealed=True,
        )  # fmt: skip
        spool.seek(0)
        info, _ = vault.put(
            spool,
            content_type="application/zip",
            kind=ObjectKind.EVIDENCE,
            envelope_id=envelope_id,
        )
    record = {
        "envelope_id": envelope_id,
        "package_sha256": info.sha256,
        "size": info.size,
        "manifest_sha256": built.manifest_sha256,
        "created": built.created.isoformat(),
        "tree_size": built.tree_size,
    }
    try:
        vault.put_record(_seal_record(envelope_id), json.dumps(record, sort_keys=True).encode())
    except Conflict:  # another process sealed it first: its package stands
        return sealed(vault, envelope_id) or record
    return record


# -- verifying ------------------------------------------------------------------------------


def verify_package(package: Path | IO[bytes], root_pem: bytes) -> list[Check]:
    """Every check, in order; the package is good when all are ok.

    Never raises for a bad package: a zip out of bounds, a crafted member name or
    malformed JSON is a failed check that says so (`signet.storage.evidence_reading`).
    """
    try:
        reader = PackageReader(package)
    except PackageRefused as exc:
        return [Check("package", False, exc.detail)]
    checks: list[Check] = []
    try:
        _verify(reader, root_pem, checks)
    except PackageRefused as exc:
        checks.append(Check("package", False, exc.detail))
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        # asn1crypto parses lazily: a malformed certificate or CRL surfaces here.
        detail = printable(f"malformed content ({type(exc).__name__}: {exc})")[:300]
        checks.append(Check("package", False, detail))
    finally:
        reader.close()
    return checks


def _manifest(reader: PackageReader) -> tuple[bytes, dict[str, Any]]:
    if MANIFEST not in reader.names:
        raise PackageRefused("not an evidence package: no manifest.json")
    data = reader.read(MANIFEST)
    try:
        manifest = json.loads(data)
    except ValueError:
        raise PackageRefused("manifest.json is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in (FORMAT, FORMAT_UNSIGNED):
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise PackageRefused(f"manifest.json: unknown format {printable(repr(found))[:80]}")
    files, envelope_id = manifest.get("files"), manifest.get("envelope_id", "")
    if (
        not isinstance(files, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
        or not isinstance(envelope_id, str)
    ):
        raise PackageRefused("manifest.json: 'files' is not a map of names to hashes")
    return data, manifest


def _crls(reader: PackageReader) -> list[asn1_crl.CertificateList]:
    return [
        asn1_crl.CertificateList.load(reader.read(name))
        for name in ("pki/issuing.crl", "pki/root.crl")
        if name in reader.names
    ]


def _verify(reader: PackageReader, root_pem: bytes, checks: list[Check]) -> None:
    names = reader.names
    data, manifest = _manifest(reader)
    files: dict[str, str] = manifest["files"]
    envelope_id: str = manifest.get("envelope_id", "")
    signed = manifest["format"] == FORMAT
    root = asn1_x509.Certificate.load(
        pem.unarmor(root_pem)[2] if pem.detect(root_pem) else root_pem
    )
    crls = _crls(reader)

    # 1. Every member is what the manifest says, and nothing was added or removed.
    bad_members = []
    sizes: dict[str, int] = {}
    digests: dict[str, str] = {}
    for name, expected in sorted(files.items()):
        if name not in names:
            bad_members.append(f"{printable(name)} is missing")
            continue
        digest, size = hashlib.sha256(), 0
        for chunk in reader.chunks(name):
            digest.update(chunk)
            size += len(chunk)
        sizes[name], digests[name] = size, digest.hexdigest()
        if digests[name] != expected:
            bad_members.append(f"{name} was altered")
    own = {MANIFEST, SIGNATURE} if signed else {MANIFEST}
    extra = names - set(files) - own
    bad_members += [f"{printable(name)} was added" for name in sorted(extra)]
    checks.append(Check("package members", not bad_members, "; ".join(bad_members)))

    # 1b. The manifest is the ledger seal's, unchanged (or, an old package, unsigned).
    if not signed:
        checks.append(
            Check(
                "manifest signature",
                True,
                "a package made before manifests were signed: its manifest is unsigned (the "
                "ledger entries, proofs and tree head below are still signed and checked)",
                warning=True,
            )
        )
    elif SIGNATURE not in names:
        checks.append(
            Check("manifest signature", False, "manifest.p7s is missing: the manifest is unsigned")
        )
    else:
        checks.append(verify_manifest_signature(data, reader.read(SIGNATURE), root, crls))

    read = reader.read

    # 2. The tree head: its signature, its signer's chain to the supplied root, its timestamp.
    try:
        head = TreeHead.model_validate_json(read("ledger/tree-head.json"))
        root_hash = bytes.fromhex(head.root_hash)
    except ValueError as exc:
        checks.append(Check("tree head", False, f"unreadable: {type(exc).__name__}"))
        return
    payload_digest = hashlib.sha256(tree_head_payload(head)).digest()
    checks.append(_check_head_signature(head, payload_digest))
    checks.append(_check_chain(head, root, crls))
    checks.append(_check_timestamp(head, payload_digest, root, crls))

    # 3. Each ledger entry is in the signed tree, and belongs to this envelope.
    try:
        raw_proofs = json.loads(read("ledger/proofs.json"))
        proofs = {int(k): InclusionProof.model_validate(v) for k, v in raw_proofs.items()}
        paths = {i: [bytes.fromhex(p) for p in proof.audit_path] for i, proof in proofs.items()}
    except (ValueError, AttributeError) as exc:
        checks.append(Check("inclusion proofs", False, f"unreadable: {type(exc).__name__}"))
        return
    named_documents: set[str] = set()
    links: list[ChainLink] = []
    leaves: dict[int, bytes] = {}
    entries = sorted(n for n in names if n.startswith("ledger/entries/"))
    if not entries:
        checks.append(Check("ledger entries", False, "the package holds no ledger entries"))
    for name in entries:
        index = entry_index(name)
        if index is None:
            checks.append(Check(printable(name), False, "not a ledger entry's name"))
            continue
        leaf = read(name)
        proof = proofs.get(index)
        what = f"ledger entry {index}"
        try:
            event = json.loads(leaf)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            checks.append(Check(what, False, "not a JSON object"))
            continue
        leaves[index] = leaf
        problems = []
        if proof is None:
            problems.append("no inclusion proof")
        elif (
            not verify_inclusion(index, head.tree_size, leaf_hash(leaf), paths[index], root_hash)
            or proof.tree_size != head.tree_size
        ):
            problems.append("not in the signed tree (altered entry or proof)")
        if event.get("envelope_id") != envelope_id or event.get("index") != index:
            problems.append("belongs to another envelope or position")
        hashes = event.get("document_hashes", [])
        if isinstance(hashes, list):
            named_documents.update(h for h in hashes if isinstance(h, str))
        else:
            problems.append("document_hashes is not a list")
        links.append(ChainLink(index, leaf, event))
        detail = "; ".join(problems) or printable(str(event.get("event_type", "")))[:80]
        checks.append(Check(what, not problems, detail))

    # 4. No event of the envelope is left out (each names the one before it).
    if links:
        problems, warnings = chain_problems(links)
        if problems:
            checks.append(Check("envelope events complete", False, "; ".join(problems)))
        elif warnings:
            checks.append(
                Check("envelope events complete", True, "; ".join(warnings), warning=True)
            )
        else:
            checks.append(Check("envelope events complete", True, f"{len(links)} chained"))

    # 5. Each document is the one the ledger names.
    present = {}
    for name in sorted(n for n in names if n.startswith("documents/")):
        actual = digests.get(name) or reader.sha256(name)
        claimed = name.removeprefix("documents/").split(".")[0]
        present[claimed] = name
        ok = actual == claimed and claimed in named_documents
        detail = (
            ""
            if ok
            else "content does not match its hash"
            if actual != claimed
            else "not named by any ledger entry"
        )
        checks.append(Check(f"document {printable(name)}", ok, detail))
    missing = sorted(named_documents - set(present))
    if missing:
        checks.append(
            Check(
                "documents",
                False,
                printable(f"named by the ledger but absent: {', '.join(missing)}")[:2000],
            )
        )

    # 6. What the signed manifest states is what the package holds; summary.txt agrees.
    if signed:
        checks.append(_check_statements(manifest, head, leaves, sizes))
        checks.append(_check_summary(manifest, head, leaves, read("summary.txt")))
        for locale in SUMMARY_LOCALES:  # packages made before they existed lack them
            if summary_name(locale) in names:
                translated = read(summary_name(locale))
                checks.append(_check_summary(manifest, head, leaves, translated, locale))


def _check_statements(
    manifest: dict[str, Any], head: TreeHead, leaves: dict[int, bytes], sizes: dict[str, int]
) -> Check:
    problems = []
    stated_head = manifest.get("tree_head")
    actual_head = {"log_id": head.log_id, "root_hash": head.root_hash, "tree_size": head.tree_size}
    if stated_head != actual_head:
        problems.append("states another tree head than ledger/tree-head.json")
    if manifest.get("entries") != sorted(leaves):
        problems.append("states other ledger entries than the package holds")
    documents = manifest.get("documents")
    if not isinstance(documents, dict):
        problems.append("'documents' is not a map")
    else:
        for name, stated in sorted(documents.items()):
            size = stated.get("size") if isinstance(stated, dict) else None
            if name not in sizes:
                problems.append(f"states a document {printable(name)} the package lacks")
            elif size != sizes[name]:
                problems.append(f"states {size} bytes for {name}, which holds {sizes[name]}")
    if not isinstance(manifest.get("sealed"), bool):
        problems.append("'sealed' is not true or false")
    detail = "; ".join(problems) or (
        "sealed package" if manifest.get("sealed") else "a preview (the envelope was not sealed)"
    )
    return Check("manifest", not problems, detail)


def _check_summary(
    manifest: dict[str, Any],
    head: TreeHead,
    leaves: dict[int, bytes],
    summary: bytes,
    locale: str = "en",
) -> Check:
    """A summary, rendered again from the signed data; any other text is named."""
    member = summary_name(locale)
    try:
        documents = [
            (name, int(d["size"]), str(d["kind"])) for name, d in manifest["documents"].items()
        ]
        expected = summary_text(
            manifest["envelope_id"],
            leaves,
            documents,
            head,
            datetime.fromisoformat(manifest["created"]),
            complete=bool(manifest.get("sealed")),
            locale=locale,
        ).encode()
    except (KeyError, TypeError, ValueError, AttributeError):
        return Check(member, False, "cannot be rendered from the manifest")
    if summary == expected:
        return Check(member, True, "agrees with the signed manifest and ledger entries")
    got, want = summary.decode("utf-8", "replace").splitlines(), expected.decode().splitlines()
    line = next(
        (n for n, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
        min(len(got), len(want)),
    )
    return Check(
        member,
        False,
        f"disagrees with the signed manifest and ledger entries from line {line + 1}: "
        + printable(repr(got[line] if line < len(got) else ""))[:200],
    )


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
