"""`signet up` gives the signer the portal's gateways (activation codes are the signer's
to send), unless the signer has its own; the settings the child would read are checked
by building `SignerSettings` from that environment."""

from __future__ import annotations

import json

import pytest
from signet.cli.embedded import child_environment
from signet.signer.config import SignerSettings

SMTP = {"host": "relay.example.com", "port": 2525, "security": "none", "sender": "s@example.com"}
SMS = {
    "base_url": "https://sms.example.com",
    "account_sid": "AC1",
    "auth_token": "tok",
    "sender": "Signet",
    "status_callback": "https://portal.example.com/receipts",
}


def _child_settings(
    monkeypatch: pytest.MonkeyPatch, settings: SignerSettings, env: dict[str, str]
) -> SignerSettings:
    for name in (
        "SIGNET_SIGNER_SMTP",
        "SIGNET_SIGNER_SMS",
        "SIGNET_PORTAL_SMTP",
        "SIGNET_PORTAL_SMS",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    child = child_environment(settings)
    for name in ("SIGNET_SIGNER_SMTP", "SIGNET_SIGNER_SMS"):
        if name in child:
            monkeypatch.setenv(name, child[name])
    return SignerSettings(
        home=settings.home,
        hsm_module=settings.hsm_module,
        hsm_token_label=settings.hsm_token_label,
        hsm_pin=settings.hsm_pin,
    )


def test_the_portal_gateways_reach_the_signer(
    monkeypatch: pytest.MonkeyPatch, signer_settings: SignerSettings
) -> None:
    got = _child_settings(
        monkeypatch,
        signer_settings,
        {"SIGNET_PORTAL_SMTP": json.dumps(SMTP), "SIGNET_PORTAL_SMS": json.dumps(SMS)},
    )
    assert got.smtp is not None and got.smtp.host == "relay.example.com"
    assert got.smtp.port == 2525
    assert got.sms is not None and got.sms.account_sid == "AC1"
    assert got.sms.status_callback is None  # the portal's receipt route is not the signer's


def test_the_signer_keeps_its_own_gateway(
    monkeypatch: pytest.MonkeyPatch, signer_settings: SignerSettings
) -> None:
    own = {**SMTP, "host": "signer-relay.example.com"}
    got = _child_settings(
        monkeypatch,
        signer_settings,
        {"SIGNET_PORTAL_SMTP": json.dumps(SMTP), "SIGNET_SIGNER_SMTP": json.dumps(own)},
    )
    assert got.smtp is not None and got.smtp.host == "signer-relay.example.com"
    assert got.sms is None


def test_no_portal_gateway_leaves_the_signer_holding_codes(
    monkeypatch: pytest.MonkeyPatch, signer_settings: SignerSettings
) -> None:
    got = _child_settings(monkeypatch, signer_settings, {})
    assert got.smtp is None and got.sms is None
