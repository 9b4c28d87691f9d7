"""Certificate requests: names without control characters, a believable verification time.

A name is shown by every validator for the certificate's lifetime (NUL truncates
it in C validators, ESC drives terminals); an identity verification dated in
year 9999 or 0001 would stand in an event certificate's policy text for good.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest


def _event(subject: dict[str, object], verified_at: str) -> dict[str, object]:
    return {
        "kind": "event",
        "subject": subject,
        "identity_verification": {"method": "sms-otp", "verified_at": verified_at},
        "contact": {"channel": "sms", "address": "+8613800000000"},
    }


NOW = datetime.now(UTC).isoformat()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("common_name", "Li\x00Wei"),
        ("common_name", "Li Wei\x1b[31m"),
        ("common_name", "Li\r\nWei"),
        ("common_name", "\u202eieW iL"),
        ("organization", "Acme\x00"),
        ("organizational_unit", "Sales\x07"),
        ("email", "li\x1b@example.com"),
        ("email", "li@example.com\x00"),
    ],
)
def test_control_characters_in_a_name_are_refused(
    signer_client: httpx.Client, field: str, value: str
) -> None:
    subject = {"common_name": "Li Wei", field: value}
    response = signer_client.post("/v1/certificates", json=_event(subject, NOW))
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"]


@pytest.mark.parametrize(
    "verified_at",
    [
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "1999-12-31T23:59:59Z",
        (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        "2026-11-25T08:00:00",  # no time zone: not a moment
    ],
)
def test_an_unbelievable_verification_time_is_refused(
    signer_client: httpx.Client, verified_at: str
) -> None:
    response = signer_client.post(
        "/v1/certificates", json=_event({"common_name": "Guest"}, verified_at)
    )
    assert response.status_code == 422, response.text
    assert "verified_at" in response.json()["detail"]


def test_plain_names_and_a_recent_verification_are_still_issued(
    signer_client: httpx.Client,
) -> None:
    subject = {"common_name": "李伟 (Li Wei)", "organization": "Acme Ltd.", "email": "l@ex.org"}
    just_now = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()  # a little skew is fine
    response = signer_client.post("/v1/certificates", json=_event(subject, just_now))
    assert response.status_code == 201, response.text
