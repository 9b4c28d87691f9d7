"""Completion of a finished document to PAdES B-LTA (`POST /v1/complete`).

Once the last person has signed, the document gets one last revision: every
signature's (and its timestamp's) validation data in the DSS, certificates and
our CRLs, then a document timestamp over all of it.  A validator years later,
with the CA long gone, still finds everything it needs in the file, and the
document timestamp can be renewed before its TSA's algorithms weaken.

Only a document whose every signature is valid, intact and trusted is completed:
archiving a broken signature would seal the breakage.
"""

from __future__ import annotations

import asyncio
import io
from typing import TYPE_CHECKING

from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_signer import PdfTimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko.sign.validation.dss import DocumentSecurityStore, collect_validation_info
from pyhanko_certvalidator.path import ValidationPath
from signet.common.contracts.signer import CompleteOptions
from signet.common.errors import ServiceUnavailable, UnprocessableDocument
from signet.signer.pades.validation import verify_pdf

if TYPE_CHECKING:
    from signet.signer.pades.engine import PadesEngine

#: The document timestamp's reserved /Contents (hex digits): the token plus the TSA chain.
_RESERVED = 16384


class SignatureInvalid(UnprocessableDocument):
    code = "signature_invalid"


class NoSignatures(UnprocessableDocument):
    code = "no_signatures"


def complete_pdf(engine: PadesEngine, document: bytes, options: CompleteOptions) -> bytes:
    """`document` with its validation data and a document timestamp (B-LTA).

    Refuses (422) a PDF without signatures, or with any signature or document
    timestamp that is not valid, intact and trusted (the field is named).
    """
    if not document.lstrip()[:5] == b"%PDF-":
        raise UnprocessableDocument("not a PDF: the file does not start with %PDF-")
    timestamper = engine.timestamper_for(options.timestamp_authority)
    report = verify_pdf(document, engine.validation_context())
    if not any(s.kind == "signature" for s in report.signatures):
        raise NoSignatures("the PDF has no signatures to complete")
    for signature in report.signatures:
        if not signature.ok:
            why = signature.trust_problem or (
                "not intact"
                if not signature.intact
                else f"changed after ({signature.modifications})"
            )
            raise SignatureInvalid(f"signature {signature.field_name!r} is not valid: {why}")
    try:
        return _complete(engine, document, timestamper)
    except TimestampRequestError as exc:
        raise ServiceUnavailable(f"timestamp authority failed: {exc}") from exc
    except SigningError as exc:
        if "timestamp" in str(exc).lower():
            raise ServiceUnavailable(f"timestamp authority failed: {exc}") from exc
        raise UnprocessableDocument(f"cannot complete this PDF: {exc}") from exc
    except PdfReadError as exc:
        raise UnprocessableDocument(f"malformed PDF: {exc}") from exc


def _complete(engine: PadesEngine, document: bytes, timestamper: object) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(document), strict=False)
    context = engine.validation_context()
    paths: list[ValidationPath] = []
    for embedded in writer.prev.embedded_signatures:
        # every signature's chain and its timestamp's: the CRLs consulted land in `context`
        paths.extend(asyncio.run(collect_validation_info(embedded, context)))
    DocumentSecurityStore.supply_dss_in_writer(
        writer, None, paths=paths, validation_context=context, embed_roots=True
    )
    output = io.BytesIO()
    PdfTimeStamper(timestamper).timestamp_pdf(  # type: ignore[arg-type]
        writer,
        "sha256",
        validation_context=engine.validation_context(),
        bytes_reserved=_RESERVED,
        output=output,
    )
    return output.getvalue()
