"""The CA hierarchy's keys sign only as the CA: every key's purpose is recorded and enforced.

Each attack here worked before purposes existed: certify the issuing CA's key as a seal,
then have `/v1/digests/sign` sign a certificate body the caller built; the same with
the root and TSA keys; re-certify the ledger seal under another name.
"""

from __future__ import annotations

import base64
import hashlib
import json

import httpx
import pytest
from asn1crypto import x509 as asn1_x509
from signet.common.contracts.signer import LEDGER_SEAL_EKU, KeyPurpose
from signet.signer.pki.ca import ISSUING_LABEL, ROOT_LABEL, TSA_LABEL
from signet.signer.pki.purposes import KeyPurposeMismatch
from signet.signer.service import SignerService

from tests.signer.conftest import sign_via_api
from tests.support.pdfs import make_pdf

LEDGER = "test-ledger-seal"
CA_LABELS = [ROOT_LABEL, ISSUING_LABEL, TSA_LABEL]


@pytest.fixture(scope="module")
def ledger_seal(signer_service: SignerService) -> str:
    return signer_service.ca.ensure_ledger_seal(LEDGER).record.serial


def _seal_request(label: str) -> dict[str, object]:
    return {"kind": "seal", "key_label": label, "subject": {"common_name": "Forged CEO"}}


@pytest.mark.parametrize("label", [*CA_LABELS, LEDGER])
@pytest.mark.parametrize("kind", ["seal", "person"])
def test_a_ca_tsa_or_ledger_key_is_never_certified_as_anything_else(
    signer_client: httpx.Client, ledger_seal: str, label: str, kind: str
) -> None:
    answer = signer_client.post(
        "/v1/certificates",
        json={"kind": kind, "key_label": label, "subject": {"common_name": "Forged CEO"}},
    )
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"] == "key_purpose"
    assert label in answer.json()["detail"]


@pytest.mark.parametrize("label", CA_LABELS)
def test_no_raw_digest_is_signed_with_a_ca_or_tsa_key(
    signer_client: httpx.Client, label: str
) -> None:
    digest = hashlib.sha256(b"tbsCertificate: Forged Chief Executive Officer").hexdigest()
    answer = signer_client.post("/v1/digests/sign", json={"key_label": label, "digest": digest})
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"] == "key_purpose"


def test_a_seal_or_person_key_signs_no_raw_digest(
    signer_client: httpx.Client, signer_service: SignerService
) -> None:
    seal = signer_service.ca.ensure_seal("purpose-seal", "Purpose Seal")
    answer = signer_client.post(
        "/v1/digests/sign", json={"key_label": seal.key.label, "digest": "ab" * 32}
    )
    assert answer.status_code == 403 and answer.json()["error"] == "key_purpose"


def test_the_ledger_seal_signs_digests_and_carries_its_own_usage(
    signer_client: httpx.Client, signer_service: SignerService, ledger_seal: str
) -> None:
    answer = signer_client.post("/v1/digests/sign", json={"key_label": LEDGER, "digest": "ab" * 32})
    assert answer.status_code == 200, answer.text
    assert answer.json()["certificate_serial"] == ledger_seal
    record = signer_service.registry.get(ledger_seal)
    assert record is not None
    cert = asn1_x509.Certificate.load(record.der)
    usages = [u.dotted for u in cert.extended_key_usage_value]
    assert usages == [LEDGER_SEAL_EKU]  # and not document signing
    assert signer_service.ca.purposes.of(LEDGER) is KeyPurpose.LEDGER_SEAL
    assert base64.b64decode(answer.json()["signature"])


def test_the_ledger_seal_never_signs_a_document(
    signer_client: httpx.Client, ledger_seal: str
) -> None:
    answer = sign_via_api(signer_client, make_pdf(), ledger_seal)
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"] == "key_purpose"
    by_label = signer_client.post(
        "/v1/sign",
        files={"document": ("doc.pdf", make_pdf(), "application/pdf")},
        data={"options": json.dumps({"key_label": LEDGER})},
    )
    assert by_label.status_code == 403, by_label.text


def test_every_key_the_ca_makes_has_its_purpose(
    signer_client: httpx.Client, signer_service: SignerService
) -> None:
    purposes = signer_service.ca.purposes
    assert [purposes.of(label) for label in CA_LABELS] == [
        KeyPurpose.ROOT,
        KeyPurpose.ISSUING,
        KeyPurpose.TSA,
    ]
    answer = signer_client.post(
        "/v1/certificates", json={"kind": "person", "subject": {"common_name": "Li Wei"}}
    )
    assert answer.status_code == 201, answer.text
    assert purposes.of(answer.json()["key_label"]) is KeyPurpose.PERSON
    # a person's key is not a seal
    again = signer_client.post("/v1/certificates", json=_seal_request(answer.json()["key_label"]))
    assert again.status_code == 403


def test_a_label_claimed_once_keeps_its_purpose(signer_service: SignerService) -> None:
    purposes = signer_service.ca.purposes
    purposes.claim("claimed-once", KeyPurpose.SEAL)
    purposes.claim("claimed-once", KeyPurpose.SEAL)  # idempotent
    with pytest.raises(KeyPurposeMismatch, match="seal key"):
        purposes.claim("claimed-once", KeyPurpose.PERSON)
    assert purposes.of("claimed-once") is KeyPurpose.SEAL
