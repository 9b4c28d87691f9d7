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
from typing import Any

from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from signet.common.contracts.storage import TreeHead, printable

#: The summary's languages besides English (``summary.<locale>.txt``); English stays
#: ``summary.txt`` exactly as packages have always had it, so they still verify.
SUMMARY_LOCALES = ("zh-CN", "es")

_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Evidence package for envelope {id}",
        "made": "Made {time} UTC by Signet",
        "sealed": ".",
        "preview": ", before the envelope was sealed (a preview).",
        "supersedes": "It supersedes the package {package} (generation {generation}) after a "
        "preservation renewal of the documents' timestamps.",
        "happened": "What happened (from the evidence ledger, in order):",
        "by": " by {actor}",
        "from": " from {ip}",
        "documents": "Documents:",
        "bytes": "{size} bytes",
        "unsigned": "unsigned",
        "leaf": "Every event above is a leaf of the ledger '{log}', whose tree of "
        "{size} entries has the root {root},",
        "signed": "signed at {time} by {signer} and timestamped by the appliance's TSA.",
        "manifest": "manifest.json lists the SHA-256 of every file here; manifest.p7s is its "
        "signature",
        "seal": "by the same ledger seal, timestamped; ",
        "recorded": "the manifest's hash is itself a ledger event (evidence.sealed).",
        "unrecorded": "a preview's manifest is not recorded in the ledger.",
        "check": "To check this package without any server:",
        "command": "  signet verify-evidence THIS.zip --root root-you-trust.pem",
        "what": "It recomputes every hash, every proof, the signatures and the timestamps, "
        "and names",
        "names": "anything that does not match.",
    },
    "zh-CN": {
        "title": "信封 {id} 的证据包",
        "made": "由 Signet 于 {time} UTC 生成",
        "sealed": "。",
        "preview": "，生成于信封封存之前（预览）。",
        "supersedes": "本证据包在文件时间戳的保全续期之后"
        "取代证据包 {package}（第 {generation} 代）。",
        "happened": "发生了什么（取自证据账本，按顺序）：",
        "by": " 操作者 {actor}",
        "from": " 来自 {ip}",
        "documents": "文件：",
        "bytes": "{size} 字节",
        "unsigned": "未签名",
        "leaf": "以上每个事件都是账本「{log}」的叶子，该树共 {size} 个条目，根哈希为 {root}，",
        "signed": "由 {signer} 于 {time} 签名，并由本设备的时间戳服务加盖时间戳。",
        "manifest": "manifest.json 列出此处每个文件的 SHA-256；manifest.p7s 是其签名",
        "seal": "（同一账本印章，带时间戳）；",
        "recorded": "清单的哈希本身也是一条账本事件（evidence.sealed）。",
        "unrecorded": "预览的清单不记入账本。",
        "check": "无需任何服务器即可核验此证据包：",
        "command": "  signet verify-evidence THIS.zip --root root-you-trust.pem",
        "what": "它会重新计算每个哈希、每个证明、签名和时间戳，",
        "names": "并指出任何不一致之处。",
    },
    "es": {
        "title": "Paquete de evidencias del sobre {id}",
        "made": "Generado por Signet el {time} UTC",
        "sealed": ".",
        "preview": ", antes de sellar el sobre (vista previa).",
        "supersedes": "Sustituye al paquete {package} (generación {generation}) tras una "
        "renovación de conservación de los sellos de tiempo de los documentos.",
        "happened": "Qué ocurrió (según el registro de evidencias, en orden):",
        "by": " por {actor}",
        "from": " desde {ip}",
        "documents": "Documentos:",
        "bytes": "{size} bytes",
        "unsigned": "sin firmar",
        "leaf": "Cada evento anterior es una hoja del registro '{log}', cuyo árbol de "
        "{size} entradas tiene la raíz {root},",
        "signed": "firmado el {time} por {signer} y sellado en el tiempo por la TSA del equipo.",
        "manifest": "manifest.json enumera el SHA-256 de cada archivo; manifest.p7s es su firma",
        "seal": "con el mismo sello del registro, con sello de tiempo; ",
        "recorded": "el hash del manifiesto es a su vez un evento del registro (evidence.sealed).",
        "unrecorded": "el manifiesto de una vista previa no se registra.",
        "check": "Para comprobar este paquete sin ningún servidor:",
        "command": "  signet verify-evidence THIS.zip --root root-you-trust.pem",
        "what": "Recalcula cada hash, cada prueba, las firmas y los sellos de tiempo, y señala",
        "names": "todo lo que no coincida.",
    },
}


def summary_name(locale: str) -> str:
    return "summary.txt" if locale == "en" else f"summary.{locale}.txt"


def summary_text(
    envelope_id: str,
    entries: dict[int, bytes],
    documents: list[tuple[str, int, str]],
    head: TreeHead,
    created: datetime,
    *,
    complete: bool = True,
    locale: str = "en",
    supersedes: dict[str, Any] | None = None,
) -> str:
    """The summary; `supersedes` (a newer package's manifest statement) adds a line
    naming the package it supersedes (packages without it render as they always did)."""
    words = _WORDS[locale]
    lines = [
        words["title"].format(id=printable(envelope_id)),
        words["made"].format(time=f"{created:%Y-%m-%d %H:%M:%S}")
        + (words["sealed"] if complete else words["preview"]),
    ]
    if supersedes is not None:
        lines.append(
            words["supersedes"].format(
                package=printable(str(supersedes["package_sha256"])),
                generation=int(supersedes["generation"]),
            )
        )
    lines += ["", words["happened"]]
    for index, leaf in sorted(entries.items()):
        event = json.loads(leaf)

        def field(name: str, event: dict[str, object] = event) -> str:
            value = event.get(name)
            return printable(str(value)) if value is not None else ""

        ip, method = field("ip"), field("auth_method")
        lines.append(
            f"  #{index:<8} {field('time'):<32} {field('event_type'):<24}"
            + words["by"].format(actor=field("actor"))
            + (words["from"].format(ip=ip) if ip else "")
            + (f" ({method})" if method else "")
        )
    lines += ["", words["documents"]]
    for name, size, kind in sorted(documents):
        size_text = words["bytes"].format(size=size)
        lines.append(f"  {printable(name)}  {size_text}  ({printable(kind)})")
    signer = words["unsigned"]
    if head.certificate_chain:
        cert = asn1_x509.Certificate.load(pem.unarmor(head.certificate_chain[0].encode())[2])
        signer = printable(cert.subject.human_friendly)
    lines += [
        "",
        words["leaf"].format(
            log=printable(head.log_id), size=head.tree_size, root=printable(head.root_hash)
        ),
        words["signed"].format(time=head.time.isoformat(), signer=signer),
        words["manifest"],
        words["seal"] + (words["recorded"] if complete else words["unrecorded"]),
        "",
        words["check"],
        words["command"],
        words["what"],
        words["names"],
    ]
    return "\n".join(lines) + "\n"
