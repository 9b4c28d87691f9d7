"""Operator test set-up: a Kubernetes API, the real operator in a subprocess.

The API is the Kubernetes emulator (tests/support/kube_emulator.py), one per
test module (module scope): modules leave objects behind that the next must
not see.  The services' readiness is simulated through a JSON file the
operator reads in tests (``SIGNET_OPERATOR_READINESS_FILE``): no pod runs.

Real-cluster tier: with ``SIGNET_TEST_KUBECONFIG`` pointing at a disposable
cluster (kind, k3s), the same tests run against its API server instead, in
the namespace ``SIGNET_TEST_NAMESPACE`` (default ``signet``): the CRDs are
applied first, and after each module its Appliances and SigningPolicies are
deleted and the test waits until the cluster's garbage collector has removed
their children (the signer's batch claims, which outlive their Appliance, are
deleted by the clean-up itself).  Only the RBAC comparison needs the emulator (it reads the
emulator's record of every call) and is skipped there.
"""

from __future__ import annotations

import collections
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from tests.support import helm
from tests.support.kube_emulator import Call, Counted, RunningEmulator
from tests.support.operator_process import (
    NAMESPACE,
    OperatorProcess,
    start_operator,
    stop_operator,
)

CHART = Path(__file__).resolve().parents[2] / "helm" / "signet"
REAL_KUBECONFIG = os.environ.get("SIGNET_TEST_KUBECONFIG")
NS = os.environ.get("SIGNET_TEST_NAMESPACE", NAMESPACE) if REAL_KUBECONFIG else NAMESPACE
READY: dict[str, Any] = {
    "signer": [200, {"status": "ready", "hsm": "reachable"}],
    "storage": [
        200,
        {
            "status": "ready",
            "object_lock": "COMPLIANCE",
            "retention_years": 10,
            # what the storage pods run with (what retention and staleness are judged by)
            "configured_retention_years": 10,
            "tree_head_interval_seconds": 60,
        },
    ],
    # asked only of an Appliance whose portal is enabled
    "portal": [200, {"status": "ready", "database": "ready"}],
}


@dataclass
class Cluster:
    """The API server the tests talk to: the emulator, or a real cluster."""

    #: the emulator's URL; None for a real cluster (reached through `kubeconfig`)
    url: str | None
    kubeconfig: Path
    #: every call the emulator served; None on a real cluster (not observable)
    calls: set[Call] | None
    #: how many requests per (agent, resource, verb, object name); None on a real cluster
    counts: collections.Counter[Counted] | None = None

    @property
    def real(self) -> bool:
        return self.url is None

    def client(self) -> client.ApiClient:
        if self.url is None:
            return config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-any-return]
        configuration = client.Configuration()
        configuration.host = self.url
        return client.ApiClient(configuration)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if REAL_KUBECONFIG:
        real = Cluster(None, Path(REAL_KUBECONFIG), None)
        _prepare_real_cluster(real.client())
        yield real
        for release in ("signet", "rbac"):  # what the modules install; absent ones are fine
            helm.uninstall(release, NS, real.kubeconfig)
        _clean_real_cluster(real.client())
        return
    running = RunningEmulator(CHART / "crds")
    kubeconfig = helm.kubeconfig_for(running.url, tmp_path_factory.mktemp("kube") / "config", NS)
    yield Cluster(running.url, kubeconfig, running.calls, running.counts)
    running.close()


def _prepare_real_cluster(api: client.ApiClient) -> None:
    core, extensions = client.CoreV1Api(api), client.ApiextensionsV1Api(api)
    try:
        core.create_namespace({"metadata": {"name": NS}})
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        try:
            extensions.create_custom_resource_definition(crd)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            extensions.patch_custom_resource_definition(crd["metadata"]["name"], crd)


def _clean_real_cluster(api: client.ApiClient) -> None:
    """Delete what the module made; the garbage collector must then remove every child."""
    custom = client.CustomObjectsApi(api)
    for plural in ("signingpolicies", "appliances"):
        for item in custom.list_namespaced_custom_object("signet.dev", "v1alpha1", NS, plural)[
            "items"
        ]:
            name = item["metadata"]["name"]
            # The operator is already stopped: release Kopf's finalizers ourselves.
            custom.patch_namespaced_custom_object(
                "signet.dev", "v1alpha1", NS, plural, name, {"metadata": {"finalizers": None}}
            )
            custom.delete_namespaced_custom_object("signet.dev", "v1alpha1", NS, plural, name)
    apps = client.AppsV1Api(api)
    wait_for(
        "the garbage collector to remove the children",
        lambda: (
            not [
                d
                for d in apps.list_namespaced_deployment(NS).items
                if (d.metadata.labels or {}).get("app.kubernetes.io/managed-by")
                == "signet-operator"
            ]
        ),
        timeout=120,
    )
    # The signer's batch claims are not the Appliances' children (signed documents): the
    # garbage collector left them, and only we, who made this namespace's objects, delete
    # them, with the claims the tests made by hand.
    core = client.CoreV1Api(api)
    claims = core.list_namespaced_persistent_volume_claim(NS).items
    retained = [c for c in claims if (c.metadata.annotations or {}).get("signet.dev/retained")]
    assert all(not c.metadata.owner_references for c in retained)
    for claim in claims:
        if claim.metadata.name.endswith(("-signer-batches", "-shared-batches")):
            core.delete_namespaced_persistent_volume_claim(claim.metadata.name, NS)


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> client.ApiClient:
    return cluster.client()


@pytest.fixture(scope="module")
def readiness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("operator") / "readiness.json"
    path.write_text(json.dumps(READY))
    return path


@pytest.fixture(scope="module")
def operator(cluster: Cluster, readiness: Path) -> Iterator[OperatorProcess]:
    process = start_operator(cluster.url, readiness, kubeconfig=cluster.kubeconfig, namespace=NS)
    yield process
    stop_operator(process)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 40) -> Any:
    """Poll `check` until it returns something true; API errors count as "not yet"."""
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


def appliance(api: client.ApiClient, name: str) -> dict[str, Any]:
    result: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "signet.dev", "v1alpha1", NS, "appliances", name
    )
    return result


def conditions_of(api: client.ApiClient, name: str) -> dict[str, dict[str, str]]:
    status = appliance(api, name).get("status") or {}
    return {c["type"]: c for c in status.get("conditions", [])}
