"""Signer attachments through real processes, over HTTP only: a recipient asked for an
ID copy uploads it before signing; the file is in the vault, the ledger, the signed
revision (its name and hash stamped), the certificate of completion and the evidence
package, which still verifies offline.  And the refusals, each storing nothing."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.portal.test_api_story import (
    _activate,
    _handwriting,
    _link_of,
    _timeline_in_ledger,
    _verify,
)
from tests.support.appliance import SIGNET, Appliance, running_appliance
from tests.support.pdfs import make_pdf

ANA = "ana@other.example"
CONTRACT = make_pdf(1, title="Lease")


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    with running_appliance(tmp_path_factory.mktemp("home")) as running:
        yield running


@pytest.fixture(scope="module")
def admin(appliance: Appliance) -> Iterator[httpx.Client]:
    with appliance.portal(appliance.admin_key()) as client:
        yield client


def _sent(admin: httpx.Client) -> dict[str, object]:
    story = {
        "title": "Lease with ID copy",
        "recipients": [{"name": "Ana García", "email": ANA, "locale": "es"},
                       {"name": "Bo Viewer", "email": "bo@x.example", "role": "viewer"}],
        "fields": [
            {"document": 0, "recipient": 0, "kind": "signature", "page": 1, "x": 50, "y": 80,
             "width": 160, "height": 50},
            {"document": 0, "recipient": 0, "kind": "attachment", "page": 1, "x": 50, "y": 40,
             "width": 300, "height": 14, "label": "ID copy / 身份证"},
        ],
    }  # fmt: skip
    created = admin.post(
        "/api/v1/envelopes",
        data={"envelope": json.dumps(story)},
        files=[("documents", ("lease.pdf", CONTRACT, "application/pdf"))],
    )
    assert created.status_code == 201, created.text
    envelope: dict[str, object] = created.json()
    admin.post(f"/api/v1/envelopes/{envelope['id']}/send").raise_for_status()
    return envelope


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def test_an_attachment_is_kept_stamped_certified_and_in_the_evidence(
    appliance: Appliance, admin: httpx.Client, tmp_path: Path
) -> None:
    envelope = _sent(admin)
    envelope_id = str(envelope["id"])
    fields = {f["kind"]: f["id"] for f in envelope["fields"]}  # type: ignore[attr-defined]
    token = _link_of(admin, envelope_id, ANA)
    client = appliance.portal()
    url = f"/api/v1/attachments/{token}/{fields['attachment']}"
    png = _png()
    files = {"file": ("../../DNI Ana.png", png, "application/octet-stream")}
    assert client.post(url, files=files).status_code == 403  # identity first
    _verify(appliance, admin, envelope_id, token, ANA)
    refused = client.post(url, files={"file": ("x.gif", b"GIF89a" + bytes(40), "image/gif")})
    assert refused.status_code == 422 and refused.json()["error"] == "attachment_refused"
    assert client.post(url, files={"file": ("e.png", b"", "image/png")}).status_code == 422
    big = b"%PDF-1.7\n" + bytes(10 * 1024 * 1024)
    assert client.post(url, files={"file": ("big.pdf", big, "application/pdf")}).status_code == 413
    wrong_kind = f"/api/v1/attachments/{token}/{fields['signature']}"
    assert client.post(wrong_kind, files=files).status_code == 422
    unknown = f"/api/v1/attachments/{token}/{'0' * 8}-0000-0000-0000-{'0' * 12}"
    assert client.post(unknown, files=files).status_code == 404
    assert client.post(url).status_code == 400  # no file part
    with httpx.Client(base_url=str(client.base_url)) as anonymous:
        assert anonymous.post(f"/api/v1/attachments/{'C' * 43}/{fields['attachment']}",
                              files=files).status_code == 404  # fmt: skip
    # signing before the requested attachment is refused
    early = client.post(f"/api/v1/links/{token}/sign", json={
        "activation_id": "a" * 32, "code": "123456",
        "image": base64.b64encode(_handwriting()).decode()})  # fmt: skip
    assert early.status_code == 409 and "ID copy" in early.json()["detail"], early.text

    uploaded = client.post(url, files=files)
    assert uploaded.status_code == 200, uploaded.text
    sha = hashlib.sha256(png).hexdigest()
    assert uploaded.json() == {
        "field_id": fields["attachment"],
        "name": "DNI Ana.png",
        "sha256": sha,
        "content_type": "image/png",
        "size": len(png),
    }
    got = admin.get(f"/api/v1/envelopes/{envelope_id}/attachments/{fields['attachment']}")
    assert got.status_code == 200 and got.content == png
    assert got.headers["content-type"] == "image/png"
    with appliance.portal() as anonymous:
        assert (
            anonymous.get(
                f"/api/v1/envelopes/{envelope_id}/attachments/{fields['attachment']}"
            ).status_code
            == 401
        )

    proof = _activate(appliance, token)
    signed = client.post(
        f"/api/v1/links/{token}/sign",
        json={**proof, "image": base64.b64encode(_handwriting()).decode()},
    )
    assert signed.status_code == 200, signed.text
    assert admin.get(f"/api/v1/envelopes/{envelope_id}").json()["status"] == "completed"
    assert "attachment.uploaded" in _timeline_in_ledger(admin, envelope_id)

    final = admin.get(f"/api/v1/envelopes/{envelope_id}/documents/0").content
    (tmp_path / "final.pdf").write_bytes(final)
    text = subprocess.run(["pdftotext", str(tmp_path / "final.pdf"), "-"], capture_output=True,
                          text=True, check=True, timeout=60).stdout  # fmt: skip
    assert f"DNI Ana.png · SHA-256 {sha[:16]}" in text, text
    certificate = admin.get(f"/api/v1/envelopes/{envelope_id}/certificate").content
    (tmp_path / "certificate.pdf").write_bytes(certificate)
    text = subprocess.run(
        ["pdftotext", str(tmp_path / "certificate.pdf"), "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert sha[:32] in text.replace("\n", "") and "DNI Ana.png" in text, text
    evidence = admin.get(f"/api/v1/envelopes/{envelope_id}/evidence").content
    package = tmp_path / "evidence.zip"
    package.write_bytes(evidence)
    with zipfile.ZipFile(package) as archive:
        members = [n for n in archive.namelist() if n.startswith(f"documents/{sha}")]
        assert members and archive.read(members[0]) == png
    root = appliance.home / "signer" / "ca" / "root.pem"
    checked = subprocess.run([str(SIGNET), "verify-evidence", str(package), "--root", str(root)],
                             capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_cross_page_seal_field_seals_every_page_edge(
    appliance: Appliance, admin: httpx.Client, tmp_path: Path
) -> None:
    """A company signer's seal image over the right edges of a two-page contract (骑缝章)."""
    from tests.support.render import ink, render

    story = {
        "title": "Two-page contract with a cross-page seal",
        "recipients": [{"name": "Acme Co. 采购部", "email": ANA, "locale": "zh-CN"}],
        "fields": [{"document": 0, "recipient": 0, "kind": "cross_page_seal", "page": 1,
                    "x": 0, "y": 300, "width": 100, "height": 100}],
    }  # fmt: skip
    pdf = make_pdf(2, title="Cross")
    one_page = admin.post(
        "/api/v1/envelopes",
        data={"envelope": json.dumps(story)},
        files=[("documents", ("c.pdf", CONTRACT, "application/pdf"))],
    )
    assert one_page.status_code == 409 and "two pages" in one_page.json()["detail"]
    created = admin.post(
        "/api/v1/envelopes",
        data={"envelope": json.dumps(story)},
        files=[("documents", ("c.pdf", pdf, "application/pdf"))],
    )
    assert created.status_code == 201, created.text
    envelope_id = created.json()["id"]
    admin.post(f"/api/v1/envelopes/{envelope_id}/send").raise_for_status()
    token = _link_of(admin, envelope_id, ANA)
    _verify(appliance, admin, envelope_id, token, ANA)
    proof = _activate(appliance, token)
    seal = _png()
    signed = appliance.portal().post(
        f"/api/v1/links/{token}/sign", json={**proof, "image": base64.b64encode(seal).decode()}
    )
    assert signed.status_code == 200, signed.text
    final = admin.get(f"/api/v1/envelopes/{envelope_id}/documents/0").content
    for page in (1, 2):  # a 50-point strip at each right edge of the A4 pages
        assert ink(render(final, page), (595 - 50, 300, 595, 400)) > 100, page
        assert ink(render(final, page), (595 - 110, 300, 595 - 55, 400)) == 0, page
    path = tmp_path / "final.pdf"
    path.write_bytes(final)
    said = subprocess.run(["pdfsig", "-nocert", str(path)], capture_output=True, text=True,
                          timeout=60, check=False).stdout  # fmt: skip
    assert said.count("Signature is Valid.") >= 2 and "not signed" not in said, said
