"""A seal under its keeper's control, through the live signer over HTTP.

Once a keeper is enrolled for a seal, the seal signs only with the keeper's consent:
a seal-use approval of one document (an activation, the code sent to the keeper) or
a standing authorisation the keeper approved with a code bound to its terms.  Each
refusal is asked for as a careless or hostile caller would, and its code checked.
The codes are read from the signer's outbox (the embedded default's delivery).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from signet.common.contracts.signer import CertificateKind
from signet.signer.batch.worker import BatchWorker

from tests.conftest import PORTAL_TOKEN, STORAGE_TOKEN
from tests.signer.conftest import sign_via_api
from tests.support.activation import code_from_outbox, enrol, request_activation
from tests.support.pdfs import make_pdf

KEEPER = {"channel": "sms", "address": "+8613800000001"}


@pytest.fixture
def portal(signer_url: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {PORTAL_TOKEN}"}
    with httpx.Client(base_url=signer_url, timeout=60, headers=headers) as client:
        yield client


@pytest.fixture
def kept_seal(signer_client: httpx.Client, issue: Callable[..., str]) -> str:
    """A new seal (its own key) whose keeper is enrolled."""
    serial = issue("Acme Contracts Seal", CertificateKind.SEAL)
    enrol(signer_client, serial, KEEPER)
    return serial


def _refused(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code, body
    detail: str = body["detail"]
    return detail


def _terms(serial: str, **changes: object) -> dict[str, object]:
    now = datetime.now(UTC)
    terms: dict[str, object] = {
        "certificate_serial": serial,
        "callers": ["portal", "admin"],
        "not_before": (now - timedelta(minutes=1)).isoformat(),
        "not_after": (now + timedelta(days=30)).isoformat(),
        "max_documents": 3,
        "purpose": "Automatic sealing of purchase orders 采购订单",
    }
    return terms | changes


def _keeper_code(admin: httpx.Client, serial: str, digest: str) -> dict[str, str]:
    challenge = admin.post(
        "/v1/activations", json={"certificate_serial": serial, "document_sha256": [digest]}
    )
    assert challenge.status_code == 201, challenge.text
    assert challenge.json()["channel"] == "sms"  # to the keeper, not to the caller
    activation_id = challenge.json()["activation_id"]
    return {"activation_id": activation_id, "code": code_from_outbox(admin, activation_id)}


def _approved(admin: httpx.Client, portal: httpx.Client, serial: str, **changes: object) -> str:
    made = portal.post("/v1/seal-authorisations", json=_terms(serial, **changes))
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["state"] == "pending" and body["requested_by"] == "portal", body
    proof = _keeper_code(admin, serial, body["terms_sha256"])
    approved = portal.post(f"/v1/seal-authorisations/{body['id']}/approve",
                           json={"activation": proof})  # fmt: skip
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "active"
    assert approved.json()["approved_activation"] == proof["activation_id"]
    authorisation_id: str = body["id"]
    return authorisation_id


def test_a_kept_seal_signs_only_with_the_keepers_approval_of_that_document(
    signer_client: httpx.Client, portal: httpx.Client, issue: Callable[..., str], kept_seal: str
) -> None:
    pdf, other = make_pdf(), make_pdf(2)
    # the caller's token alone is no longer enough
    detail = _refused(sign_via_api(portal, pdf, kept_seal, activate=False), 403,
                      "activation_required")  # fmt: skip
    assert "seal_authorisation" in detail
    # the keeper approves this document: the code goes to the keeper's phone
    challenge = request_activation(portal, kept_seal, pdf)
    assert challenge["channel"] == "sms" and challenge["to"].endswith("0001")
    proof = {"activation_id": challenge["activation_id"],
             "code": code_from_outbox(signer_client, challenge["activation_id"])}  # fmt: skip
    _refused(sign_via_api(portal, other, kept_seal, activation=proof), 403,
             "activation_document_mismatch")  # fmt: skip
    signed = sign_via_api(portal, pdf, kept_seal, activation=proof)
    assert signed.status_code == 200, signed.text
    assert signed.headers["X-Signet-Activation"] == proof["activation_id"]
    _refused(sign_via_api(portal, pdf, kept_seal, activation=proof), 403, "activation_used")
    # a seal without a keeper signs as before, and refuses an authorisation it has no use for
    free = issue("Platform Seal", CertificateKind.SEAL)
    assert sign_via_api(portal, pdf, free).status_code == 200
    _refused(sign_via_api(portal, pdf, free, seal_authorisation="sa_" + "x" * 20), 400,
             "invalid_request")  # fmt: skip


def test_a_standing_authorisation_seals_what_its_terms_allow_and_nothing_more(
    signer_client: httpx.Client,
    portal: httpx.Client,
    kept_seal: str,
    batch_worker: BatchWorker,
) -> None:
    # pending until the keeper approves
    pending = portal.post("/v1/seal-authorisations", json=_terms(kept_seal)).json()
    pdf = make_pdf()
    detail = _refused(sign_via_api(portal, pdf, kept_seal, seal_authorisation=pending["id"]),
                      403, "seal_authorisation_refused")  # fmt: skip
    assert "pending" in detail
    # a code for another digest does not approve it
    wrong = _keeper_code(signer_client, kept_seal, "0" * 64)
    approve = f"/v1/seal-authorisations/{pending['id']}/approve"
    _refused(portal.post(approve, json={"activation": wrong}), 403, "activation_document_mismatch")

    authorisation = _approved(signer_client, portal, kept_seal)
    signed = sign_via_api(portal, pdf, kept_seal, seal_authorisation=authorisation)
    assert signed.status_code == 200, signed.text
    assert signed.headers["X-Signet-Seal-Authorisation"] == authorisation
    # a caller the terms do not name
    storage = httpx.Client(base_url=str(portal.base_url), timeout=60,
                           headers={"Authorization": f"Bearer {STORAGE_TOKEN}"})  # fmt: skip
    with storage:
        response = sign_via_api(storage, pdf, kept_seal, seal_authorisation=authorisation)
        assert response.status_code == 403  # storage may not sign documents at all
    # a batch of two counts against it; a third document would be one too many
    options = {"certificate_serial": kept_seal, "seal_authorisation": authorisation}
    batch = portal.post(
        "/v1/batches",
        files=[("documents", (f"{n}.pdf", make_pdf(), "application/pdf")) for n in range(2)],
        data={"options": json.dumps(options)},
    )
    assert batch.status_code == 201, batch.text
    deadline = time.monotonic() + 120
    while (status := portal.get(f"/v1/batches/{batch.json()['id']}").json())["state"] != "finished":
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["done"] == 2, status
    state = portal.get(f"/v1/seal-authorisations/{authorisation}").json()
    assert state["used_documents"] == 3 and state["max_documents"] == 3
    detail = _refused(sign_via_api(portal, pdf, kept_seal, seal_authorisation=authorisation),
                      403, "seal_authorisation_refused")  # fmt: skip
    assert "0 more" in detail
    # a batch without an authorisation is refused before anything is spooled for sealing
    _refused(portal.post("/v1/batches", files=[("documents", ("a.pdf", pdf, "application/pdf"))],
                         data={"options": json.dumps({"certificate_serial": kept_seal})}),
             403, "seal_authorisation_refused")  # fmt: skip


def test_revoked_future_and_foreign_authorisations_seal_nothing(
    signer_client: httpx.Client, portal: httpx.Client, kept_seal: str, issue: Callable[..., str]
) -> None:
    pdf = make_pdf()
    authorisation = _approved(signer_client, portal, kept_seal)
    # only an admin revokes
    assert portal.post(f"/v1/seal-authorisations/{authorisation}/revoke").status_code == 403
    revoked = signer_client.post(f"/v1/seal-authorisations/{authorisation}/revoke")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    assert "revoked" in _refused(
        sign_via_api(portal, pdf, kept_seal, seal_authorisation=authorisation),
        403, "seal_authorisation_refused",
    )  # fmt: skip
    # approved, but its period starts tomorrow
    later = datetime.now(UTC) + timedelta(days=1)
    future = _approved(signer_client, portal, kept_seal, not_before=later.isoformat(),
                       not_after=(later + timedelta(days=1)).isoformat())  # fmt: skip
    assert "valid from" in _refused(
        sign_via_api(portal, pdf, kept_seal, seal_authorisation=future),
        403, "seal_authorisation_refused",
    )  # fmt: skip
    # an authorisation of another seal does not cover this one
    other = issue("Other Seal", CertificateKind.SEAL)
    enrol(signer_client, other, KEEPER)
    foreign = _approved(signer_client, portal, other)
    _refused(sign_via_api(portal, pdf, kept_seal, seal_authorisation=foreign), 403,
             "seal_authorisation_refused")  # fmt: skip
    listed = signer_client.get("/v1/seal-authorisations", params={"certificate_serial": kept_seal})
    assert {a["id"] for a in listed.json()} >= {authorisation, future}
    assert portal.get("/v1/seal-authorisations",
                      params={"certificate_serial": kept_seal}).status_code == 403  # fmt: skip


def test_hostile_seal_authorisation_requests(
    signer_url: str, portal: httpx.Client, kept_seal: str, issue: Callable[..., str]
) -> None:
    with httpx.Client(base_url=signer_url, timeout=30) as anonymous:
        assert anonymous.post("/v1/seal-authorisations", json=_terms(kept_seal)).status_code == 401
    now = datetime.now(UTC)
    for bad in (
        _terms(kept_seal, not_after=(now + timedelta(days=400)).isoformat()),  # over a year
        _terms(kept_seal, not_before="2026-12-08T00:00:00"),  # no time zone
        _terms(kept_seal, max_documents=0),
        _terms(kept_seal, callers=["Portal; DROP"]),
        _terms(kept_seal, purpose="line\nbreak"),
        _terms(kept_seal, key_label="signet-default-seal"),  # two keys named
        {**_terms(kept_seal), "extra": 1},
    ):
        response = portal.post("/v1/seal-authorisations", json=bad)
        assert response.status_code == 422, (bad, response.text)
    _refused(portal.post("/v1/seal-authorisations",
                         json=_terms(issue("Keeperless Seal", CertificateKind.SEAL))),
             409, "seal_authorisation_state")  # fmt: skip
    assert portal.get("/v1/seal-authorisations/sa_" + "a" * 20).status_code == 404
    assert portal.get("/v1/seal-authorisations/../../etc").status_code in (403, 404, 422)
    assert portal.post("/v1/seal-authorisations/not-an-id/approve", json={}).status_code in (
        403, 422)  # fmt: skip
    big = {"activation": {"activation_id": "x" * 100_000, "code": "123456"}}
    assert portal.post("/v1/seal-authorisations/sa_" + "a" * 20 + "/approve",
                       json=big).status_code in (413, 422)  # fmt: skip
