"""The plain-words summary of an evidence package (`summary.txt`), for people.

Rendered from what the package proves alone (the ledger entries, the signed
manifest's documents and time, the tree head), so `verify-evidence` renders it
again and names a `summary.txt` that says anything else.  Every stored string is
escaped as it is written (`printable`): one line per event whatever an event
holds (events stored before the contract refused control characters are kept as
they are, and an `actor` with CR/LF once forged a line here).
"""

from __future__ import annotations

import json
from datetime import datetime

from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from signet.common.contracts.storage import TreeHead, printable


def summary_text(
    envelope_id: str,
    entries: dict[int, bytes],
    documents: list[tuple[str, int, str]],
    head: TreeHead,
    created: datetime,
    *,
    complete: bool = True,
) -> str:
    lines = [
        f"Evidence package for envelope {printable(envelope_id)}",
        f"Made {created:%Y-%m-%d %H:%M:%S} UTC by Signet"
        + ("." if complete else ", before the envelope was sealed (a preview)."),
        "",
        "What happened (from the evidence ledger, in order):",
    ]
    for index, leaf in sorted(entries.items()):
        event = json.loads(leaf)

        def field(name: str, event: dict[str, object] = event) -> str:
            value = event.get(name)
            return printable(str(value)) if value is not None else ""

        ip, method = field("ip"), field("auth_method")
        lines.append(
            f"  #{index:<8} {field('time'):<32} {field('event_type'):<24} by {field('actor')}"
            + (f" from {ip}" if ip else "")
            + (f" ({method})" if method else "")
        )
    lines += ["", "Documents:"]
    for name, size, kind in sorted(documents):
        lines.append(f"  {printable(name)}  {size} bytes  ({printable(kind)})")
    signer = "unsigned"
    if head.certificate_chain:
        cert = asn1_x509.Certificate.load(pem.unarmor(head.certificate_chain[0].encode())[2])
        signer = printable(cert.subject.human_friendly)
    lines += [
        "",
        f"Every event above is a leaf of the ledger '{printable(head.log_id)}', whose tree of "
        f"{head.tree_size} entries has the root {printable(head.root_hash)},",
        f"signed at {head.time.isoformat()} by {signer} and timestamped by the appliance's TSA.",
        "manifest.json lists the SHA-256 of every file here; manifest.p7s is its signature",
        "by the same ledger seal, timestamped; "
        + (
            "the manifest's hash is itself a ledger event (evidence.sealed)."
            if complete
            else "a preview's manifest is not recorded in the ledger."
        ),
        "",
        "To check this package without any server:",
        "  signet verify-evidence THIS.zip --root root-you-trust.pem",
        "It recomputes every hash, every proof, the signatures and the timestamps, and names",
        "anything that does not match.",
    ]
    return "\n".join(lines) + "\n"
