"""A sender's upload checked before it is stored: a PDF that a signer can sign.

Refused with 422 and a reason a sender can act on (not a PDF, damaged, encrypted, no
pages), before anything reaches the vault: what the vault keeps, it keeps for years.
"""

from __future__ import annotations

import io
import re

from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from signet.common.errors import UnprocessableDocument

_NAME = re.compile(r"[^\w .()+-]", re.UNICODE)


class DocumentRefused(UnprocessableDocument):
    code = "document_refused"


def document_name(filename: str | None, position: int) -> str:
    """A file name safe to show and to put in a download header."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _NAME.sub("_", base).strip(" .")[:120]
    return cleaned or f"document-{position + 1}.pdf"


def page_count(data: bytes, name: str) -> int:
    """The PDF's number of pages, or `DocumentRefused` saying what is wrong with it."""
    if not data.lstrip()[:5] == b"%PDF-":
        raise DocumentRefused(f"{name} is not a PDF (it does not start with %PDF-)")
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        if reader.encrypted:
            raise DocumentRefused(f"{name} is encrypted: send it without a password")
        pages = int(reader.root["/Pages"]["/Count"])
    except DocumentRefused:
        raise
    except (PdfError, KeyError, TypeError, ValueError, IndexError, RecursionError) as exc:
        raise DocumentRefused(f"{name} is damaged and cannot be read as a PDF") from exc
    if pages < 1:
        raise DocumentRefused(f"{name} has no pages")
    return pages
