"""The operator's own calls to the cluster: a client, apply, Secrets checked, readiness probed.

Kopf has its own connection for watching; these are the handlers' reads and
writes, all made with the `USER_AGENT` (audit logs, and the RBAC test that
compares every call with the chart's Role).  Nothing here deletes anything.

Connection: in a pod, the ServiceAccount (in-cluster login); for tests and
out-of-cluster runs, `SIGNET_OPERATOR_API_URL` names an API server reached
without credentials (the Kubernetes emulator).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from signet.common.contracts.appliance import ApplianceSpec
from signet.operator import desired
from signet.operator.components import Manifest
from signet.operator.conditions import Readiness

API_URL = os.environ.get("SIGNET_OPERATOR_API_URL")
#: Tests simulate the services' /readyz with a JSON file {component: [status, body]}.
READINESS_FILE = os.environ.get("SIGNET_OPERATOR_READINESS_FILE")
USER_AGENT = "signet-operator/0.1.0"

#: (kind) -> (api class, snake-case name used by the client's method names)
_KINDS: dict[str, tuple[type[Any], str]] = {
    "ServiceAccount": (client.CoreV1Api, "service_account"),
    "Service": (client.CoreV1Api, "service"),
    "Secret": (client.CoreV1Api, "secret"),
    "ConfigMap": (client.CoreV1Api, "config_map"),
    "PersistentVolumeClaim": (client.CoreV1Api, "persistent_volume_claim"),
    "Deployment": (client.AppsV1Api, "deployment"),
    "PodDisruptionBudget": (client.PolicyV1Api, "pod_disruption_budget"),
    "NetworkPolicy": (client.NetworkingV1Api, "network_policy"),
    "Ingress": (client.NetworkingV1Api, "ingress"),
    "Role": (client.RbacAuthorizationV1Api, "role"),
    "RoleBinding": (client.RbacAuthorizationV1Api, "role_binding"),
}


def api_client() -> client.ApiClient:
    """A client for the handlers' own calls (Kopf has its own), named in audit logs."""
    if API_URL:
        configuration = client.Configuration()
        configuration.host = API_URL.rstrip("/")
        api = client.ApiClient(configuration)
    else:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        api = client.ApiClient()
    api.user_agent = USER_AGENT
    return api


def secret_has(core: client.CoreV1Api, namespace: str, name: str, key: str) -> bool:
    try:
        secret = core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return key in (secret.data or {})  # the API server returns stringData as data


def apply(api: client.ApiClient, obj: dict[str, Any]) -> str:
    """Create `obj`, or merge-patch it when it exists; returns what happened."""
    if obj["kind"] == "Certificate":
        return _apply_certificate(api, obj)
    api_class, snake = _KINDS[obj["kind"]]
    typed = api_class(api)
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    try:
        getattr(typed, f"create_namespaced_{snake}")(namespace, obj)
        return "created"
    except ApiException as exc:
        if exc.status != 409:
            raise
    cleared = [f for f in desired.CLEARED_ON_PATCH.get(obj["kind"], ()) if f not in obj["spec"]]
    if cleared:
        obj = {**obj, "spec": {**obj["spec"], **dict.fromkeys(cleared)}}
    strategy = obj["spec"].get("strategy") if obj["kind"] == "Deployment" else None
    if strategy and strategy.get("type") == "Recreate":
        # The API server defaults rollingUpdate and refuses it beside Recreate: clear it.
        obj = {**obj, "spec": {**obj["spec"], "strategy": {**strategy, "rollingUpdate": None}}}
    # A JSON merge patch (RFC 7386), not the client's default strategic merge: lists
    # (containers, volumes, env) are replaced whole, so what the spec no longer asks
    # for (a SoftHSM init container, its volume) goes away instead of lingering.
    getattr(typed, f"patch_namespaced_{snake}")(
        name, namespace, obj, _content_type="application/merge-patch+json"
    )
    return "updated"


def _apply_certificate(api: client.ApiClient, obj: dict[str, Any]) -> str:
    """cert-manager's Certificate (a custom resource: no typed client)."""
    custom = client.CustomObjectsApi(api)
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    where = ("cert-manager.io", "v1", namespace, "certificates")
    try:
        custom.create_namespaced_custom_object(*where, obj)
        return "created"
    except ApiException as exc:
        if exc.status != 409:
            raise
    custom.patch_namespaced_custom_object(
        *where, name, obj, _content_type="application/merge-patch+json"
    )
    return "updated"


def create_once(
    api: client.ApiClient, kind: str, namespace: str, name: str, build: Callable[[], Manifest]
) -> bool:
    """Read first; create `build()` only when `name` is absent.  True if created now.

    For what is made once and never rewritten: generated Secrets (tokens are not
    rotated here; `build` makes a fresh one, so it is called only when one is
    needed, never to be refused with 409 every tick) and the trial token's volume
    claim (immutable).
    """
    api_class, snake = _KINDS[kind]
    typed = api_class(api)
    try:
        getattr(typed, f"read_namespaced_{snake}")(name, namespace)
        return False
    except ApiException as exc:
        if exc.status != 404:
            raise
    obj = build()
    if (obj["kind"], obj["metadata"]["name"]) != (kind, name):
        raise ValueError(f"built {obj['kind']}/{obj['metadata']['name']}, not {kind}/{name}")
    try:
        getattr(typed, f"create_namespaced_{snake}")(namespace, obj)
        return True
    except ApiException as exc:
        if exc.status == 409:  # created meanwhile (another reconcile): that one stands
            return False
        raise


def probe(name: str, namespace: str, component: str, port: int) -> Readiness:
    """What /readyz answers (or the simulated answer in tests)."""
    if READINESS_FILE:
        try:
            simulated = json.loads(Path(READINESS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return Readiness(None)
        answer = simulated.get(component)
        return Readiness(answer[0], answer[1]) if answer else Readiness(None)
    try:
        response = httpx.get(f"http://{name}-{component}.{namespace}.svc:{port}/readyz", timeout=5)
        return Readiness(response.status_code, response.json())
    except (httpx.HTTPError, ValueError):
        return Readiness(None)


def probe_all(
    name: str, namespace: str, spec: ApplianceSpec | None = None
) -> dict[str, Readiness | None]:
    """Every installed component's readiness (names and ports are fixed); with a spec,
    only the components it enables (a disabled portal has no Service to ask)."""
    return {
        component.name: probe(name, namespace, component.name, component.port)
        for component in desired.COMPONENTS
        if component.installed and (spec is None or component.enabled(spec))
    }


def api_message(exc: ApiException) -> str:
    """The API server's own explanation of a refusal (403, 422), at most 500 characters."""
    try:
        return str(json.loads(exc.body or "{}").get("message", ""))[:500]
    except ValueError:
        return ""
