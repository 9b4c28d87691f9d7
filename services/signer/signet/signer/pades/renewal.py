"""Renewal of a B-LTA document's archive-timestamp chain (preservation, issue 19).

A document timestamp proves the document existed while its TSA certificate was
valid.  Before that certificate expires (or its key is rolled over), the chain
is extended: the last timestamp's validation data goes into the DSS, then a new
document timestamp covers it all.  A validator after the first TSA certificate's
expiry then validates the older timestamp at the time the newer one proves.

Only a document whose signatures still validate is renewed: renewing a broken
signature would give it a longer life it never deserved.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_signer import PdfTimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from signet.common.errors import ServiceUnavailable, UnprocessableDocument
from signet.signer.pades.complete import NoSignatures, SignatureInvalid
from signet.signer.pades.validation import verify_pdf

if TYPE_CHECKING:
    from signet.signer.pades.engine import PadesEngine


class NotArchival(UnprocessableDocument):
    code = "not_archival"


def renew_pdf(engine: PadesEngine, document: bytes) -> bytes:
    """`document` with its last document timestamp's validation data and a new one.

    Refuses (422) a non-PDF, a PDF without signatures, one without a document
    timestamp (`not_archival`: complete it first), and any whose signatures or
    timestamps no longer validate (`signature_invalid`, the field named).
    """
    if not document.lstrip()[:5] == b"%PDF-":
        raise UnprocessableDocument("not a PDF: the file does not start with %PDF-")
    try:
        report = verify_pdf(document, engine.validation_context())
    except PdfReadError as exc:
        raise UnprocessableDocument(f"malformed PDF: {exc}") from exc
    if not any(s.kind == "signature" for s in report.signatures):
        raise NoSignatures("the PDF has no signatures to renew")
    for signature in report.signatures:
        if not signature.ok:
            why = signature.trust_problem or (
                "not intact"
                if not signature.intact
                else f"changed after ({signature.modifications})"
            )
            raise SignatureInvalid(f"signature {signature.field_name!r} is not valid: {why}")
    if not any(s.kind != "signature" for s in report.signatures):
        raise NotArchival("the PDF has no document timestamp: complete it to B-LTA first")
    try:
        return _renew(engine, document)
    except TimestampRequestError as exc:
        raise ServiceUnavailable(f"timestamp authority failed: {exc}") from exc
    except SigningError as exc:
        if "timestamp" in str(exc).lower():
            raise ServiceUnavailable(f"timestamp authority failed: {exc}") from exc
        raise UnprocessableDocument(f"cannot renew this PDF: {exc}") from exc
    except PdfReadError as exc:
        raise UnprocessableDocument(f"malformed PDF: {exc}") from exc


def _renew(engine: PadesEngine, document: bytes) -> bytes:
    reader = PdfFileReader(io.BytesIO(document), strict=False)
    output = io.BytesIO()
    PdfTimeStamper(engine.timestamper).update_archival_timestamp_chain(
        reader, engine.validation_context(), in_place=False, output=output
    )
    return output.getvalue()
