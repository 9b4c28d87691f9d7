"""The real operator installs the portal (the emulator, or a real cluster: conftest):
its children, the Ingress, the policies, PortalReady; a portal change rolls it alone."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.operator.conftest import NS, READY, Cluster, conditions_of, wait_for
from tests.operator.test_operator_e2e import SPEC, _create_appliance, _ensure_referenced_secrets
from tests.support.operator_process import OperatorProcess

PORTAL_SPEC: dict[str, Any] = {
    **copy.deepcopy(SPEC),
    "portal": {
        "enabled": True,
        "replicas": 2,
        "hostname": "contracts.example.com",
        "database": {"name": "portal-db", "key": "url"},
        "tls": {"secretName": "contracts-tls"},
        "ingress": {"className": "nginx"},
        "smtp": {"host": "mail.example.com", "sender": "signet@example.com"},
        "egress": [{"cidrs": ["10.1.0.0/24"], "ports": [587]}],
    },
}


def _secret(core: client.CoreV1Api, name: str, data: dict[str, str]) -> None:
    try:
        core.create_namespaced_secret(
            NS,
            {"metadata": {"name": name, "namespace": NS}, "stringData": data},
        )
    except client.ApiException as exc:
        if exc.status != 409:
            raise


def test_the_portal_is_installed_exposed_and_rolled_out_alone(
    api: client.ApiClient, operator: OperatorProcess, readiness: Path, cluster: Cluster
) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    networking = client.NetworkingV1Api(api)
    _ensure_referenced_secrets(api)
    _secret(core, "portal-db", {"url": "postgresql+psycopg://portal@postgres/portal"})
    readiness.write_text(json.dumps({**READY, "portal": [503, {"status": "unavailable"}]}))
    _create_appliance(api, "contracts", PORTAL_SPEC)

    # The TLS Secret the spec names is missing: nothing is applied, Ready says which.
    missing = wait_for(
        "SecretMissing",
        lambda: conditions_of(api, "contracts").get("Ready", {}).get("reason") == "SecretMissing",
    )
    assert missing
    assert "contracts-tls" in conditions_of(api, "contracts")["Ready"]["message"]
    _secret(core, "contracts-tls", {"tls.crt": "cert", "tls.key": "key"})

    portal = wait_for(
        "the portal Deployment", lambda: apps.read_namespaced_deployment("contracts-portal", NS)
    )
    assert portal.spec.replicas == 2 and portal.spec.strategy.type == "RollingUpdate"
    assert core.read_namespaced_service("contracts-portal", NS)
    assert core.read_namespaced_service_account("contracts-portal", NS)
    budget = client.PolicyV1Api(api).read_namespaced_pod_disruption_budget("contracts-portal", NS)
    assert budget.spec.min_available == 1
    ingress = networking.read_namespaced_ingress("contracts-portal", NS).spec
    assert ingress.ingress_class_name == "nginx"
    assert ingress.tls[0].secret_name == "contracts-tls"
    policy = networking.read_namespaced_network_policy("contracts-portal", NS).spec
    api_sources = policy.ingress[0]._from
    assert api_sources[0].namespace_selector.match_labels == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }
    egress_ports = {p.port for rule in policy.egress for p in (rule.ports or [])}
    assert egress_ports == {53, 8101, 8102, 5432, 587}
    # made once by the operator: the first admin and the portal's secret key
    first = core.read_namespaced_secret("contracts-portal-first-admin", NS)
    assert set(first.data) == {"email", "password"}
    assert core.read_namespaced_secret("contracts-portal-secret-key", NS)

    # PortalReady follows the portal's /readyz, and Ready waits for it.
    wait_for(
        "PortalReady=False",
        lambda: conditions_of(api, "contracts").get("PortalReady", {}).get("status") == "False",
    )
    assert conditions_of(api, "contracts")["Ready"]["status"] == "False"
    readiness.write_text(json.dumps({**READY, "portal": [200, {"status": "ready"}]}))
    wait_for(
        "Ready=True",
        lambda: conditions_of(api, "contracts").get("Ready", {}).get("status") == "True",
    )

    # A portal setting changes: the portal rolls out, signer and storage do not.
    def hashes() -> dict[str, str]:
        return {
            c: apps.read_namespaced_deployment(
                f"contracts-{c}", NS
            ).spec.template.metadata.annotations["signet.dev/config-hash"]
            for c in ("signer", "storage", "portal")
        }

    before = hashes()
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        "signet.dev",
        "v1alpha1",
        NS,
        "appliances",
        "contracts",
        {"spec": {"portal": {"hostname": "vertrag.example.com"}}},
    )
    wait_for("the portal rolled out", lambda: hashes()["portal"] != before["portal"])
    after = hashes()
    assert after["signer"] == before["signer"] and after["storage"] == before["storage"]
    host = networking.read_namespaced_ingress("contracts-portal", NS).spec.rules[0].host
    assert host == "vertrag.example.com"
