"""Where a certificate's status is found belongs to its installation (issue 17).

Every certificate used to point its CRL and OCSP at ``http://127.0.0.1:8101``: with
two installations on one machine, a validator of the first's documents fetched the
second's CRL and OCSP answers (seen: pyHanko's AdES validation failing with
``OCSPNoMatchesError``).  Now the URLs carry the installation id
(``<public URL>/i/<id>/…``) and a signer answers only for its own id.  The scenario
runs for real: two homes made by ``signet ca init`` with the same public URL, the
second one's signer serving it, the first one's CLI signing offline.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from asn1crypto import crl, pem, x509
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
from pyhanko_certvalidator.errors import OCSPFetchError
from pyhanko_certvalidator.policy_decl import REQUIRE_REVINFO, CertRevTrustPolicy
from pyhanko_certvalidator.registry import SimpleTrustManager
from signet.signer.pki.names import installation_of
from signet.signer.service import SignerService

from tests.conftest import free_port
from tests.signer.test_hostile_input import _ocsp_request, _ocsp_status
from tests.support.pdfs import make_pdf


def _environment(home: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    return env | {"SIGNET_HOME": str(home), "SIGNET_SIGNER_PUBLIC_URL": url}


def _signet(home: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signet.cli", *args],
        env=_environment(home, url),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _load(path: Path) -> x509.Certificate:
    return x509.Certificate.load(pem.unarmor(path.read_bytes())[2])


def _status_urls(certificate: x509.Certificate) -> list[str]:
    urls = [
        point["distribution_point"].chosen[0].native
        for point in certificate.crl_distribution_points_value
    ]
    urls += [
        access["access_location"].native
        for access in certificate.authority_information_access_value
    ]
    return urls


@pytest.fixture
def two_installations(tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    """(first home, second home, the public URL both were made with); the second one's
    signer serves that URL, the first one runs nothing."""
    url = f"http://127.0.0.1:{free_port()}"
    first, second = tmp_path / "first", tmp_path / "second"
    for home in (first, second):
        made = _signet(home, url, "ca", "init")
        assert made.returncode == 0, made.stderr
    server = subprocess.Popen(
        [sys.executable, "-m", "signet.cli", "signer", "serve", "--port", url.rsplit(":", 1)[1]],
        env=_environment(second, url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError("the second installation's signer did not start")
        yield first, second, url
    finally:
        server.terminate()
        server.wait(30)


def _spec(root: x509.Certificate, rule: RevinfoOnlineFetchingRule) -> PdfSignatureValidationSpec:
    return PdfSignatureValidationSpec(
        SignatureValidationSpec(
            cert_validation_policy=CertValidationPolicySpec(
                trust_manager=SimpleTrustManager.build([root]),
                revinfo_policy=CertRevTrustPolicy(REQUIRE_REVINFO),
            ),
            revinfo_gathering_policy=RevocationInfoGatheringSpec(online_fetching_rule=rule),
        )
    )


def test_an_offline_signature_never_meets_another_installations_status(
    two_installations: tuple[Path, Path, str], tmp_path: Path
) -> None:
    first, second, url = two_installations
    ca = first / "signer" / "ca"
    root = _load(ca / "root.pem")
    ours, theirs = (
        installation_of(root),
        installation_of(_load(second / "signer" / "ca" / "root.pem")),
    )
    assert ours and theirs and ours != theirs

    document, signed = tmp_path / "contract.pdf", tmp_path / "signed.pdf"
    document.write_bytes(make_pdf(1))
    made = _signet(first, url, "sign", str(document), "--out", str(signed), "--level", "B-LTA")
    assert made.returncode == 0, made.stderr
    reader = PdfFileReader(io.BytesIO(signed.read_bytes()))
    (signature,) = reader.embedded_regular_signatures

    # Every status URL of the chain is this installation's, under the public URL ...
    for certificate in (signature.signer_cert, _load(ca / "issuing.pem"), _load(ca / "tsa.pem")):
        urls = _status_urls(certificate)
        assert urls and all(u.startswith(f"{url}/i/{ours}/") for u in urls), urls
        # ... and the other installation, answering at that address, says so: 404.
        for status_url in urls:
            if status_url.endswith("/ocsp"):
                answer = httpx.post(status_url, content=b"0")
            else:
                answer = httpx.get(status_url)
            assert answer.status_code == 404, (status_url, answer.text)
            assert answer.json()["error"] == "not_found"
    # Its own paths it serves (a sanity check of the scenario).
    own = httpx.get(f"{url}/i/{theirs}/ca/crl")
    assert own.status_code == 200
    assert crl.CertificateList.load(own.content).issuer.native["serial_number"] == theirs

    # pyHanko's AdES validation, from what the file carries (B-LTA: this installation's
    # CRLs and OCSP answers, and a document timestamp) and with pyHanko's default
    # fetching rule; both pass while the other installation serves the URL.
    for rule in (
        RevinfoOnlineFetchingRule.LOCAL_ONLY,
        RevinfoOnlineFetchingRule.NO_HISTORICAL_FETCH,
    ):
        result = asyncio.run(ades_lta_validation(signature, _spec(root, rule)))
        assert result.ades_subindic is AdESPassed.OK, (rule, result.ades_subindic)
    # A validator that insists on fetching gets no answer from the other installation
    # (before: its OCSP answer, and OCSPNoMatchesError); it needs this one reachable.
    with pytest.raises(OCSPFetchError):
        asyncio.run(
            ades_lta_validation(signature, _spec(root, RevinfoOnlineFetchingRule.ALWAYS_FETCH))
        )


def test_the_installation_paths_answer_for_this_installation_only(
    signer_client: httpx.Client, signer_service: SignerService
) -> None:
    """Public like the bare paths (validators carry no token); another id is a 404, a
    malformed one a 422, an oversized OCSP request a 413."""
    installation = signer_service.ca.installation
    assert installation is not None
    anonymous = httpx.Client(base_url=str(signer_client.base_url))
    prefix = f"/i/{installation}"
    for path in ("/ca/crl", "/ca/root.crl", "/ca/root.cer", "/ca/issuing.cer"):
        answer = anonymous.get(prefix + path)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.content == anonymous.get(path).content or path.endswith(".crl")
    request = _ocsp_request(signer_service).dump()
    assert _ocsp_status(anonymous.post(f"{prefix}/ocsp", content=request)) == "successful"
    encoded = base64.b64encode(request).decode()
    assert _ocsp_status(anonymous.get(f"{prefix}/ocsp/{encoded}")) == "successful"

    other = "0" * 8 if installation != "0" * 8 else "1" * 8
    for method, path in (("GET", "/ca/crl"), ("GET", "/ca/root.cer"), ("POST", "/ocsp")):
        answer = anonymous.request(method, f"/i/{other}{path}", content=request)
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"] == "not_found"
        assert "signet" not in answer.text.lower() or other in answer.text
    for malformed in (installation.lower(), installation + "0", "%2e%2e", "X" * 8):
        answer = anonymous.get(f"/i/{malformed}/ca/crl")
        assert answer.status_code in (404, 422), (malformed, answer.text)
        assert set(answer.json()) == {"error", "detail"}
    oversized = anonymous.post(f"{prefix}/ocsp", content=b"\x30" * (65 * 1024))
    assert oversized.status_code == 413, oversized.text
    anonymous.close()
