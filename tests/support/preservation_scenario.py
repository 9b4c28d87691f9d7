"""A signer of its own with a TSA certificate valid an hour, in a process of its own.

Run as ``python -m tests.support.preservation_scenario DIR``: a fresh SoftHSM token
(the PKCS#11 module reads its configuration once per process, so a second CA cannot
share the test session's), the ceremony with ``tsa_validity_s=3600``, a seal, one PDF
sealed at B-LTA, the TSA rolled over (the new certificate valid 30 days), the document
renewed by storage's preservation job (a filesystem vault and ledger, the signer served
on loopback for the tree heads and manifests), which also supersedes the envelope's
sealed evidence package.  It writes ``original.pdf``, ``renewed.pdf``, ``root.der``,
``old-package.zip`` and ``new-package.zip`` (sealed before and after), and ``facts.json``
(both TSA certificates' serials and expiries, the renewed document's timestamps' TSAs)
for the test to validate in its own process, at a moment after the first TSA certificate
expired (tests/signer/test_tsa_rollover.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import sys
from datetime import timedelta
from pathlib import Path

from asn1crypto import cms, ocsp
from freezegun import freeze_time
from pydantic import SecretStr
from pyhanko.pdf_utils.reader import PdfFileReader
from signet.common.contracts.signer import SignatureLevel, SignOptions
from signet.common.contracts.storage import LedgerEventIn, ObjectKind
from signet.hsm.softhsm import ensure_dev_token
from signet.signer.config import SignerSettings
from signet.signer.pades.renewal import renew_pdf
from signet.signer.pki.rotation import tsa_records
from signet.signer.service import SignerService
from signet.storage.evidence import seal_package, sealed
from signet.storage.evidence_seal import supersede_package
from signet.storage.fs_vault import FilesystemVault
from signet.storage.ledger import Ledger
from signet.storage.preservation import PreservationJob
from signet.storage.signer_client import SignerClient

from tests.support.pdfs import make_pdf
from tests.support.signer_server import served

SEAL = "scenario-seal"
LEDGER_KEY = "scenario-ledger-seal"
ENVELOPE = "env-future"
TOKEN = secrets.token_urlsafe(24)


def timestamp_serials(pdf: bytes) -> list[str]:
    """The TSA certificate serial (hex) of every document timestamp, in order."""
    reader = PdfFileReader(io.BytesIO(pdf))
    serials = []
    for embedded in reader.embedded_timestamp_signatures:
        signed_data: cms.SignedData = embedded.signed_data
        sid = signed_data["signer_infos"][0]["sid"].chosen
        serials.append(format(sid["serial_number"].native, "x"))
    return serials


def _ocsp_request(service: SignerService, serial: int) -> bytes:
    issuer = service.ca.issuing.certificate
    cert_id = {
        "hash_algorithm": {"algorithm": "sha256"},
        "issuer_name_hash": hashlib.sha256(issuer.subject.dump()).digest(),
        "issuer_key_hash": hashlib.sha256(issuer.public_key["public_key"].contents[1:]).digest(),
        "serial_number": serial,
    }
    request = ocsp.OCSPRequest({"tbs_request": {"request_list": [{"req_cert": cert_id}]}})
    return bytes(request.dump())


def main(directory: Path) -> None:
    token = ensure_dev_token(directory / "softhsm", label="scenario")
    settings = SignerSettings(
        home=directory / "signer",
        hsm_module=token.config.module_path,
        hsm_token_label=token.config.token_label,
        hsm_pin=token.config.pin,
        public_url="http://127.0.0.1:9",
        service_token=SecretStr(TOKEN),
        time_trust="trusted-host",
        tsa_validity_s=3600,
    )
    service = SignerService(settings)
    root, _, first_tsa = service.ca.ceremony()
    service.ca.ensure_seal(SEAL, "Scenario Seal")
    service.ca.ensure_ledger_seal(LEDGER_KEY)
    output = io.BytesIO()
    options = SignOptions(key_label=SEAL, level=SignatureLevel.B_LTA)
    service.sign_document(io.BytesIO(make_pdf()), output, options)
    original = output.getvalue()
    with served(service) as url:
        signer = SignerClient(url, TOKEN, key_label=LEDGER_KEY)
        vault = FilesystemVault(directory / "vault", retention_years=5)
        ledger = Ledger(vault)
        info, _ = vault.put(
            io.BytesIO(original), content_type="application/pdf", kind=ObjectKind.FINAL,
            envelope_id=ENVELOPE,
        )  # fmt: skip
        ledger.append_sync(
            LedgerEventIn(
                event_type="envelope.completed",
                envelope_id=ENVELOPE,
                actor="signet",
                document_hashes=[info.sha256],
            )
        )
        pki = signer.pki()
        old, _ = seal_package(ENVELOPE, vault=vault, ledger=ledger, signer=signer, pki=pki)
        second_tsa = service.rotate_tsa(timedelta(days=30))
        job = PreservationJob(
            vault,
            ledger,
            renew=lambda pdf: renew_pdf(service.engine, pdf),
            current_tsa=lambda: service.ca.tsa.certificate,
            reseal=lambda envelope: (
                supersede_package(
                    envelope, vault=vault, ledger=ledger, signer=signer, pki=signer.pki()
                )
                is not None
            ),
        )
        report = job.run()
        assert report.renewed == 1 and report.packages_renewed == [ENVELOPE], report
        renewed = b"".join(vault.open(report.renewals[0][1]))
        new = sealed(vault, ENVELOPE)
        assert new is not None
        for name, sha256 in (("old", old.package_sha256), ("new", new["package_sha256"])):
            (directory / f"{name}-package.zip").write_bytes(b"".join(vault.open(sha256)))
        ledger.close()
        signer.close()
    (directory / "original.pdf").write_bytes(original)
    (directory / "renewed.pdf").write_bytes(renewed)
    (directory / "root.der").write_bytes(root.certificate.dump())
    facts = {
        "first_tsa": {
            "serial": first_tsa.record.serial,
            "not_after": first_tsa.record.not_after.isoformat(),
            "label": first_tsa.key.label,
        },
        "second_tsa": {
            "serial": second_tsa.record.serial,
            "not_after": second_tsa.record.not_after.isoformat(),
            "label": second_tsa.key.label,
        },
        "registry_tsa_serials": [r.serial for r in tsa_records(service.registry)],
        "current_tsa_serial": service.ca.tsa.record.serial,
        "original_timestamps": timestamp_serials(original),
        "renewed_timestamps": timestamp_serials(renewed),
        "stamper_serial": format(service.tsa.identity.certificate.serial_number, "x"),
    }
    (directory / "facts.json").write_text(json.dumps(facts, indent=2))
    # What a validator fetches when it validates, ten minutes after the first TSA
    # certificate expired: the root's CRL and an OCSP answer for the current TSA
    # certificate, made then (the HSM signs whatever the clock says).
    with freeze_time(first_tsa.record.not_after + timedelta(minutes=9)):
        service.ca._crls.clear()
        (directory / "future-root.crl").write_bytes(service.ca.crl("root"))
        request = _ocsp_request(service, second_tsa.certificate.serial_number)
        (directory / "future-tsa.ocsp").write_bytes(service.ocsp.respond(request))
    service.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
