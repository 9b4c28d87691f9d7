"""Verifying an evidence package offline, reading it as hostile (`signet.storage.evidence`).

The member, ledger, chain and statement checks; the signature, certificate and
timestamp checks of the tree head are in `signet.storage.evidence_checks`.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from asn1crypto import crl as asn1_crl
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from signet.common.contracts.storage import (
    InclusionProof,
    TreeHead,
    printable,
)
from signet.storage.evidence_checks import check_chain, check_head_signature, check_timestamp
from signet.storage.evidence_manifest import (
    FORMAT,
    FORMAT_UNSIGNED,
    MANIFEST,
    SIGNATURE,
    Check,
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
from signet.storage.ledger import tree_head_payload
from signet.storage.merkle import leaf_hash, verify_inclusion

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
    checks.append(check_head_signature(head, payload_digest))
    checks.append(check_chain(head, root, crls))
    checks.append(check_timestamp(head, payload_digest, root, crls))

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
        if (superseding := _check_supersedes(manifest)) is not None:
            checks.append(superseding)
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
    if "supersedes" in manifest:
        problems += _supersedes_problems(manifest["supersedes"])
    detail = "; ".join(problems) or (
        "sealed package" if manifest.get("sealed") else "a preview (the envelope was not sealed)"
    )
    return Check("manifest", not problems, detail)


def _supersedes_problems(stated: object) -> list[str]:
    """A newer package's statement of the one it supersedes: both hashes and a generation."""
    if (
        isinstance(stated, dict)
        and set(stated) == {"package_sha256", "manifest_sha256", "generation"}
        and all(
            isinstance(stated[k], str) and re.fullmatch(r"[0-9a-f]{64}", stated[k])
            for k in ("package_sha256", "manifest_sha256")
        )
        and type(stated["generation"]) is int
        and stated["generation"] >= 1
    ):
        return []
    return ["'supersedes' is not a package's hashes and generation"]


def _check_supersedes(manifest: dict[str, Any]) -> Check | None:
    """What a newer package says it supersedes (None: the first, or an older format)."""
    stated = manifest.get("supersedes")
    if stated is None or _supersedes_problems(stated):
        return None  # malformed: the manifest check names it
    return Check(
        "supersedes",
        True,
        f"package {stated['package_sha256']} (generation {stated['generation']}, manifest "
        f"{stated['manifest_sha256'][:16]}…), after a preservation renewal",
    )


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
            supersedes=manifest.get("supersedes"),
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
