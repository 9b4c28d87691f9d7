"""`POST /v1/complete` (B-LTA of a finished document) and per-request TSAs."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from asn1crypto import cms
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESPassed
from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko.sign.validation.ades import ades_lta_validation
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.policy_decl import (
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.policy_decl import REQUIRE_REVINFO, CertRevTrustPolicy
from pyhanko_certvalidator.registry import SimpleTrustManager
from signet.common.clients.base import RemoteError
from signet.common.clients.signer import SignerClient
from signet.common.contracts.signer import CompleteOptions, SignOptions
from signet.common.errors import ServiceUnavailable
from signet.signer.config import SignerSettings
from signet.signer.pades.complete import complete_pdf
from signet.signer.pades.engine import PadesEngine
from signet.signer.service import SignerService

from tests.conftest import PORTAL_TOKEN, STORAGE_TOKEN, free_port
from tests.signer.conftest import pdfsig, sign_via_api
from tests.support.pdfs import make_pdf, make_png


def _complete(client: httpx.Client, pdf: bytes, **options: object) -> httpx.Response:
    return client.post(
        "/v1/complete",
        files={"document": ("d.pdf", pdf, "application/pdf")},
        data={"options": json.dumps(options)},
    )


def _three_signatures(
    client: httpx.Client, issue: Callable[..., str], *, stamps: bool = False
) -> tuple[bytes, list[str]]:
    pdf, serials = make_pdf(2), []
    for n, name in enumerate(("Ann Complete", "Ben Complete", "Cai Complete")):
        serial = issue(name)
        serials.append(serial)
        extra: dict[str, object] = {}
        if n == 1:
            extra = {
                "image": make_png(),
                "appearance": {"rect": [72, 100, 272, 160]},
            }
            if stamps:
                extra["stamps"] = [{"rect": [300, 100, 500, 130], "text": "2026-12-07 李伟"}]
        response = sign_via_api(client, pdf, serial, level="B-T", **extra)  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        pdf = response.content
    return pdf, serials


def test_a_three_signature_document_is_completed_to_b_lta(
    signer_client: httpx.Client,
    signer_service: SignerService,
    issue: Callable[..., str],
    nssdb: str,
    tmp_path: Path,
) -> None:
    pdf, _ = _three_signatures(signer_client, issue)
    response = _complete(signer_client, pdf)
    assert response.status_code == 200, response.text
    completed = response.content
    assert completed.startswith(pdf)  # one more revision, the signed bytes untouched

    report = signer_client.post(
        "/v1/verify", files={"document": ("d.pdf", completed, "application/pdf")}
    ).json()
    kinds = [s["kind"] for s in report["signatures"]]
    assert kinds == ["signature"] * 3 + ["document-timestamp"]
    assert report["valid"] is True
    assert [s["modifications"] for s in report["signatures"][:3]][-1] == "lta-updates"

    reader = PdfFileReader(io.BytesIO(completed))
    dss = DocumentSecurityStore.read_dss(reader)
    dss_certs = {hashlib.sha256(c.dump()).hexdigest() for c in dss.load_certs()}
    assert dss.crls, "the CRLs are in the DSS"
    # pyHanko's AdES LTA validation (EN 319 102-1 5.6.3) with revocation required and
    # only what is in the file: nothing fetched
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
    for embedded in reader.embedded_regular_signatures:
        assert hashlib.sha256(embedded.signer_cert.dump()).hexdigest() in dss_certs
        result = asyncio.run(ades_lta_validation(embedded, spec))
        assert result.ades_subindic is AdESPassed.OK, result.ades_subindic
        assert result.oldest_evidence_record_timestamp is not None  # the document timestamp

    path = tmp_path / "completed.pdf"
    path.write_bytes(completed)
    out = pdfsig(path, nssdb, ocsp=False)
    assert out.count("Signature is Valid.") >= 3, out
    assert "Invalid" not in out and "not signed" not in out


def test_a_document_with_stamps_is_completed(
    signer_client: httpx.Client, issue: Callable[..., str]
) -> None:
    pdf, _ = _three_signatures(signer_client, issue, stamps=True)
    response = _complete(signer_client, pdf)
    assert response.status_code == 200, response.text
    report = signer_client.post(
        "/v1/verify", files={"document": ("d.pdf", response.content, "application/pdf")}
    ).json()
    assert report["valid"] is True and len(report["signatures"]) == 4


def test_complete_refuses_what_it_should(
    signer_client: httpx.Client, signer_url: str, issue: Callable[..., str]
) -> None:
    pdf, _ = _three_signatures(signer_client, issue)
    unsigned = _complete(signer_client, make_pdf())
    assert unsigned.status_code == 422 and unsigned.json()["error"] == "no_signatures"
    not_pdf = _complete(signer_client, b"<html>hello</html>")
    assert not_pdf.status_code == 422 and "not a PDF" in not_pdf.json()["detail"]
    # one byte inside the second signature's signed range changed
    start = pdf.index(b"/Contents <", pdf.index(b"Signature2")) - 40
    tampered = pdf[:start] + bytes([pdf[start] ^ 0x01]) + pdf[start + 1 :]
    broken = _complete(signer_client, tampered)
    assert broken.status_code == 422, broken.text
    assert broken.json()["error"] == "signature_invalid"
    assert "Signature" in broken.json()["detail"]
    unknown = _complete(signer_client, pdf, timestamp_authority="nowhere")
    assert unknown.status_code == 422 and unknown.json()["error"] == "timestamp_authority_unknown"
    bad_options = _complete(signer_client, pdf, timestamp_authority=7)
    assert bad_options.status_code == 400
    huge = _complete(signer_client, make_pdf(padding_bytes=65 * 1024 * 1024))
    assert huge.status_code == 413
    files = {"document": ("d.pdf", pdf, "application/pdf")}
    anonymous = httpx.post(f"{signer_url}/v1/complete", files=files, timeout=60)
    assert anonymous.status_code == 401
    wrong_scope = httpx.post(
        f"{signer_url}/v1/complete",
        files=files,
        headers={"Authorization": f"Bearer {STORAGE_TOKEN}"},
        timeout=60,
    )
    assert wrong_scope.status_code == 403


def test_sign_with_an_unknown_tsa_is_refused(
    signer_client: httpx.Client, issue: Callable[..., str]
) -> None:
    response = sign_via_api(signer_client, make_pdf(), issue("No Tsa"), timestamp_authority="x")
    assert response.status_code == 422
    assert response.json()["error"] == "timestamp_authority_unknown"


def test_a_named_tsa_is_reached_over_http_for_sign_and_complete(
    signer_service: SignerService,
    signer_url: str,
    issue: Callable[..., str],
    ca_files: Path,
    tmp_path: Path,
) -> None:
    """The test signer's own /tsa, configured under a name, as an external RFC 3161 TSA."""
    engine = PadesEngine.create(
        signer_service.ca, signer_service.tsa, None, {"house": f"{signer_url}/tsa"}
    )
    assert isinstance(engine.timestamper_for("house"), HTTPTimeStamper)
    issued = signer_service.ca.signing_material(issue("Tsa Person"))
    options = SignOptions.model_validate(
        {"certificate_serial": issued.record.serial, "level": "B-T", "timestamp_authority": "house"}
    )
    signed = engine.sign(make_pdf(), issued, options)
    reader = PdfFileReader(io.BytesIO(signed))
    (embedded,) = reader.embedded_regular_signatures
    signer_info = embedded.signer_info
    (token,) = (
        a["values"][0]
        for a in signer_info["unsigned_attrs"]
        if a["type"].native == "signature_time_stamp_token"
    )
    token_path = tmp_path / "token.der"
    token_path.write_bytes(cms.ContentInfo.load(token.dump()).dump())
    digest = hashlib.sha256(signer_info["signature"].native).hexdigest()
    result = subprocess.run(
        [
            "openssl", "ts", "-verify", "-token_in", "-in", str(token_path), "-digest", digest,
            "-CAfile", str(ca_files / "root.pem"), "-untrusted", str(ca_files / "chain.pem"),
            "-untrusted", str(ca_files / "tsa.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert "Verification: OK" in result.stdout, result.stdout + result.stderr

    completed = complete_pdf(engine, signed, CompleteOptions(timestamp_authority="house"))
    kinds = [s.sig_object_type for s in PdfFileReader(io.BytesIO(completed)).embedded_signatures]
    assert [str(k) for k in kinds] == ["/Sig", "/DocTimeStamp"]


def test_named_tsas_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SIGNET_SIGNER_TIMESTAMP_AUTHORITIES", '{"qtsp": "https://tsa.example/rfc3161"}'
    )
    assert SignerSettings().timestamp_authorities == {"qtsp": "https://tsa.example/rfc3161"}


def test_an_unreachable_named_tsa_answers_503(
    signer_client: httpx.Client, signer_service: SignerService, issue: Callable[..., str]
) -> None:
    port = free_port()  # nothing listens there
    engine = PadesEngine.create(
        signer_service.ca, signer_service.tsa, None, {"down": f"http://127.0.0.1:{port}/tsa"}
    )
    issued = signer_service.ca.signing_material(issue("Down Tsa"))
    options = SignOptions.model_validate(
        {"certificate_serial": issued.record.serial, "timestamp_authority": "down"}
    )
    with pytest.raises(ServiceUnavailable):
        engine.sign(make_pdf(), issued, options)
    pdf, _ = _three_signatures(signer_client, issue)
    with pytest.raises(ServiceUnavailable):
        complete_pdf(engine, pdf, CompleteOptions(timestamp_authority="down"))


def test_the_portal_completes_through_its_client(
    signer_client: httpx.Client, signer_url: str, issue: Callable[..., str]
) -> None:
    """The portal's own token carries document:sign; `SignerClient.complete` answers the PDF
    and passes a refusal on with its status and code."""
    pdf, _ = _three_signatures(signer_client, issue)
    client = SignerClient(signer_url, PORTAL_TOKEN)
    completed = client.complete(pdf, CompleteOptions())
    assert completed.startswith(pdf) and b"/DocTimeStamp" in completed
    with pytest.raises(RemoteError) as refused:
        client.complete(make_pdf(), CompleteOptions())
    assert refused.value.status_code == 422 and refused.value.code == "no_signatures"


def test_completing_again_renews_the_archive_timestamp(
    signer_client: httpx.Client, issue: Callable[..., str]
) -> None:
    """A B-LTA signature, completed, then completed again: each adds a document timestamp
    and every earlier one stays valid (the renewal before a TSA's algorithms weaken)."""
    signed = sign_via_api(signer_client, make_pdf(), issue("Lta Person"), level="B-LTA")
    assert signed.status_code == 200, signed.text
    once = _complete(signer_client, signed.content)
    assert once.status_code == 200, once.text
    twice = _complete(signer_client, once.content)
    assert twice.status_code == 200, twice.text
    report = signer_client.post(
        "/v1/verify", files={"document": ("d.pdf", twice.content, "application/pdf")}
    ).json()
    assert [s["kind"] for s in report["signatures"]] == ["signature"] + ["document-timestamp"] * 3
    assert report["valid"] is True
