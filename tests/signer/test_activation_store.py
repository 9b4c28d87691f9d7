"""Activations and enrolments stored in a real (SQLite, migrated) signer database."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from signet.common.contracts.signer import ActivationProof, Contact, ContactChannel
from signet.signer.activation.rules import ActivationCodeWrong, ActivationUsed, new_activation
from signet.signer.activation.store import ActivationStore
from signet.signer.database import open_registry_at

PEPPER = b"k" * 32
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
DOC = hashlib.sha256(b"doc").hexdigest()
MAIL = Contact(channel=ContactChannel.EMAIL, address="li.wei@example.com")
SMS = Contact(channel=ContactChannel.SMS, address="+8613800001234")


def test_enrolment_replaces_and_remembers(tmp_path: Path) -> None:
    store = ActivationStore(open_registry_at(tmp_path / "signer.db"), PEPPER)
    assert store.contact_for("ab") is None
    assert store.enrol("ab", MAIL, "admin", T0) is None
    assert store.enrol("ab", SMS, "admin", T0) == MAIL
    assert store.contact_for("ab") == SMS


def test_attempts_and_used_digests_survive_storage(tmp_path: Path) -> None:
    store = ActivationStore(open_registry_at(tmp_path / "signer.db"), PEPPER)
    code, activation = new_activation(PEPPER, "ab", MAIL, [DOC], now=T0)
    store.add(activation)
    wrong = ActivationProof(
        activation_id=activation.activation_id, code=f"{(int(code) + 1) % 10**6:06d}"
    )
    with pytest.raises(ActivationCodeWrong):
        store.redeem(wrong, certificate_serial="ab", document_sha256=DOC, now=T0)
    stored = store.get(activation.activation_id)
    assert stored is not None and stored.code.attempts == 1
    good = ActivationProof(activation_id=activation.activation_id, code=code)
    used = store.redeem(good, certificate_serial="ab", document_sha256=DOC, now=T0)
    assert used.used_sha256 == {DOC}
    with pytest.raises(ActivationUsed):
        store.redeem(good, certificate_serial="ab", document_sha256=DOC, now=T0)
    again = store.get(activation.activation_id)
    assert again is not None and again.verified_at == T0 and not again.spent(T0)
    signed = store.signed(activation.activation_id, DOC)
    assert signed.signed_sha256 == {DOC} and signed.spent(T0)


def test_expired_and_finished_activations_are_swept_once(tmp_path: Path) -> None:
    store = ActivationStore(open_registry_at(tmp_path / "signer.db"), PEPPER)
    _, live = new_activation(PEPPER, "ab", MAIL, [DOC], now=T0)
    store.add(live)
    assert store.to_spend(T0) == []
    later = T0 + timedelta(minutes=6)
    assert [a.activation_id for a in store.to_spend(later)] == [live.activation_id]
    store.mark_spent(live.activation_id, later)
    assert store.to_spend(later) == []
