"""CertificatesValid names the TSA rollover and the preservation run when they are due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from signet.operator.readiness import FALSE, TRUE, Readiness
from signet.operator.signer_conditions import certificates as _certificates
from signet.signer.pki.rotation import ROLLOVER_STEP, rollover_report
from signet.signer.registry import CertificateRecord

NOW = datetime(2030, 6, 1, tzinfo=UTC)


def _signer(tsa_not_after: datetime, margin: timedelta) -> Readiness:
    record = CertificateRecord(serial="ab", not_after=tsa_not_after)
    tsa = {"name": "tsa", "serial": "ab", "not_after": tsa_not_after.isoformat()}
    tsa |= rollover_report(record, margin)
    root = {"name": "root", "serial": "01", "not_after": (NOW + timedelta(days=5000)).isoformat()}
    return Readiness(200, {"status": "ready", "certificates": [root, tsa]})


def test_rollover_due_a_margin_before_the_tsa_expires() -> None:
    margin = timedelta(days=365)
    well_ahead = _certificates(_signer(NOW + timedelta(days=400), margin), NOW)
    assert well_ahead["status"] == TRUE and well_ahead["reason"] == "Valid"
    due = _certificates(_signer(NOW + timedelta(days=300), margin), NOW)
    assert due["status"] == FALSE and due["reason"] == "RolloverDue"
    assert "signet ca rotate-tsa" in due["message"] and "signet storage preserve" in due["message"]
    assert "rollover due 2030-03-28" in due["message"]  # 300 days left, a 365-day margin


def test_an_expiring_tsa_names_the_step_too() -> None:
    soon = _certificates(_signer(NOW + timedelta(days=10), timedelta(days=365)), NOW)
    assert soon["reason"] == "ExpiringSoon"
    assert ROLLOVER_STEP in soon["message"]
    gone = _certificates(_signer(NOW - timedelta(days=1), timedelta(days=365)), NOW)
    assert gone["reason"] == "Expired" and ROLLOVER_STEP in gone["message"]
