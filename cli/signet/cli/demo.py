"""``signet demo``: the acceptance story, through the API, against the running appliance.

A newcomer's quickest proof that Signet does what it says: with ``signet up``
running, it sends a contract and an annex to three parties in mixed order (an
employee approver first, then an external customer by mobile and a second
company's signer by e-mail in parallel), and plays each party as a person would:
open the link from the outbox, pass the identity code, read the documents, fill the
fields, confirm the signature with the activation code the *signer* sent (read from
the signer's outbox), sign with a handwritten image.  Then it downloads the final
PDFs, the certificate of completion and the evidence package into a folder and
verifies them with ``signet verify``, ``signet verify-evidence`` and, when poppler
is installed, ``pdfsig``, as anyone could years later.

Only the public HTTP API is used, except where a person would read their phone or
mailbox: the held messages of the embedded default (the portal's outbox through its
API, the signer's from its database as ``signet outbox`` reads it).
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from signet.cli.embedded import home, portal_settings, signer_settings
from signet.signer.activation.tables import OutboxRow
from signet.signer.database import open_registry
from sqlalchemy import select

console = Console()
FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")


@dataclass(frozen=True)
class Party:
    name: str
    address: str  # e-mail or mobile: where their link and codes arrive
    role: str
    group: int
    locale: str

    def recipient(self) -> dict[str, object]:
        contact = {"mobile": self.address} if self.address.startswith("+") else {
            "email": self.address}  # fmt: skip
        return {"name": self.name, "role": self.role, "group": self.group,
                "locale": self.locale} | contact  # fmt: skip


PARTIES = (
    Party("王芳 Wang Fang", "wang.fang@signet.local", "approver", 0, "zh-CN"),
    Party("李伟 Li Wei", "+8613800000001", "signer", 1, "zh-CN"),
    Party("Ana García", "ana.garcia@proveedor.example", "signer", 1, "es"),
)


def contract_pdf(title: str, pages: int) -> bytes:
    """A small contract in the three languages (what a sender would upload)."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.add_font("cjk", fname=str(FONT), collection_font_number=0)
    for page in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font("cjk", size=16)
        pdf.cell(0, 10, f"{title} — {page}/{pages}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("cjk", size=11)
        pdf.multi_cell(0, 6, (
            "供货合同:甲方向乙方供应本合同附件所列货物,乙方按约定付款。\n"
            "Supply contract: the supplier delivers the goods listed in the annex; the "
            "customer pays as agreed.\n"
            "Contrato de suministro: el proveedor entrega los bienes del anexo; el cliente "
            "paga según lo acordado.\n"
        ))  # fmt: skip
    return bytes(pdf.output())


def handwriting() -> bytes:
    """A handwritten signature, as the signing page's canvas sends it (a PNG)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (300, 90), (255, 255, 255, 0))
    ImageDraw.Draw(image).line([(10, 70), (80, 20), (150, 75), (290, 15)], fill="navy", width=4)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def story() -> dict[str, object]:
    def place(recipient: int, kind: str, x: float, y: float, w: float, h: float,
              document: int = 0) -> dict[str, object]:  # fmt: skip
        return {"document": document, "recipient": recipient, "kind": kind, "page": 2,
                "x": x, "y": y, "width": w, "height": h}  # fmt: skip

    return {
        "title": "供货合同 2027 / Supply contract / Contrato de suministro",
        "message": "请审阅并签署。Please review and sign. Por favor, revise y firme.",
        "recipients": [p.recipient() for p in PARTIES],
        "fields": [
            place(1, "signature", 50, 120, 160, 50), place(1, "date", 50, 100, 100, 14),
            place(1, "initials", 50, 80, 60, 14),
            place(2, "signature", 320, 120, 160, 50), place(2, "date", 320, 100, 100, 14),
            place(2, "text", 320, 80, 200, 14),
            {"document": 1, "recipient": 2, "kind": "initials", "page": 1, "x": 480,
             "y": 40, "width": 60, "height": 14},
        ],
        "deadline": time.strftime("%Y-%m-%dT18:00:00+00:00", time.gmtime(time.time() + 14 * 86400)),
    }  # fmt: skip


class Demo:
    def __init__(self, portal: str, key: str, *, timeout: float = 60) -> None:
        self.admin = httpx.Client(base_url=portal, timeout=timeout,
                                  headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        self.person = httpx.Client(base_url=portal, timeout=timeout,
                                   headers={"User-Agent": "signet-demo"})  # fmt: skip

    def close(self) -> None:
        self.admin.close()
        self.person.close()

    @staticmethod
    def _ok(response: httpx.Response, what: str) -> Any:
        if response.status_code >= 400:
            raise DemoFailed(f"{what}: HTTP {response.status_code} {response.text[:300]}")
        return response.json() if "json" in response.headers.get("content-type", "") else None

    def send(self) -> str:
        files = [
            ("documents", ("contract.pdf", contract_pdf("供货合同 Supply contract", 2),
                           "application/pdf")),
            ("documents", ("annex 1.pdf", contract_pdf("附件 Annex 1", 1), "application/pdf")),
        ]  # fmt: skip
        created = self._ok(
            self.admin.post("/api/v1/envelopes", data={"envelope": json.dumps(story())},
                            files=files, headers={"Idempotency-Key": f"demo-{time.time_ns()}"}),
            "create the envelope",
        )  # fmt: skip
        envelope_id: str = created["id"]
        self._ok(self.admin.post(f"/api/v1/envelopes/{envelope_id}/send"), "send it")
        return envelope_id

    def _held(self, envelope_id: str, to: str, pattern: str, *, notice: str | None = None,
              wait: float = 20) -> str:  # fmt: skip
        """The newest held message to `to` matching `pattern` (what the person reads)."""
        deadline = time.monotonic() + wait
        while True:
            messages = self._ok(
                self.admin.get("/api/v1/outbox", params={"envelope_id": envelope_id,
                                                         "limit": 200}), "read the outbox",
            )  # fmt: skip
            for message in messages:  # newest first
                if message["to"] == to and (notice is None or message["notice"] == notice):
                    found = re.search(pattern, message["body"])
                    if found:
                        return found.group(1)
            if time.monotonic() > deadline:
                raise DemoFailed(f"nothing for {to} in the outbox (is SMTP configured?)")
            time.sleep(0.3)

    def act(self, envelope_id: str, index: int, party: Party) -> None:
        link = self._held(envelope_id, party.address, r"/s/([A-Za-z0-9_-]+)")
        base = f"/api/v1/links/{link}"
        opened = self._ok(self.person.get(base), f"{party.name}: open the link")
        self._ok(self.person.post(f"{base}/identity/code"), f"{party.name}: ask for the code")
        code = self._held(envelope_id, party.address, r"\b(\d{6})\b", notice="identity_code")
        self._ok(self.person.post(f"{base}/identity/verify", json={"code": code}),
                 f"{party.name}: identity check")  # fmt: skip
        envelope = self._ok(self.admin.get(f"/api/v1/envelopes/{envelope_id}"), "read it")
        for number in range(len(envelope["documents"])):
            read = self.person.get(f"{base}/documents/{number}")
            if read.status_code != 200:
                raise DemoFailed(f"{party.name}: read document {number}: {read.status_code}")
        if party.role == "approver":
            self._ok(self.person.post(f"{base}/approve"), f"{party.name}: approve")
            return
        mine = [f for f in envelope["fields"] if f["recipient_id"] == opened["recipient_id"]]
        values = {"date": time.strftime("%Y-%m-%d"), "text": "Proveedor S.L., Madrid",
                  "initials": "".join(w[0] for w in party.name.split()[-2:])}  # fmt: skip
        for field in mine:
            if field["kind"] in values:
                self._ok(self.person.put(f"{base}/fields/{field['id']}",
                                         json={"value": values[field["kind"]]}),
                         f"{party.name}: fill the {field['kind']} field")  # fmt: skip
        activation = self._ok(self.person.post(f"{base}/activation"),
                              f"{party.name}: ask for the activation code")  # fmt: skip
        code = signer_code(activation["activation_id"])
        self._ok(self.person.post(f"{base}/sign", json={
            "activation_id": activation["activation_id"], "code": code,
            "image": base64.b64encode(handwriting()).decode()}), f"{party.name}: sign")  # fmt: skip

    def download(self, envelope_id: str, folder: Path) -> list[Path]:
        deadline = time.monotonic() + 120
        while True:
            envelope = self._ok(self.admin.get(f"/api/v1/envelopes/{envelope_id}"), "read it")
            evidence = self.admin.get(f"/api/v1/envelopes/{envelope_id}/evidence")
            if envelope["status"] == "completed" and evidence.status_code == 200:
                break
            if time.monotonic() > deadline:
                raise DemoFailed(f"the envelope is {envelope['status']}, its evidence not sealed")
            time.sleep(0.5)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for number, document in enumerate(envelope["documents"]):
            response = self.admin.get(f"/api/v1/envelopes/{envelope_id}/documents/{number}")
            written.append(_write(folder / f"final-{number + 1}-{_safe(document['name'])}",
                                  response))  # fmt: skip
        certificate = self.admin.get(f"/api/v1/envelopes/{envelope_id}/certificate")
        written.append(_write(folder / "certificate-of-completion.pdf", certificate))
        written.append(_write(folder / "evidence.zip", evidence))
        return written


class DemoFailed(Exception):
    pass


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "document.pdf"


def _write(path: Path, response: httpx.Response) -> Path:
    if response.status_code != 200:
        raise DemoFailed(f"download {path.name}: HTTP {response.status_code}")
    path.write_bytes(response.content)
    return path


def signer_code(activation_id: str, wait: float = 20) -> str:
    """The activation code as the signer holds it on the embedded default (no gateway)."""
    registry = open_registry(signer_settings().resolved_database_url())
    deadline = time.monotonic() + wait
    try:
        while True:
            with registry.session() as session:
                body = session.scalar(
                    select(OutboxRow.body).where(OutboxRow.activation_id == activation_id)
                )
            found = re.search(r"\b(\d{6})\b", body or "")
            if found:
                return found.group(1)
            if time.monotonic() > deadline:
                raise DemoFailed("the signer holds no readable code (a gateway is configured?)")
            time.sleep(0.3)
    finally:
        registry.engine.dispose()


def _check(command: list[str]) -> tuple[bool, str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


def _pdfsig(path: Path) -> tuple[bool, str]:
    """poppler's verdict: every signature it lists is valid (a signature with several
    widgets is listed once per widget) and none is "not signed".  Document timestamps
    are beyond poppler ("Unimplemented Feature"); `signet verify` checks those."""
    _, said = _check(["pdfsig", "-nocert", str(path)])
    if "Invalid" in said or "The signature form field is not signed." in said:
        return False, said
    return said.count("Signature is Valid.") > 0, said


def verify_outputs(written: list[Path], root: Path) -> list[tuple[str, str, bool, str]]:
    """Each file checked as anyone could, offline: (file, checker, ok, what it said)."""
    signet = [sys.executable, "-m", "signet.cli"]
    results: list[tuple[str, str, bool, str]] = []
    for path in written:
        if path.suffix == ".pdf":
            ok, said = _check([*signet, "verify", str(path), "--root", str(root)])
            results.append((path.name, "signet verify", ok, said))
            if shutil.which("pdfsig"):
                results.append((path.name, "pdfsig", *_pdfsig(path)))
        else:
            ok, said = _check([*signet, "verify-evidence", str(path), "--root", str(root)])
            results.append((path.name, "signet verify-evidence", ok, said))
    return results


def demo(
    out: Annotated[Path, typer.Option(help="where to write the results")] = Path("signet-demo"),
    port: Annotated[int, typer.Option(help="the port `signet up` was given")] = 8101,
    portal: Annotated[str | None, typer.Option(help="the portal's URL (default: port + 2)")] = None,
) -> None:
    """Run the three-party contract story against the running appliance, then verify it."""
    key_file = portal_settings().home / "admin-api-key"
    if not key_file.exists():
        console.print(f"[red]No admin API key at {key_file}: start the appliance with "
                      "`signet up` first.[/red]")  # fmt: skip
        raise typer.Exit(2)
    url = portal or f"http://127.0.0.1:{port + 2}"
    client = Demo(url, key_file.read_text(encoding="utf-8").strip())
    started = time.monotonic()
    try:
        envelope_id = client.send()
        console.print(f"sent envelope {envelope_id} to {len(PARTIES)} parties")
        for index, party in enumerate(PARTIES):
            client.act(envelope_id, index, party)
            console.print(f"  {party.name} ({party.role}, group {party.group}): done")
        written = client.download(envelope_id, out)
    except httpx.HTTPError as exc:
        console.print(f"[red]The portal at {url} did not answer: {exc}. Is `signet up` "
                      "running?[/red]")  # fmt: skip
        raise typer.Exit(2) from None
    except DemoFailed as exc:
        console.print(f"[red]The demo stopped: {exc}[/red]")
        raise typer.Exit(1) from None
    finally:
        client.close()
    console.print(f"completed in {time.monotonic() - started:.1f} s; written to {out}/")
    results = verify_outputs(written, home() / "signer" / "ca" / "root.pem")
    for name, checker, ok, said in results:
        verdict = "[green]valid[/green]" if ok else "[red]NOT VALID[/red]"
        console.print(f"  {name:<40} {checker:<24} {verdict}")
        if not ok:
            console.print(said)
    if not all(ok for *_, ok, _ in results):
        raise typer.Exit(1)
