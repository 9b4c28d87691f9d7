"""Operator benchmark: how long reconciling takes, against the Kubernetes emulator.

Run from the repository root: `make bench` (all suites) or
`.venv/bin/python -m benchmarks operator`.  BENCH_N scales the number of
Appliances timed (the policy count is fixed at 100, as the issue asks).

What is timed is the whole loop an admin waits for: the custom object is
created through the API, Kopf's watch delivers it, the handler computes the
desired objects, applies each child (create, or merge patch when present)
and writes the status.  The emulator answers in memory, so the figures are
the operator's own cost plus HTTP on loopback; a real API server adds its
own latency (etcd writes, admission) on top.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from kubernetes import client
from signet.common.contracts.appliance import ApplianceSpec
from signet.operator import desired

from tests.support.kube_emulator import RunningEmulator
from tests.support.operator_process import NAMESPACE, start_operator, stop_operator

CHART = Path(__file__).resolve().parents[1] / "helm" / "signet"
N = max(3, int(os.environ.get("BENCH_N", "10")) // 10)
POLICIES = 100
SPEC: dict[str, Any] = {
    "publicUrl": "https://sign.example.com",
    "hsm": {"softhsm": True},
    "objectStore": {
        "endpoint": "minio.minio.svc:9000",
        "accessKey": {"name": "minio", "key": "access-key"},
        "secretKey": {"name": "minio", "key": "secret-key"},
        "retentionYears": 10,
    },
    "database": {"url": {"name": "postgres", "key": "url"}},
}
READY = {
    "signer": [200, {"status": "ready", "hsm": "reachable"}],
    "storage": [200, {"status": "ready", "object_lock": "COMPLIANCE", "retention_years": 10}],
}


def _until(check: Callable[[], bool], timeout: float = 120) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            if check():
                return time.perf_counter() - start
        except client.ApiException:
            pass
        time.sleep(0.005)
    raise TimeoutError("the operator did not finish in time")


def _ready(custom: client.CustomObjectsApi, name: str) -> bool:
    body = custom.get_namespaced_custom_object(
        "signet.dev", "v1alpha1", NAMESPACE, "appliances", name
    )
    conditions = (body.get("status") or {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _policies_applied(core: client.CoreV1Api, version: int) -> bool:
    data = core.read_namespaced_config_map("signet-policies", NAMESPACE).data or {}
    versions = [json.loads(value)["version"] for value in data.values()]
    return len(versions) == POLICIES and all(v == version for v in versions)


def main() -> None:
    spec = ApplianceSpec.model_validate(SPEC)
    loops = 2000
    start = time.perf_counter()
    for _ in range(loops):
        desired.desired_objects("acme", NAMESPACE, spec)
    pure_ms = (time.perf_counter() - start) / loops * 1000

    emulator = RunningEmulator(CHART / "crds")
    work = Path(tempfile.mkdtemp(prefix="signet-bench-operator-"))
    readiness = work / "readiness.json"
    readiness.write_text(json.dumps(READY))
    operator = start_operator(emulator.url, readiness, interval=300)
    process = psutil.Process(operator.pid)

    def cpu() -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    try:
        configuration = client.Configuration()
        configuration.host = emulator.url
        api = client.ApiClient(configuration)
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        core.create_namespaced_secret(
            NAMESPACE,
            {
                "metadata": {"name": "minio", "namespace": NAMESPACE},
                "stringData": {"access-key": "a", "secret-key": "b"},
            },
        )
        core.create_namespaced_secret(
            NAMESPACE,
            {
                "metadata": {"name": "postgres", "namespace": NAMESPACE},
                "stringData": {"url": "postgresql+psycopg://signet@postgres/signet"},
            },
        )
        times, cpu_appliance = [], 0.0
        for index in range(N + 1):  # the first one also waits for Kopf's start
            name = f"appliance-{index}"
            body: dict[str, Any] = {"apiVersion": "signet.dev/v1alpha1", "kind": "Appliance"}
            body |= {"metadata": {"name": name, "namespace": NAMESPACE}, "spec": SPEC}
            start, cpu_start = time.perf_counter(), cpu()
            custom.create_namespaced_custom_object(
                "signet.dev", "v1alpha1", NAMESPACE, "appliances", body
            )
            _until(lambda n=name: _ready(custom, n))  # type: ignore[misc]
            times.append(time.perf_counter() - start)
            if index:
                cpu_appliance += cpu() - cpu_start
        children = len(desired.desired_objects("x", NAMESPACE, spec)) + 2

        start, cpu_start = time.perf_counter(), cpu()
        for index in range(POLICIES):
            body: dict[str, Any] = {"apiVersion": "signet.dev/v1alpha1", "kind": "SigningPolicy"}
            body |= {
                "metadata": {"name": f"policy-{index}", "namespace": NAMESPACE},
                "spec": {"level": "B-LT"},
            }
            custom.create_namespaced_custom_object(
                "signet.dev", "v1alpha1", NAMESPACE, "signingpolicies", body
            )
        created = time.perf_counter() - start
        _until(lambda: _policies_applied(core, 1), timeout=300)
        policies_first = time.perf_counter() - start
        cpu_policies = cpu() - cpu_start

        start = time.perf_counter()
        for index in range(POLICIES):
            custom.patch_namespaced_custom_object(
                "signet.dev",
                "v1alpha1",
                NAMESPACE,
                "signingpolicies",
                f"policy-{index}",
                {"spec": {"maxSigners": 5}},
            )
        _until(lambda: _policies_applied(core, 2), timeout=300)
        policies_update = time.perf_counter() - start
    finally:
        stop_operator(operator)
        emulator.close()

    steady = times[1:]
    rows = [
        ("desired objects for one Appliance (pure function)", f"{pure_ms:.3f} ms", "", ""),
        (
            f"one Appliance: create -> {children} children applied -> Ready (p50 of {len(steady)})",
            f"{statistics.median(steady) * 1000:.0f} ms",
            f"max {max(steady) * 1000:.0f} ms",
            f"first {times[0] * 1000:.0f} ms; operator CPU "
            f"{cpu_appliance / len(steady) * 1000:.0f} ms each",
        ),
        (
            f"{POLICIES} SigningPolicies created -> published (version 1)",
            f"{policies_first:.2f} s",
            f"{POLICIES / policies_first:.0f} policies/s",
            f"API creates {created:.2f} s; operator CPU {cpu_policies / POLICIES * 1000:.0f} ms "
            "each",
        ),
        (
            f"{POLICIES} SigningPolicies changed -> version 2 distributed",
            f"{policies_update:.2f} s",
            f"{POLICIES / policies_update:.0f} policies/s",
            "",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'what'.ljust(width)} | time | rate / spread | note |")
    print(f"|{'-' * (width + 2)}|---:|---:|---|")
    for what, value, extra, note in rows:
        print(f"| {what.ljust(width)} | {value} | {extra} | {note} |")


if __name__ == "__main__":
    main()
