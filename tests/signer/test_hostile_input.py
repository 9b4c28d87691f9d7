"""Hostile input to the signer (issue 24): image bombs, deeply nested PDFs, bad OCSP.

Each case goes through the real HTTP app (the session's signer on loopback) and
asserts the status and the error code a caller gets; docs/admin/hostile-input.md
lists them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
import struct
import zlib
from collections.abc import Callable

import httpx
import pytest
from asn1crypto import ocsp
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


# -- 3. malformed OCSP requests ----------------------------------------------------------------


def _ocsp_request(signer_service: SignerService, **changes: object) -> ocsp.OCSPRequest:
    issuer = signer_service.ca.issuing.certificate
    cert_id: dict[str, object] = {
        "hash_algorithm": {"algorithm": "sha256"},
        "issuer_name_hash": hashlib.sha256(issuer.subject.dump()).digest(),
        "issuer_key_hash": hashlib.sha256(issuer.public_key["public_key"].contents[1:]).digest(),
        "serial_number": 12345,
    }
    cert_id.update(changes.pop("cert_id", {}))  # type: ignore[call-overload]
    tbs: dict[str, object] = {"request_list": [{"req_cert": cert_id}], **changes}
    return ocsp.OCSPRequest({"tbs_request": tbs})


def _ocsp_status(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/ocsp-response"
    status: str = ocsp.OCSPResponse.load(response.content)["response_status"].native
    return status


def _malformed_requests(signer_service: SignerService) -> dict[str, bytes]:
    good = _ocsp_request(signer_service).dump()
    return {
        "empty": b"",
        "garbage": b"GET / HTTP/1.1\r\n\r\n",
        "truncated": good[: len(good) // 2],
        "trailing-bytes": good + b"\0\0\0",
        "wrong-version": _ocsp_request(signer_service, version=7).dump(),
        "no-cert-ids": ocsp.OCSPRequest({"tbs_request": {"request_list": []}}).dump(),
        "a-sequence-of-nothing": b"\x30\x00",
        "huge-length": b"\x30\x84\x7f\xff\xff\xff" + b"\0" * 16,
        "deep-nesting": b"\x30\x80" * 5000 + b"\0\0" * 5000,
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "garbage",
        "truncated",
        "trailing-bytes",
        "wrong-version",
        "no-cert-ids",
        "a-sequence-of-nothing",
        "huge-length",
        "deep-nesting",
    ],
)
def test_a_malformed_ocsp_request_gets_malformed_request(
    case: str, signer_client: httpx.Client, signer_service: SignerService
) -> None:
    body = _malformed_requests(signer_service)[case]
    response = signer_client.post(
        "/ocsp", content=body, headers={"Content-Type": "application/ocsp-request"}
    )
    assert _ocsp_status(response) == "malformed_request"
    encoded = base64.b64encode(body).decode() or "AA=="
    assert _ocsp_status(signer_client.get(f"/ocsp/{encoded}")) == "malformed_request"


def test_an_unknown_hash_algorithm_gets_unknown_not_an_error(
    signer_client: httpx.Client, signer_service: SignerService
) -> None:
    request = _ocsp_request(signer_service, cert_id={"hash_algorithm": {"algorithm": "md5"}})
    response = signer_client.post("/ocsp", content=request.dump())
    assert _ocsp_status(response) == "successful"
    basic = ocsp.OCSPResponse.load(response.content)["response_bytes"]["response"].parsed
    single = basic["tbs_response_data"]["responses"][0]
    assert single["cert_status"].name == "unknown"


def test_a_malformed_ocsp_request_is_logged_on_one_line_without_its_bytes(
    signer_service: SignerService, caplog: pytest.LogCaptureFixture
) -> None:
    secret = b"\x30\x10" + b"SECRET-BYTES-XY!"
    with caplog.at_level(logging.INFO, logger="signet.signer.pki.ocsp"):
        answer = signer_service.ocsp.respond(secret)
    assert ocsp.OCSPResponse.load(answer)["response_status"].native == "malformed_request"
    lines = [r.getMessage() for r in caplog.records if r.name == "signet.signer.pki.ocsp"]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "malformed" in lines[0] and "18 bytes" in lines[0]
    assert "SECRET" not in lines[0] and "\\x30" not in lines[0] and "3010" not in lines[0]


def test_random_bytes_never_make_the_ocsp_responder_fail(
    signer_client: httpx.Client, signer_service: SignerService
) -> None:
    """Fuzz: random bytes and bit flips of a good request; every answer is an OCSPResponse."""
    rng = random.Random(24)
    good = _ocsp_request(signer_service).dump()
    for n in range(300):
        if n % 2:
            body = rng.randbytes(rng.randrange(0, 200))
        else:
            flipped = bytearray(good)
            for _ in range(rng.randrange(1, 4)):
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            body = bytes(flipped)
        answer = signer_service.ocsp.respond(body)  # in-process: 300 requests in a second
        status = ocsp.OCSPResponse.load(answer)["response_status"].native
        assert status in ("malformed_request", "successful"), (n, body.hex())
    for _ in range(20):  # and a few through the HTTP app
        response = signer_client.post("/ocsp", content=rng.randbytes(rng.randrange(1, 100)))
        assert _ocsp_status(response) in ("malformed_request", "successful")
