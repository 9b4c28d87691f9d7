"""Fixtures shared by every component's tests.

One SoftHSM2 token per test session, in a temp dir with its own
SOFTHSM2_CONF (set before the PKCS#11 module is first loaded), and a real
signer service: in-process objects for unit tests and a live uvicorn server
on a free loopback port for the independent validators (openssl, pdfsig),
which reach our TSA, CRL and OCSP over HTTP exactly as they would in production.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from signet.common.auth import CALLER_SCOPES, CallerEntry, token_hash
from signet.hsm import Hsm
from signet.hsm.softhsm import DevToken, ensure_dev_token
from signet.signer.app import create_app
from signet.signer.config import SignerSettings
from signet.signer.service import SignerService

#: The admin's token (given as the legacy `service_token`, which is the admin caller).
SERVICE_TOKEN = "test-service-token-0123456789"
#: Storage's and the portal's own tokens, registered (hashed) with the test signer.
STORAGE_TOKEN = "test-storage-token-0123456789"
PORTAL_TOKEN = "test-portal-token-0123456789"


def caller_entries(*callers: tuple[str, str]) -> list[CallerEntry]:
    """Registry entries for (caller, token) pairs with each caller's least privilege."""
    return [
        CallerEntry(caller=name, sha256=token_hash(token), scopes=CALLER_SCOPES[name])
        for name, token in callers
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_run(count: int = 3) -> int:
    """A free port whose next `count` - 1 are free too (`signet up`: signer, storage,
    portal on three ports in a row)."""
    for _ in range(100):
        port = free_port()
        taken = []
        try:
            for offset in range(1, count):
                other = socket.socket()
                taken.append(other)
                other.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        finally:
            for other in taken:
                other.close()
        return port
    raise RuntimeError(f"no {count} free neighbouring ports")


@pytest.fixture(scope="session")
def dev_token(tmp_path_factory: pytest.TempPathFactory) -> DevToken:
    return ensure_dev_token(tmp_path_factory.mktemp("softhsm"), label="signet-test")


@pytest.fixture(scope="session")
def hsm(dev_token: DevToken) -> Iterator[Hsm]:
    token = Hsm(dev_token.config)
    yield token
    token.close()


@pytest.fixture(scope="session")
def signer_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def signer_settings(
    tmp_path_factory: pytest.TempPathFactory, dev_token: DevToken, signer_port: int
) -> SignerSettings:
    return SignerSettings(
        home=tmp_path_factory.mktemp("signer"),
        hsm_module=dev_token.config.module_path,
        hsm_token_label=dev_token.config.token_label,
        hsm_pin=dev_token.config.pin,
        service_token=SecretStr(SERVICE_TOKEN),
        callers=caller_entries(("storage", STORAGE_TOKEN), ("portal", PORTAL_TOKEN)),
        public_url=f"http://127.0.0.1:{signer_port}",
        max_document_bytes=64 * 1024 * 1024,
        # This machine's clock is whatever the test host's is (a container's is often
        # unsynchronised): the kernel mode is tested with injected readers
        # (tests/signer/pki/test_tsa_time.py).
        time_trust="trusted-host",
    )


@pytest.fixture(scope="session")
def signer_service(signer_settings: SignerSettings) -> Iterator[SignerService]:
    service = SignerService(signer_settings)
    service.ca.ceremony()
    yield service
    service.close()


@pytest.fixture(scope="session")
def signer_url(signer_service: SignerService, signer_port: int) -> Iterator[str]:
    """A live signer on loopback, sharing the in-process `signer_service`."""
    app = create_app(service=signer_service)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=signer_port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("signer server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{signer_port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def signer_client(signer_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=signer_url, timeout=60, headers={"Authorization": f"Bearer {SERVICE_TOKEN}"}
    ) as client:
        yield client


@pytest.fixture(scope="session")
def ca_files(signer_service: SignerService, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root.pem, issuing.pem, tsa.pem and chain.pem (root + issuing) for openssl."""
    from asn1crypto import pem

    directory = tmp_path_factory.mktemp("ca")
    ca = signer_service.ca
    for name, cert in (
        ("root", ca.root.certificate),
        ("issuing", ca.issuing.certificate),
        ("tsa", ca.tsa.certificate),
    ):
        (directory / f"{name}.pem").write_bytes(pem.armor("CERTIFICATE", cert.dump()))
    (directory / "chain.pem").write_bytes(
        (directory / "root.pem").read_bytes() + (directory / "issuing.pem").read_bytes()
    )
    return directory
