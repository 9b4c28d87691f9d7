"""A newcomer's rough edges in the signer's answers (issue 17), through the HTTP API.

"byte 0x0x2aff01" in a malformed-PDF message, and ``<_io.BytesIO object at 0x…>`` in
an image error: each request goes to the session's signer on loopback, and the answer
is read as the caller reads it.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import httpx
import pytest
from PIL import Image

from tests.signer.conftest import sign_via_api
from tests.support.pdfs import make_pdf, make_png

APPEARANCE = {"page": 1, "rect": [72, 72, 272, 152]}


def _numbered_key_pdf() -> bytes:
    """The catalogue has a number where a name must be: pyHanko's reader fails with
    "Failed to read dictionary key at byte 0x0x…" (its own doubled prefix)."""
    return make_pdf(1).replace(b"/Type /Catalog", b"12345 /Catalog", 1)


def _picture(kind: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 20), "navy").save(out, format=kind)
    return out.getvalue()


@pytest.mark.parametrize("level", ["B-B", "B-T"])
def test_a_malformed_pdf_names_its_byte_once(
    level: str, signer_client: httpx.Client, issue: Callable[..., str]
) -> None:
    extra: dict[str, object] = {"appearance": APPEARANCE} if level == "B-T" else {}
    response = sign_via_api(signer_client, _numbered_key_pdf(), issue("Hex"), level=level, **extra)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "unprocessable_document"
    assert body["detail"].startswith("malformed PDF"), body
    assert "0x0x" not in body["detail"]


def test_verifying_a_malformed_pdf_names_its_byte_once(signer_client: httpx.Client) -> None:
    response = signer_client.post(
        "/v1/verify",
        files={"document": ("d.pdf", _numbered_key_pdf(), "application/pdf")},
    )
    assert "0x0x" not in response.text
    if response.status_code != 200:
        assert response.status_code == 422 and response.json()["error"] == "unprocessable_document"


@pytest.mark.parametrize("kind", ["GIF", "BMP", "WEBP", "TIFF"])
def test_a_non_png_image_is_refused_in_words(
    kind: str, signer_client: httpx.Client, issue: Callable[..., str]
) -> None:
    """A picture PIL reads but the appearance does not take: 422 with a sentence, never
    a Python repr (the issue saw 400 with ``<_io.BytesIO object at 0x…>``)."""
    response = sign_via_api(
        signer_client, make_pdf(1), issue("Picture"), image=_picture(kind), appearance=APPEARANCE
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body == {
        "error": "image_unreadable",
        "detail": "the signature image is not a readable PNG/JPEG",
    }


def test_a_jpeg_image_is_taken(signer_client: httpx.Client, issue: Callable[..., str]) -> None:
    """The two formats the message names are the two accepted."""
    serial = issue("Jpeg")
    for picture in (_picture("JPEG"), make_png()):
        response = sign_via_api(
            signer_client, make_pdf(1), serial, image=picture, appearance=APPEARANCE
        )
        assert response.status_code == 200, response.text


def test_a_sign_request_naming_no_key_says_which_key_to_name(
    signer_client: httpx.Client,
) -> None:
    """A newcomer's first POST /v1/sign without a key is told the seal's label."""
    response = signer_client.post(
        "/v1/sign",
        files={"document": ("d.pdf", make_pdf(), "application/pdf")},
        data={"options": "{}"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert 'key_label "signet-default-seal"' in response.json()["detail"]
