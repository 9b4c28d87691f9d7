"""One path end to end: real Helm installs the chart, the real operator reconciles what it made.

Helm (its Go library, through helm-sdkpy) installs the CRDs, the operator's
Deployment, RBAC, an Appliance and the default SigningPolicy into the
Kubernetes emulator; then `kopf run` with our handlers turns the Appliance the
chart created into its children.  Every manifest Helm rendered is checked
against the Kubernetes schemas.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes import client

from tests.operator.conftest import (
    CHART,
    NS,
    Cluster,
    appliance,
    conditions_of,
    start_operator,
    stop_operator,
    wait_for,
)
from tests.support import helm
from tests.support.operator_process import OperatorProcess

K8S_VERSION = "1.31"
VALUES: dict[str, Any] = {"appliance": {"create": True, "name": "acme"}}


@pytest.fixture(scope="module")
def kubeconfig(cluster: Cluster) -> Path:
    return cluster.kubeconfig


@pytest.fixture(scope="module")
def installed(api: client.ApiClient, cluster: Cluster, kubeconfig: Path) -> dict[str, Any]:
    client.CoreV1Api(api).create_namespaced_secret(
        NS,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "signet-minio", "namespace": NS},
            "stringData": {"access-key": "signet", "secret-key": "not-a-real-key"},
        },
    )
    client.CoreV1Api(api).create_namespaced_secret(
        NS,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "signet-database", "namespace": NS},
            "stringData": {"url": "postgresql+psycopg://signet@postgres/signet"},
        },
    )
    answer = helm.install(CHART, "signet", NS, VALUES, kubeconfig, memory_driver=not cluster.real)
    assert answer["ok"], answer
    return answer


@pytest.fixture(scope="module")
def chart_operator(
    cluster: Cluster, readiness: Path, installed: dict[str, Any]
) -> Iterator[OperatorProcess]:
    process = start_operator(cluster.url, readiness, kubeconfig=cluster.kubeconfig, namespace=NS)
    yield process
    stop_operator(process)


def test_helm_installs_valid_manifests(api: client.ApiClient, installed: dict[str, Any]) -> None:
    rendered = [doc for doc in yaml.safe_load_all(installed["manifest"]) if doc]
    kinds = sorted(doc["kind"] for doc in rendered)
    assert kinds == sorted(
        ["Appliance", "Deployment", "Role", "RoleBinding", "ServiceAccount", "SigningPolicy"]
    )
    for doc in rendered:
        if doc["apiVersion"].startswith("signet.dev/"):
            continue  # checked against our CRD schemas in test_crds_and_desired
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    # What Helm sent is what the API server holds: the operator, its RBAC, the CRDs.
    apps, rbac = client.AppsV1Api(api), client.RbacAuthorizationV1Api(api)
    operator = apps.read_namespaced_deployment("signet-operator", NS)
    assert operator.spec.template.spec.service_account_name == "signet-operator"
    assert operator.spec.template.spec.containers[0].args[:3] == ["operator", "run", "--namespace"]
    assert rbac.read_namespaced_role("signet-operator", NS).rules
    crds = client.ApiextensionsV1Api(api).list_custom_resource_definition().items
    assert {crd.metadata.name for crd in crds} == {
        "appliances.signet.dev",
        "signingpolicies.signet.dev",
    }


def test_the_operator_reconciles_what_the_chart_created(
    api: client.ApiClient, chart_operator: OperatorProcess
) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    owner = appliance(api, "acme")
    assert owner["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    for component in ("signer", "storage"):
        deployment = wait_for(
            f"the {component} Deployment",
            lambda c=component: apps.read_namespaced_deployment(f"acme-{c}", NS),
        )
        (reference,) = deployment.metadata.owner_references
        assert reference.uid == owner["metadata"]["uid"] and reference.controller
        pod = deployment.spec.template.spec
        assert pod.security_context.run_as_non_root
        assert all(c.security_context.read_only_root_filesystem for c in pod.containers)
    # The chart's values reached the children: 1 signer (SoftHSM), 10 years of retention.
    assert apps.read_namespaced_deployment("acme-signer", NS).spec.replicas == 1
    storage_env = {
        e.name: e.value
        for e in apps.read_namespaced_deployment("acme-storage", NS)
        .spec.template.spec.containers[0]
        .env
    }
    assert storage_env["SIGNET_STORAGE_RETENTION_YEARS"] == "10"
    wait_for(
        "Ready=True", lambda: conditions_of(api, "acme").get("Ready", {}).get("status") == "True"
    )
    # The chart's default SigningPolicy is accepted and distributed.
    policies = wait_for(
        "the default policy published",
        lambda: core.read_namespaced_config_map("signet-policies", NS).data,
    )
    assert json.loads(policies["default.json"])["spec"]["level"] == "B-LTA"


def test_helm_refuses_short_retention_at_render_time(
    api: client.ApiClient, kubeconfig: Path
) -> None:
    values = {"appliance": {"create": True, "spec": {"objectStore": {"retentionYears": 3}}}}
    answer = helm.install(CHART, "short", NS, values, kubeconfig, memory_driver=False)
    assert not answer["ok"] and "retentionYears" in answer["error"]  # the values schema
    # Without the schema (helm --skip-schema-validation), the template still refuses.
    answer = helm.install(
        CHART, "short", NS, values, kubeconfig, memory_driver=False, skip_schema=True
    )
    assert not answer["ok"]
    assert "retention of 3 years is below the statutory minimum of 5" in answer["error"]
    with pytest.raises(client.ApiException) as nothing:
        appliance(api, "signet")  # the refused release created no Appliance
    assert nothing.value.status == 404


@pytest.mark.parametrize(
    ("values", "key"),
    [
        (
            {"appliance": {"create": True, "spec": {"objectStore": {"retentionYear": 3}}}},
            "retentionYear",
        ),
        ({"operater": {"replicas": 1}}, "operater"),
        ({"appliance": {"create": True, "spec": {"signer": {"replicas": 2}}}}, "replicas"),
    ],
    ids=["nested-typo", "top-level-typo", "softhsm-two-signers"],
)
def test_helm_refuses_typos_naming_the_key(
    api: client.ApiClient, kubeconfig: Path, values: dict[str, Any], key: str
) -> None:
    """A typo anywhere installs nothing, and Helm's message names it (values schema)."""
    answer = helm.install(CHART, "typo", NS, values, kubeconfig, memory_driver=False)
    assert not answer["ok"] and key in answer["error"], answer
    with pytest.raises(client.ApiException) as nothing:
        appliance(api, "signet")
    assert nothing.value.status == 404


def test_notes_name_every_secret_and_the_first_admin_command(
    api: client.ApiClient, kubeconfig: Path
) -> None:
    values = {
        "defaultSigningPolicy": {"create": False, "name": "default"},  # the release's own
        "appliance": {
            "create": True,
            "name": "notes",
            "spec": {
                "portal": {
                    "enabled": True,
                    "hostname": "contracts.example.com",
                    "database": {"name": "portal-db", "key": "url"},
                    "smtp": {
                        "host": "mail.example.com",
                        "sender": "signet@example.com",
                        "credentials": "smtp-login",
                    },
                }
            },
        },
    }
    answer = helm.install(CHART, "notes", NS, values, kubeconfig, memory_driver=True)
    assert answer["ok"], answer
    notes = answer["notes"]
    for secret in (
        "signet-minio",
        "signet-database",
        "portal-db",
        "smtp-login",
        "notes-portal-tls",
    ):
        assert secret in notes, secret
    assert "get secret notes-portal-first-admin -o jsonpath='{.data.password}'" in notes


def test_monitoring_servicemonitors_and_dashboard(api: client.ApiClient, kubeconfig: Path) -> None:
    values = {
        "defaultSigningPolicy": {"create": False, "name": "default"},
        "monitoring": {
            "serviceMonitors": {"enabled": True, "labels": {"release": "kube-prometheus"}},
            "dashboard": {"enabled": True},
        },
    }
    answer = helm.install(CHART, "watched", NS, values, kubeconfig, memory_driver=True)
    assert answer["ok"], answer
    objects = [o for o in yaml.safe_load_all(answer["manifest"]) if o]
    monitors = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceMonitor"}
    assert set(monitors) == {"signet-signer", "signet-storage", "signet-portal"}
    signer = monitors["signet-signer"]
    assert signer["metadata"]["labels"]["release"] == "kube-prometheus"
    assert signer["spec"]["endpoints"][0]["port"] == "metrics"  # never the API port
    assert signer["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "signer"
    (dashboard,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    panels = json.loads(dashboard["data"]["signet.json"])["panels"]
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    # every metric the dashboard plots is one a service registers
    names = set(re.findall(r"signet_[a-z_]+", exprs))
    source = "".join(
        p.read_text() for p in Path(CHART).parents[1].glob("services/*/signet/**/*.py")
    ) + "".join(p.read_text() for p in Path(CHART).parents[1].glob("operator/signet/**/*.py"))
    assert names and all(f'"{n}"' in source for n in names), names - {
        n for n in names if f'"{n}"' in source
    }
