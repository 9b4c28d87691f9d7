"""Validation of every signature in a PDF, reported in the `VerifyResponse` contract.

pyHanko does the work: cryptographic integrity, path building to our root,
revocation (our current CRLs, nothing fetched), timestamps, and the
difference analysis that tells whether anything changed after a signature
(and whether the change was allowed: form filling, LTA updates, annotations).
"""

from __future__ import annotations

import hashlib
import io
from datetime import datetime
from typing import Any

from asn1crypto import x509
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from signet.common.contracts.signer import (
    CertificateSummary,
    SignatureReport,
    TimestampReport,
    VerifyResponse,
)
from signet.common.errors import UnprocessableDocument

_COVERAGE = {
    SignatureCoverageLevel.ENTIRE_FILE: "entire-file",
    SignatureCoverageLevel.ENTIRE_REVISION: "entire-revision",
}
_MODIFICATIONS = {
    ModificationLevel.NONE: "none",
    ModificationLevel.LTA_UPDATES: "lta-updates",
    ModificationLevel.FORM_FILLING: "form-filling",
    ModificationLevel.ANNOTATIONS: "annotations",
    ModificationLevel.OTHER: "other",
}


def summarise(cert: x509.Certificate) -> CertificateSummary:
    return CertificateSummary(
        subject=cert.subject.human_friendly,
        issuer=cert.issuer.human_friendly,
        serial=format(cert.serial_number, "x"),
        fingerprint_sha256=hashlib.sha256(cert.dump()).hexdigest(),
        not_before=cert["tbs_certificate"]["validity"]["not_before"].native,
        not_after=cert["tbs_certificate"]["validity"]["not_after"].native,
    )


def verify_pdf(document: bytes, context: ValidationContext) -> VerifyResponse:
    """Validate every signature and document timestamp in `document`."""
    try:
        return _verify_pdf(document, context)
    except RecursionError as exc:  # crafted deep nesting: a refusal, not a 500
        raise UnprocessableDocument("malformed PDF: objects nested too deeply") from exc


def _verify_pdf(document: bytes, context: ValidationContext) -> VerifyResponse:
    try:
        reader = PdfFileReader(io.BytesIO(document), strict=False)
        if reader.encrypted:
            raise UnprocessableDocument("encrypted PDF: cannot verify without the password")
        embedded = list(reader.embedded_signatures)
    except PdfReadError as exc:
        raise UnprocessableDocument(f"malformed PDF: {exc}") from exc
    reports = [_report(sig, context) for sig in embedded]
    return VerifyResponse(
        document_sha256=hashlib.sha256(document).hexdigest(),
        signatures=reports,
        valid=bool(reports) and all(r.ok for r in reports),
    )


def _report(sig: Any, context: ValidationContext) -> SignatureReport:
    status: Any
    is_timestamp = sig.sig_object_type == "/DocTimeStamp"
    try:
        if is_timestamp:
            status = validate_pdf_timestamp(sig, validation_context=context)
        else:
            status = validate_pdf_signature(
                sig, signer_validation_context=context, ts_validation_context=context
            )
    except (ValueError, KeyError, TypeError, PdfReadError) as exc:
        return SignatureReport(
            field_name=sig.field_name,
            kind="document-timestamp" if is_timestamp else "signature",
            signer=None,
            chain=[],
            valid=False,
            intact=False,
            trusted=False,
            trust_problem=f"signature cannot be parsed: {exc}",
            signing_time=None,
            coverage="partial",
            modifications="other",
            ok=False,
        )
    chain = (
        [summarise(c) for c in status.validation_path.iter_certs(include_root=True)]
        if status.validation_path is not None
        else []
    )
    trust_problem = None
    if status.revoked:
        trust_problem = "the signer's certificate is revoked"
    elif not status.trusted:
        trust_problem = (
            str(status.trust_problem_indic.name).lower()
            if status.trust_problem_indic
            else "does not chain to a trusted root"
        )
    timestamp = None
    ts_status = status if is_timestamp else status.timestamp_validity
    if ts_status is not None:
        tsa_cert = ts_status.signing_cert
        timestamp = TimestampReport(
            time=ts_status.timestamp,
            valid=ts_status.intact and ts_status.valid,
            trusted=ts_status.trusted,
            tsa=tsa_cert.subject.human_friendly if tsa_cert is not None else None,
        )
    modification = status.modification_level
    coverage = _COVERAGE.get(status.coverage, "partial") if status.coverage else "partial"
    modifications = _MODIFICATIONS.get(modification, "other") if modification else "other"
    signing_time: datetime | None = None if is_timestamp else status.signer_reported_dt
    ok = (
        status.intact
        and status.valid
        and status.trusted
        and not status.revoked
        and coverage != "partial"
        and modifications != "other"
        and status.docmdp_ok is not False
        and (timestamp is None or (timestamp.valid and timestamp.trusted))
    )
    sub_filter = sig.sig_object.get("/SubFilter")
    return SignatureReport(
        field_name=sig.field_name,
        kind="document-timestamp" if is_timestamp else "signature",
        signer=summarise(status.signing_cert) if status.signing_cert is not None else None,
        chain=chain,
        valid=status.intact and status.valid,
        intact=status.intact,
        trusted=status.trusted and not status.revoked,
        trust_problem=trust_problem,
        signing_time=signing_time,
        timestamp=timestamp,
        coverage=coverage,  # type: ignore[arg-type]
        modifications=modifications,
        docmdp_ok=status.docmdp_ok,
        sub_filter=str(sub_filter)[1:] if sub_filter is not None else None,
        ok=ok,
    )
