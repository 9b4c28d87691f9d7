"""The storage-free rules of signature activation (signet.signer.activation.rules)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from signet.common.contracts.signer import ActivationProof, Contact, ContactChannel
from signet.signer.activation.rules import (
    SPEND_GRACE,
    ActivationCodeWrong,
    ActivationDocumentMismatch,
    ActivationExpired,
    ActivationInvalid,
    ActivationLocked,
    ActivationUsed,
    mask_contact,
    new_activation,
    redeem,
)

PEPPER = b"p" * 32
SERIAL = "0a1b2c"
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
DOC_A = hashlib.sha256(b"a").hexdigest()
DOC_B = hashlib.sha256(b"b").hexdigest()
MAIL = Contact(channel=ContactChannel.EMAIL, address="li.wei@example.com")
MOBILE = Contact(channel=ContactChannel.SMS, address="+8613800001234")


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_masking_hides_most_of_the_contact() -> None:
    assert mask_contact(MAIL) == "l***@example.com"
    assert mask_contact(MOBILE) == "+86*******1234"


def test_each_digest_signs_once_then_the_activation_is_spent() -> None:
    code, act = new_activation(PEPPER, SERIAL, MAIL, [DOC_A, DOC_B, DOC_A], now=T0)
    assert act.document_sha256 == (DOC_A, DOC_B)
    assert code not in act.code.digest
    assert act.challenge().attempts_left == 5
    proof = ActivationProof(activation_id=act.activation_id, code=code)
    first = redeem(PEPPER, act, proof, certificate_serial=SERIAL, document_sha256=DOC_A, now=T0)
    assert first.refusal is None
    assert first.activation.verified_at == T0
    assert not first.activation.spent(T0)
    replay = redeem(
        PEPPER, first.activation, proof, certificate_serial=SERIAL, document_sha256=DOC_A, now=T0
    )
    assert isinstance(replay.refusal, ActivationUsed)
    second = redeem(
        PEPPER, first.activation, proof, certificate_serial=SERIAL, document_sha256=DOC_B, now=T0
    )
    assert second.refusal is None
    # a passed check is not a signature: the key is spent once both are signed
    assert not second.activation.spent(T0)
    both = replace(second.activation, signed_sha256=frozenset({DOC_A, DOC_B}))
    assert both.spent(T0)
    record = second.activation.record()
    assert record.method == "email-otp" and record.to == "l***@example.com"


def test_refusals() -> None:
    code, act = new_activation(PEPPER, SERIAL, MOBILE, [DOC_A], now=T0)
    good = ActivationProof(activation_id=act.activation_id, code=code)
    with pytest.raises(ActivationInvalid):
        redeem(PEPPER, None, good, certificate_serial=SERIAL, document_sha256=DOC_A, now=T0)
    with pytest.raises(ActivationInvalid):
        redeem(PEPPER, act, good, certificate_serial="ff", document_sha256=DOC_A, now=T0)
    other = redeem(PEPPER, act, good, certificate_serial=SERIAL, document_sha256=DOC_B, now=T0)
    assert isinstance(other.refusal, ActivationDocumentMismatch)
    late = T0 + timedelta(minutes=5)
    expired = redeem(PEPPER, act, good, certificate_serial=SERIAL, document_sha256=DOC_A, now=late)
    assert isinstance(expired.refusal, ActivationExpired)
    # spent a grace minute after the expiry (a signature checked just before may finish)
    assert not act.spent(late)
    assert act.spent(late + SPEND_GRACE)


def test_five_wrong_codes_lock_even_the_right_one() -> None:
    code, act = new_activation(PEPPER, SERIAL, MAIL, [DOC_A], now=T0)
    bad = ActivationProof(activation_id=act.activation_id, code=_wrong(code))
    for left in (4, 3, 2, 1):
        outcome = redeem(PEPPER, act, bad, certificate_serial=SERIAL, document_sha256=DOC_A, now=T0)
        assert isinstance(outcome.refusal, ActivationCodeWrong)
        assert f"{left} attempts left" in outcome.refusal.detail
        act = outcome.activation
    fifth = redeem(PEPPER, act, bad, certificate_serial=SERIAL, document_sha256=DOC_A, now=T0)
    assert isinstance(fifth.refusal, ActivationLocked)
    good = ActivationProof(activation_id=act.activation_id, code=code)
    after = redeem(
        PEPPER, fifth.activation, good, certificate_serial=SERIAL, document_sha256=DOC_A, now=T0
    )
    assert isinstance(after.refusal, ActivationLocked)


def test_a_code_is_bound_to_its_documents() -> None:
    """A row whose digest list was altered no longer checks: the purpose covers it."""
    code, act = new_activation(PEPPER, SERIAL, MAIL, [DOC_A], now=T0)
    forged = replace(act, document_sha256=(DOC_B,))
    proof = ActivationProof(activation_id=act.activation_id, code=code)
    outcome = redeem(
        PEPPER, forged, proof, certificate_serial=SERIAL, document_sha256=DOC_B, now=T0
    )
    assert isinstance(outcome.refusal, ActivationCodeWrong)
