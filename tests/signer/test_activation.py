"""Signature activation end to end, through the live signer over HTTP.

Each refusal is asked for the way a hostile or careless portal would ask, and its
error code is checked: a test that passes has seen the signer say no for that reason.
The code is always read from the signer's outbox (the embedded default's delivery).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from signet.common.contracts.signer import CertificateKind
from signet.hsm.errors import KeyNotFound
from signet.signer.service import SignerService

from tests.conftest import PORTAL_TOKEN, STORAGE_TOKEN
from tests.signer.conftest import sign_via_api
from tests.support.activation import code_from_outbox, enrol, request_activation
from tests.support.pdfs import make_pdf

MAIL = {"channel": "email", "address": "li.wei@example.com"}


def _client(url: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, timeout=60, headers=headers)


@pytest.fixture
def portal(signer_url: str) -> Iterator[httpx.Client]:
    with _client(signer_url, PORTAL_TOKEN) as client:
        yield client


@pytest.fixture
def storage(signer_url: str) -> Iterator[httpx.Client]:
    with _client(signer_url, STORAGE_TOKEN) as client:
        yield client


@pytest.fixture
def anonymous(signer_url: str) -> Iterator[httpx.Client]:
    with _client(signer_url, None) as client:
        yield client


def _sha(pdf: bytes) -> str:
    return hashlib.sha256(pdf).hexdigest()


def _proof(admin: httpx.Client, serial: str, *pdfs: bytes) -> dict[str, str]:
    challenge = request_activation(admin, serial, *pdfs)
    return {
        "activation_id": challenge["activation_id"],
        "code": code_from_outbox(admin, challenge["activation_id"]),
    }


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def _refused(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    body: dict[str, str] = response.json()
    assert body["error"] == code, body
    return body


def _event(admin: httpx.Client, contact: dict[str, str] | None = None) -> str:
    issued = admin.post(
        "/v1/certificates",
        json={
            "kind": "event",
            "subject": {"common_name": "Guest Signer", "email": "g@example.org"},
            "identity_verification": {
                "method": "email-otp",
                "reference": "env-9/rcpt-1",
                "verified_at": "2026-11-25T08:00:00Z",
            },
            "contact": contact or {"channel": "email", "address": "guest@example.org"},
        },
    )
    assert issued.status_code == 201, issued.text
    serial: str = issued.json()["serial"]
    return serial


def _person(issue: Callable[..., str], admin: httpx.Client) -> str:
    serial = issue("Li Wei")
    enrol(admin, serial, MAIL)
    return serial


# -- the whole path ----------------------------------------------------------------------


def test_person_key_enrol_activate_sign_and_record(
    signer_client: httpx.Client, portal: httpx.Client, issue: Callable[..., str]
) -> None:
    serial = issue("Li Wei")
    enrolled = signer_client.post(
        "/v1/enrolments", json={"certificate_serial": serial, "contact": MAIL}
    )
    assert enrolled.status_code == 201, enrolled.text
    assert enrolled.json()["contact"] == MAIL
    assert signer_client.get(f"/v1/enrolments/{serial}").json()["enrolled_by"]
    pdf = make_pdf(title="Person path")
    # the portal asks; its answer never holds the code
    challenge = request_activation(portal, serial, pdf)
    assert challenge["to"] != MAIL["address"] and challenge["to"].endswith("@example.com")
    assert challenge["attempts_left"] == 5
    assert "code" not in challenge
    code = code_from_outbox(signer_client, challenge["activation_id"])
    assert code not in str(challenge)
    proof = {"activation_id": challenge["activation_id"], "code": code}
    signed = sign_via_api(signer_client, pdf, serial, activation=proof)
    assert signed.status_code == 200, signed.text
    assert signed.content.startswith(b"%PDF")
    record = portal.get(f"/v1/activations/{challenge['activation_id']}")
    assert record.status_code == 200, record.text
    body = record.json()
    assert body["method"] == "email-otp"
    assert body["channel"] == "email"
    assert body["to"] == challenge["to"]
    assert body["document_sha256"] == [_sha(pdf)]
    assert body["verified_at"] is not None
    assert datetime.fromisoformat(body["issued_at"]) <= datetime.fromisoformat(body["verified_at"])
    assert code not in record.text


def test_event_key_signs_its_documents_then_is_destroyed(
    signer_client: httpx.Client, signer_service: SignerService
) -> None:
    serial = _event(signer_client, {"channel": "sms", "address": "+8613800001234"})
    first, second = make_pdf(title="Event one"), make_pdf(title="Event two")
    proof = _proof(signer_client, serial, first, second)
    record = signer_service.registry.get(serial)
    assert record is not None
    signer_service.hsm.find_key(record.key_label)  # present while a digest is unsigned
    assert sign_via_api(signer_client, first, serial, activation=proof).status_code == 200
    assert signer_client.get(f"/v1/certificates/{serial}").json()["key_destroyed"] is False
    assert sign_via_api(signer_client, second, serial, activation=proof).status_code == 200
    info = signer_client.get(f"/v1/certificates/{serial}").json()
    assert info["key_destroyed"] is True
    with pytest.raises(KeyNotFound):
        signer_service.hsm.find_key(record.key_label)
    activation = signer_client.get(f"/v1/activations/{proof['activation_id']}").json()
    assert activation["method"] == "sms-otp"
    assert activation["to"].startswith("+86") and "1234" in activation["to"]
    assert "800001" not in activation["to"]


# -- refusals ----------------------------------------------------------------------------


def test_no_activation_is_refused(signer_client: httpx.Client, issue: Callable[..., str]) -> None:
    serial = _person(issue, signer_client)
    response = sign_via_api(signer_client, make_pdf(), serial, activate=False)
    _refused(response, 403, "activation_required")


def test_forged_and_foreign_activations_are_invalid(
    signer_client: httpx.Client, issue: Callable[..., str]
) -> None:
    serial, other = _person(issue, signer_client), _person(issue, signer_client)
    pdf = make_pdf(title="Forged")
    forged = {"activation_id": "a" * 32, "code": "123456"}
    _refused(sign_via_api(signer_client, pdf, serial, activation=forged), 403, "activation_invalid")
    foreign = _proof(signer_client, other, pdf)
    _refused(
        sign_via_api(signer_client, pdf, serial, activation=foreign), 403, "activation_invalid"
    )
    # the other key's activation is still good for its own key
    assert sign_via_api(signer_client, pdf, other, activation=foreign).status_code == 200


def test_wrong_codes_count_down_then_lock(
    signer_client: httpx.Client, issue: Callable[..., str]
) -> None:
    serial = _person(issue, signer_client)
    pdf = make_pdf(title="Wrong code")
    proof = _proof(signer_client, serial, pdf)
    bad = {**proof, "code": _wrong(proof["code"])}
    for left in (4, 3, 2, 1):
        body = _refused(
            sign_via_api(signer_client, pdf, serial, activation=bad), 403, "activation_code_wrong"
        )
        assert str(left) in body["detail"], body
    _refused(sign_via_api(signer_client, pdf, serial, activation=bad), 403, "activation_locked")
    # even the right code is refused now
    _refused(sign_via_api(signer_client, pdf, serial, activation=proof), 403, "activation_locked")


def test_an_expired_code_is_refused_and_its_event_key_swept(
    signer_client: httpx.Client, signer_service: SignerService, issue: Callable[..., str]
) -> None:
    service = signer_service.activations
    real = service.clock
    person = _person(issue, signer_client)
    event = _event(signer_client)
    pdf = make_pdf(title="Expired")
    person_proof = _proof(signer_client, person, pdf)
    event_proof = _proof(signer_client, event, pdf)
    record = signer_service.registry.get(event)
    assert record is not None
    try:
        service.clock = lambda: real() + timedelta(minutes=5, seconds=1)
        # within the grace the event key still exists, and the code is refused
        _refused(
            sign_via_api(signer_client, pdf, person, activation=person_proof),
            403,
            "activation_expired",
        )
        signer_service.hsm.find_key(record.key_label)
        service.clock = lambda: real() + timedelta(minutes=7)
        service.sweep()
    finally:
        service.clock = real
    assert signer_client.get(f"/v1/certificates/{event}").json()["key_destroyed"] is True
    with pytest.raises(KeyNotFound):
        signer_service.hsm.find_key(record.key_label)
    response = sign_via_api(signer_client, pdf, event, activation=event_proof)
    assert response.status_code in (403, 409), response.text
    assert response.status_code != 200


def test_another_document_is_a_mismatch(
    signer_client: httpx.Client, issue: Callable[..., str]
) -> None:
    serial = _person(issue, signer_client)
    proof = _proof(signer_client, serial, make_pdf(title="Confirmed"))
    response = sign_via_api(signer_client, make_pdf(title="Swapped"), serial, activation=proof)
    _refused(response, 403, "activation_document_mismatch")


def test_a_replayed_activation_is_used(
    signer_client: httpx.Client, issue: Callable[..., str]
) -> None:
    serial = _person(issue, signer_client)
    pdf = make_pdf(title="Replay")
    proof = _proof(signer_client, serial, pdf)
    assert sign_via_api(signer_client, pdf, serial, activation=proof).status_code == 200
    _refused(sign_via_api(signer_client, pdf, serial, activation=proof), 403, "activation_used")


def test_an_unenrolled_key_gets_no_code(
    signer_client: httpx.Client, issue: Callable[..., str]
) -> None:
    serial = issue("Not Enrolled")
    response = signer_client.post(
        "/v1/activations",
        json={"certificate_serial": serial, "document_sha256": [_sha(make_pdf())]},
    )
    _refused(response, 409, "key_not_enrolled")


def test_seal_and_ca_keys_are_not_activatable(
    signer_client: httpx.Client, signer_service: SignerService, issue: Callable[..., str]
) -> None:
    seal = issue("ACME Seal", CertificateKind.SEAL)
    digest = [_sha(make_pdf())]
    response = signer_client.post(
        "/v1/activations", json={"certificate_serial": seal, "document_sha256": digest}
    )
    _refused(response, 409, "key_not_activatable")
    ca = signer_service.ca
    for serial in (ca.issuing.record.serial, ca.tsa.record.serial):
        response = signer_client.post(
            "/v1/activations", json={"certificate_serial": serial, "document_sha256": digest}
        )
        _refused(response, 409, "key_not_activatable")
        enrolled = signer_client.post(
            "/v1/enrolments", json={"certificate_serial": serial, "contact": MAIL}
        )
        _refused(enrolled, 409, "key_not_activatable")
    event = _event(signer_client)
    response = signer_client.post(
        "/v1/enrolments", json={"certificate_serial": event, "contact": MAIL}
    )
    _refused(response, 409, "key_not_activatable")


# -- who may call ------------------------------------------------------------------------


def test_callers_are_held_to_their_scopes(
    signer_client: httpx.Client,
    portal: httpx.Client,
    storage: httpx.Client,
    anonymous: httpx.Client,
    issue: Callable[..., str],
) -> None:
    serial = _person(issue, signer_client)
    enrolment = {"certificate_serial": serial, "contact": MAIL}
    assert portal.post("/v1/enrolments", json=enrolment).status_code == 403
    assert portal.get(f"/v1/enrolments/{serial}").status_code == 403
    assert portal.get("/v1/outbox").status_code == 403
    asked = {"certificate_serial": serial, "document_sha256": [_sha(make_pdf())]}
    assert storage.post("/v1/activations", json=asked).status_code == 403
    for method, path in (
        ("POST", "/v1/activations"),
        ("GET", "/v1/activations/x"),
        ("POST", "/v1/enrolments"),
        ("GET", "/v1/outbox"),
    ):
        response = anonymous.request(method, path, json=asked if method == "POST" else None)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"]
    # nothing the refused callers asked for was made
    assert signer_client.get("/v1/outbox", params={"limit": 500}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"certificate_serial": "zz", "document_sha256": ["0" * 64]},
        {"certificate_serial": "ab", "document_sha256": []},
        {"certificate_serial": "ab", "document_sha256": ["not-a-digest"]},
        {"certificate_serial": "ab", "key_label": "x", "document_sha256": ["0" * 64]},
        {"certificate_serial": "ab", "document_sha256": ["0" * 64] * 51},
        {"certificate_serial": "ab", "document_sha256": ["0" * 64], "purpose": "a\nb"},
        [1, 2, 3],
    ],
)
def test_malformed_activation_requests_are_422(signer_client: httpx.Client, body: object) -> None:
    response = signer_client.post("/v1/activations", json=body)
    assert response.status_code == 422, response.text
    assert set(response.json()) >= {"error", "detail"}


def test_malformed_enrolments_and_oversized_bodies(signer_client: httpx.Client) -> None:
    for contact in (
        {"channel": "email", "address": "not-mail"},
        {"channel": "sms", "address": "0123"},
        {"channel": "fax", "address": "+8613800000000"},
    ):
        response = signer_client.post(
            "/v1/enrolments", json={"certificate_serial": "ab", "contact": contact}
        )
        assert response.status_code == 422, response.text
    broken = signer_client.post(
        "/v1/activations", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 422, broken.text
    huge = b'{"certificate_serial": "ab", "purpose": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = signer_client.post(
        "/v1/activations", content=huge, headers={"Content-Type": "application/json"}
    )
    assert response.status_code in (413, 422), response.text
    assert response.status_code < 500
