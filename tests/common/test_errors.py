"""Error messages a library made, as a reader sees them (issue 17's rough edges)."""

from __future__ import annotations

import io

import pytest
from PIL import Image, UnidentifiedImageError
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.pdf_utils.reader import PdfFileReader
from signet.common.errors import SignetError, UnprocessableDocument, tidy_detail

from tests.support.pdfs import make_pdf


def _numbered_key_pdf() -> bytes:
    """A PDF whose catalogue has a number where a name must be (same length: the xref
    offsets stay right, so the reader gets as far as the dictionary)."""
    return make_pdf(1).replace(b"/Type /Catalog", b"12345 /Catalog", 1)


def test_pyhankos_doubled_hex_offset_is_written_once() -> None:
    with pytest.raises(PdfReadError) as raised:
        _ = PdfFileReader(io.BytesIO(_numbered_key_pdf())).root
    assert "0x0x" in str(raised.value)  # the library's own message, unchanged by us
    error = UnprocessableDocument(f"malformed PDF: {raised.value}")
    assert "0x0x" not in error.detail and "byte 0x" in error.detail
    assert str(error) == error.detail


def test_an_object_repr_becomes_its_class_name() -> None:
    with pytest.raises(UnidentifiedImageError) as raised:
        Image.open(io.BytesIO(b"GIF89a" + b"\0" * 8), formats=("PNG",))
    assert "object at 0x" in str(raised.value)
    detail = SignetError(f"bad image: {raised.value}").detail
    assert "object at" not in detail and "(BytesIO)" in detail


@pytest.mark.parametrize(
    "message",
    ["byte 0x1d", "serial 0x0 and 0x10", "a <b> tag", "0x0xyz is not hex", "plain words"],
)
def test_a_message_without_those_faults_is_left_alone(message: str) -> None:
    assert tidy_detail(message) == message
