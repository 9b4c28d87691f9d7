"""CRDs generated from the models, and the reconcile logic as pure functions.

No cluster here: the CRD schemas are checked with a JSON-schema validator on
valid and invalid examples, and every object the operator would create is
checked against the real Kubernetes schemas with `kubernetes-validate`.
"""

from __future__ import annotations

import copy
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError
from signet.common.contracts.appliance import ApplianceSpec, SigningPolicySpec
from signet.operator import crds
from signet.operator.components import BATCH_DIR
from signet.operator.conditions import (
    OBSERVED,
    Readiness,
    apply_failed,
    batch_claim_refused,
    conditions,
    invalid_spec,
    merge_transitions,
    missing_secrets,
    observed,
    parse_spec,
    refused,
)
from signet.operator.desired import (
    COMPONENTS,
    RETAINED,
    batch_claim,
    config_hash,
    desired_objects,
    labels,
    referenced_secrets,
    service_token_secret,
)

CHART = Path(__file__).resolve().parents[2] / "helm" / "signet"
K8S_VERSION = "1.31"

VENDOR_SPEC: dict[str, Any] = {
    "publicUrl": "https://sign.example.com",
    "organization": "Example AG",
    "hsm": {
        "moduleImage": "registry.example.com/luna-client:10.7",
        "modulePath": "/usr/safenet/lunaclient/lib/libCryptoki2_64.so",
        "configMap": "luna-config",
        "pin": {"name": "hsm-pin", "key": "pin"},
        "endpoint": "10.0.0.5:1792",
    },
    "objectStore": {
        "endpoint": "minio.storage.svc:9000",
        "bucket": "contracts",
        "secure": False,
        "accessKey": {"name": "minio-credentials", "key": "access-key"},
        "secretKey": {"name": "minio-credentials", "key": "secret-key"},
        "retentionYears": 10,
    },
    "database": {"url": {"name": "postgres", "key": "url"}},
}
SOFTHSM_SPEC: dict[str, Any] = {
    **VENDOR_SPEC,
    "hsm": {"softhsm": True},
    "signer": {"replicas": 1},
}


def _schema(crd_name: str) -> dict[str, Any]:
    crd = yaml.safe_load((CHART / "crds" / crd_name).read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_committed_crds_are_what_the_models_generate() -> None:
    for name, text in crds.rendered().items():
        committed = (CHART / "crds" / name).read_text()
        assert committed == text, f"{name} drifted: run `signet operator crds`"


def _walk(node: Any, path: str = "$") -> list[str]:
    problems = []
    if isinstance(node, dict):
        shaped = any(key in node for key in ("properties", "items", "enum", "pattern"))
        untyped = "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields")
        if shaped and untyped:
            problems.append(f"{path}: no type")
        for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "title", "const"):
            if forbidden in node:
                problems.append(f"{path}: {forbidden}")
        if node.get("additionalProperties") is False:
            problems.append(f"{path}: additionalProperties false")
        for key, value in node.items():
            problems += _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            problems += _walk(value, f"{path}[{i}]")
    return problems


def test_crd_schemas_are_structural_and_validate_examples() -> None:
    for name in ("appliances.signet.dev.yaml", "signingpolicies.signet.dev.yaml"):
        assert _walk(_schema(name)) == []
        crd = yaml.safe_load((CHART / "crds" / name).read_text())
        kubernetes_validate.validate(crd, K8S_VERSION, strict=True)
    schema = _schema("appliances.signet.dev.yaml")
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors({"spec": VENDOR_SPEC}))
    assert not list(validator.iter_errors({"spec": SOFTHSM_SPEC}))

    three_years = copy.deepcopy(VENDOR_SPEC)
    three_years["objectStore"]["retentionYears"] = 3
    assert any(
        "minimum" in e.message or "3" in e.message
        for e in validator.iter_errors({"spec": three_years})
    )
    inline_pin = copy.deepcopy(VENDOR_SPEC)
    inline_pin["hsm"]["pin"] = "123456"
    assert list(validator.iter_errors({"spec": inline_pin}))
    inline_key = copy.deepcopy(VENDOR_SPEC)
    inline_key["objectStore"]["secretKey"] = "minio-secret-value"
    assert list(validator.iter_errors({"spec": inline_key}))
    hsm_rule = schema["properties"]["spec"]["properties"]["hsm"]["x-kubernetes-validations"]
    assert "has(self.pin)" in hsm_rule[0]["rule"]

    policy = jsonschema.Draft202012Validator(_schema("signingpolicies.signet.dev.yaml"))
    assert not list(policy.iter_errors({"spec": {"level": "B-LTA", "identityChecks": ["otp-sms"]}}))
    assert list(policy.iter_errors({"spec": {"retentionYears": 4}}))
    assert list(policy.iter_errors({"spec": {"level": "B-X"}}))


def test_models_refuse_what_the_schema_cannot_express() -> None:
    with pytest.raises(ValidationError, match="pin"):
        ApplianceSpec.model_validate({**VENDOR_SPEC, "hsm": {**VENDOR_SPEC["hsm"], "pin": None}})
    with pytest.raises(ValidationError, match="either softhsm"):
        ApplianceSpec.model_validate(
            {**VENDOR_SPEC, "hsm": {**VENDOR_SPEC["hsm"], "softhsm": True}}
        )
    spec, problem = parse_spec(
        {**VENDOR_SPEC, "objectStore": {**VENDOR_SPEC["objectStore"], "retentionYears": 3}}
    )
    assert spec is None and "retentionYears" in problem and "5" in problem
    assert SigningPolicySpec.model_validate({}).retention_years == 10


@pytest.mark.parametrize("raw", [VENDOR_SPEC, SOFTHSM_SPEC], ids=["vendor-hsm", "softhsm"])
def test_every_child_is_valid_kubernetes_and_locked_down(raw: dict[str, Any]) -> None:
    spec = ApplianceSpec.model_validate(raw)
    objects = desired_objects("acme", "signet", spec)
    objects.append(service_token_secret("acme", "signet", "t0ken"))
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        assert obj["metadata"]["namespace"] == "signet"
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "acme"
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert ("Deployment", "acme-signer") in kinds and ("Deployment", "acme-storage") in kinds
    assert not any(name.endswith("-portal") for _, name in kinds)  # not installed yet
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"] + pod["initContainers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
            assert context["capabilities"]["drop"] == ["ALL"]
            assert context["seccompProfile"]["type"] == "RuntimeDefault"
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        secret_like = ("_TOKEN", "_PIN", "_SECRET_KEY", "_ACCESS_KEY", "_DATABASE_URL")
        for name, variable in env.items():
            if name.endswith(secret_like):  # secrets come from Secrets, never inline
                assert "valueFrom" in variable, name
        assert "signet.dev/config-hash" in deployment["spec"]["template"]["metadata"]["annotations"]
        # The metrics port: named on the container, behind the Service, and given to `serve`
        # as its setting, never as an option: `spec.image` may be an older release, whose
        # `serve` would exit on an option it lacks but ignores an unknown variable.
        component = next(
            c for c in COMPONENTS if deployment["metadata"]["name"] == f"acme-{c.name}"
        )
        container = pod["containers"][0]
        assert {"name": "metrics", "containerPort": component.metrics_port} in container["ports"]
        assert container["args"] == [*component.args, "--port", str(component.port)]
        variable = f"SIGNET_{component.name.upper()}_METRICS_PORT"
        assert env[variable] == {"name": variable, "value": str(component.metrics_port)}
        service = next(
            o
            for o in objects
            if o["kind"] == "Service" and o["metadata"]["name"] == deployment["metadata"]["name"]
        )
        assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
            "http": component.port,
            "metrics": component.metrics_port,
        }
    signer = next(
        o for o in objects if o["metadata"]["name"] == "acme-signer" and o["kind"] == "Deployment"
    )
    init = signer["spec"]["template"]["spec"]["initContainers"][0]
    if spec.hsm.softhsm:
        assert init["image"].startswith("signet-softhsm")
    else:
        assert init["image"] == VENDOR_SPEC["hsm"]["moduleImage"]
        assert init["command"][-2] == VENDOR_SPEC["hsm"]["modulePath"]
    replicas = {
        o["metadata"]["name"]: o["spec"]["replicas"] for o in objects if o["kind"] == "Deployment"
    }
    assert replicas == {"acme-signer": spec.signer.replicas, "acme-storage": 1}
    budgets = {
        o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "PodDisruptionBudget"
    }
    assert set(budgets) == {"acme-signer", "acme-storage"}  # always there: nothing goes stale
    # Several replicas: one stays up in a drain.  One replica: its eviction is allowed.
    expected = {"minAvailable": 1} if spec.signer.replicas > 1 else {"maxUnavailable": 1}
    assert {k: v for k, v in budgets["acme-signer"].items() if k != "selector"} == expected
    assert "maxUnavailable" in budgets["acme-storage"]


SCRAPER: dict[str, Any] = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}


@pytest.mark.parametrize("scraper", [None, SCRAPER], ids=["no-scraper", "scraper"])
def test_network_policies_follow_the_trust_boundaries(scraper: dict[str, Any] | None) -> None:
    spec = ApplianceSpec.model_validate(
        {**VENDOR_SPEC, "metrics": {"scraper": scraper}} if scraper else VENDOR_SPEC
    )
    policies = {
        o["metadata"]["name"]: o["spec"]
        for o in desired_objects("acme", "ns", spec)
        if o["kind"] == "NetworkPolicy"
    }
    signer, storage = policies["acme-signer"], policies["acme-storage"]
    signer_ports = {p["port"] for rule in signer["egress"] for p in rule.get("ports", [])}
    storage_ports = {p["port"] for rule in storage["egress"] for p in rule.get("ports", [])}
    assert 1792 in signer_ports and 1792 not in storage_ports  # only the signer reaches the HSM
    assert 9000 in storage_ports and 9000 not in signer_ports  # only storage reaches MinIO
    for component in (c for c in COMPONENTS if c.installed and c.enabled(spec)):
        policy = policies[f"acme-{component.name}"]
        opened: dict[int, list[dict[str, Any]]] = {}
        for rule in policy["ingress"]:  # a rule admits each of its sources to each port
            for port in rule["ports"]:
                opened.setdefault(port["port"], []).extend(rule["from"])
        assert set(opened) <= {component.port, component.metrics_port}
        # The API port: the peers and the operator, from this namespace, and no one else;
        # in particular not the scraper, which reaches the metrics port alone.
        peers = [{"podSelector": {"matchLabels": labels("acme", c)}} for c in component.callers]
        operator = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "signet-operator"}}}
        helm_test = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "signet-helm-test"}}}
        assert opened[component.port] == [*peers, operator, helm_test]
        assert all("namespaceSelector" not in source for source in opened[component.port])
        annotations = next(
            o
            for o in desired_objects("acme", "ns", spec)
            if o["kind"] == "Deployment" and o["metadata"]["name"] == f"acme-{component.name}"
        )["spec"]["template"]["metadata"]["annotations"]
        scrape = {k: v for k, v in annotations.items() if k.startswith("prometheus.io/")}
        if scraper is None:
            assert component.metrics_port not in opened  # nobody named: nobody admitted
            # ... so no annotation invites a discovering Prometheus to fail (up == 0).
            assert scrape == {}
        else:
            assert opened[component.metrics_port] == [SCRAPER]
            assert scrape == {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(component.metrics_port),
                "prometheus.io/path": "/metrics",
            }
    assert next(c for c in COMPONENTS if c.name == "portal").public


def test_a_scraper_needs_a_selector_and_valid_labels() -> None:
    with pytest.raises(ValidationError, match="namespaceSelector, podSelector"):
        ApplianceSpec.model_validate({**VENDOR_SPEC, "metrics": {"scraper": {}}})
    with pytest.raises(ValidationError, match="label key"):
        ApplianceSpec.model_validate(
            {**VENDOR_SPEC, "metrics": {"scraper": {"podSelector": {"matchLabels": {"a b": "x"}}}}}
        )
    # The CRD keeps the label maps (a map without a value schema would be pruned to {})
    # and checks their values at admission.
    validator = jsonschema.Draft202012Validator(_schema("appliances.signet.dev.yaml"))
    assert not list(
        validator.iter_errors({"spec": {**VENDOR_SPEC, "metrics": {"scraper": SCRAPER}}})
    )
    selector = _schema("appliances.signet.dev.yaml")["properties"]["spec"]["properties"]["metrics"]
    labels_schema = selector["properties"]["scraper"]["properties"]["podSelector"]["properties"]
    assert labels_schema["matchLabels"]["additionalProperties"]["type"] == "string"
    bad_value = {"podSelector": {"matchLabels": {"app": "not a label value"}}}
    assert list(validator.iter_errors({"spec": {**VENDOR_SPEC, "metrics": {"scraper": bad_value}}}))


def test_config_hash_rolls_out_changes_and_only_changes() -> None:
    spec = ApplianceSpec.model_validate(VENDOR_SPEC)
    storage = next(c for c in COMPONENTS if c.name == "storage")
    same = ApplianceSpec.model_validate(copy.deepcopy(VENDOR_SPEC))
    longer = ApplianceSpec.model_validate(
        {**VENDOR_SPEC, "objectStore": {**VENDOR_SPEC["objectStore"], "retentionYears": 12}}
    )
    assert config_hash(spec, storage, "acme") == config_hash(same, storage, "acme")
    assert config_hash(spec, storage, "acme") != config_hash(longer, storage, "acme")
    assert ("postgres", "url") in referenced_secrets(spec)
    assert ("hsm-pin", "pin") in referenced_secrets(spec)


def test_conditions_follow_the_services() -> None:
    spec = ApplianceSpec.model_validate(VENDOR_SPEC)
    ok_signer = Readiness(200, {"status": "ready", "hsm": "reachable"})
    ok_storage = Readiness(
        200, {"status": "ready", "object_lock": "COMPLIANCE", "retention_years": 10}
    )
    ready = {c["type"]: c for c in conditions(spec, {"signer": ok_signer, "storage": ok_storage})}
    assert ready["Ready"]["status"] == "True"
    assert ready["PortalReady"]["reason"] == "Disabled"  # installed, not enabled
    hsm_down = Readiness(
        503,
        {"status": "unavailable", "reason": "token 'signet' not found", "error": "hsm_unavailable"},
    )
    down = {c["type"]: c for c in conditions(spec, {"signer": hsm_down, "storage": ok_storage})}
    assert down["Ready"]["status"] == "False" and "HSMReachable" in down["Ready"]["message"]
    assert down["HSMReachable"]["status"] == "False" and "signet" in down["HSMReachable"]["message"]
    short = Readiness(200, {"status": "ready", "object_lock": "COMPLIANCE", "retention_years": 7})
    retention = {c["type"]: c for c in conditions(spec, {"signer": ok_signer, "storage": short})}
    assert retention["RetentionCompliant"]["reason"] == "RetentionTooShort"
    unlocked = Readiness(
        503, {"error": "vault_misconfigured", "reason": "bucket has no Object Lock"}
    )
    nolock = {c["type"]: c for c in conditions(spec, {"signer": ok_signer, "storage": unlocked})}
    assert (
        nolock["RetentionCompliant"]["status"] == "False"
        and "Object Lock" in nolock["RetentionCompliant"]["message"]
    )
    silent = {c["type"]: c for c in conditions(spec, {"signer": None, "storage": None})}
    assert silent["SignerReady"]["status"] == "Unknown" and silent["Ready"]["status"] == "False"

    first = merge_transitions(
        [], conditions(spec, {"signer": ok_signer, "storage": ok_storage}), "T1"
    )
    second = merge_transitions(
        first, conditions(spec, {"signer": hsm_down, "storage": ok_storage}), "T2"
    )
    times = {c["type"]: c["lastTransitionTime"] for c in second}
    assert times["StorageReady"] == "T1" and times["SignerReady"] == "T2"


def test_a_refusal_keeps_the_other_conditions() -> None:
    """InvalidSpec, SecretMissing, ApplyFailed: Ready says why, the rest stays observed."""
    spec = ApplianceSpec.model_validate(VENDOR_SPEC)
    ok_signer = Readiness(200, {"status": "ready", "hsm": "reachable"})
    ok_storage = Readiness(200, RUNNING)
    before = merge_transitions(
        [], conditions(spec, {"signer": ok_signer, "storage": ok_storage}), "T1"
    )
    hsm_down = Readiness(503, {"error": "hsm_unavailable", "reason": "token gone"})
    for why, seen_spec in (
        (invalid_spec("bad"), None),  # no valid spec at all
        (missing_secrets(["Secret postgres (key url)"]), spec),
        (apply_failed("the API server answered 403 Forbidden: deployments"), spec),
        (batch_claim_refused(spec, "acme-signer-batches", ["ReadWriteOnce"]), spec),
    ):
        assert why is not None
        probed = observed(seen_spec, {"signer": hsm_down, "storage": ok_storage})
        after = merge_transitions(before, refused(why, probed), "T2")
        by_type = {c["type"]: c for c in after}
        assert [c["type"] for c in after] == ["Ready", *OBSERVED], why
        assert by_type["Ready"]["reason"] == why["reason"] and by_type["Ready"]["status"] == "False"
        assert by_type["Ready"]["lastTransitionTime"] == "T2"
        assert by_type["HSMReachable"]["status"] == "False"  # probed, not frozen
        assert by_type["StorageReady"]["lastTransitionTime"] == "T1"
        # Judged from what storage runs with, whatever the spec: the same as before.
        assert by_type["RetentionCompliant"] == {c["type"]: c for c in before}["RetentionCompliant"]
        assert by_type["TreeHeadsPublished"]["status"] == "True", why


#: What a current storage reports: the bucket's retention and what it runs with.
RUNNING: dict[str, Any] = {
    "status": "ready",
    "object_lock": "COMPLIANCE",
    "retention_years": 10,
    "configured_retention_years": 10,
    "tree_head_interval_seconds": 60,
    "ledger_size": 0,
}


def test_retention_and_tree_heads_are_judged_by_what_storage_runs_with() -> None:
    """Not by a spec that is not running: a refused one, or one still rolling out."""
    now = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
    signer = Readiness(200, {"status": "ready", "hsm": "reachable"})
    waiting = {  # five minutes without a head: stale at 60 s, fine at 120 s
        "ledger_size": 6,
        "tree_head_size": 5,
        "tree_head_time": "2027-01-01T11:00:00Z",
        "unsigned_since": "2027-01-01T11:55:00Z",
        "tree_head_publisher": "leader",
    }

    def judged(spec: ApplianceSpec | None, **body: Any) -> dict[str, dict[str, str]]:
        storage = Readiness(200, {**RUNNING, **body})
        return {c["type"]: c for c in observed(spec, {"signer": signer, "storage": storage}, now)}

    # The spec is invalid, and the ledger really goes stale: said (not frozen at True).
    stale = judged(None, **waiting)["TreeHeadsPublished"]
    assert stale["status"] == "False" and stale["reason"] == "Stale"
    before = [
        {**condition, "lastTransitionTime": "T1"}
        for condition in refused(invalid_spec("bad"), list(judged(None).values()))
    ]
    after = {
        c["type"]: c
        for c in merge_transitions(
            before, refused(invalid_spec("bad"), list(judged(None, **waiting).values())), "T2"
        )
    }
    assert after["TreeHeadsPublished"]["lastTransitionTime"] == "T2"  # a transition: an Event
    # A new spec asks for 10 s and 12 years but is not applied (a Secret missing) or not
    # rolled out yet: storage still publishes every 120 s and retains 10 years.
    new = ApplianceSpec.model_validate(
        {
            **VENDOR_SPEC,
            "treeHeadIntervalSeconds": 10,
            "objectStore": {**VENDOR_SPEC["objectStore"], "retentionYears": 12},
        }
    )
    running = judged(new, tree_head_interval_seconds=120, **waiting)
    assert running["TreeHeadsPublished"]["reason"] == "Publishing"  # 5 min < 3 x 120 s
    assert running["RetentionCompliant"]["reason"] == "Compliant"  # 10 >= the 10 it runs with
    # Rolled out: storage retains 12 years, the bucket's default is still 10.
    short = judged(new, configured_retention_years=12)["RetentionCompliant"]
    assert short["reason"] == "RetentionTooShort" and "storage runs with 12" in short["message"]
    # An older storage that does not report them: the spec stands in, when there is one.
    old = {"status": "ready", "object_lock": "COMPLIANCE", "retention_years": 10, **waiting}
    older = {
        c["type"]: c for c in observed(new, {"signer": signer, "storage": Readiness(200, old)}, now)
    }
    assert older["TreeHeadsPublished"]["reason"] == "Stale"  # 5 min > 3 x 10 s
    assert older["RetentionCompliant"]["reason"] == "RetentionTooShort"
    assert "the Appliance asks for 12" in older["RetentionCompliant"]["message"]
    unknown = {
        c["type"]: c
        for c in observed(None, {"signer": signer, "storage": Readiness(200, old)}, now)
    }
    assert unknown["TreeHeadsPublished"]["status"] == "Unknown"
    assert unknown["RetentionCompliant"]["status"] == "Unknown"


def test_certificate_expiry_is_surfaced_ahead_of_time() -> None:
    spec = ApplianceSpec.model_validate(VENDOR_SPEC)
    now = datetime(2027, 1, 1, tzinfo=UTC)
    storage = Readiness(
        200, {"status": "ready", "object_lock": "COMPLIANCE", "retention_years": 10}
    )

    def signer(**not_after: str) -> Readiness:
        certificates = [{"name": name, "not_after": when} for name, when in not_after.items()]
        return Readiness(200, {"status": "ready", "hsm": "reachable", "certificates": certificates})

    def check(answer: Readiness) -> tuple[dict[str, str], str]:
        result = {
            c["type"]: c for c in conditions(spec, {"signer": answer, "storage": storage}, now)
        }
        return result["CertificatesValid"], result["Ready"]["status"]

    valid, ready = check(signer(root="2046-01-01T00:00:00Z", tsa="2029-05-01T00:00:00Z"))
    assert valid["status"] == "True" and "tsa on 2029-05-01" in valid["message"] and ready == "True"
    soon, ready = check(signer(root="2046-01-01T00:00:00Z", issuing="2027-01-20T00:00:00Z"))
    assert (
        soon["reason"] == "ExpiringSoon"
        and "issuing" in soon["message"]
        and "19 days" in soon["message"]
    )
    assert ready == "True"  # a warning, not yet an outage
    expired, ready = check(signer(tsa="2026-12-31T00:00:00+00:00"))
    assert expired["reason"] == "Expired" and ready == "False"
    unknown, _ = check(Readiness(200, {"status": "ready", "hsm": "reachable"}))
    assert unknown["status"] == "Unknown"


def test_stale_tree_heads_are_a_condition() -> None:
    spec = ApplianceSpec.model_validate({**VENDOR_SPEC, "treeHeadIntervalSeconds": 60})
    now = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
    signer = Readiness(200, {"status": "ready", "hsm": "reachable"})

    def heads(**body: object) -> dict[str, str]:
        storage = Readiness(
            200,
            {"status": "ready", "object_lock": "COMPLIANCE", "retention_years": 10, **body},
        )
        result = {
            c["type"]: c for c in conditions(spec, {"signer": signer, "storage": storage}, now)
        }
        return result["TreeHeadsPublished"]

    assert heads(ledger_size=0)["reason"] == "EmptyLog"
    assert (
        heads(ledger_size=5, tree_head_size=5, tree_head_time="2027-01-01T08:00:00Z")["status"]
        == "True"
    )
    behind = heads(ledger_size=9, tree_head_size=5, tree_head_time="2027-01-01T11:59:00Z")
    assert behind["reason"] == "Publishing"
    stale = heads(
        ledger_size=9,
        tree_head_size=5,
        tree_head_time="2027-01-01T11:00:00Z",
        tree_head_publisher="standby",
    )
    assert stale["status"] == "False" and stale["reason"] == "Stale"
    assert "9 entries" in stale["message"] and "standby" in stale["message"]
    assert heads(ledger_size=3)["reason"] == "Stale"  # never signed at all
    # After a quiet hour the first new entries are measured from when they were appended,
    # not from the hour-old head: no false alarm while the publisher catches up.
    quiet = heads(
        ledger_size=6,
        tree_head_size=5,
        tree_head_time="2027-01-01T11:00:00Z",
        unsigned_since="2027-01-01T11:59:30Z",
    )
    assert quiet["status"] == "True" and quiet["reason"] == "Publishing"
    waited = heads(
        ledger_size=6,
        tree_head_size=5,
        tree_head_time="2027-01-01T11:00:00Z",
        unsigned_since="2027-01-01T11:56:00Z",  # 4 minutes: more than 3 intervals of 60 s
        tree_head_publisher="leader",
    )
    assert waited["reason"] == "Stale" and "waiting since 2027-01-01 11:56:00Z" in waited["message"]
    first = heads(ledger_size=2, unsigned_since="2027-01-01T11:59:50Z")  # never signed, yet
    # A replica whose Lease could not be set up will never publish: said at once, with why.
    broken = heads(
        ledger_size=0,
        tree_head_publisher="unavailable",
        tree_head_publisher_problem="Lease acme-tree-head-publisher unusable: no namespace",
    )
    assert broken["status"] == "False" and broken["reason"] == "PublisherUnavailable"
    assert "no namespace" in broken["message"]
    assert first["reason"] == "Publishing" and "0 of 2" in first["message"]


def test_softhsm_trial_is_one_signer_on_a_token_volume(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"signer\.replicas"):
        ApplianceSpec.model_validate({**SOFTHSM_SPEC, "signer": {"replicas": 2}})
    crd = (CHART / "crds" / "appliances.signet.dev.yaml").read_text()
    assert "self.signer.replicas <= 1" in crd  # the API server refuses it too
    spec = ApplianceSpec.model_validate(SOFTHSM_SPEC)
    objects = desired_objects("acme", "signet", spec)
    signer = next(
        o for o in objects if o["metadata"]["name"] == "acme-signer" and o["kind"] == "Deployment"
    )
    pod = signer["spec"]["template"]["spec"]
    token_init = next(c for c in pod["initContainers"] if c["name"] == "softhsm-token")
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["SOFTHSM2_CONF"] == "/var/lib/softhsm/softhsm2.conf"

    # The init container's script, run for real with Debian's softhsm2-util, twice:
    # the second start finds the token and leaves it (and so the CA keys) alone.
    pins = tmp_path / "pins"
    pins.mkdir()
    (pins / "pin").write_text("1234")
    (pins / "so-pin").write_text("5678")
    script, argv0 = token_init["command"][2], token_init["command"][3]
    args = [str(tmp_path / "token"), "signet", str(pins)]

    def run() -> str:
        subprocess.run(["sh", "-c", script, argv0, *args], check=True, timeout=60)
        shown = subprocess.run(
            ["softhsm2-util", "--show-slots"],
            env={**os.environ, "SOFTHSM2_CONF": str(tmp_path / "token" / "softhsm2.conf")},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return shown

    first = run()
    assert "Label:            signet" in first
    assert run() == first  # same token, same serial: not initialised again


def _signer_pod(spec: ApplianceSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The signer Deployment's spec and its pod's spec."""
    deployment = next(
        o
        for o in desired_objects("acme", "signet", spec)
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "acme-signer"
    )
    return deployment["spec"], deployment["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("raw", "mode", "strategy"),
    [
        (VENDOR_SPEC, "ReadWriteMany", "RollingUpdate"),  # two replicas by default
        ({**VENDOR_SPEC, "signer": {"replicas": 1}}, "ReadWriteOnce", "Recreate"),
        (
            {
                **VENDOR_SPEC,
                "signer": {"replicas": 1, "batchStorage": {"accessMode": "ReadWriteMany"}},
            },
            "ReadWriteMany",
            "RollingUpdate",
        ),
        (SOFTHSM_SPEC, "ReadWriteOnce", "Recreate"),
    ],
    ids=["two-signers", "one-signer", "one-signer-shared", "softhsm"],
)
def test_signer_batches_live_on_a_claimed_volume_that_outlives_the_appliance(
    raw: dict[str, Any], mode: str, strategy: str
) -> None:
    spec = ApplianceSpec.model_validate(raw)
    claim = batch_claim("acme", "signet", spec)
    kubernetes_validate.validate(claim, K8S_VERSION, strict=True)
    assert claim["metadata"]["name"] == "acme-signer-batches"
    assert claim["spec"] == {
        "accessModes": [mode],
        "resources": {"requests": {"storage": "10Gi"}},
    }  # no storageClassName: the cluster's default class
    # Signed documents: never owned by the Appliance (the garbage collector would take
    # them with it), and the claim says so to whoever finds it.
    assert (
        "ownerReferences" not in claim["metadata"] and RETAINED in claim["metadata"]["annotations"]
    )
    assert not any(
        o["kind"] == "PersistentVolumeClaim" for o in desired_objects("acme", "signet", spec)
    )

    deployment, pod = _signer_pod(spec)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["batches"] == {
        "name": "batches",
        "persistentVolumeClaim": {"claimName": "acme-signer-batches"},
    }
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["batches"] == BATCH_DIR and mounts["data"] == "/var/lib/signet"
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["SIGNET_SIGNER_BATCH_DIRECTORY"] == BATCH_DIR  # not under the emptyDir
    # A ReadWriteOnce volume: a rolling update's second pod could wait forever for it on
    # another node (Multi-Attach) while the first holds it.
    assert deployment["strategy"] == {"type": strategy}
    storage = next(
        o
        for o in desired_objects("acme", "signet", spec)
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "acme-storage"
    )
    assert "batches" not in {v["name"] for v in storage["spec"]["template"]["spec"]["volumes"]}


def test_batch_storage_class_size_and_an_existing_claim() -> None:
    spec = ApplianceSpec.model_validate(
        {
            **VENDOR_SPEC,
            "signer": {
                "replicas": 3,
                "batchStorage": {"size": "200Gi", "storageClassName": "cephfs.rook"},
            },
        }
    )
    claim = batch_claim("acme", "signet", spec)
    assert claim["spec"]["storageClassName"] == "cephfs.rook"
    assert claim["spec"]["resources"]["requests"]["storage"] == "200Gi"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    own = ApplianceSpec.model_validate(
        {**VENDOR_SPEC, "signer": {"batchStorage": {"claimName": "nfs-batches"}}}
    )
    _, pod = _signer_pod(own)
    assert {"name": "batches", "persistentVolumeClaim": {"claimName": "nfs-batches"}} in pod[
        "volumes"
    ]
    one, other = (
        ApplianceSpec.model_validate(r) for r in (VENDOR_SPEC, copy.deepcopy(VENDOR_SPEC))
    )
    signer = next(c for c in COMPONENTS if c.name == "signer")
    assert config_hash(one, signer, "acme") == config_hash(other, signer, "acme")
    assert config_hash(one, signer, "acme") != config_hash(own, signer, "acme")  # rolls out


def test_several_signers_need_a_shared_batch_volume() -> None:
    two_on_one_node = {
        **VENDOR_SPEC,
        "signer": {"replicas": 2, "batchStorage": {"accessMode": "ReadWriteOnce"}},
    }
    spec, problem = parse_spec(two_on_one_node)
    assert spec is None and "batchStorage.accessMode must be ReadWriteMany" in problem
    assert parse_spec({**VENDOR_SPEC, "signer": {**two_on_one_node["signer"], "replicas": 1}})[0]
    # The API server refuses it too (CEL), and the schema knows the field and its values.
    schema = _schema("appliances.signet.dev.yaml")
    signer = schema["properties"]["spec"]["properties"]["signer"]
    (rule,) = signer["x-kubernetes-validations"]
    # An explicit null (kept: the field is nullable) is "derived" for pydantic, so the
    # rule refuses ReadWriteOnce only, not everything but ReadWriteMany.
    assert "self.batchStorage.accessMode != 'ReadWriteOnce'" in rule["rule"]
    assert "== 'ReadWriteMany'" not in rule["rule"]
    explicit_null = {**VENDOR_SPEC, "signer": {"replicas": 2, "batchStorage": {"accessMode": None}}}
    assert parse_spec(explicit_null)[0] is not None
    access = signer["properties"]["batchStorage"]["properties"]["accessMode"]
    assert access["nullable"] is True  # what makes the API server keep the null
    assert "self.replicas <= 1" in rule["rule"]
    validator = jsonschema.Draft202012Validator(schema)
    shared = {**VENDOR_SPEC, "signer": {"batchStorage": {"accessMode": "ReadWriteMany"}}}
    assert not list(validator.iter_errors({"spec": shared}))
    assert list(
        validator.iter_errors(
            {"spec": {**VENDOR_SPEC, "signer": {"batchStorage": {"accessMode": "Shared"}}}}
        )
    )
    assert list(
        validator.iter_errors({"spec": {**VENDOR_SPEC, "signer": {"batchStorage": {"size": "1"}}}})
    )


def test_the_batch_claim_as_it_exists_must_carry_the_spec() -> None:
    """Judged on the claim: its access mode cannot change, whatever the spec says now."""
    two = ApplianceSpec.model_validate(VENDOR_SPEC)
    one = ApplianceSpec.model_validate({**VENDOR_SPEC, "signer": {"replicas": 1}})
    claim = "acme-signer-batches"
    assert batch_claim_refused(one, claim, ["ReadWriteOnce"]) is None
    assert batch_claim_refused(two, claim, ["ReadWriteMany"]) is None
    scaled = batch_claim_refused(two, claim, ["ReadWriteOnce"])
    assert scaled is not None and scaled["reason"] == "BatchStorageNotShared"
    assert scaled["type"] == "Ready" and scaled["status"] == "False"
    assert "ReadWriteOnce" in scaled["message"] and "claimName" in scaled["message"]
    absent = batch_claim_refused(one, "nfs-batches", None)
    assert absent is not None and absent["reason"] == "VolumeClaimMissing"
    assert "nfs-batches" in absent["message"]
    going = batch_claim_refused(one, claim, ["ReadWriteOnce"], deleting=True)
    assert going is not None and going["reason"] == "BatchStorageDeleting"


def test_batch_store_readiness_is_a_condition() -> None:
    spec = ApplianceSpec.model_validate(VENDOR_SPEC)
    storage = Readiness(200, RUNNING)
    base = {"status": "ready", "hsm": "reachable", "batch_directory": BATCH_DIR}

    def judged(body: dict[str, Any]) -> dict[str, dict[str, str]]:
        found = conditions(spec, {"signer": Readiness(200, body), "storage": storage})
        return {c["type"]: c for c in found}

    intact = judged({**base, "batch_store": "ready", "batch_store_id": "ab12"})
    assert (
        intact["BatchStoreReady"]["status"] == "True"
        and "verified" in intact["BatchStoreReady"]["message"]
    )
    assert intact["Ready"]["status"] == "True"
    lost = judged(
        {**base, "batch_store": "missing", "batch_store_problem": "no store marker in /x"}
    )
    assert lost["BatchStoreReady"]["status"] == "False"
    assert lost["BatchStoreReady"]["reason"] == "BatchStoreMissing"
    assert lost["BatchStoreReady"]["message"] == "no store marker in /x"
    assert lost["Ready"]["status"] == "False" and "BatchStoreReady" in lost["Ready"]["message"]
    assert lost["SignerReady"]["status"] == "True"  # signing goes on
    assert judged({**base, "batch_store": "mismatch"})["BatchStoreReady"]["reason"] == (
        "BatchStoreMismatch"
    )
    older = judged(base)  # a signer release from before the guard: not a failure
    assert older["BatchStoreReady"]["status"] == "Unknown" and older["Ready"]["status"] == "True"
    stale = judged({**base, "batch_store": "stale"})["BatchStoreReady"]
    assert stale["status"] == "False" and stale["reason"] == "BatchStoreStale"
    assert judged({**base, "batch_store": "bad_marker"})["BatchStoreReady"]["reason"] == (
        "BatchStoreMarkerUnreadable"
    )
    # A readiness that crashed (500) is not taken for an older signer release.
    crashed = conditions(spec, {"signer": Readiness(500, {}), "storage": storage})
    store = next(c for c in crashed if c["type"] == "BatchStoreReady")
    assert store["reason"] == "ReadinessFailed" and "does not report" not in store["message"]


def test_the_signer_pods_get_the_tsa_clock_settings() -> None:
    def signer_env(spec: ApplianceSpec) -> dict[str, str]:
        signer = next(
            o
            for o in desired_objects("acme", "signet", spec)
            if o["kind"] == "Deployment" and o["metadata"]["name"] == "acme-signer"
        )
        env = signer["spec"]["template"]["spec"]["containers"][0]["env"]
        return {e["name"]: e.get("value", "") for e in env}

    default = signer_env(ApplianceSpec.model_validate(VENDOR_SPEC))
    assert default["SIGNET_SIGNER_TIME_TRUST"] == "kernel"
    assert default["SIGNET_SIGNER_TSA_ACCURACY_MS"] == "500"
    assert "SIGNET_SIGNER_TIME_REFERENCES" not in default
    clock = {"accuracyMs": 100, "references": ["ntp1.example.com", "10.0.0.7:123"]}
    named = signer_env(ApplianceSpec.model_validate({**VENDOR_SPEC, "signer": {"time": clock}}))
    assert named["SIGNET_SIGNER_TSA_ACCURACY_MS"] == "100"
    assert named["SIGNET_SIGNER_TIME_REFERENCES"] == '["ntp1.example.com", "10.0.0.7:123"]'
    with pytest.raises(ValidationError):
        ApplianceSpec.model_validate({**VENDOR_SPEC, "signer": {"time": {"trust": "sundial"}}})


def test_the_tsa_clock_is_a_condition() -> None:
    spec = ApplianceSpec.model_validate(VENDOR_SPEC)
    storage = Readiness(200, RUNNING)
    base = {"status": "ready", "hsm": "reachable", "time_accuracy_ms": 500}

    def judged(body: dict[str, Any]) -> dict[str, dict[str, str]]:
        found = conditions(spec, {"signer": Readiness(200, body), "storage": storage})
        return {c["type"]: c for c in found}

    good = judged({**base, "time": "synchronised", "time_estimated_error_ms": 1.5})
    assert good["TimeSynchronized"]["status"] == "True"
    assert good["TimeSynchronized"]["reason"] == "Synchronised"
    assert "estimated error 1.5 ms" in good["TimeSynchronized"]["message"]
    assert "500 ms" in good["TimeSynchronized"]["message"] and good["Ready"]["status"] == "True"
    near = judged(
        {
            **base,
            "time": "synchronised",
            "time_estimated_error_ms": 1.5,
            "time_references": ["ntp1"],
            "time_reference_offset_ms": 450.0,
            "time_warning": "the clock is +450.0 ms off reference ntp1, near the accuracy",
        }
    )["TimeSynchronized"]
    assert near["status"] == "True" and near["reason"] == "NearAccuracy"
    assert "reference offset 450 ms" in near["message"]
    bad = judged(
        {
            **base,
            "time": "unsynchronised",
            "time_estimated_error_ms": 16000.0,
            "time_problem": "the kernel reports the clock unsynchronised",
        }
    )
    assert bad["TimeSynchronized"]["status"] == "False"
    assert bad["TimeSynchronized"]["reason"] == "ClockUnsynchronised"
    assert "kernel reports" in bad["TimeSynchronized"]["message"]
    assert bad["Ready"]["status"] == "False" and "TimeSynchronized" in bad["Ready"]["message"]
    assert bad["SignerReady"]["status"] == "True"
    trusted = judged({**base, "time": "trusted-host", "time_estimated_error_ms": None})
    assert trusted["TimeSynchronized"]["status"] == "Unknown"
    assert trusted["TimeSynchronized"]["reason"] == "TrustedHost"
    assert trusted["Ready"]["status"] == "True"
    older = judged(base)["TimeSynchronized"]
    assert older["status"] == "Unknown" and older["reason"] == "NotReported"


def test_every_change_of_the_time_condition_is_an_event(monkeypatch: pytest.MonkeyPatch) -> None:
    from signet.operator import handlers

    posted: list[tuple[str, str, str]] = []
    monkeypatch.setattr(
        handlers.kopf,
        "warn",
        lambda body, *, reason, message: posted.append(("W", reason, message)),
    )
    monkeypatch.setattr(
        handlers.kopf,
        "info",
        lambda body, *, reason, message: posted.append(("N", reason, message)),
    )

    def time(status: str, reason: str) -> list[dict[str, str]]:
        return [{"type": "TimeSynchronized", "status": status, "reason": reason, "message": "m"}]

    body: Any = {"metadata": {"name": "acme"}}
    steps = [
        time("Unknown", "TrustedHost"),
        time("True", "Synchronised"),
        time("True", "Synchronised"),  # no change: no Event
        time("True", "NearAccuracy"),
        time("False", "ClockUnsynchronised"),
        time("True", "Synchronised"),
    ]
    previous: list[dict[str, Any]] = []
    for step in steps:
        handlers._announce_transitions(body, previous, step)
        previous = step
    assert [(kind, reason) for kind, reason, _ in posted] == [
        ("N", "Synchronised"),
        ("N", "NearAccuracy"),
        ("W", "ClockUnsynchronised"),
        ("N", "Recovered"),
    ]


def test_a_batch_claim_not_bound_or_of_another_mode_is_reported() -> None:
    from signet.operator.conditions import batch_claim_pending, batch_claim_refused

    assert batch_claim_pending("acme-signer-batches", "Bound") is None
    pending = batch_claim_pending("acme-signer-batches", "Pending")
    assert pending is not None and pending["reason"] == "BatchStoragePending"
    assert "ReadWriteMany" in pending["message"] and "acme-signer-batches" in pending["message"]
    one = ApplianceSpec.model_validate(
        {**VENDOR_SPEC, "signer": {"replicas": 1, "batchStorage": {"accessMode": "ReadWriteMany"}}}
    )
    refused = batch_claim_refused(one, "mine", ["ReadWriteOnce"])
    assert refused is not None and refused["reason"] == "BatchStorageModeMismatch"
    assert batch_claim_refused(one, "mine", ["ReadWriteMany"]) is None
    implied = ApplianceSpec.model_validate({**VENDOR_SPEC, "signer": {"replicas": 1}})
    assert batch_claim_refused(implied, "mine", ["ReadWriteMany"]) is None  # Recreate: safe


def test_the_signer_pod_does_not_walk_its_volume_at_every_start() -> None:
    spec = ApplianceSpec.model_validate(VENDOR_SPEC)
    signer = next(
        o
        for o in desired_objects("acme", "signet", spec)
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "acme-signer"
    )
    context = signer["spec"]["template"]["spec"]["securityContext"]
    assert context["fsGroupChangePolicy"] == "OnRootMismatch" and context["fsGroup"] == 10001


class _Claims:
    """`CoreV1Api` as `handlers._batch_claim` reads the batch claim, and nothing more."""

    def __init__(self, claim: Any) -> None:
        self.claim = claim

    def read_namespaced_persistent_volume_claim(self, name: str, namespace: str) -> Any:
        return self.claim


def test_the_handler_reports_an_unbound_claim_and_a_size_it_does_not_apply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kubernetes import client
    from signet.operator import handlers

    warned: list[tuple[str, str]] = []
    monkeypatch.setattr(
        handlers.kopf, "warn", lambda body, *, reason, message: warned.append((reason, message))
    )
    spec = ApplianceSpec.model_validate(
        {**VENDOR_SPEC, "signer": {"batchStorage": {"size": "50Gi"}}}
    )
    body: Any = {"metadata": {"name": "acme", "namespace": "signet"}}

    def claim(phase: str) -> Any:
        return client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="acme-signer-batches"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteMany"],
                resources=client.V1VolumeResourceRequirements(requests={"storage": "10Gi"}),
            ),
            status=client.V1PersistentVolumeClaimStatus(phase=phase),
        )

    refusal, pending = handlers._batch_claim(
        None,
        _Claims(claim("Pending")),
        body,
        spec,
        announce=True,  # type: ignore[arg-type]
    )
    assert refusal is None and pending is not None and pending["reason"] == "BatchStoragePending"
    assert [reason for reason, _ in warned] == ["BatchStorageSizeUnchanged"]
    assert "10Gi" in warned[0][1] and "50Gi" in warned[0][1]
    refusal, pending = handlers._batch_claim(
        None,
        _Claims(claim("Bound")),
        body,
        spec,
        announce=False,  # type: ignore[arg-type]
    )
    assert refusal is None and pending is None and len(warned) == 1
