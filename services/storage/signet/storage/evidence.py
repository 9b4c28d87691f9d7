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

from signet.storage.evidence_build import Built, build_package
from signet.storage.evidence_manifest import FORMAT, Check
from signet.storage.evidence_seal import SEALED_EVENT, SEALS, seal_event_id, seal_package, sealed
from signet.storage.evidence_verify import verify_package

__all__ = [
    "FORMAT",
    "SEALED_EVENT",
    "SEALS",
    "Built",
    "Check",
    "build_package",
    "seal_event_id",
    "seal_package",
    "sealed",
    "verify_package",
]
