"""Text stamps and extra appearances of one signature, in an embedded CJK font.

Each is a widget of the signature's own field, in the revision the signature covers:
earlier signatures must stay valid (pyHanko's difference analysis, poppler's pdfsig),
and every rect must show ink when rendered by poppler.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pyhanko.pdf_utils.reader import PdfFileReader

from tests.signer.conftest import pdfsig, pdfsig_by_field, sign_via_api
from tests.support.pdfs import make_pdf, make_png
from tests.support.render import ink, ink_box, ink_difference_box, render

CJK = "李伟 · José Núñez · Signed"
A_RECT = (72, 100, 272, 160)
B_RECT = (300, 100, 500, 160)
B_ALSO = (72, 100, 272, 160)  # page 2
STAMP_CJK = (72, 20, 272, 50)  # page 1
STAMP_DATE = (300, 100, 460, 125)  # page 2


def _verify(client: httpx.Client, pdf: bytes) -> list[dict[str, object]]:
    response = client.post("/v1/verify", files={"document": ("d.pdf", pdf, "application/pdf")})
    assert response.status_code == 200, response.text
    signatures: list[dict[str, object]] = response.json()["signatures"]
    return signatures


def _all_valid(
    client: httpx.Client, pdf: bytes, count: int, nssdb: str, tmp: Path, *, widgets: int = 0
) -> None:
    """All `count` signatures ok for pyHanko and for pdfsig, which lists a field with
    several widgets once per widget (`widgets`: how many more entries that makes), each
    entry validated on its own."""
    signatures = _verify(client, pdf)
    assert len(signatures) == count
    for signature in signatures:
        assert signature["ok"] is True, signature
        assert signature["intact"] is True
        assert signature["docmdp_ok"] is not False
        assert signature["modifications"] in ("none", "lta-updates", "form-filling")
    path = tmp / f"signed-{count}.pdf"
    path.write_bytes(pdf)
    # without OCSP: poppler 22.12's NSS bug with several signatures (test_signing_api.py)
    out = pdfsig(path, nssdb, ocsp=False)
    by_field = pdfsig_by_field(out)
    assert len(by_field) == count, out
    assert sum(len(entries) for entries in by_field.values()) == count + widgets, out
    for entries in by_field.values():
        for entry in entries:
            assert "Signature is Valid." in entry, out
        assert "Certificate is Trusted." in entries[0], out
        # the same certificate checked again in one pdfsig run: poppler 22.12's NSS use
        # sometimes fails it ("Unknown issue"), the signature itself stays valid
        for entry in entries[1:]:
            assert "Certificate is Trusted." in entry or "Unknown issue" in entry, out
    assert "not signed" not in out and "Invalid" not in out and "not intact" not in out.lower()


def test_stamps_and_extra_appearances_keep_every_signature_valid(
    signer_client: httpx.Client, issue: Callable[..., str], nssdb: str, tmp_path: Path
) -> None:
    png = make_png()
    first = sign_via_api(
        signer_client,
        make_pdf(2),
        issue("Alice Stamp"),
        image=png,
        appearance={"page": 1, "rect": list(A_RECT)},
    )
    assert first.status_code == 200, first.text
    _all_valid(signer_client, first.content, 1, nssdb, tmp_path)

    second = sign_via_api(
        signer_client,
        first.content,
        issue("Bob Stamp"),
        image=png,
        appearance={"page": 1, "rect": list(B_RECT)},
        also_on=[{"page": 2, "rect": list(B_ALSO)}],
        stamps=[
            {"page": 1, "rect": list(STAMP_CJK), "text": CJK},
            {"page": -1, "rect": list(STAMP_DATE), "text": "2026-12-07 100%"},
        ],
    )
    assert second.status_code == 200, second.text
    _all_valid(signer_client, second.content, 2, nssdb, tmp_path, widgets=3)

    # one field, four widgets: the appearance, the extra one, two stamps
    reader = PdfFileReader(io.BytesIO(second.content))
    fields = {
        str(f["/T"]): f for f in (r.get_object() for r in reader.root["/AcroForm"]["/Fields"])
    }
    assert len(fields["Signature2"]["/Kids"]) == 4
    for kid in fields["Signature2"]["/Kids"]:
        assert int(kid.get_object()["/F"]) & 128  # locked

    # every rect has ink now that was blank before
    before = {page: render(first.content, page) for page in (1, 2)}
    after = {page: render(second.content, page) for page in (1, 2)}
    for page, rect in ((1, B_RECT), (2, B_ALSO), (1, STAMP_CJK), (2, STAMP_DATE)):
        assert ink(before[page], rect) == 0, (page, rect)
        assert ink(after[page], rect) > 50, (page, rect)
    assert ink(after[1], A_RECT) == ink(before[1], A_RECT)  # the first one untouched

    fonts = subprocess.run(
        ["pdffonts", str(tmp_path / "signed-2.pdf")], capture_output=True, text=True, check=True
    ).stdout
    embedded = [line for line in fonts.splitlines() if "+WenQuanYiMicroHei" in line]
    assert embedded, fonts
    assert all(" yes yes yes " in line for line in embedded), fonts  # embedded, subset, ToUnicode

    third = sign_via_api(signer_client, second.content, issue("Carol Stamp"), level="B-T")
    assert third.status_code == 200, third.text
    _all_valid(signer_client, third.content, 3, nssdb, tmp_path, widgets=3)


def test_a_cjk_stamp_on_an_invisible_signature_renders(
    signer_client: httpx.Client, issue: Callable[..., str]
) -> None:
    blank = make_pdf()
    signed = sign_via_api(
        signer_client,
        blank,
        issue("李伟"),
        stamps=[{"page": 1, "rect": list(STAMP_CJK), "text": "李伟"}],
    )
    assert signed.status_code == 200, signed.text
    assert ink(render(blank), STAMP_CJK) == 0
    assert ink(render(signed.content), STAMP_CJK) > 50
    assert all(s["ok"] for s in _verify(signer_client, signed.content))


@pytest.mark.parametrize("rect", [(72, 100, 292, 160), (72, 60, 152, 180)])
def test_the_image_and_the_text_do_not_overlap(
    rect: tuple[int, int, int, int], signer_client: httpx.Client, issue: Callable[..., str]
) -> None:
    """Wide: image left, text right; narrow: image above the text (issue 17)."""
    serial = issue("Layout Person")
    png = make_png()
    image_only = sign_via_api(
        signer_client,
        make_pdf(),
        serial,
        image=png,
        appearance={"rect": list(rect), "show_name": False, "show_time": False},
    )
    both = sign_via_api(
        signer_client,
        make_pdf(),
        serial,
        image=png,
        appearance={"rect": list(rect), "text": "José Núñez 李伟"},
    )
    assert image_only.status_code == both.status_code == 200
    image_render, both_render = render(image_only.content), render(both.content)
    image_box = ink_box(image_render, rect)
    text_box = ink_difference_box(both_render, image_render, rect)
    assert image_box is not None and text_box is not None
    ix1, iy1, ix2, iy2 = image_box
    tx1, ty1, tx2, ty2 = text_box
    apart = tx1 >= ix2 or tx2 <= ix1 or ty1 >= iy2 or ty2 <= iy1
    assert apart, (image_box, text_box)


def test_stamps_on_a_prepared_field_and_bad_stamps_are_refused(
    signer_client: httpx.Client, issue: Callable[..., str]
) -> None:
    serial = issue("Prepared Person")
    prepared = sign_via_api(
        signer_client,
        make_pdf(),
        serial,
        level="B-B",
        prepare_fields=[{"name": "Buyer", "rect": [300, 20, 500, 80]}],
    )
    assert prepared.status_code == 200, prepared.text
    refused = sign_via_api(
        signer_client,
        prepared.content,
        serial,
        field_name="Buyer",
        stamps=[{"rect": [72, 20, 200, 40], "text": "x"}],
    )
    assert refused.status_code == 400
    assert "prepared" in refused.json()["detail"]
    control = sign_via_api(
        signer_client, make_pdf(), serial, stamps=[{"rect": [72, 20, 200, 40], "text": "a\x1bb"}]
    )
    assert control.status_code == 400
