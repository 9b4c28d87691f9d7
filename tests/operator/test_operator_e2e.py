"""The real operator (Kopf, in a subprocess) against the Kubernetes emulator.

The services' readiness is simulated through a file the operator reads in
tests (SIGNET_OPERATOR_READINESS_FILE): no pod ever runs here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support.kube_emulator import RunningEmulator

CHART = Path(__file__).resolve().parents[2] / "helm" / "signet"
NS = "signet"

SPEC: dict[str, Any] = {
    "publicUrl": "https://sign.example.com",
    "hsm": {"softhsm": True},
    "signer": {"replicas": 2},
    "objectStore": {
        "endpoint": "minio.minio.svc:9000",
        "secure": False,
        "accessKey": {"name": "minio-credentials", "key": "access-key"},
        "secretKey": {"name": "minio-credentials", "key": "secret-key"},
        "retentionYears": 10,
    },
}
READY = {
    "signer": [200, {"status": "ready", "hsm": "reachable"}],
    "storage": [200, {"status": "ready", "object_lock": "COMPLIANCE", "retention_years": 10}],
}


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    running = RunningEmulator(CHART / "crds")
    yield running
    running.close()


@pytest.fixture(scope="module")
def api(emulator: RunningEmulator) -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = emulator.url
    return client.ApiClient(configuration)


@pytest.fixture(scope="module")
def readiness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("operator") / "readiness.json"
    path.write_text(json.dumps(READY))
    return path


@pytest.fixture(scope="module")
def operator(emulator: RunningEmulator, readiness: Path) -> Iterator[subprocess.Popen[str]]:
    env = {
        **os.environ,
        "SIGNET_OPERATOR_API_URL": emulator.url,
        "SIGNET_OPERATOR_READINESS_FILE": str(readiness),
        "SIGNET_OPERATOR_INTERVAL": "1",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kopf",
            "run",
            "--standalone",
            "-n",
            NS,
            "--verbose",
            "-m",
            "signet.operator.handlers",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 40) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except client.ApiException as exc:
            last = exc.status
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: last saw {last!r}")


def _appliance(api: client.ApiClient, name: str) -> dict[str, Any]:
    result: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "signet.dev", "v1alpha1", NS, "appliances", name
    )
    return result


def _conditions(api: client.ApiClient, name: str) -> dict[str, dict[str, str]]:
    status = _appliance(api, name).get("status") or {}
    return {c["type"]: c for c in status.get("conditions", [])}


def test_appliance_becomes_its_children_and_follows_readiness(
    api: client.ApiClient, operator: subprocess.Popen[str], readiness: Path
) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespaced_secret(
        NS,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "minio-credentials", "namespace": NS},
            "stringData": {"access-key": "signet", "secret-key": "not-a-real-key"},
        },
    )
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        "signet.dev",
        "v1alpha1",
        NS,
        "appliances",
        {
            "apiVersion": "signet.dev/v1alpha1",
            "kind": "Appliance",
            "metadata": {"name": "acme", "namespace": NS},
            "spec": SPEC,
        },
    )
    owner_uid = _appliance(api, "acme")["metadata"]["uid"]

    signer = wait_for(
        "the signer Deployment", lambda: apps.read_namespaced_deployment("acme-signer", NS)
    )
    storage = wait_for(
        "the storage Deployment", lambda: apps.read_namespaced_deployment("acme-storage", NS)
    )
    for deployment in (signer, storage):
        (reference,) = deployment.metadata.owner_references
        assert reference.uid == owner_uid and reference.kind == "Appliance" and reference.controller
        pod = deployment.spec.template.spec
        assert pod.security_context.run_as_non_root
        assert all(c.security_context.read_only_root_filesystem for c in pod.containers)
    assert signer.spec.replicas == 2 and storage.spec.replicas == 1
    token = wait_for(
        "the service token", lambda: core.read_namespaced_secret("acme-service-token", NS)
    )
    assert token.metadata.owner_references[0].uid == owner_uid
    for kind_list in (
        client.NetworkingV1Api(api).list_namespaced_network_policy(NS).items,
        client.PolicyV1Api(api).list_namespaced_pod_disruption_budget(NS).items,
        core.list_namespaced_service(NS).items,
    ):
        assert kind_list and all(o.metadata.owner_references[0].uid == owner_uid for o in kind_list)

    ready = wait_for(
        "Ready=True", lambda: _conditions(api, "acme").get("Ready", {}).get("status") == "True"
    )
    assert ready
    conditions = _conditions(api, "acme")
    assert conditions["PortalReady"]["reason"] == "NotInstalled"
    assert _appliance(api, "acme")["status"]["observedGeneration"] == 1

    # The HSM goes away: the condition follows, with the signer's reason.
    readiness.write_text(
        json.dumps(
            {
                **READY,
                "signer": [
                    503,
                    {
                        "status": "unavailable",
                        "error": "hsm_unavailable",
                        "reason": "token 'signet' not found",
                    },
                ],
            }
        )
    )
    wait_for(
        "HSMReachable=False",
        lambda: _conditions(api, "acme").get("HSMReachable", {}).get("status") == "False",
    )
    assert "not found" in _conditions(api, "acme")["HSMReachable"]["message"]
    readiness.write_text(json.dumps(READY))

    # A changed spec rolls out.
    custom.patch_namespaced_custom_object(
        "signet.dev", "v1alpha1", NS, "appliances", "acme", {"spec": {"signer": {"replicas": 3}}}
    )
    wait_for(
        "3 signer replicas",
        lambda: apps.read_namespaced_deployment("acme-signer", NS).spec.replicas == 3,
    )
    wait_for(
        "observedGeneration 2",
        lambda: _appliance(api, "acme")["status"].get("observedGeneration") == 2,
    )

    # Three years of retention: refused with a clear condition and an Event, nothing changed.
    before = apps.read_namespaced_deployment("acme-storage", NS).spec.template.metadata.annotations
    custom.patch_namespaced_custom_object(
        "signet.dev",
        "v1alpha1",
        NS,
        "appliances",
        "acme",
        {"spec": {"objectStore": {"retentionYears": 3}}},
    )
    refused = wait_for(
        "InvalidSpec",
        lambda: _conditions(api, "acme").get("Ready", {}).get("reason") == "InvalidSpec",
    )
    assert refused
    assert "retentionYears" in _conditions(api, "acme")["Ready"]["message"]
    events = core.list_namespaced_event(NS).items
    assert any(e.reason == "InvalidSpec" and e.type == "Warning" for e in events)
    after = apps.read_namespaced_deployment("acme-storage", NS).spec.template.metadata.annotations
    assert before == after


def test_a_missing_secret_is_a_condition_not_a_crash(
    api: client.ApiClient, operator: subprocess.Popen[str]
) -> None:
    spec = {
        **SPEC,
        "objectStore": {**SPEC["objectStore"], "accessKey": {"name": "nowhere", "key": "k"}},
    }
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "signet.dev",
        "v1alpha1",
        NS,
        "appliances",
        {
            "apiVersion": "signet.dev/v1alpha1",
            "kind": "Appliance",
            "metadata": {"name": "lost", "namespace": NS},
            "spec": spec,
        },
    )
    wait_for(
        "SecretMissing",
        lambda: _conditions(api, "lost").get("Ready", {}).get("reason") == "SecretMissing",
    )
    assert "nowhere" in _conditions(api, "lost")["Ready"]["message"]
    names = [d.metadata.name for d in client.AppsV1Api(api).list_namespaced_deployment(NS).items]
    assert not any(name.startswith("lost-") for name in names)
    assert operator.poll() is None, "the operator must keep running"


def test_signing_policy_is_versioned_and_distributed(
    api: client.ApiClient, operator: subprocess.Popen[str]
) -> None:
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        "signet.dev",
        "v1alpha1",
        NS,
        "signingpolicies",
        {
            "apiVersion": "signet.dev/v1alpha1",
            "kind": "SigningPolicy",
            "metadata": {"name": "hr", "namespace": NS},
            "spec": {"level": "B-LTA", "identityChecks": ["otp-sms"]},
        },
    )
    core = client.CoreV1Api(api)
    config_map = wait_for(
        "the policy ConfigMap", lambda: core.read_namespaced_config_map("signet-policy-hr", NS)
    )
    document = json.loads(config_map.data["policy.json"])
    assert document["version"] == 1 and document["spec"]["identityChecks"] == ["otp-sms"]
    custom.patch_namespaced_custom_object(
        "signet.dev", "v1alpha1", NS, "signingpolicies", "hr", {"spec": {"maxSigners": 4}}
    )
    wait_for(
        "version 2",
        lambda: (
            json.loads(core.read_namespaced_config_map("signet-policy-hr", NS).data["policy.json"])[
                "version"
            ]
            == 2
        ),
    )
    custom.patch_namespaced_custom_object(
        "signet.dev", "v1alpha1", NS, "signingpolicies", "hr", {"spec": {"retentionYears": 2}}
    )

    def refused() -> bool:
        policy = custom.get_namespaced_custom_object(
            "signet.dev", "v1alpha1", NS, "signingpolicies", "hr"
        )
        conditions = {c["type"]: c for c in (policy.get("status") or {}).get("conditions", [])}
        return conditions.get("Accepted", {}).get("status") == "False"

    wait_for("the policy refused", refused)
    still = json.loads(core.read_namespaced_config_map("signet-policy-hr", NS).data["policy.json"])
    assert still["version"] == 2  # the refused version was not distributed
