"""Readiness with and without an HSM, and the `signet` command line end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from pydantic import SecretStr
from signet.signer.app import create_app
from signet.signer.config import SignerSettings
from signet.signer.service import SignerService

from tests.conftest import SERVICE_TOKEN
from tests.signer.conftest import sign_via_api
from tests.support.pdfs import make_pdf


def test_ready_when_hsm_answers(signer_url: str, signer_service: SignerService) -> None:
    assert httpx.get(f"{signer_url}/healthz").json() == {"status": "ok"}
    seal = signer_service.ca.ensure_seal("readiness-seal", "Readiness Seal")
    ready = httpx.get(f"{signer_url}/readyz")
    assert ready.status_code == 200 and ready.json()["hsm"] == "reachable"
    # What the operator turns into CertificatesValid: the CA's own certificates.
    reported = {c["name"]: c for c in ready.json()["certificates"]}
    assert {"root", "issuing", "tsa", "seal readiness-seal"} <= set(reported)
    assert reported["seal readiness-seal"]["serial"] == seal.record.serial
    assert not any(name.startswith(("person", "event")) for name in reported)
    assert reported["tsa"]["serial"] == signer_service.ca.tsa.record.serial
    assert "signet ca rotate-tsa" in reported["tsa"]["step"]  # named when the rollover is due
    assert reported["tsa"]["rollover_due"] < reported["tsa"]["not_after"]
    from signet.common.contracts.appliance import ApplianceSpec
    from signet.operator.conditions import Readiness, conditions

    spec = ApplianceSpec.model_validate(
        {
            "publicUrl": "https://sign.example.com",
            "hsm": {"softhsm": True},
            "objectStore": {
                "endpoint": "minio:9000",
                "accessKey": {"name": "s3", "key": "a"},
                "secretKey": {"name": "s3", "key": "s"},
            },
            "database": {"url": {"name": "db", "key": "url"}},
        }
    )
    found = {c["type"]: c for c in conditions(spec, {"signer": Readiness(200, ready.json())})}
    assert found["CertificatesValid"]["status"] == "True"
    assert found["CertificatesValid"]["message"].startswith("next expiry: ")
    # The batch directory is this database's store (initialised, or adopted with the
    # batches earlier tests left): reported, and the operator's condition is True.
    assert ready.json()["batch_store"] == "ready"
    assert "batch_directory" not in ready.json() and "batch_store_id" not in ready.json()
    assert found["BatchStoreReady"]["status"] == "True"
    # The test signer trusts this host's clock (tests/conftest.py): said so, not "True".
    assert ready.json()["time"] == "trusted-host"
    assert found["TimeSynchronized"]["status"] == "Unknown"
    assert found["TimeSynchronized"]["reason"] == "TrustedHost"


def test_unreachable_hsm_gives_503_with_a_reason(
    signer_settings: SignerSettings, tmp_path: Path
) -> None:
    settings = signer_settings.model_copy(
        update={
            "home": tmp_path,
            "hsm_token_label": "unplugged-token",
            "service_token": SecretStr(SERVICE_TOKEN),
        }
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "unplugged-token" in ready.json()["reason"]
        assert ready.json()["error"] == "hsm_unavailable"  # the operator's condition reason
        client.headers["Authorization"] = f"Bearer {SERVICE_TOKEN}"
        response = sign_via_api(client, make_pdf(), "abc")  # type: ignore[arg-type]
        assert response.status_code == 503
        assert response.json()["error"] == "hsm_unavailable"


def _signet(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    env["SIGNET_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "signet.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_ceremony_sign_verify(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = _signet(home, "ca", "init")
    assert first.returncode == 0, first.stderr
    assert "root" in first.stdout and "created" in first.stdout
    again = _signet(home, "ca", "init")
    assert again.returncode == 0 and "nothing changed" in again.stdout
    keys = _signet(home, "hsm", "keys")
    assert "signet-root-ca" in keys.stdout and "False" in keys.stdout  # not extractable

    document = tmp_path / "contract.pdf"
    document.write_bytes(make_pdf(3))
    signed = tmp_path / "signed.pdf"
    result = _signet(home, "sign", str(document), "--out", str(signed), "--level", "B-LT")
    assert result.returncode == 0, result.stderr
    assert _signet(home, "verify", str(signed)).returncode == 0
    root = home / "signer" / "ca" / "root.pem"
    assert _signet(home, "verify", str(signed), "--root", str(root)).returncode == 0
    assert _signet(home, "verify", str(document)).returncode == 1  # unsigned

    tampered = bytearray(signed.read_bytes())
    tampered[tampered.index(b"Clause 2.1")] = ord("X")
    (tmp_path / "tampered.pdf").write_bytes(bytes(tampered))
    bad = _signet(home, "verify", str(tmp_path / "tampered.pdf"), "--json")
    assert bad.returncode == 1 and '"intact": false' in bad.stdout

    other_home = tmp_path / "other"
    assert _signet(other_home, "ca", "init").returncode == 0
    # A second installation does not trust the first one's signatures.
    assert _signet(other_home, "verify", str(signed)).returncode == 1


def test_up_serves_and_stops_its_services_on_sigterm(tmp_path: Path) -> None:
    """`signet up` under a service manager: SIGTERM must not orphan the signer workers."""
    import signal
    import time

    import psutil

    from tests.conftest import free_port_run

    port = (
        free_port_run()
    )  # signet up refuses a taken port: storage's is port + 1, the portal's port + 2
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    env["SIGNET_HOME"] = str(tmp_path / "home")
    up = subprocess.Popen(
        [sys.executable, "-m", "signet.cli", "up", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert up.stdout is not None
    printed = []
    for line in up.stdout:
        printed.append(line)
        if line.startswith("Ctrl-C"):
            break
    text = "".join(printed)
    assert "Signet is up" in text and "signer admin token" in text
    token = text.split("signer admin token")[1].split()[0]
    assert token == (tmp_path / "home" / "service-token").read_text().strip()
    assert token not in "".join(p for p in printed if not p.startswith("signer admin token"))
    assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    storage = httpx.get(f"http://127.0.0.1:{port + 1}/readyz").json()
    assert storage["status"] == "ready" and storage["vault"] == "filesystem"
    assert "storage API" in text
    children = psutil.Process(up.pid).children(recursive=True)
    assert len(children) >= 3  # uvicorn's supervisor and two workers

    up.send_signal(signal.SIGTERM)
    up.wait(timeout=30)
    _gone, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, f"orphaned: {[p.pid for p in alive]}"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        except httpx.TransportError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the signer still answers after signet up was stopped")


def test_cli_enrol_binds_a_person_key_and_refuses_the_rest(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert _signet(home, "ca", "init").returncode == 0
    issued = _signet(home, "ca", "issue", "--name", "Li Wei")
    assert issued.returncode == 0, issued.stderr
    serial = issued.stdout.split()[1]
    first = _signet(home, "enrol", "--serial", serial, "--email", "li.wei@example.com")
    assert first.returncode == 0, first.stderr
    assert "li.wei@example.com" in first.stdout
    second = _signet(home, "enrol", "--serial", serial, "--mobile", "+8613800000000")
    assert second.returncode == 0, second.stderr
    assert "replaces li.wei@example.com" in second.stdout
    both = _signet(home, "enrol", "--serial", serial, "--email", "a@b.c", "--mobile", "+1555")
    assert both.returncode == 2 and "exactly one" in both.stderr
    bad = _signet(home, "enrol", "--serial", serial, "--mobile", "0123")
    assert bad.returncode == 2 and "E.164" in bad.stderr
    unknown = _signet(home, "enrol", "--serial", "abcdef", "--email", "x@example.com")
    assert unknown.returncode == 2 and "no certificate" in unknown.stderr
