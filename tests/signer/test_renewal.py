"""`POST /v1/documents/renew`: a B-LTA document's archive-timestamp chain extended."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable

import httpx
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESPassed
from pyhanko.sign.validation.ades import ades_lta_validation
from pyhanko.sign.validation.policy_decl import (
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.policy_decl import REQUIRE_REVINFO, CertRevTrustPolicy
from pyhanko_certvalidator.registry import SimpleTrustManager
from signet.signer.service import SignerService

from tests.conftest import PORTAL_TOKEN, STORAGE_TOKEN
from tests.signer.conftest import sign_via_api
from tests.support.pdfs import make_pdf


def _post(client: httpx.Client, path: str, pdf: bytes, **data: str) -> httpx.Response:
    return client.post(path, files={"document": ("d.pdf", pdf, "application/pdf")}, data=data)


def _b_lta(client: httpx.Client, issue: Callable[..., str]) -> tuple[bytes, bytes]:
    """A signed (B-T) PDF and its B-LTA completion."""
    signed = sign_via_api(client, make_pdf(), issue("Ren Ewal"), level="B-T")
    assert signed.status_code == 200, signed.text
    completed = _post(client, "/v1/complete", signed.content, options=json.dumps({}))
    assert completed.status_code == 200, completed.text
    return signed.content, completed.content


def test_a_b_lta_document_gets_a_second_document_timestamp(
    signer_client: httpx.Client, signer_service: SignerService, issue: Callable[..., str]
) -> None:
    _, completed = _b_lta(signer_client, issue)
    response = _post(signer_client, "/v1/documents/renew", completed)
    assert response.status_code == 200, response.text
    renewed = response.content
    assert renewed.startswith(completed)  # one more revision, nothing before it touched

    report = _post(signer_client, "/v1/verify", renewed).json()
    assert [s["kind"] for s in report["signatures"]] == [
        "signature",
        "document-timestamp",
        "document-timestamp",
    ]
    assert report["valid"] is True

    reader = PdfFileReader(io.BytesIO(renewed))
    assert len(reader.embedded_timestamp_signatures) == 2
    spec = PdfSignatureValidationSpec(
        SignatureValidationSpec(
            cert_validation_policy=CertValidationPolicySpec(
                trust_manager=SimpleTrustManager.build([signer_service.ca.root.certificate]),
                revinfo_policy=CertRevTrustPolicy(REQUIRE_REVINFO),
            ),
            revinfo_gathering_policy=RevocationInfoGatheringSpec(
                online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY
            ),
        )
    )
    (embedded,) = reader.embedded_regular_signatures
    result = asyncio.run(ades_lta_validation(embedded, spec))
    assert result.ades_subindic is AdESPassed.OK, result.ades_subindic

    again = _post(signer_client, "/v1/documents/renew", renewed)
    assert again.status_code == 200, again.text
    assert len(PdfFileReader(io.BytesIO(again.content)).embedded_timestamp_signatures) == 3


def test_renew_refuses_what_it_should(
    signer_client: httpx.Client, signer_url: str, issue: Callable[..., str]
) -> None:
    signed, completed = _b_lta(signer_client, issue)
    not_archival = _post(signer_client, "/v1/documents/renew", signed)
    assert not_archival.status_code == 422 and not_archival.json()["error"] == "not_archival"
    unsigned = _post(signer_client, "/v1/documents/renew", make_pdf())
    assert unsigned.status_code == 422 and unsigned.json()["error"] == "no_signatures"
    not_pdf = _post(signer_client, "/v1/documents/renew", b"<html>hello</html>")
    assert not_pdf.status_code == 422 and "not a PDF" in not_pdf.json()["detail"]
    # one byte inside the signature's signed range changed
    start = completed.index(b"/Contents <", completed.index(b"Signature1")) - 40
    tampered = completed[:start] + bytes([completed[start] ^ 0x01]) + completed[start + 1 :]
    broken = _post(signer_client, "/v1/documents/renew", tampered)
    assert broken.status_code == 422, broken.text
    assert broken.json()["error"] == "signature_invalid"
    huge = _post(signer_client, "/v1/documents/renew", make_pdf(padding_bytes=65 * 1024 * 1024))
    assert huge.status_code == 413
    missing = signer_client.post("/v1/documents/renew", data={"x": "y"})
    assert missing.status_code in (400, 422)
    assert "error" in missing.json()
    files = {"document": ("d.pdf", completed, "application/pdf")}
    url = f"{signer_url}/v1/documents/renew"
    assert httpx.post(url, files=files, timeout=60).status_code == 401
    portal = httpx.post(
        url, files=files, headers={"Authorization": f"Bearer {PORTAL_TOKEN}"}, timeout=60
    )
    assert portal.status_code == 403  # the portal signs; only storage preserves
    storage = httpx.post(
        url, files=files, headers={"Authorization": f"Bearer {STORAGE_TOKEN}"}, timeout=60
    )
    assert storage.status_code == 200, storage.text
