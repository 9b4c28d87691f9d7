"""The fast CMS path against pyHanko's own: same key, time and document, field by field.

`signet.signer.pades.fastcms` builds the CMS from cached DER; it may never change
what a signature means.  Each case signs one document twice, through the
same pyHanko PDF flow, once with the fast path and once with pyHanko
building the CMS, with pyHanko's clock frozen so that both documents carry
the same bytes outside the signature value.  Then every CMS field is
compared; only the ECDSA signature value (randomised by design) and the
timestamp token (its own serial and time) may differ, and both are checked
for what they must cover.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms, tsp
from pyhanko.pdf_utils.font import api as font_api
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from signet.common.contracts.signer import CertificateKind, SignOptions
from signet.common.errors import ServiceUnavailable
from signet.signer.pades.engine import PadesEngine
from signet.signer.pades.validation import verify_pdf
from signet.signer.service import SignerService

from tests.signer.conftest import pdfsig
from tests.support.pdfs import make_pdf, make_png

FROZEN = datetime(2026, 11, 25, 8, 30, 0, tzinfo=UTC)


class _FrozenDatetime(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> _FrozenDatetime:  # type: ignore[override]
        moment = FROZEN if tz is None else FROZEN.astimezone(tz)
        return cls.fromtimestamp(moment.timestamp(), tz=moment.tzinfo)


@pytest.fixture
def frozen_pyhanko_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Freeze every clock pyHanko reads while writing a PDF signature."""
    import pyhanko.pdf_utils.metadata.info as info
    import pyhanko.pdf_utils.metadata.xmp_xml as xmp
    import pyhanko.sign.signers.pdf_signer as pdf_signer
    import pyhanko.stamp.text as text

    for module in (pdf_signer, info, xmp, text):
        monkeypatch.setattr(module, "datetime", _FrozenDatetime)
    yield


def _signature(document: bytes) -> tuple[cms.SignedData, Any]:
    embedded = PdfFileReader(io.BytesIO(document)).embedded_signatures[-1]
    return embedded.signed_data, embedded


def _signed_bytes(document: bytes, byte_range: list[int]) -> bytes:
    a, b, c, d = byte_range
    return document[a : a + b] + document[c : c + d]


def _without_random_names(data: bytes) -> bytes:
    """pyHanko draws two names at random per signing: the trailer /ID's second half and
    the image XObject's resource name.  Mask both; every other byte must match."""
    data = re.sub(rb"/Img[0-9a-f-]{36}", b"/Img", data)
    start = data.rfind(b"/ID")
    if start < 0:
        return data
    end = data.find(b"]", start)
    return data[:start] + data[end:]


CASES: list[tuple[str, dict[str, object], bool]] = [
    ("B-B invisible", {"level": "B-B"}, False),
    ("B-T invisible", {"level": "B-T"}, False),
    ("B-T certified", {"level": "B-T", "certify": True, "docmdp": "fill-forms"}, False),
    (
        "B-B visible with image",
        {"level": "B-B", "appearance": {"page": 1, "rect": [50, 50, 250, 120]}},
        True,
    ),
    ("B-LT", {"level": "B-LT"}, False),
]


@pytest.mark.parametrize(("case", "extra", "with_image"), CASES, ids=[c[0] for c in CASES])
def test_fast_and_pyhanko_cms_agree_field_by_field(
    signer_service: SignerService,
    issue: Callable[..., str],
    frozen_pyhanko_clock: None,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    extra: dict[str, object],
    with_image: bool,
) -> None:
    serial = issue("Fast Path Seal", CertificateKind.SEAL)
    issued = signer_service.ca.signing_material(serial)
    options = SignOptions.model_validate({"certificate_serial": serial, **extra})
    document = make_pdf(2)
    image = make_png() if with_image else None
    engine = signer_service.engine
    assert engine.fast_cms and engine.fast_pdf  # the defaults
    # pyHanko writes the PDF both times; only the CMS is built two ways here
    # (the direct PDF writer has its own differential test, test_fast_pdf).
    fast_engine = PadesEngine(engine.ca, engine.timestamper, fast_cms=True, fast_pdf=False)
    plain_engine = PadesEngine(engine.ca, engine.timestamper, fast_cms=False, fast_pdf=False)

    # the appearance font's subset tag (six letters) is drawn at random: the same both times
    # (a constant, not a seed: other threads of the session draw from `random` too)
    monkeypatch.setattr(font_api, "generate_subset_prefix", lambda: "SIGNET")
    fast = fast_engine.sign(document, issued, options, image)
    plain = plain_engine.sign(document, issued, options, image)

    fast_sd, fast_sig = _signature(fast)
    plain_sd, plain_sig = _signature(plain)
    # The PDF side: same sub-filter, same byte ranges, same bytes signed (bar random names).
    assert fast_sig.sig_object["/SubFilter"] == plain_sig.sig_object["/SubFilter"]
    assert fast_sig.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    fast_range = list(fast_sig.sig_object["/ByteRange"])
    assert fast_range == list(plain_sig.sig_object["/ByteRange"])
    fast_signed = _signed_bytes(fast, fast_range)
    plain_signed = _signed_bytes(plain, fast_range)
    assert _without_random_names(fast_signed) == _without_random_names(plain_signed)

    # The CMS, field by field.
    for field in ("version", "digest_algorithms", "encap_content_info"):
        assert fast_sd[field].dump() == plain_sd[field].dump(), field
    fast_certs = [c.chosen.dump() for c in fast_sd["certificates"]]
    plain_certs = [c.chosen.dump() for c in plain_sd["certificates"]]
    assert sorted(fast_certs) == sorted(plain_certs)
    assert len(set(fast_certs)) == len(fast_certs) == 3  # root, issuing, signer; each once
    fast_si, plain_si = fast_sd["signer_infos"][0], plain_sd["signer_infos"][0]
    for field in ("version", "sid", "digest_algorithm", "signature_algorithm"):
        assert fast_si[field].dump() == plain_si[field].dump(), field
    fast_attrs = {a["type"].native: a.dump() for a in fast_si["signed_attrs"]}
    plain_attrs = {a["type"].native: a.dump() for a in plain_si["signed_attrs"]}
    assert (
        fast_attrs.keys()
        == plain_attrs.keys()
        == {
            "content_type",
            "message_digest",
            "signing_certificate_v2",
        }
    )
    for name in ("content_type", "signing_certificate_v2"):
        assert fast_attrs[name] == plain_attrs[name], name
    # Each message digest is the digest of its own document's byte ranges.
    for document_bytes, signer_info in ((fast, fast_si), (plain, plain_si)):
        digest = hashlib.sha256(_signed_bytes(document_bytes, fast_range)).digest()
        message_digest = next(
            a for a in signer_info["signed_attrs"] if a["type"].native == "message_digest"
        )
        assert message_digest["values"][0].native == digest
    # Unsigned attributes: the same types; a timestamp covers its own signature value.
    fast_unsigned = [a["type"].native for a in fast_si["unsigned_attrs"] or []]
    plain_unsigned = [a["type"].native for a in plain_si["unsigned_attrs"] or []]
    assert fast_unsigned == plain_unsigned
    if options.level != "B-B":
        assert fast_unsigned == ["signature_time_stamp_token"]
        token = fast_si["unsigned_attrs"][0]["values"][0]
        tst_info = token["content"]["encap_content_info"]["content"].parsed
        assert isinstance(tst_info, tsp.TSTInfo)
        imprint = tst_info["message_imprint"]["hashed_message"].native
        assert imprint == hashlib.sha256(fast_si["signature"].native).digest()
    # Both validate; the fast one with pyHanko's full validator.
    context = fast_engine.validation_context()
    for document_bytes in (fast, plain):
        _, embedded = _signature(document_bytes)
        status = validate_pdf_signature(embedded, context)
        assert status.intact and status.valid and status.trusted, case


def test_fast_output_validates_with_pdfsig(
    signer_service: SignerService, issue: Callable[..., str], nssdb: str, tmp_path: Path
) -> None:
    serial = issue("Pdfsig Seal", CertificateKind.SEAL)
    issued = signer_service.ca.signing_material(serial)
    for level in ("B-B", "B-T"):
        signed = signer_service.engine.sign(
            make_pdf(1), issued, SignOptions(certificate_serial=serial, level=level)
        )
        path = tmp_path / f"{level}.pdf"
        path.write_bytes(signed)
        report = pdfsig(path, nssdb, ocsp=False)
        assert "Signature is Valid" in report, report
        assert "Certificate is Trusted" in report, report


def test_tampered_template_output_is_detected(
    signer_service: SignerService, issue: Callable[..., str]
) -> None:
    """The differential test could pass vacuously if validation accepted anything."""
    serial = issue("Tamper Seal", CertificateKind.SEAL)
    issued = signer_service.ca.signing_material(serial)
    signed = bytearray(
        signer_service.engine.sign(make_pdf(1), issued, SignOptions(certificate_serial=serial))
    )
    marker = signed.find(b"Clause 1.1")
    assert marker > 0
    signed[marker] ^= 0x01
    _, embedded = _signature(bytes(signed))
    status = validate_pdf_signature(embedded, signer_service.engine.validation_context())
    assert not status.intact


def test_external_tsa_url_is_used_for_b_t(
    signer_service: SignerService, signer_url: str, issue: Callable[..., str]
) -> None:
    """`external_tsa_url`: timestamps come over HTTP from an RFC 3161 server (here our own
    /tsa, reached like any upstream TSA) instead of the in-process TSA."""
    from pyhanko.sign.timestamps import HTTPTimeStamper

    engine = PadesEngine.create(
        signer_service.ca, signer_service.tsa, external_tsa_url=f"{signer_url}/tsa"
    )
    assert isinstance(engine.timestamper, HTTPTimeStamper)
    serial = issue("Upstream TSA Seal", CertificateKind.SEAL)
    issued = signer_service.ca.signing_material(serial)
    before = signer_service.tsa.serials.next()
    signed = engine.sign(make_pdf(1), issued, SignOptions(certificate_serial=serial, level="B-T"))
    report = verify_pdf(signed, engine.validation_context())
    (signature,) = report.signatures
    assert report.valid and signature.timestamp is not None and signature.timestamp.trusted
    token_serial = (
        _signature(signed)[0]["signer_infos"][0]["unsigned_attrs"][0]["values"][0]["content"][
            "encap_content_info"
        ]["content"]
        .parsed["serial_number"]
        .native
    )
    assert token_serial > before  # issued by the TSA behind the URL, after we asked

    unreachable = PadesEngine.create(
        signer_service.ca, signer_service.tsa, external_tsa_url="http://127.0.0.1:9/tsa"
    )
    with pytest.raises(ServiceUnavailable, match="timestamp"):
        unreachable.sign(make_pdf(1), issued, SignOptions(certificate_serial=serial, level="B-T"))
