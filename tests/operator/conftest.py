"""Operator test set-up: the Kubernetes emulator, the real operator in a subprocess.

Each test module gets its own emulator and operator (module scope): modules
leave objects behind that the next must not see.  The services' readiness is
simulated through a JSON file the operator reads in tests
(``SIGNET_OPERATOR_READINESS_FILE``): no pod ever runs here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support.kube_emulator import RunningEmulator
from tests.support.operator_process import (
    NAMESPACE,
    OperatorProcess,
    start_operator,
    stop_operator,
)

CHART = Path(__file__).resolve().parents[2] / "helm" / "signet"
NS = NAMESPACE
READY: dict[str, Any] = {
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
def operator(emulator: RunningEmulator, readiness: Path) -> Iterator[OperatorProcess]:
    process = start_operator(emulator.url, readiness)
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
