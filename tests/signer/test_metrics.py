"""The signer's `/metrics` against the live signer (real SoftHSM token, real uvicorn).

Counters are process-wide and other tests sign too, so every check is a
difference between a scrape before and one after, and must equal exactly what
the test did.  The two-worker case runs ``signet signer serve --workers 2
--metrics-port`` (uvicorn with two worker processes inside
`multiprocess_environment`) and checks that a scrape — whichever worker answers
it, or the supervisor's metrics port — sums what both workers served.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from asn1crypto import ocsp, tsp, x509
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from pydantic import SecretStr
from signet.common import metrics
from signet.hsm.softhsm import DevToken
from signet.signer.app import create_app
from signet.signer.config import SignerSettings
from signet.signer.service import SignerService

from tests.common.test_metrics import Scrape, settled
from tests.conftest import SERVICE_TOKEN, free_port
from tests.signer.conftest import sign_via_api
from tests.support.pdfs import make_pdf


def _scrape(url: str) -> Scrape:
    response = httpx.get(f"{url}/metrics", timeout=30)  # no token: like /healthz
    assert response.status_code == 200, response.text
    return Scrape(response.text)


def _timestamp_query(data: bytes) -> bytes:
    query: bytes = tsp.TimeStampReq(
        {
            "version": 1,
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": hashlib.sha256(data).digest(),
            },
            "cert_req": True,
        }
    ).dump()
    return query


def _ocsp_query(certificate: x509.Certificate, issuer: x509.Certificate) -> bytes:
    key = issuer.public_key["public_key"].contents[1:]
    cert_id = {
        "hash_algorithm": {"algorithm": "sha256"},
        "issuer_name_hash": hashlib.sha256(issuer.subject.dump()).digest(),
        "issuer_key_hash": hashlib.sha256(key).digest(),
        "serial_number": certificate.serial_number,
    }
    query: bytes = ocsp.OCSPRequest(
        {"tbs_request": {"request_list": [{"req_cert": cert_id}]}}
    ).dump()
    return query


def test_signatures_timestamps_and_pki_are_counted_exactly(
    signer_url: str, signer_client: httpx.Client, signer_service: SignerService
) -> None:
    before = _scrape(signer_url)
    issued = signer_client.post(
        # a seal: a person's key would add the activation's own requests to the counts
        "/v1/certificates",
        json={"kind": "seal", "subject": {"common_name": "Mei Counter"}},
    )
    assert issued.status_code == 201, issued.text
    serial = issued.json()["serial"]
    once = {"activate": False}  # a seal needs none; no extra lookups in the counts
    assert sign_via_api(signer_client, make_pdf(), serial, level="B-T", **once).status_code == 200
    assert sign_via_api(signer_client, b"not a pdf", serial, level="B-B", **once).status_code == 422
    tsa = {"content-type": "application/timestamp-query"}
    assert httpx.post(f"{signer_url}/tsa", content=_timestamp_query(b"x"), headers=tsa).is_success
    assert httpx.post(f"{signer_url}/tsa", content=b"garbage", headers=tsa).is_success
    assert signer_client.get(f"/v1/certificates/{serial}").status_code == 200
    revoked = signer_client.post(f"/v1/certificates/{serial}/revoke", json={})
    assert revoked.status_code == 200, revoked.text
    record = signer_service.registry.get(serial)
    assert record is not None
    certificate = x509.Certificate.load(record.der)
    query = _ocsp_query(certificate, signer_service.ca.issuing.certificate)
    assert httpx.post(f"{signer_url}/ocsp", content=query).is_success
    assert httpx.post(f"{signer_url}/ocsp", content=b"garbage").is_success

    expected = {
        ("signet_signatures_total", (("level", "B-T"), ("outcome", "ok"))): 1,
        ("signet_signature_duration_seconds_count", (("level", "B-T"),)): 1,
        (
            "signet_signatures_total",
            (("level", "B-B"), ("outcome", "unprocessable_document")),
        ): 1,
        # one inside the B-T signature, one for POST /tsa
        ("signet_timestamps_total", (("outcome", "granted"),)): 2,
        ("signet_timestamps_total", (("outcome", "rejected"),)): 1,
        ("signet_timestamps_total", (("outcome", "failed"),)): 0,
        ("signet_certificates_issued_total", (("kind", "seal"),)): 1,
        ("signet_certificates_revoked_total", ()): 1,
        ("signet_ocsp_responses_total", (("status", "revoked"),)): 1,
        ("signet_ocsp_responses_total", (("status", "malformed_request"),)): 1,
        ("signet_ocsp_responses_total", (("status", "good"),)): 0,
        ("signet_hsm_errors_total", ()): 0,
    }
    http = {
        ("POST", "/v1/certificates", "201"): 1,
        ("POST", "/v1/sign", "200"): 1,
        ("POST", "/v1/sign", "422"): 1,
        ("POST", "/tsa", "200"): 2,  # a rejection is an RFC 3161 reply too
        ("GET", "/v1/certificates/{serial}", "200"): 1,
        ("POST", "/v1/certificates/{serial}/revoke", "200"): 1,
        ("POST", "/ocsp", "200"): 2,
    }
    for (method, route, status), count in http.items():
        labels = (("service", "signer"), ("method", method), ("route", route))
        expected["signet_http_requests_total", (*labels, ("status", status))] = count
    for (method, route), count in {
        ("POST", "/v1/sign"): 2,
        ("POST", "/tsa"): 2,
        ("POST", "/ocsp"): 2,
    }.items():
        labels = (("service", "signer"), ("method", method), ("route", route))
        expected["signet_http_request_duration_seconds_count", labels] = count

    def delta(scrape: Scrape) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            key: scrape.value(key[0], **dict(key[1])) - before.value(key[0], **dict(key[1]))
            for key in expected
        }

    after = settled(lambda: _scrape(signer_url), lambda s: delta(s) == expected)
    assert delta(after) == expected
    assert serial not in after.text and "Mei Counter" not in after.text


def test_metrics_reveal_no_secrets(
    signer_url: str, signer_client: httpx.Client, dev_token: DevToken
) -> None:
    issued = signer_client.post(
        "/v1/certificates", json={"kind": "seal", "subject": {"common_name": "Confidential Seal"}}
    )
    serial = issued.json()["serial"]
    document = "merger-agreement-project-falcon.pdf"
    signed = signer_client.post(
        "/v1/sign",
        files={"document": (document, make_pdf(), "application/pdf")},
        data={"options": json.dumps({"certificate_serial": serial, "level": "B-B"})},
    )
    assert signed.status_code == 200
    text = _scrape(signer_url).text
    assert "signet_signatures_total" in text
    port = free_port()
    with metrics.serve_metrics("127.0.0.1", port):  # what the cluster's scraper reaches
        on_metrics_port = _scrape(f"http://127.0.0.1:{port}").text
    assert "signet_signatures_total" in on_metrics_port
    for secret in (
        SERVICE_TOKEN,
        dev_token.config.pin.get_secret_value(),
        document,
        "project-falcon",
        serial,
        "Confidential Seal",
        hashlib.sha256(signed.content).hexdigest(),
    ):
        assert secret not in text
        assert secret not in on_metrics_port


def test_hsm_faults_are_counted_by_operation(
    signer_settings: SignerSettings, tmp_path: Path
) -> None:
    settings = signer_settings.model_copy(
        update={
            "home": tmp_path,
            "hsm_token_label": "unplugged-token",
            "service_token": SecretStr(SERVICE_TOKEN),
            "batch_workers": 0,
        }
    )
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {SERVICE_TOKEN}"

        def connect_errors() -> float:
            return Scrape(client.get("/metrics").text).value(
                "signet_hsm_errors_total", operation="connect"
            )

        first = connect_errors()
        assert sign_via_api(client, make_pdf(), "abc").status_code == 503
        assert connect_errors() == first + 1
        assert client.get("/readyz").status_code == 503
        assert connect_errors() == first + 2
        scrape = Scrape(client.get("/metrics").text)
        assert scrape.value("signet_http_requests_total", route="/readyz", status="503") >= 1


def test_digest_signing_faults_count_as_hsm_errors(
    signer_url: str,
    signer_client: httpx.Client,
    signer_service: SignerService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`POST /v1/digests/sign` (tree heads of the ledger) signs through the same counted
    path as every other signature: an HSM fault there is a signet_hsm_errors_total."""
    from signet.hsm import HsmUnavailable

    label = signer_service.ca.ensure_ledger_seal("metrics-ledger-seal").key.label
    request = {"key_label": label, "digest": "ab" * 32}
    assert signer_client.post("/v1/digests/sign", json=request).status_code == 200

    def sign_errors() -> float:
        return _scrape(signer_url).value("signet_hsm_errors_total", operation="sign")

    before = sign_errors()

    def unplugged(*args: object, **kwargs: object) -> bytes:
        raise HsmUnavailable("the token was removed")

    monkeypatch.setattr(signer_service.hsm, "sign_digest", unplugged)
    assert signer_client.post("/v1/digests/sign", json=request).status_code == 503
    assert sign_errors() == before + 1  # counted before the answer is sent


# -- several worker processes ------------------------------------------------------------


@dataclass(frozen=True)
class TwoWorkers:
    url: str
    #: the metrics port `signet signer serve` serves from the supervising process
    metrics_url: str
    #: the workers' shared multiprocess directory
    directory: Path


@pytest.fixture
def two_workers(
    signer_settings: SignerSettings, signer_service: SignerService, tmp_path: Path
) -> Iterator[TwoWorkers]:
    """The signer as the cluster runs it: ``signet signer serve --workers 2`` with the
    metrics port, in its own process.

    It shares the session's token, CA and database; it takes no batch work (other
    tests' batches are not its business).  The command makes its own multiprocess
    directory under TMPDIR, found there.
    """
    port, metrics_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SIGNET_") and k != metrics.MULTIPROC_ENV
    }
    assert signer_settings.hsm_pin is not None
    home, scratch = tmp_path / "home", tmp_path / "tmp"
    # The embedded layout's SoftHSM configuration, pointing at the session's token.
    (home / "softhsm").mkdir(parents=True)
    shutil.copy(os.environ["SOFTHSM2_CONF"], home / "softhsm" / "softhsm2.conf")
    scratch.mkdir()
    env |= {
        "SIGNET_HOME": str(home),
        "TMPDIR": str(scratch),
        "SIGNET_SIGNER_HOME": str(signer_settings.home),
        "SIGNET_SIGNER_HSM_MODULE": str(signer_settings.hsm_module),
        "SIGNET_SIGNER_HSM_TOKEN_LABEL": signer_settings.hsm_token_label,
        "SIGNET_SIGNER_HSM_PIN": signer_settings.hsm_pin.get_secret_value(),
        "SIGNET_SIGNER_SERVICE_TOKEN": SERVICE_TOKEN,
        "SIGNET_SIGNER_BATCH_WORKERS": "0",
    }
    command = [sys.executable, "-m", "signet.cli", "signer", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "2", "--metrics-port", str(metrics_port)]
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, process, log)
            (directory,) = scratch.glob("signet-metrics-signer-*")
            yield TwoWorkers(url, f"http://127.0.0.1:{metrics_port}", directory)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    assert not directory.exists()  # removed once the workers are gone


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"two-worker signer not ready:\n{log.read_text()}")


def _served_per_worker(directory: Path, work: Path) -> dict[str, float]:
    """``POST /tsa`` requests each worker recorded, read from its own files alone."""
    files: dict[str, list[Path]] = defaultdict(list)
    for path in directory.glob("*.db"):
        files[path.stem.rsplit("_", 1)[1]].append(path)
    served = {}
    for pid, paths in files.items():
        own = work / pid
        shutil.rmtree(own, ignore_errors=True)
        own.mkdir()
        for path in paths:
            shutil.copy(path, own / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(own))  # type: ignore[no-untyped-call]
        labels = {"service": "signer", "method": "POST", "route": "/tsa", "status": "200"}
        served[pid] = registry.get_sample_value("signet_http_requests_total", labels) or 0.0
    return served


@pytest.mark.slow
def test_two_workers_add_up(two_workers: TwoWorkers, tmp_path: Path) -> None:
    url, directory = two_workers.url, two_workers.directory
    headers = {"content-type": "application/timestamp-query"}

    def stamp(index: int) -> None:
        # a new connection each time, so the kernel hands requests to either worker
        response = httpx.post(
            f"{url}/tsa", content=_timestamp_query(index.to_bytes(4)), headers=headers
        )
        assert response.status_code == 200

    sent = 0
    with ThreadPoolExecutor(8) as pool:
        for _ in range(20):  # until both workers have served some
            list(pool.map(stamp, range(sent, sent + 50)))
            sent += 50
            busy = [n for n in _served_per_worker(directory, tmp_path).values() if n > 0]
            if len(busy) == 2:
                break
    served = _served_per_worker(directory, tmp_path)
    assert len([n for n in served.values() if n > 0]) == 2, served

    def counted(scrape: Scrape) -> tuple[float, float]:
        requests = scrape.value("signet_http_requests_total", route="/tsa", status="200")
        return requests, scrape.value("signet_timestamps_total", outcome="granted")

    # Every scrape, whichever worker answers it, shows the sum over both.
    for _ in range(6):
        scrape = settled(lambda: _scrape(url), lambda s: counted(s) == (sent, sent))
        assert counted(scrape) == (sent, sent)
    assert sum(_served_per_worker(directory, tmp_path).values()) == sent
    # The metrics port is served by the process supervising the workers (`signet signer
    # serve --metrics-port`), which shares their directory and answers with the same sum.
    assert counted(_scrape(two_workers.metrics_url)) == (sent, sent)
    assert httpx.get(f"{two_workers.metrics_url}/readyz", timeout=5).status_code == 404
