"""Hostile input to the signer (issue 24): image bombs, deeply nested PDFs, bad OCSP.

Each case goes through the real HTTP app (the session's signer on loopback) and
asserts the status and the error code a caller gets; docs/admin/hostile-input.md
lists them.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable

import httpx
import pytest
from signet.common.contracts.signer import SignOptions
from signet.signer.pades import engine
from signet.signer.service import SignerService

from tests.signer.conftest import sign_via_api
from tests.support import hostile_pdfs
from tests.support.pdfs import make_pdf, make_png

APPEARANCE = {"page": 1, "rect": [72, 72, 272, 152]}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A few hundred bytes claiming `width` x `height` RGBA pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


# -- 1. image bombs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height"),
    [(100_000, 100_000), (5_000, 4_000), (1, 20_000_000)],
    ids=["10-gigapixel", "20-megapixel", "one-thin-line"],
)
def test_an_image_bomb_is_refused_from_its_header_with_422(
    width: int, height: int, signer_client: httpx.Client, issue: Callable[..., str]
) -> None:
    bomb = png_header_only(width, height)
    assert len(bomb) < 1000
    response = sign_via_api(
        signer_client, make_pdf(1), issue("Bomb"), image=bomb, appearance=APPEARANCE
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "image_too_large"
    assert "megapixels" in response.json()["detail"]


@pytest.mark.parametrize(
    "garbage",
    [b"", b"not an image", make_png()[:40], b"GIF89a" + b"\0" * 64],
    ids=["empty", "text", "truncated-png", "gif"],
)
def test_an_unreadable_image_is_refused_with_422(
    garbage: bytes, signer_client: httpx.Client, issue: Callable[..., str]
) -> None:
    response = sign_via_api(
        signer_client, make_pdf(1), issue("Garbage"), image=garbage, appearance=APPEARANCE
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "image_unreadable"


def test_check_image_reads_only_the_header() -> None:
    assert engine.check_image(make_png(300, 120)) == (300, 120)
    with pytest.raises(engine.ImageTooLarge):
        engine.check_image(png_header_only(4001, 4000))
    assert engine.check_image(png_header_only(4000, 4000)) == (4000, 4000)  # the cap itself


def test_a_batch_with_a_bomb_image_is_refused_before_anything_is_queued(
    signer_client: httpx.Client, issue: Callable[..., str]
) -> None:
    serial = issue("Batch bomb")
    response = signer_client.post(
        "/v1/batches",
        files=[
            ("documents", ("a.pdf", make_pdf(1), "application/pdf")),
            ("image", ("sig.png", png_header_only(50_000, 50_000), "image/png")),
        ],
        data={"options": json.dumps({"certificate_serial": serial, "appearance": APPEARANCE})},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "image_too_large"


def test_the_shared_image_is_decoded_once_for_many_documents(
    signer_service: SignerService, issue: Callable[..., str]
) -> None:
    """What a batch worker does: one engine, one image, many documents."""
    serial = issue("Decode once")
    service = signer_service
    issued = service.ca.signing_material(serial)
    options = SignOptions.model_validate({"certificate_serial": serial, "appearance": APPEARANCE})
    image = make_png(211, 97)  # bytes no other test uses
    decodes, reuses = engine.metrics_decoded
    for _ in range(3):
        signed = service.engine.sign(make_pdf(1), issued, options, image)
        assert signed.count(b"/Subtype /Image") >= 1
    assert engine.metrics_decoded[0] - decodes == 1
    assert engine.metrics_decoded[1] - reuses == 2


# -- 2. deeply nested PDFs ---------------------------------------------------------------------

HOSTILE_PDFS = {
    "arrays-x10000": hostile_pdfs.deep_arrays(10_000),
    "dictionaries-x10000": hostile_pdfs.deep_dictionaries(10_000),
    "page-tree-x5000": hostile_pdfs.deep_page_tree(5_000),
    "cyclic-page-tree": hostile_pdfs.cyclic_page_tree(),
}


@pytest.mark.parametrize("level", ["B-B", "B-T"])
@pytest.mark.parametrize("name", list(HOSTILE_PDFS))
def test_a_deeply_nested_pdf_is_refused_to_sign_with_422(
    name: str, level: str, signer_client: httpx.Client, issue: Callable[..., str]
) -> None:
    """B-B may take the fast path (our own parser), B-T with an appearance pyHanko's."""
    extra: dict[str, object] = {"appearance": APPEARANCE} if level == "B-T" else {}
    response = sign_via_api(signer_client, HOSTILE_PDFS[name], issue("Deep"), level=level, **extra)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "unprocessable_document"
    assert "malformed PDF" in response.json()["detail"]


@pytest.mark.parametrize("name", list(HOSTILE_PDFS))
def test_a_deeply_nested_pdf_is_refused_to_verify_with_422_or_reported(
    name: str, signer_client: httpx.Client
) -> None:
    response = signer_client.post(
        "/v1/verify", files={"document": ("d.pdf", HOSTILE_PDFS[name], "application/pdf")}
    )
    if response.status_code == 200:  # nothing deep on the path to the signatures: no signature
        assert response.json()["signatures"] == []
        assert response.json()["valid"] is False
    else:
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "unprocessable_document"


def test_the_server_still_signs_after_the_hostile_pdfs(
    signer_client: httpx.Client, issue: Callable[..., str]
) -> None:
    response = sign_via_api(signer_client, make_pdf(1), issue("After"), level="B-B")
    assert response.status_code == 200, response.text
