"""Activating a person's or event key the way the portal and its user do, over HTTP.

An admin enrols the key (person keys; an event certificate names its contact), the
portal asks for an activation, and the code is read where its holder would find it on
the embedded default: the signer's outbox (`GET /v1/outbox`, admin).  The code is
taken from the message body, never computed: a test that passes has read what the
signer really sent.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import httpx

ACTIVATED_KINDS = ("person", "event")
DEFAULT_CONTACT = {"channel": "email", "address": "li.wei@example.com"}


def kind_of(admin: httpx.Client, serial: str) -> str:
    """The certificate's kind; "" when the signer cannot say (an unknown serial, an
    HSM that is down): the sign request then meets the signer's own answer."""
    response = admin.get(f"/v1/certificates/{serial}")
    if response.is_error:
        return ""
    kind: str = response.json()["kind"]
    return kind


def enrol(admin: httpx.Client, serial: str, contact: dict[str, str] | None = None) -> None:
    response = admin.post(
        "/v1/enrolments",
        json={"certificate_serial": serial, "contact": contact or DEFAULT_CONTACT},
    )
    assert response.status_code == 201, response.text


def request_activation(
    client: httpx.Client, serial: str, *pdfs: bytes, **extra: object
) -> dict[str, Any]:
    """The challenge (201) for these documents."""
    digests = [hashlib.sha256(pdf).hexdigest() for pdf in pdfs]
    response = client.post(
        "/v1/activations",
        json={"certificate_serial": serial, "document_sha256": digests, **extra},
    )
    assert response.status_code == 201, response.text
    challenge: dict[str, Any] = response.json()
    return challenge


def code_from_outbox(admin: httpx.Client, activation_id: str) -> str:
    response = admin.get("/v1/outbox", params={"activation_id": activation_id})
    response.raise_for_status()
    (message,) = response.json()
    found = re.search(r"\b([0-9]{6})\b", message["body"])
    assert found, f"no code in the held message: {message['body']!r}"
    return found.group(1)


def activate(admin: httpx.Client, serial: str, *pdfs: bytes) -> dict[str, str]:
    """`options.activation` for signing these documents with `serial` (enrolled first
    when it is a person's key without a contact)."""
    proof = try_activate(admin, serial, *pdfs)
    assert proof is not None, f"no activation for {serial}"
    return proof


def try_activate(admin: httpx.Client, serial: str, *pdfs: bytes) -> dict[str, str] | None:
    """As `activate`, or None when the signer refuses one (a revoked or spent key: the
    sign request then meets the signer's own answer)."""
    if kind_of(admin, serial) == "person" and admin.get(f"/v1/enrolments/{serial}").is_error:
        enrol(admin, serial)
    digests = [hashlib.sha256(pdf).hexdigest() for pdf in pdfs]
    response = admin.post(
        "/v1/activations", json={"certificate_serial": serial, "document_sha256": digests}
    )
    if response.is_error:
        return None
    challenge = response.json()
    code = code_from_outbox(admin, challenge["activation_id"])
    return {"activation_id": challenge["activation_id"], "code": code}
