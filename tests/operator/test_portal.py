"""The portal as a component of the appliance: its children, how it is exposed, what its
NetworkPolicy admits, and that its secrets stay references."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pydantic import ValidationError
from signet.common.contracts.appliance import ApplianceSpec
from signet.operator.conditions import Readiness, conditions
from signet.operator.desired import desired_objects, referenced_secrets

from tests.operator.test_config_hash import _changed
from tests.operator.test_crds_and_desired import VENDOR_SPEC

PORTAL: dict[str, Any] = {
    "enabled": True,
    "hostname": "contracts.example.com",
    "database": {"name": "portal-db", "key": "url"},
    "tls": {"certManagerIssuer": "corp-ca"},
    "ingress": {
        "className": "nginx",
        "controllerNamespace": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}},
    },
    "smtp": {"host": "mail.example.com", "sender": "signet@example.com", "credentials": "smtp"},
    "sms": {"url": "https://sms.example.com:8443/api", "sender": "Signet", "credentials": "sms"},
    "oidc": {
        "issuer": "https://idp.example.com/realms/corp",
        "clientId": "signet",
        "clientSecret": {"name": "oidc", "key": "client-secret"},
        "groupRoles": {"legal": "admin", "sales": "sender"},
    },
    "egress": [
        {"cidrs": ["10.1.0.0/24"], "ports": [587]},
        {"cidrs": ["10.2.0.5/32"], "ports": [8443, 443]},
    ],
}
SPEC: dict[str, Any] = {**VENDOR_SPEC, "portal": PORTAL}


def _objects(raw: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    spec = ApplianceSpec.model_validate(raw)
    return {(o["kind"], o["metadata"]["name"]): o for o in desired_objects("acme", "ns", spec)}


def _env(objects: dict[tuple[str, str], dict[str, Any]], name: str) -> dict[str, Any]:
    container = objects[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container["env"]}


def test_an_enabled_portal_has_every_child() -> None:
    objects = _objects(SPEC)
    for kind in ("ServiceAccount", "Deployment", "Service", "PodDisruptionBudget"):
        assert (kind, "acme-portal") in objects
    assert ("NetworkPolicy", "acme-portal") in objects
    ingress = objects[("Ingress", "acme-portal")]["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["rules"][0]["host"] == "contracts.example.com"
    assert ingress["tls"] == [{"hosts": ["contracts.example.com"], "secretName": "acme-portal-tls"}]
    certificate = objects[("Certificate", "acme-portal")]["spec"]
    assert certificate["issuerRef"] == {
        "name": "corp-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    assert certificate["secretName"] == "acme-portal-tls"
    # two replicas: one stays up through a drain
    assert objects[("PodDisruptionBudget", "acme-portal")]["spec"]["minAvailable"] == 1


def test_a_disabled_portal_has_none_and_an_own_tls_secret_no_certificate() -> None:
    assert not [k for k in _objects(VENDOR_SPEC) if k[1].startswith("acme-portal")]
    own = copy.deepcopy(SPEC)
    own["portal"]["tls"] = {"secretName": "contracts-tls"}
    own["portal"]["ingress"] = {"enabled": False}
    objects = _objects(own)
    assert ("Certificate", "acme-portal") not in objects
    assert ("Ingress", "acme-portal") not in objects
    assert ("contracts-tls", "tls.crt") in referenced_secrets(ApplianceSpec.model_validate(own))


def test_secrets_are_references_never_values() -> None:
    objects = _objects(SPEC)
    env = _env(objects, "acme-portal")
    assert env["SIGNET_PORTAL_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "portal-db",
        "key": "url",
    }
    smtp = json.loads(env["SIGNET_PORTAL_SMTP"]["value"])
    assert smtp["password"] == "$(SMTP_PASSWORD)"  # the kubelet expands it in the pod
    assert env["SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "smtp", "key": "password"}
    oidc = json.loads(env["SIGNET_PORTAL_OIDC"]["value"])
    assert oidc["client_secret"] == "$(OIDC_CLIENT_SECRET)"
    assert oidc["group_roles"] == {"legal": "admin", "sales": "sender"}
    first = env["SIGNET_PORTAL_FIRST_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert first["name"] == "acme-portal-first-admin"
    # a variable named in $(…) must be defined before it, or the kubelet leaves it as is
    names = list(env)
    assert names.index("SMTP_PASSWORD") < names.index("SIGNET_PORTAL_SMTP")
    spec = ApplianceSpec.model_validate(SPEC)
    refs = set(referenced_secrets(spec))
    assert {("portal-db", "url"), ("smtp", "password"), ("sms", "auth-token")} <= refs
    assert ("oidc", "client-secret") in refs


def test_the_signer_sends_activation_codes_through_the_same_channels() -> None:
    objects = _objects(SPEC)
    env = _env(objects, "acme-signer")
    assert json.loads(env["SIGNET_SIGNER_SMTP"]["value"])["host"] == "mail.example.com"
    assert json.loads(env["SIGNET_SIGNER_SMS"]["value"])["base_url"].startswith("https://sms.")
    off = copy.deepcopy(SPEC)
    off["portal"]["signerChannels"] = False
    assert "SIGNET_SIGNER_SMTP" not in _env(_objects(off), "acme-signer")


def test_the_portal_policy_is_least_privilege() -> None:
    objects = _objects(SPEC)
    policy = objects[("NetworkPolicy", "acme-portal")]["spec"]
    (api,) = [r for r in policy["ingress"] if r["ports"] == [{"protocol": "TCP", "port": 8103}]]
    sources = api["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}} in (
        sources
    )
    assert {"namespaceSelector": {}} not in sources  # not every namespace
    egress = policy["egress"]
    ports = {p["port"] for rule in egress for p in rule.get("ports", [])}
    assert ports == {53, 8101, 8102, 5432, 587, 8443, 443}
    blocks = [b["ipBlock"]["cidr"] for rule in egress for b in rule.get("to", []) if "ipBlock" in b]
    assert blocks == ["10.1.0.0/24", "10.2.0.5/32"]
    # the signer gains only its channels: the relay's port and the gateway's, not 443
    signer = objects[("NetworkPolicy", "acme-signer")]["spec"]["egress"]
    channel_rules = [r for r in signer if any("ipBlock" in t for t in r.get("to", []))]
    assert [sorted(p["port"] for p in r["ports"]) for r in channel_rules] == [[587], [8443]]


def test_an_enabled_portal_needs_hostname_and_database() -> None:
    with pytest.raises(ValidationError, match="hostname and database"):
        ApplianceSpec.model_validate({**VENDOR_SPEC, "portal": {"enabled": True}})
    with pytest.raises(ValidationError, match="cidrs or namespaceSelector"):
        ApplianceSpec.model_validate({**SPEC, "portal": {**PORTAL, "egress": [{"ports": [25]}]}})


def test_portal_ready_comes_from_its_readyz() -> None:
    spec = ApplianceSpec.model_validate(SPEC)
    ok_signer = Readiness(200, {"status": "ready", "hsm": "reachable"})
    ok_storage = Readiness(
        200, {"status": "ready", "object_lock": "COMPLIANCE", "retention_years": 10}
    )
    down = Readiness(503, {"status": "unavailable", "reason": "database: OperationalError"})
    by_type = {
        c["type"]: c
        for c in conditions(spec, {"signer": ok_signer, "storage": ok_storage, "portal": down})
    }
    assert by_type["PortalReady"]["status"] == "False"
    assert "database" in by_type["PortalReady"]["message"]
    assert by_type["Ready"]["status"] == "False" and "PortalReady" in by_type["Ready"]["message"]
    up = Readiness(200, {"status": "ready", "database": "ready"})
    by_type = {
        c["type"]: c
        for c in conditions(spec, {"signer": ok_signer, "storage": ok_storage, "portal": up})
    }
    assert by_type["PortalReady"]["status"] == "True"


def test_portal_settings_roll_out_the_portal_alone() -> None:
    moved = copy.deepcopy(SPEC)
    moved["portal"]["hostname"] = "vertrag.example.com"
    assert _changed(SPEC, moved) == {"acme-portal"}
    roles = copy.deepcopy(SPEC)
    roles["portal"]["oidc"]["groupRoles"]["hr"] = "auditor"
    assert _changed(SPEC, roles) == {"acme-portal"}
    # the mail relay is the signer's channel too: both roll out
    relay = copy.deepcopy(SPEC)
    relay["portal"]["smtp"]["port"] = 465
    assert _changed(SPEC, relay) == {"acme-portal", "acme-signer"}
