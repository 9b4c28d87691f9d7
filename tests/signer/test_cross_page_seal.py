"""The cross-page seal (骑缝章) through the live signer: one signature whose seal image
is cut into a strip per page on the right edges, valid for pyHanko and pdfsig, drawn
where it should be (rendered by poppler), kept valid by a later signature."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import httpx
from signet.common.contracts.signer import CertificateKind

from tests.signer.conftest import pdfsig, pdfsig_by_field, sign_via_api
from tests.support.pdfs import make_pdf
from tests.support.render import ink, render

PAGES = 4
SEAL = {"y": 300, "height": 120}
A4_WIDTH = 595  # make_pdf's pages


def _round_seal() -> bytes:
    """A red round seal as Chinese companies use (a ring, a star), 240 px square."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (240, 240), (255, 255, 255, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 8, 232, 232), outline=(210, 20, 20, 255), width=14)
    draw.regular_polygon((120, 120, 40), 5, fill=(210, 20, 20, 255))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _verify(client: httpx.Client, pdf: bytes) -> list[dict[str, object]]:
    response = client.post("/v1/verify", files={"document": ("d.pdf", pdf, "application/pdf")})
    assert response.status_code == 200, response.text
    signatures: list[dict[str, object]] = response.json()["signatures"]
    return signatures


def test_a_cross_page_seal_spans_every_page_with_one_valid_signature(
    signer_client: httpx.Client, issue: Callable[..., str], nssdb: str, tmp_path: Path
) -> None:
    seal = issue("Acme Trading Co. 采购专用章", CertificateKind.SEAL)
    blank = make_pdf(PAGES)
    sealed = sign_via_api(signer_client, blank, seal, image=_round_seal(),
                          cross_page_seal=SEAL)  # fmt: skip
    assert sealed.status_code == 200, sealed.text
    (signature,) = _verify(signer_client, sealed.content)
    assert signature["ok"] is True and signature["intact"] is True, signature

    # drawn: a strip on each page's right edge, nothing to its left; the round seal's
    # outer strips hold less ink than the middle ones (each page shows its own slice)
    strip = SEAL["height"] / PAGES  # width from the square image's proportions
    inks = []
    for page in range(1, PAGES + 1):
        before, after = render(blank, page), render(sealed.content, page)
        rect = (A4_WIDTH - strip, SEAL["y"], A4_WIDTH, SEAL["y"] + SEAL["height"])
        left = (
            A4_WIDTH - 2 * strip - 4,
            SEAL["y"],
            A4_WIDTH - strip - 4,
            SEAL["y"] + SEAL["height"],
        )
        assert ink(before, rect) == 0
        assert ink(after, left) == ink(before, left), page
        inks.append(ink(after, rect))
    assert all(value > 20 for value in inks), inks
    assert inks[0] + inks[-1] < inks[1] + inks[2], inks

    # pdfsig: one field, listed once per strip, every entry valid
    path = tmp_path / "sealed.pdf"
    path.write_bytes(sealed.content)
    by_field = pdfsig_by_field(pdfsig(path, nssdb, ocsp=False))
    assert len(by_field) == 1 and len(next(iter(by_field.values()))) == PAGES, by_field
    assert all("Signature is Valid." in entry for entry in next(iter(by_field.values())))

    # a later signature keeps the seal valid
    later = sign_via_api(signer_client, sealed.content, issue("Li Wei"),
                         appearance={"page": 1, "rect": [72, 100, 272, 160]})  # fmt: skip
    assert later.status_code == 200, later.text
    both = _verify(signer_client, later.content)
    assert [s["ok"] for s in both] == [True, True], both
    assert both[0]["modifications"] in ("form-filling", "lta-updates"), both[0]


def test_cross_page_seal_refusals(signer_client: httpx.Client, issue: Callable[..., str]) -> None:
    seal = issue("Refusal Seal", CertificateKind.SEAL)
    image = _round_seal()
    no_image = sign_via_api(signer_client, make_pdf(3), seal, cross_page_seal=SEAL)
    assert no_image.status_code == 400 and "image" in no_image.json()["detail"]
    one_page = sign_via_api(signer_client, make_pdf(1), seal, image=image, cross_page_seal=SEAL)
    assert one_page.status_code == 400 and "pages" in one_page.json()["detail"]
    too_high = sign_via_api(signer_client, make_pdf(2), seal, image=image,
                            cross_page_seal={"y": 800, "height": 120})  # fmt: skip
    assert too_high.status_code == 400 and "fit" in too_high.json()["detail"]
    for bad in ({"y": 10, "height": 0}, {"y": -1, "height": 50}, {"y": 10, "height": 50,
                "width": 9999}, {"y": 10}):  # fmt: skip
        response = sign_via_api(signer_client, make_pdf(2), seal, image=image,
                                cross_page_seal=bad)  # fmt: skip
        assert response.status_code in (400, 422), (bad, response.text)
