"""The direct writer of invisible seals (`signet.signer.pades.fastpdf`) against pyHanko's flow.

Same document, key and options both ways: the CMS must agree field by field
(as in test_fast_cms), the byte range must cover the whole file but the
signature value, and both pyHanko's validator (with its analysis of what
the update changed) and poppler's pdfsig must accept the result.  Documents
the fast writer does not handle must come back signed by pyHanko's flow.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from signet.common.contracts.signer import CertificateKind, SignOptions
from signet.common.errors import UnprocessableDocument
from signet.signer.pades import fastpdf, pdftail
from signet.signer.pades.engine import PadesEngine
from signet.signer.pades.validation import verify_pdf
from signet.signer.service import SignerService

from tests.signer.conftest import pdfsig
from tests.signer.pades.test_pdftail import corpus
from tests.support.pdfs import make_pdf

DOCUMENTS = {
    "1 page, xref table": lambda: make_pdf(1, xref_stream=False),
    "3 pages, xref stream": lambda: make_pdf(3),
    "3 pages, xref stream, no /ID or /Info": lambda: make_pdf(3, info=False, document_id=False),
    "100 pages, xref table": lambda: make_pdf(100, xref_stream=False),
    **{
        name: (lambda name=name: corpus()[name])
        for name in corpus()
        if not name.startswith("pyHanko")
    },
}


def _only_signature(pdf: bytes) -> object:
    signatures = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    assert len(signatures) == 1
    return signatures[0]


@pytest.fixture
def seal_serial(issue: Callable[..., str]) -> str:
    return issue("Fast PDF Seal", CertificateKind.SEAL)


@pytest.mark.parametrize("level", ["B-B", "B-T"])
@pytest.mark.parametrize("kind", list(DOCUMENTS))
def test_direct_seal_matches_pyhanko_and_validates(
    signer_service: SignerService,
    seal_serial: str,
    nssdb: str,
    tmp_path: Path,
    kind: str,
    level: str,
) -> None:
    document = DOCUMENTS[kind]()
    issued = signer_service.ca.signing_material(seal_serial)
    options = SignOptions(certificate_serial=seal_serial, level=level, reason="payroll")
    engine = signer_service.engine
    template = engine.template(issued, engine.ca.chain())
    output = io.BytesIO()
    taken = fastpdf.seal(
        io.BytesIO(document),
        output,
        issued,
        options,
        template,
        reserved_hex=16384,
        tsa=signer_service.tsa if level == "B-T" else None,
    )
    assert taken, "the plain case must take the direct path"
    direct = output.getvalue()
    assert direct.startswith(document)  # an incremental update: the original is untouched
    reference = PadesEngine(engine.ca, engine.timestamper, fast_cms=False, fast_pdf=False).sign(
        document, issued, options
    )

    ours, theirs = _only_signature(direct), _only_signature(reference)
    byte_range = list(ours.sig_object["/ByteRange"])  # type: ignore[attr-defined]
    contents_length = byte_range[2] - byte_range[1]
    assert byte_range[0] == 0 and byte_range[2] + byte_range[3] == len(direct)
    assert direct[byte_range[1] : byte_range[1] + 1] == b"<"
    assert direct[byte_range[2] - 1 : byte_range[2]] == b">"
    assert contents_length == 16384 + 2
    for key in ("/SubFilter", "/Filter", "/Type", "/Name", "/Reason"):
        assert ours.sig_object[key] == theirs.sig_object[key], key  # type: ignore[attr-defined]
    our_cms, their_cms = ours.signed_data, theirs.signed_data  # type: ignore[attr-defined]
    for field in ("version", "digest_algorithms", "encap_content_info"):
        assert our_cms[field].dump() == their_cms[field].dump(), field
    assert sorted(c.chosen.dump() for c in our_cms["certificates"]) == sorted(
        c.chosen.dump() for c in their_cms["certificates"]
    )
    our_si, their_si = our_cms["signer_infos"][0], their_cms["signer_infos"][0]
    for field in ("version", "sid", "digest_algorithm", "signature_algorithm"):
        assert our_si[field].dump() == their_si[field].dump(), field
    ours_attrs = {a["type"].native: a for a in our_si["signed_attrs"]}
    theirs_attrs = {a["type"].native: a for a in their_si["signed_attrs"]}
    assert ours_attrs.keys() == theirs_attrs.keys()
    for name in ("content_type", "signing_certificate_v2"):
        assert ours_attrs[name].dump() == theirs_attrs[name].dump()
    assert [a["type"].native for a in our_si["unsigned_attrs"] or []] == [
        a["type"].native for a in their_si["unsigned_attrs"] or []
    ]

    report = verify_pdf(direct, engine.validation_context())
    assert report.valid, report
    (signature,) = report.signatures
    assert signature.coverage == "entire-file" and signature.intact and signature.trusted
    assert (signature.timestamp is not None) == (level == "B-T")
    path = tmp_path / "sealed.pdf"
    path.write_bytes(direct)
    checked = pdfsig(path, nssdb, ocsp=False)
    assert "Signature is Valid" in checked and "Certificate is Trusted" in checked, checked
    assert "Signature Type: ETSI.CAdES.detached" in checked


def test_a_directly_sealed_document_can_be_signed_again(
    signer_service: SignerService,
    seal_serial: str,
    issue: Callable[..., str],
    nssdb: str,
    tmp_path: Path,
) -> None:
    """The second signature finds our AcroForm and goes through pyHanko's flow."""
    issued = signer_service.ca.signing_material(seal_serial)
    sealed = signer_service.engine.sign(
        make_pdf(2, xref_stream=False), issued, SignOptions(certificate_serial=seal_serial)
    )
    person = issue("Chen Jing")
    countersigned = signer_service.engine.sign(
        sealed,
        signer_service.ca.signing_material(person),
        SignOptions(certificate_serial=person, level="B-B"),
    )
    report = verify_pdf(countersigned, signer_service.engine.validation_context())
    assert report.valid and len(report.signatures) == 2
    assert [s.ok for s in report.signatures] == [True, True]
    path = tmp_path / "two.pdf"
    path.write_bytes(countersigned)
    assert pdfsig(path, nssdb, ocsp=False).count("Signature is Valid") == 2


def test_anything_but_the_plain_case_is_declined(
    signer_service: SignerService, seal_serial: str
) -> None:
    issued = signer_service.ca.signing_material(seal_serial)
    engine = signer_service.engine
    template = engine.template(issued, engine.ca.chain())
    options = SignOptions(certificate_serial=seal_serial, level="B-B")
    already_signed = engine.sign(make_pdf(1), issued, options)

    def direct(document: bytes) -> bytes | None:
        output = io.BytesIO()
        taken = fastpdf.seal(
            io.BytesIO(document), output, issued, options, template, reserved_hex=16384, tsa=None
        )
        assert taken or not output.getvalue(), "a declined document leaves no output behind"
        return output.getvalue() if taken else None

    assert direct(already_signed) is None  # has a form: pyHanko's flow
    assert direct(make_pdf(1, password="secret")) is None
    assert direct(b"%PDF-1.7\n garbage") is None
    assert not fastpdf.applies(
        SignOptions(certificate_serial=seal_serial, appearance={"page": 1, "rect": [0, 0, 9, 9]}),
        None,
    )
    assert not fastpdf.applies(SignOptions(certificate_serial=seal_serial, certify=True), None)
    assert not fastpdf.applies(SignOptions(certificate_serial=seal_serial, level="B-LT"), None)
    # Declined documents still get clear errors from the general flow.
    with pytest.raises(UnprocessableDocument, match="encrypted"):
        engine.sign(make_pdf(1, password="secret"), issued, options)
    with pytest.raises(UnprocessableDocument, match="malformed"):
        engine.sign(b"%PDF-1.7\n garbage", issued, options)


@pytest.mark.parametrize("name", list(corpus()))
def test_the_tail_reader_changes_no_byte_of_the_seal(
    signer_service: SignerService,
    seal_serial: str,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    """Same document, key, time and /ID either way: the same file but the signature value."""
    document = corpus()[name]
    issued = signer_service.ca.signing_material(seal_serial)
    options = SignOptions(
        certificate_serial=seal_serial, level="B-B", reason="payroll", location="Zürich"
    )
    engine = signer_service.engine
    template = engine.template(issued, engine.ca.chain())
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    monkeypatch.setattr(fastpdf, "_now", lambda: when)

    def sealed() -> bytes:
        counter = itertools.count()
        monkeypatch.setattr(fastpdf, "_random_id", lambda: bytes([next(counter)]) * 16)
        output = io.BytesIO()
        taken = fastpdf.seal(
            io.BytesIO(document), output, issued, options, template, reserved_hex=16384, tsa=None
        )
        assert taken
        return re.sub(rb"/Contents <[0-9a-f]+>", b"/Contents <>", output.getvalue())

    assert pdftail.read(io.BytesIO(document)) is not None
    from_the_tail = sealed()
    monkeypatch.setattr(pdftail, "read", lambda source: None)
    assert sealed() == from_the_tail
