"""The certificate of completion: the envelope's story on paper, in zh-CN, en and es.

One PDF for every reader: each heading and label is given in the three languages
(a court in Shanghai, a client in Madrid and an auditor in London read the same
document, and there is one object to seal and keep, not three that could disagree).
Names and titles are printed as the parties wrote them, so the font must have CJK
glyphs: the same Debian font the signer's stamps embed (WenQuanYi Micro Hei).  fpdf2
would parse all 5 MB of it for every certificate (about two seconds of the portal's
CPU); it gets instead a font of only the characters this certificate can print, cut
from the copy decoded once per process (`signet.common.fonts`), and subsets that.
The PDF is then sealed and timestamped by the platform through the signer, like any
signed document (`signet.portal.envelopes.completion`).

Rendering is deterministic for given facts except for the PDF's own creation date,
which fpdf2 writes; the certificate is made once per envelope (its hash is recorded
as `certificate.issued`), so nothing depends on reproducing the bytes.
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from signet.common import fonts
from signet.portal.envelopes.facts import Check, CompletionFacts, PartyFacts

#: Debian 12's ``fonts-wqy-microhei`` (Latin + CJK), as the signer's stamps use it.
DEFAULT_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")

_L = {
    "title": "Certificate of Completion · 完成证书 · Certificado de finalización",
    "envelope": "Envelope · 信封 · Sobre",
    "subject": "Title · 标题 · Título",
    "organisation": "Organisation · 组织 · Organización",
    "sender": "Sender · 发件人 · Remitente",
    "policy": "Signing policy · 签署策略 · Política de firma",
    "created": "Created · 创建 · Creado",
    "sent": "Sent · 发送 · Enviado",
    "completed": "Completed · 完成 · Completado",
    "documents": "Documents · 文件 · Documentos",
    "original": "Original SHA-256 · 原始 · Original",
    "final": "Final SHA-256 · 最终 · Final",
    "pages": "pages · 页 · páginas",
    "parties": "Parties · 签署方 · Partes",
    "role": "Role · 角色 · Función",
    "contact": "Contact · 联系方式 · Contacto",
    "identity": "Identity check · 身份核验 · Verificación de identidad",
    "intent": "Intent check (signer) · 意愿确认(签名服务) · Confirmación de voluntad (firmante)",
    "finished": "Finished · 完成时间 · Finalizado",
    "origin": "IP / user agent · IP / 用户代理 · IP / agente",
    "certificate": "Certificate serial · 证书序列号 · Número de serie del certificado",
    "replaces": "In place of · 代替 · En lugar de",
    "attachments": "Attachments · 附件 · Adjuntos",
    "none": "none · 无 · ninguno",
    "timeline": "Timeline and ledger · 时间线与账本 · Cronología y registro",
    "head": "Ledger tree head · 账本树头 · Cabecera del registro",
    "verify": (
        "This certificate is sealed and timestamped by the platform. The documents, this "
        "certificate and every event above are in the envelope's evidence package, whose "
        "signed manifest and ledger tree head verify offline: signet verify-evidence.\n"
        "本证书由平台加盖电子印章并加时间戳。文件、本证书及上述每一事件均收录于该信封的证据包中,"
        "其已签名的清单与账本树头可离线验证:signet verify-evidence。\n"
        "Este certificado está sellado y con sello de tiempo de la plataforma. Los documentos, "
        "este certificado y cada evento anterior están en el paquete de evidencias del sobre, "
        "cuyo manifiesto firmado y cabecera del registro se verifican sin conexión: "
        "signet verify-evidence."
    ),
}

_ROLES = {
    "signer": "signer · 签署人 · firmante",
    "approver": "approver · 审批人 · aprobador",
    "viewer": "viewer (CC) · 抄送 · copia",
}


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else "-"


def _check(check: Check | None) -> str:
    if check is None:
        return "-"
    where = f", IP {check.ip}" if check.ip else ""
    return f"{check.method} → {check.to or '-'}, {_when(check.at)}{where}"


class _Page(FPDF):
    def __init__(self, envelope_id: str) -> None:
        super().__init__(format="A4")
        self.envelope_id = envelope_id
        self.set_auto_page_break(auto=True, margin=18)
        self.set_margins(16, 16, 16)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("cjk", size=7)
        self.cell(0, 5, f"{self.envelope_id} · {self.page_no()}/{{nb}}", align="C")


#: Always in the cut font: ASCII (digits, dates, hashes) and every character of this
#: module's own text, which holds every label the certificate prints.
_ALWAYS = "".join(chr(c) for c in range(0x20, 0x7F)) + "".join(
    sorted(set(Path(__file__).read_text(encoding="utf-8")))
)


def render(facts: CompletionFacts, font: Path = DEFAULT_FONT) -> bytes:
    """The certificate's PDF (unsigned: the platform seals it after)."""
    # every string of the facts is in their repr, printable characters as they are
    characters = _ALWAYS + repr(facts)
    cut = fonts.master(str(font)).subset([], characters=characters)
    with tempfile.TemporaryDirectory(prefix="signet-certificate-") as directory:
        path = Path(directory) / "font.ttf"
        path.write_bytes(cut)
        return _render(facts, path)


def _render(facts: CompletionFacts, font: Path) -> bytes:
    pdf = _Page(facts.envelope_id)
    pdf.set_title("Certificate of Completion")
    pdf.set_creator("Signet")
    pdf.add_font("cjk", fname=str(font))
    pdf.add_page()
    pdf.set_font("cjk", size=14)
    pdf.multi_cell(0, 8, _L["title"], new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    _pairs(pdf, [
        (_L["envelope"], facts.envelope_id), (_L["subject"], facts.title),
        (_L["organisation"], facts.organisation), (_L["sender"], facts.sender),
        (_L["policy"], facts.policy), (_L["created"], _when(facts.created_at)),
        (_L["sent"], _when(facts.sent_at)), (_L["completed"], _when(facts.finished_at)),
    ])  # fmt: skip
    _heading(pdf, _L["documents"])
    for document in facts.documents:
        _pairs(pdf, [
            (f"{document.position + 1}.", f"{document.name} ({document.pages} {_L['pages']})"),
            (_L["original"], document.original_sha256), (_L["final"], document.final_sha256),
        ])  # fmt: skip
    _heading(pdf, _L["parties"])
    for party in facts.parties:
        _party(pdf, party)
    _heading(pdf, _L["attachments"])
    if facts.attachments:
        _pairs(pdf, [(name, sha) for name, sha in facts.attachments])
    else:
        _pairs(pdf, [("", _L["none"])])
    _heading(pdf, _L["timeline"])
    _timeline(pdf, facts)
    if facts.ledger_head is not None:
        size, root, moment = facts.ledger_head
        _pairs(pdf, [(_L["head"], f"size {size}, root {root}, {_when(moment)}")])
    pdf.ln(4)
    pdf.set_font("cjk", size=7.5)
    pdf.multi_cell(0, 4, _L["verify"], new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(3)
    pdf.set_font("cjk", size=11)
    pdf.set_fill_color(230, 236, 245)
    pdf.cell(0, 7, text, fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1)


def _pairs(pdf: FPDF, rows: list[tuple[str, str]]) -> None:
    pdf.set_font("cjk", size=8)
    with pdf.table(
        col_widths=(36, 64), first_row_as_headings=False, borders_layout="NONE", text_align="LEFT",
        line_height=4.6, padding=0.6,
    ) as table:  # fmt: skip
        for label, value in rows:
            row = table.row()
            row.cell(label)
            row.cell(value)


def _party(pdf: FPDF, party: PartyFacts) -> None:
    pdf.set_font("cjk", size=9.5)
    pdf.cell(0, 6, f"{party.position + 1}. {party.name}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    rows = [
        (_L["role"], f"{_ROLES.get(party.role, party.role)}, group {party.group}, {party.status}"),
        (_L["contact"], party.contact),
        (_L["identity"], _check(party.identity)),
    ]
    if party.role == "signer":
        rows.append((_L["intent"], _check(party.intent)))
        rows.append((_L["certificate"], party.certificate_serial or "-"))
    rows.append((_L["finished"], _when(party.finished_at)))
    if party.ip or party.user_agent:
        rows.append((_L["origin"], f"{party.ip or '-'} / {party.user_agent or '-'}"))
    if party.replaces:
        rows.append((_L["replaces"], party.replaces))
    _pairs(pdf, rows)


def _timeline(pdf: FPDF, facts: CompletionFacts) -> None:
    pdf.set_font("cjk", size=7)
    with pdf.table(
        col_widths=(9, 28, 30, 33), line_height=3.8, padding=0.5, first_row_as_headings=False,
        text_align="LEFT",
    ) as table:  # fmt: skip
        head = table.row()
        for text in ("#", "UTC", "event · 事件 · evento", "actor · 执行者 · actor / IP"):
            head.cell(text)
        for entry in facts.timeline:
            row = table.row()
            row.cell(str(entry.ledger_index) if entry.ledger_index is not None else "-")
            row.cell(_when(entry.at))
            row.cell(entry.event_type)
            row.cell(f"{entry.actor}" + (f" / {entry.ip}" if entry.ip else ""))
