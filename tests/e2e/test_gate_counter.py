"""``signet_gate_refused_total{reason="wrong_scope"}`` through the real servers.

tests/common/test_gate.py counts the other reasons in process; here each service of a
running `signet up` is asked once with a token it knows but whose scope the route
lacks, and its own ``/metrics`` must show exactly one more wrong-scope refusal and no
other refusal moved (the counter lives in the service process, which the test reads
only over HTTP).
"""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.appliance import Appliance

pytestmark = pytest.mark.slow  # starts the session's `signet up` (tests/e2e/conftest.py)

REASONS = ("no_token", "wrong_scope", "too_large", "slow_body")


def refused(url: str) -> dict[str, float]:
    """signet_gate_refused_total by reason, as the service's /metrics shows it."""
    counts = dict.fromkeys(REASONS, 0.0)
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "signet_gate_refused_total":
                counts[sample.labels["reason"]] = sample.value
    return counts


def _portal_reader_key(appliance: Appliance) -> str:
    with appliance.portal(appliance.admin_key()) as admin:
        made = admin.post("/api/v1/keys", json={"name": "reader", "scopes": ["envelopes:read"]})
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


@pytest.mark.parametrize("service", ["signer", "storage", "portal"])
def test_a_wrong_scope_request_counts_exactly_one(appliance: Appliance, service: str) -> None:
    home = appliance.home
    portal_token = (home / "tokens" / "portal").read_text().strip()
    # (port, method, path, a known token without the route's scope, a body)
    port, method, path, token, body = {
        # the portal's token may not sign a raw digest (storage's ledger seal only)
        "signer": (
            appliance.port, "POST", "/v1/digests/sign", portal_token,
            {"key_label": "signet-ledger-seal", "digest": "0" * 64},
        ),
        # nor lift a legal hold (admin only)
        "storage": (
            appliance.port + 1, "POST", f"/v1/objects/{'0' * 64}/legal-hold", portal_token,
            {"on": False},
        ),
        # a read-only API key may not make itself an admin key
        "portal": (
            appliance.port + 2, "POST", "/api/v1/keys", _portal_reader_key(appliance),
            {"name": "escalation", "scopes": ["admin"]},
        ),
    }[service]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    before = refused(url)
    answer = httpx.request(
        method, f"{url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"] == "forbidden"
    after = refused(url)
    assert {r: after[r] - before[r] for r in REASONS} == {
        "no_token": 0,
        "wrong_scope": 1,
        "too_large": 0,
        "slow_body": 0,
    }
