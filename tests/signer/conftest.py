"""Signer fixtures: certificates to sign with, and the independent validators' set-up."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from signet.common.contracts.signer import CertificateKind, IssueCertificateRequest
from signet.signer.batch.worker import BatchWorker
from signet.signer.service import SignerService

from tests.support.activation import ACTIVATED_KINDS, kind_of, try_activate
from tests.support.postgres import PostgresServer, start_postgres


@pytest.fixture
def issue(signer_service: SignerService) -> Callable[..., str]:
    """Issue a certificate for a named person (or seal/event); returns its serial."""

    def _issue(
        name: str = "Li Wei", kind: CertificateKind = CertificateKind.PERSON, **extra: object
    ) -> str:
        request = IssueCertificateRequest.model_validate(
            {"kind": kind, "subject": {"common_name": name, "email": "li.wei@example.com"}, **extra}
        )
        return signer_service.ca.issue(request).record.serial

    return _issue


@pytest.fixture(scope="session")
def nssdb(ca_files: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An NSS database trusting only our root, for pdfsig."""
    directory = tmp_path_factory.mktemp("nss")
    subprocess.run(["certutil", "-N", "-d", f"sql:{directory}", "--empty-password"], check=True)
    subprocess.run(
        [
            "certutil",
            "-A",
            "-d",
            f"sql:{directory}",
            "-n",
            "signet-root",
            "-t",
            "CT,C,C",
            "-i",
            str(ca_files / "root.pem"),
        ],
        check=True,
    )
    return f"sql:{directory}"


def sign_via_api(
    client: httpx.Client,
    pdf: bytes,
    serial: str,
    *,
    image: bytes | None = None,
    activate: bool = True,
    **options: object,
) -> httpx.Response:
    """POST /v1/sign; a person's or event key is activated first (the code read from
    the signer's outbox) unless `activate` is False or `options` carry an activation.
    `client` must be the admin's (it enrols and reads the outbox)."""
    if activate and "activation" not in options and kind_of(client, serial) in ACTIVATED_KINDS:
        proof = try_activate(client, serial, pdf)
        if proof is not None:
            options["activation"] = proof
    files: dict[str, tuple[str, bytes, str]] = {"document": ("doc.pdf", pdf, "application/pdf")}
    if image is not None:
        files["image"] = ("sig.png", image, "image/png")
    return client.post(
        "/v1/sign",
        files=files,
        data={"options": json.dumps({"certificate_serial": serial, **options})},
    )


def pdfsig(path: Path, nssdb: str, *, ocsp: bool = True) -> str:
    """poppler's validator; OCSP is live against our responder (the URL in the certificate)."""
    flags = [] if ocsp else ["-no-ocsp"]
    result = subprocess.run(
        ["pdfsig", *flags, "-nssdir", nssdb, str(path)], capture_output=True, text=True, timeout=60
    )
    return result.stdout + result.stderr


def pdfsig_by_field(out: str) -> dict[str, list[str]]:
    """pdfsig's report split per signature entry, grouped by field name: poppler lists a
    field with several widgets once per widget (each carries the field's /V)."""
    fields: dict[str, list[str]] = {}
    for block in re.split(r"^Signature #\d+:$", out, flags=re.MULTILINE)[1:]:
        name = re.search(r"Signature Field Name: (.*)$", block, re.MULTILINE)
        fields.setdefault(name.group(1).strip() if name else "?", []).append(block)
    return fields


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the module's own (the postgres tier's tests ask for it)."""
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture
def batch_worker(signer_service: SignerService) -> Iterator[BatchWorker]:
    """One worker thread beside the live test server (which runs without lifespan)."""
    worker = BatchWorker(signer_service, signer_service.batches, idle_poll=0.05)
    worker.start()
    yield worker
    worker.stop()
