"""The real operator (`signet operator run`, a subprocess) against the Kubernetes API
(the emulator, or a real cluster: see conftest)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from signet.operator import desired

from tests.common.test_metrics import Scrape
from tests.operator.conftest import CHART, NS, READY, Cluster, appliance, conditions_of, wait_for
from tests.support import helm
from tests.support.operator_process import OperatorProcess

SPEC: dict[str, Any] = {
    "publicUrl": "https://sign.example.com",
    "hsm": {"softhsm": True},
    "signer": {"replicas": 1},
    "objectStore": {
        "endpoint": "minio.minio.svc:9000",
        "secure": False,
        "accessKey": {"name": "minio-credentials", "key": "access-key"},
        "secretKey": {"name": "minio-credentials", "key": "secret-key"},
        "retentionYears": 10,
    },
    "database": {"url": {"name": "postgres", "key": "url"}},
}


def _ensure_referenced_secrets(api: client.ApiClient) -> None:
    """The Secrets `SPEC` names (created here unless an earlier test did)."""
    core = client.CoreV1Api(api)
    for name, data in (
        ("minio-credentials", {"access-key": "signet", "secret-key": "not-a-real-key"}),
        ("postgres", {"url": "postgresql+psycopg://signet@postgres/signet"}),
    ):
        try:
            core.create_namespaced_secret(
                NS,
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": name, "namespace": NS},
                    "stringData": data,
                },
            )
        except client.ApiException as exc:
            if exc.status != 409:
                raise


def _create_appliance(api: client.ApiClient, name: str, spec: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "signet.dev",
        "v1alpha1",
        NS,
        "appliances",
        {
            "apiVersion": "signet.dev/v1alpha1",
            "kind": "Appliance",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec,
        },
    )


def _policy(api: client.ApiClient, name: str, spec: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "signet.dev",
        "v1alpha1",
        NS,
        "signingpolicies",
        {
            "apiVersion": "signet.dev/v1alpha1",
            "kind": "SigningPolicy",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec,
        },
    )


def test_appliance_becomes_its_children_and_follows_readiness(
    api: client.ApiClient, operator: OperatorProcess, readiness: Path, cluster: Cluster
) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    _ensure_referenced_secrets(api)
    custom = client.CustomObjectsApi(api)
    _create_appliance(api, "acme", SPEC)
    owner_uid = appliance(api, "acme")["metadata"]["uid"]

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
    assert signer.spec.replicas == 1 and storage.spec.replicas == 1
    # A SoftHSM trial: the token lives on a claim owned by the Appliance, initialised
    # before the signer starts, one signer pod at a time.
    claim = core.read_namespaced_persistent_volume_claim("acme-softhsm-token", NS)
    assert claim.metadata.owner_references[0].uid == owner_uid
    assert [c.name for c in signer.spec.template.spec.init_containers] == [
        "hsm-module",
        "softhsm-token",
    ]
    assert signer.spec.strategy.type == "Recreate"
    # Batch documents on their own claim, which the Appliance does not own: deleting it
    # must not let the garbage collector take signed documents along.
    batches = core.read_namespaced_persistent_volume_claim("acme-signer-batches", NS)
    assert not batches.metadata.owner_references
    assert batches.metadata.annotations[desired.RETAINED]
    assert batches.spec.access_modes == ["ReadWriteOnce"]  # one signer: Recreate, above
    mounted = {v.name: v for v in signer.spec.template.spec.volumes}["batches"]
    assert mounted.persistent_volume_claim.claim_name == "acme-signer-batches"
    signer_env = {e.name: e.value for e in signer.spec.template.spec.containers[0].env}
    assert signer_env["SIGNET_SIGNER_BATCH_DIRECTORY"] == "/var/lib/signet-batches"
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
    # Prometheus has its own port on every service, behind the Service and in the pod.
    for component in ("signer", "storage"):
        ports = {
            p.name: p.port for p in core.read_namespaced_service(f"acme-{component}", NS).spec.ports
        }
        assert set(ports) == {"http", "metrics"}, ports
    container = signer.spec.template.spec.containers[0]
    assert "--metrics-port" not in container.args  # an older image would exit on it
    assert {e.name: e.value for e in container.env}["SIGNET_SIGNER_METRICS_PORT"] == "9101"

    ready = wait_for(
        "Ready=True", lambda: conditions_of(api, "acme").get("Ready", {}).get("status") == "True"
    )
    assert ready
    conditions = conditions_of(api, "acme")
    assert conditions["PortalReady"]["reason"] == "Disabled"  # installed, not enabled
    assert appliance(api, "acme")["status"]["observedGeneration"] == 1

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
        lambda: conditions_of(api, "acme").get("HSMReachable", {}).get("status") == "False",
    )
    assert "not found" in conditions_of(api, "acme")["HSMReachable"]["message"]
    readiness.write_text(json.dumps(READY))

    # The TSA certificate runs out in ten days: a condition and a Warning Event, ahead of time.
    soon = (datetime.now(UTC) + timedelta(days=10)).isoformat()
    expiring = [{"name": "tsa", "not_after": soon}, {"name": "root", "not_after": "2046-01-01"}]
    signer_body = {**READY["signer"][1], "certificates": expiring}
    readiness.write_text(json.dumps({**READY, "signer": [200, signer_body]}))
    wait_for(
        "CertificatesValid=False",
        lambda: (
            conditions_of(api, "acme").get("CertificatesValid", {}).get("reason") == "ExpiringSoon"
        ),
    )
    assert "tsa" in conditions_of(api, "acme")["CertificatesValid"]["message"]
    wait_for_warning(core, "ExpiringSoon", mentioning="tsa")
    assert conditions_of(api, "acme")["Ready"]["status"] == "True"  # a warning, not an outage
    readiness.write_text(json.dumps(READY))

    # The signer finds its batch directory without the store marker the database knows:
    # its own condition and a Warning Event; the signer itself stays ready.
    lost = {
        **READY["signer"][1],
        "batch_store": "missing",
        "batch_store_problem": "the batch directory has no store marker but the database "
        "lists batches: the volume is empty, replaced or not mounted",
    }
    readiness.write_text(json.dumps({**READY, "signer": [200, lost]}))
    wait_for(
        "BatchStoreReady=False",
        lambda: (
            conditions_of(api, "acme").get("BatchStoreReady", {}).get("reason")
            == "BatchStoreMissing"
        ),
    )
    seen = conditions_of(api, "acme")
    assert "no store marker" in seen["BatchStoreReady"]["message"]
    assert seen["Ready"]["status"] == "False" and "BatchStoreReady" in seen["Ready"]["message"]
    assert seen["SignerReady"]["status"] == "True"
    wait_for_warning(core, "BatchStoreMissing")
    readiness.write_text(json.dumps(READY))
    wait_for("Ready=True again", lambda: conditions_of(api, "acme")["Ready"]["status"] == "True")

    # The TSA's clock loses its synchronisation: timestamps are refused, a condition and a
    # Warning Event say why; back in sync, it recovers (a Normal Event).
    clock = {"time_source": "kernel", "time_accuracy_ms": 500}
    unsynced = {
        **READY["signer"][1],
        **clock,
        "time": "unsynchronised",
        "time_estimated_error_ms": 16000.0,
        "time_problem": "the kernel reports the clock unsynchronised",
    }
    readiness.write_text(json.dumps({**READY, "signer": [200, unsynced]}))
    wait_for(
        "TimeSynchronized=False",
        lambda: conditions_of(api, "acme").get("TimeSynchronized", {}).get("status") == "False",
    )
    seen = conditions_of(api, "acme")
    assert seen["TimeSynchronized"]["reason"] == "ClockUnsynchronised"
    assert seen["Ready"]["status"] == "False" and "TimeSynchronized" in seen["Ready"]["message"]
    wait_for_warning(core, "ClockUnsynchronised", mentioning="kernel reports")
    synced = {**READY["signer"][1], **clock, "time": "synchronised", "time_estimated_error_ms": 2.0}
    readiness.write_text(json.dumps({**READY, "signer": [200, synced]}))
    wait_for(
        "TimeSynchronized=True",
        lambda: conditions_of(api, "acme").get("TimeSynchronized", {}).get("status") == "True",
    )
    wait_for(
        "a Recovered Event for the clock",
        lambda: any(
            e.reason == "Recovered" and "TimeSynchronized" in (e.message or "")
            for e in core.list_namespaced_event(NS).items
        ),
    )
    readiness.write_text(json.dumps(READY))
    wait_for("Ready=True again", lambda: conditions_of(api, "acme")["Ready"]["status"] == "True")

    # From the trial to a vendor HSM and two signers: the change rolls out, the
    # disruption budget switches from "eviction allowed" to "one stays up" (the merge
    # patch clears the other field), and the SoftHSM init container goes away.
    core.create_namespaced_secret(
        NS,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hsm-pin", "namespace": NS},
            "stringData": {"pin": "1234"},
        },
    )
    vendor = {
        "softhsm": False,
        "moduleImage": "registry.example.com/luna-client:10.7",
        "modulePath": "/usr/safenet/lunaclient/lib/libCryptoki2_64.so",
        "pin": {"name": "hsm-pin", "key": "pin"},
    }
    custom.patch_namespaced_custom_object(
        "signet.dev",
        "v1alpha1",
        NS,
        "appliances",
        "acme",
        {"spec": {"hsm": vendor, "signer": {"replicas": 2}}},
    )
    # The batch claim is ReadWriteOnce (one signer made it) and cannot change: refused,
    # with an Event, nothing applied, the other conditions kept.
    wait_for(
        "BatchStorageNotShared",
        lambda: (
            conditions_of(api, "acme").get("Ready", {}).get("reason") == "BatchStorageNotShared"
        ),
    )
    assert "acme-signer-batches" in conditions_of(api, "acme")["Ready"]["message"]
    assert conditions_of(api, "acme")["SignerReady"]["status"] == "True"
    assert _warned(core, "BatchStorageNotShared")
    assert apps.read_namespaced_deployment("acme-signer", NS).spec.replicas == 1
    # The admin copies the batches to a ReadWriteMany claim and names it.
    core.create_namespaced_persistent_volume_claim(
        NS,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "acme-shared-batches", "namespace": NS},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    custom.patch_namespaced_custom_object(
        "signet.dev",
        "v1alpha1",
        NS,
        "appliances",
        "acme",
        {"spec": {"signer": {"batchStorage": {"claimName": "acme-shared-batches"}}}},
    )
    wait_for(
        "2 signer replicas",
        lambda: apps.read_namespaced_deployment("acme-signer", NS).spec.replicas == 2,
    )
    shared = apps.read_namespaced_deployment("acme-signer", NS).spec
    claims = {v.name: v.persistent_volume_claim for v in shared.template.spec.volumes}
    assert claims["batches"].claim_name == "acme-shared-batches"
    assert shared.strategy.type == "RollingUpdate"  # a shared volume: no Multi-Attach wait
    # The operator's own claim stays, untouched (it still holds what was signed on it).
    assert core.read_namespaced_persistent_volume_claim("acme-signer-batches", NS)
    policy = client.PolicyV1Api(api)
    wait_for(
        "a budget keeping one signer pod up",
        lambda: (
            policy.read_namespaced_pod_disruption_budget("acme-signer", NS).spec.min_available == 1
        ),
    )
    budget = policy.read_namespaced_pod_disruption_budget("acme-signer", NS).spec
    assert budget.max_unavailable is None  # the merge patch cleared the one-replica setting
    signer_pod = apps.read_namespaced_deployment("acme-signer", NS).spec.template.spec
    assert [c.name for c in signer_pod.init_containers] == ["hsm-module"]
    assert apps.read_namespaced_deployment("acme-storage", NS).spec.strategy.type == "Recreate"
    wait_for(
        "observedGeneration 3",
        lambda: appliance(api, "acme")["status"].get("observedGeneration") == 3,
    )

    # A longer retention reaches the storage pods, and the config hash rolls them out.
    def storage_pod() -> Any:
        return apps.read_namespaced_deployment("acme-storage", NS).spec.template

    hash_before = storage_pod().metadata.annotations["signet.dev/config-hash"]
    custom.patch_namespaced_custom_object(
        "signet.dev",
        "v1alpha1",
        NS,
        "appliances",
        "acme",
        {"spec": {"objectStore": {"retentionYears": 12}}},
    )

    def retention_env() -> str:
        env = {e.name: e.value for e in storage_pod().spec.containers[0].env}
        return str(env["SIGNET_STORAGE_RETENTION_YEARS"])

    wait_for("12 years in the storage pods", lambda: retention_env() == "12")
    assert storage_pod().metadata.annotations["signet.dev/config-hash"] != hash_before

    # The rolled-out storage pods retain 12 years, and the bucket's default says 12 too.
    rolled_out = {**READY["storage"][1], "retention_years": 12, "configured_retention_years": 12}
    twelve = {**READY, "storage": [200, rolled_out]}
    readiness.write_text(json.dumps(twelve))
    wait_for(
        "Ready=True at 12 years", lambda: conditions_of(api, "acme")["Ready"]["status"] == "True"
    )

    # A Secret the spec names disappears: Ready=False/SecretMissing, and the services go
    # on being probed (the HSM failing meanwhile shows) instead of one lone Ready.
    core.delete_namespaced_secret("postgres", NS)
    wait_for(
        "SecretMissing",
        lambda: conditions_of(api, "acme").get("Ready", {}).get("reason") == "SecretMissing",
    )
    seen = conditions_of(api, "acme")
    assert "postgres" in seen["Ready"]["message"]
    assert seen["SignerReady"]["status"] == "True"
    assert seen["RetentionCompliant"]["status"] == "True"
    hsm_gone = {"status": "unavailable", "error": "hsm_unavailable", "reason": "token gone"}
    readiness.write_text(json.dumps({**twelve, "signer": [503, hsm_gone]}))
    wait_for(
        "HSMReachable=False while a Secret is missing",
        lambda: conditions_of(api, "acme")["HSMReachable"]["status"] == "False",
    )
    assert conditions_of(api, "acme")["Ready"]["reason"] == "SecretMissing"
    readiness.write_text(json.dumps(twelve))
    _ensure_referenced_secrets(api)  # postgres again
    wait_for("Ready=True again", lambda: conditions_of(api, "acme")["Ready"]["status"] == "True")

    # Three years of retention: refused with a clear condition and an Event, nothing changed.
    # A real API server refuses it first, at admission (the CRD's minimum); the emulator
    # validates no schema, so there the operator's own refusal is what is shown.
    before = apps.read_namespaced_deployment("acme-storage", NS).spec.template.metadata.annotations
    wait_for(
        "HSMReachable=True", lambda: conditions_of(api, "acme")["HSMReachable"]["status"] == "True"
    )
    observed = conditions_of(api, "acme")
    short = {"spec": {"objectStore": {"retentionYears": 3}}}
    if cluster.real:
        with pytest.raises(client.ApiException) as admission:
            custom.patch_namespaced_custom_object(
                "signet.dev", "v1alpha1", NS, "appliances", "acme", short
            )
        assert admission.value.status == 422 and "retentionYears" in str(admission.value.body)
        return
    custom.patch_namespaced_custom_object("signet.dev", "v1alpha1", NS, "appliances", "acme", short)
    refused = wait_for(
        "InvalidSpec",
        lambda: conditions_of(api, "acme").get("Ready", {}).get("reason") == "InvalidSpec",
    )
    assert refused
    assert "retentionYears" in conditions_of(api, "acme")["Ready"]["message"]
    # The other conditions stay: the services go on being probed, and the retention is
    # judged by what storage runs with (12 years), not by the refused spec.
    kept = conditions_of(api, "acme")
    assert set(kept) == set(observed)
    assert kept["RetentionCompliant"] == observed["RetentionCompliant"]
    assert kept["SignerReady"]["status"] == kept["HSMReachable"]["status"] == "True"
    events = core.list_namespaced_event(NS).items
    assert any(e.reason == "InvalidSpec" and e.type == "Warning" for e in events)
    after = apps.read_namespaced_deployment("acme-storage", NS).spec.template.metadata.annotations
    assert before == after
    # The ledger goes stale while the spec is refused: said, with an Event, not frozen.
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    stale = {**rolled_out, "ledger_size": 3, "tree_head_size": 2, "unsigned_since": hour_ago}
    readiness.write_text(json.dumps({**READY, "storage": [200, stale]}))
    wait_for(
        "TreeHeadsPublished=Stale under InvalidSpec",
        lambda: conditions_of(api, "acme")["TreeHeadsPublished"]["reason"] == "Stale",
    )
    assert conditions_of(api, "acme")["Ready"]["reason"] == "InvalidSpec"
    wait_for_warning(core, "Stale")
    readiness.write_text(json.dumps(READY))


def test_a_missing_secret_is_a_condition_not_a_crash(
    api: client.ApiClient, operator: OperatorProcess
) -> None:
    spec = {
        **SPEC,
        "objectStore": {**SPEC["objectStore"], "accessKey": {"name": "nowhere", "key": "k"}},
    }
    _create_appliance(api, "lost", spec)
    wait_for(
        "SecretMissing",
        lambda: conditions_of(api, "lost").get("Ready", {}).get("reason") == "SecretMissing",
    )
    assert "nowhere" in conditions_of(api, "lost")["Ready"]["message"]
    names = [d.metadata.name for d in client.AppsV1Api(api).list_namespaced_deployment(NS).items]
    assert not any(name.startswith("lost-") for name in names)
    assert operator.poll() is None, "the operator must keep running"


def _operator_requests(cluster: Cluster, resource: str, verb: str, name: str) -> int:
    """How often the operator's own client asked for `verb` on the object `name`."""
    assert cluster.counts is not None
    for _ in range(10):  # the emulator's thread may add a key while we copy
        try:
            counted = list(cluster.counts.items())
            break
        except RuntimeError:
            continue
    return sum(
        n
        for (agent, plural, asked, named), n in counted
        if agent.startswith("signet-operator/") and (plural, asked, named) == (resource, verb, name)
    )


def test_generated_secrets_are_read_and_never_sent_again(
    api: client.ApiClient, operator: OperatorProcess, cluster: Cluster
) -> None:
    """Every tick reads the generated Secrets and the trial's claim; none is created (or a
    fresh token sent, to be refused) again."""
    if cluster.counts is None:
        pytest.skip("a real cluster does not show us every call; the emulator run checks this")
    _ensure_referenced_secrets(api)
    _create_appliance(api, "steady", SPEC)
    wait_for(
        "Ready=True", lambda: conditions_of(api, "steady").get("Ready", {}).get("status") == "True"
    )
    core = client.CoreV1Api(api)
    token = core.read_namespaced_secret("steady-service-token", NS).data
    ticks = _operator_requests(cluster, "deployments", "patch", "steady-signer")
    wait_for(
        "three more reconciles",
        lambda: _operator_requests(cluster, "deployments", "patch", "steady-signer") >= ticks + 3,
    )
    for resource, name in (
        ("secrets", "steady-service-token"),
        ("secrets", "steady-softhsm-pin"),
        ("persistentvolumeclaims", "steady-softhsm-token"),
        ("persistentvolumeclaims", "steady-signer-batches"),
    ):
        assert _operator_requests(cluster, resource, "create", name) == 1, name
        assert _operator_requests(cluster, resource, "get", name) >= 3, name
    assert core.read_namespaced_secret("steady-service-token", NS).data == token


def _published(core: client.CoreV1Api) -> dict[str, dict[str, Any]]:
    data = core.read_namespaced_config_map("signet-policies", NS).data or {}
    return {key: json.loads(value) for key, value in data.items()}


def _policy_conditions(custom: client.CustomObjectsApi, name: str) -> dict[str, dict[str, str]]:
    policy = custom.get_namespaced_custom_object(
        "signet.dev", "v1alpha1", NS, "signingpolicies", name
    )
    return {c["type"]: c for c in (policy.get("status") or {}).get("conditions", [])}


def test_signing_policy_is_versioned_distributed_and_withdrawn(
    api: client.ApiClient, operator: OperatorProcess
) -> None:
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    for name, spec in (
        ("hr", {"level": "B-LTA", "identityChecks": ["otp-sms"]}),
        ("sales", {"routing": "parallel"}),
    ):
        _policy(api, name, spec)
    published = wait_for(
        "both policies published",
        lambda: {"hr.json", "sales.json"} <= set(_published(core)) and _published(core),
    )
    assert published["hr.json"]["version"] == 1
    assert published["hr.json"]["spec"]["identityChecks"] == ["otp-sms"]
    assert published["sales.json"]["spec"]["routing"] == "parallel"

    custom.patch_namespaced_custom_object(
        "signet.dev", "v1alpha1", NS, "signingpolicies", "hr", {"spec": {"maxSigners": 4}}
    )
    wait_for("version 2", lambda: _published(core)["hr.json"]["version"] == 2)
    assert _published(core)["sales.json"]["version"] == 1  # the other key is untouched

    custom.patch_namespaced_custom_object(
        "signet.dev",
        "v1alpha1",
        NS,
        "signingpolicies",
        "hr",
        # a rule only the model knows (a real API server would refuse retention < 5 itself)
        {"spec": {"deadlineDays": 5, "linkValidityDays": 14}},
    )
    wait_for(
        "the policy refused",
        lambda: _policy_conditions(custom, "hr").get("Accepted", {}).get("status") == "False",
    )
    applied = _policy_conditions(custom, "hr")["Applied"]
    assert applied["status"] == "False" and "version 2 stays in force" in applied["message"]
    assert _published(core)["hr.json"]["version"] == 2  # the refused version was not distributed
    events = core.list_namespaced_event(NS).items
    assert any(e.reason == "PolicyRefused" and e.type == "Warning" for e in events)

    custom.delete_namespaced_custom_object("signet.dev", "v1alpha1", NS, "signingpolicies", "sales")
    wait_for("sales withdrawn", lambda: "sales.json" not in _published(core))
    assert "hr.json" in _published(core)


@pytest.fixture(scope="module")
def chart_role(cluster: Cluster, api: client.ApiClient) -> Iterator[client.V1Role]:
    """The operator's Role exactly as Helm installs it (no Appliance, no default policy)."""
    values = {"appliance": {"create": False}, "defaultSigningPolicy": {"create": False}}
    answer = helm.install(
        CHART, "rbac", NS, values, cluster.kubeconfig, memory_driver=not cluster.real
    )
    assert answer["ok"], answer
    yield client.RbacAuthorizationV1Api(api).read_namespaced_role("rbac-operator", NS)


def _rules(rules: list[Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.fixture(scope="module")
def drilled(api: client.ApiClient, operator: OperatorProcess, readiness: Path) -> None:
    """The operator made to do everything it ever does, with objects of its own.

    So the RBAC and metrics checks mean something when run alone (`-k rbac`), not only
    after the tests above; run after them, it only adds its own objects.  It creates
    and updates an Appliance with every child, refuses one (a rule only the model
    knows, which a real API server admits too), waits for another's Secret, and
    publishes, changes, refuses and withdraws policies.  The services are ready: a test
    that failed half-way may have left the readiness file saying otherwise.
    """
    readiness.write_text(json.dumps(READY))
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    _ensure_referenced_secrets(api)
    # with the portal, exposed by an Ingress and a cert-manager Certificate
    portal = {
        "enabled": True,
        "replicas": 1,
        "hostname": "drill.example.com",
        "database": {"name": "postgres", "key": "url"},
        "tls": {"certManagerIssuer": "corp-ca"},
    }
    _create_appliance(api, "drill", {**SPEC, "portal": portal})
    wait_for(
        "drill Ready", lambda: conditions_of(api, "drill").get("Ready", {}).get("status") == "True"
    )
    custom.patch_namespaced_custom_object(
        "signet.dev",
        "v1alpha1",
        NS,
        "appliances",
        "drill",
        {"spec": {"treeHeadIntervalSeconds": 120}},
    )

    def interval() -> str | None:
        container = apps.read_namespaced_deployment(
            "drill-storage", NS
        ).spec.template.spec.containers[0]
        return {e.name: e.value for e in container.env}.get("SIGNET_STORAGE_TREE_HEAD_INTERVAL")

    wait_for("the drill's change applied", lambda: interval() == "120")
    wait_for(
        "drill Ready after the change",
        lambda: (
            appliance(api, "drill")["status"].get("observedGeneration") == 2
            and conditions_of(api, "drill")["Ready"]["status"] == "True"
        ),
    )
    lost = {
        **SPEC,
        "objectStore": {**SPEC["objectStore"], "accessKey": {"name": "gone", "key": "k"}},
    }
    _create_appliance(api, "drill-lost", lost)
    bad_key = {"podSelector": {"matchLabels": {"not a label key": "x"}}}
    _create_appliance(api, "drill-bad", {**SPEC, "metrics": {"scraper": bad_key}})
    for name, reason in (("drill-lost", "SecretMissing"), ("drill-bad", "InvalidSpec")):
        wait_for(
            f"{name} {reason}",
            lambda n=name, r=reason: conditions_of(api, n).get("Ready", {}).get("reason") == r,
        )
    _policy(api, "drill-kept", {"routing": "parallel"})
    _policy(api, "drill-gone", {})
    wait_for(
        "drill policies published",
        lambda: {"drill-kept.json", "drill-gone.json"} <= set(_published(core)),
    )
    custom.patch_namespaced_custom_object(
        "signet.dev", "v1alpha1", NS, "signingpolicies", "drill-kept", {"spec": {"maxSigners": 3}}
    )
    wait_for("drill policy version 2", lambda: _published(core)["drill-kept.json"]["version"] == 2)
    custom.patch_namespaced_custom_object(
        "signet.dev",
        "v1alpha1",
        NS,
        "signingpolicies",
        "drill-kept",
        {"spec": {"deadlineDays": 5, "linkValidityDays": 14}},
    )
    wait_for(
        "drill policy refused",
        lambda: (
            _policy_conditions(custom, "drill-kept").get("Accepted", {}).get("status") == "False"
        ),
    )
    custom.delete_namespaced_custom_object(
        "signet.dev", "v1alpha1", NS, "signingpolicies", "drill-gone"
    )
    wait_for("drill policy withdrawn", lambda: "drill-gone.json" not in _published(core))


def test_rbac_grants_exactly_what_the_operator_calls(
    cluster: Cluster, chart_role: client.V1Role, drilled: None
) -> None:
    """What the operator called (`drilled`, and whatever ran before) against its Role."""
    if cluster.calls is None:
        pytest.skip("a real cluster does not show us every call; the emulator run checks this")
    used = {
        (group, resource, verb)
        for agent, group, resource, verb in cluster.calls
        # plural None: discovery documents, which every authenticated user may read
        if agent.startswith(("kopf/", "signet-operator/")) and resource is not None
    }
    granted = _rules([rule.to_dict() | {"apiGroups": rule.api_groups} for rule in chart_role.rules])
    assert not used - granted, f"the operator calls what its Role does not grant: {used - granted}"
    # RBAC lets a subject grant only what it holds: the storage Lease Role it creates.
    (lease_role,) = [o for o in desired.desired_objects("x", NS, _spec()) if o["kind"] == "Role"]
    delegated = _rules(lease_role["rules"])
    assert not granted - used - delegated, f"granted but never used: {granted - used - delegated}"


def _spec() -> Any:
    from signet.common.contracts.appliance import ApplianceSpec

    return ApplianceSpec.model_validate(SPEC)


def test_operator_serves_health_and_metrics(operator: OperatorProcess, drilled: None) -> None:
    """`signet operator run` (the chart's command) answers the kubelet and Prometheus."""
    import httpx

    assert httpx.get(operator.health_url, timeout=5).status_code == 200
    scrape = Scrape(httpx.get(operator.metrics_url, timeout=5).text)
    # `drilled` made the operator apply, refuse and wait for Secrets.
    for outcome in ("applied", "invalid_spec", "secret_missing"):
        assert scrape.value("signet_operator_reconciles_total", outcome=outcome) >= 1, outcome
    assert scrape.value("signet_operator_objects_applied_total", kind="Deployment") >= 4
    ready = "signet_operator_appliance_ready"
    assert scrape.value(ready, appliance="drill") == 1
    assert scrape.value(ready, appliance="drill-bad") == 0  # refused: not ready
    assert scrape.value(ready, appliance="drill-lost") == 0  # waiting for a Secret


def _warned(core: client.CoreV1Api, reason: str, mentioning: str = "") -> bool:
    """Whether a Warning Event with `reason` (and `mentioning` in its message) was posted."""
    return any(
        e.reason == reason and e.type == "Warning" and mentioning in (e.message or "")
        for e in core.list_namespaced_event(NS).items
    )


def wait_for_warning(core: client.CoreV1Api, reason: str, mentioning: str = "") -> None:
    wait_for(f"a {reason} Event", lambda: _warned(core, reason, mentioning))
