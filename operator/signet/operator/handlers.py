"""The Kopf handlers: an Appliance becomes its children, and its status follows the services.

All decisions are made by the pure functions of `desired` and `conditions`;
this module only reads the cluster (Secrets, readiness), applies objects
(create, or merge-patch when they exist) with owner references so the
cluster removes them with the Appliance, writes status and posts Events.
It never deletes anything, and never touches the object store.

Connection: in a pod, the ServiceAccount (Kopf's and the client's in-cluster
login); for tests and out-of-cluster runs, `SIGNET_OPERATOR_API_URL` names an
API server reached without credentials (the Kubernetes emulator).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter, Gauge
from pydantic import ValidationError
from signet.common.contracts.appliance import SigningPolicySpec
from signet.common.errors import summarize_validation
from signet.operator import desired
from signet.operator.conditions import (
    Readiness,
    conditions,
    invalid_spec,
    merge_transitions,
    missing_secrets,
    parse_spec,
)

API_URL = os.environ.get("SIGNET_OPERATOR_API_URL")
#: Tests simulate the services' /readyz with a JSON file {component: [status, body]}.
READINESS_FILE = os.environ.get("SIGNET_OPERATOR_READINESS_FILE")

RECONCILES = Counter(
    "signet_operator_reconciles_total", "Appliance reconciliations by outcome", ["outcome"]
)
APPLIED = Counter(
    "signet_operator_objects_applied_total",
    "Children applied by kind and outcome",
    ["kind", "outcome"],
)
READY = Gauge("signet_operator_appliance_ready", "1 when the Appliance is Ready", ["appliance"])

#: (kind) -> (api class, snake-case name used by the client's method names)
_KINDS: dict[str, tuple[type[Any], str]] = {
    "ServiceAccount": (client.CoreV1Api, "service_account"),
    "Service": (client.CoreV1Api, "service"),
    "Secret": (client.CoreV1Api, "secret"),
    "ConfigMap": (client.CoreV1Api, "config_map"),
    "Deployment": (client.AppsV1Api, "deployment"),
    "PodDisruptionBudget": (client.PolicyV1Api, "pod_disruption_budget"),
    "NetworkPolicy": (client.NetworkingV1Api, "network_policy"),
    "Role": (client.RbacAuthorizationV1Api, "role"),
    "RoleBinding": (client.RbacAuthorizationV1Api, "role_binding"),
}


USER_AGENT = "signet-operator/0.1.0"


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


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.peering.standalone = True
    settings.scanning.disabled = True  # namespaced: no cluster-wide listing needed
    settings.posting.level = 20  # our own kopf.info/warn calls become Events…
    settings.posting.loggers = False  # …but not every handler log line (noise for admins)
    settings.persistence.finalizer = "signet.dev/operator"


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    if API_URL:
        # An emulator or a local proxy: no credentials (a real API server needs a token).
        return kopf.ConnectionInfo(server=API_URL.rstrip("/"), insecure=True)
    return kopf.login_via_client(**kwargs)


# -- the cluster, read and written -----------------------------------------------------------


def _secret_has(core: client.CoreV1Api, namespace: str, name: str, key: str) -> bool:
    try:
        secret = core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return key in (secret.data or {})  # the API server returns stringData as data


def apply(api: client.ApiClient, obj: dict[str, Any]) -> str:
    """Create `obj`, or merge-patch it when it exists; returns what happened."""
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


def _create_once(api: client.ApiClient, obj: dict[str, Any]) -> bool:
    """Generated Secrets (tokens are not rotated here) and the trial token's volume claim
    (immutable) are created once and never rewritten; True if created now."""
    core = client.CoreV1Api(api)
    namespace = obj["metadata"]["namespace"]
    try:
        # the client accepts plain dicts as bodies; its stubs say otherwise
        if obj["kind"] == "Secret":
            core.create_namespaced_secret(namespace, obj)  # type: ignore[arg-type]
        else:
            core.create_namespaced_persistent_volume_claim(namespace, obj)  # type: ignore[arg-type]
        return True
    except ApiException as exc:
        if exc.status == 409:
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


# -- Appliance -------------------------------------------------------------------------------


def reconcile(
    body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, *, announce: bool = True
) -> None:
    """Apply the children and refresh the status.  `announce`: post Events for refusals
    (on changes; the periodic timer stays quiet rather than repeat them every tick).

    The API server refusing an object (403 from RBAC, 422 from admission) is a
    condition and an Event, never a silent retry loop; the timer tries again.
    """
    name = body["metadata"]["name"]
    # The timer and the change handlers run in different threads: one reconcile of an
    # Appliance at a time, so a tick that read the old spec cannot undo a newer one.
    key = str(body["metadata"].get("uid", name))
    generation = int(body["metadata"].get("generation") or 0)
    with _lock_for(key):
        if generation < _NEWEST.get(key, 0):
            logger.debug("skipping a reconcile of generation %d: a newer one ran", generation)
            return
        _NEWEST[key] = generation
        _reconcile_reporting(body, patch, logger, name, announce=announce)


#: The newest generation reconciled per Appliance (uid), guarded by that Appliance's lock.
_NEWEST: dict[str, int] = {}
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(key: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def _reconcile_reporting(
    body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, name: str, *, announce: bool
) -> None:
    try:
        _reconcile(body, patch, logger, announce=announce)
    except ApiException as exc:
        RECONCILES.labels("apply_failed").inc()
        READY.labels(name).set(0)
        message = f"the API server answered {exc.status} {exc.reason}: {_api_message(exc)}"
        previous = list(body.get("status", {}).get("conditions", []))
        was: dict[str, Any] = next((c for c in previous if c.get("type") == "Ready"), {})
        if announce or was.get("reason") != "ApplyFailed":
            kopf.warn(body, reason="ApplyFailed", message=message)
        patch.status["conditions"] = merge_transitions(
            previous,
            [{"type": "Ready", "status": "False", "reason": "ApplyFailed", "message": message}],
            datetime.now(UTC).isoformat(),
        )


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message", ""))[:500]
    except ValueError:
        return ""


def _reconcile(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, *, announce: bool) -> None:
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    previous = list(body.get("status", {}).get("conditions", []))
    now = datetime.now(UTC).isoformat()
    patch.status["observedGeneration"] = body["metadata"].get("generation")
    spec, problem = parse_spec(dict(body.get("spec", {})))
    if spec is None:
        RECONCILES.labels("invalid_spec").inc()
        READY.labels(name).set(0)
        if announce:
            kopf.warn(body, reason="InvalidSpec", message=problem)
        patch.status["conditions"] = merge_transitions(previous, invalid_spec(problem), now)
        return
    with api_client() as api:
        core = client.CoreV1Api(api)
        missing = [
            f"Secret {secret} (key {key})"
            for secret, key in desired.referenced_secrets(spec)
            if not _secret_has(core, namespace, secret, key)
        ]
        if missing:
            RECONCILES.labels("secret_missing").inc()
            READY.labels(name).set(0)
            if announce:
                kopf.warn(body, reason="SecretMissing", message="missing: " + ", ".join(missing))
            patch.status["conditions"] = merge_transitions(previous, missing_secrets(missing), now)
            return
        generated = [desired.service_token_secret(name, namespace, secrets.token_urlsafe(32))]
        created_once = []
        if spec.hsm.softhsm:
            pins = (secrets.token_hex(8), secrets.token_hex(8))
            generated.append(desired.softhsm_pin_secret(name, namespace, *pins))
            created_once.append(desired.softhsm_token_claim(name, namespace))
        for secret in generated:
            kopf.adopt(secret, owner=body)
            if _create_once(api, secret):
                kopf.info(body, reason="SecretGenerated", message=secret["metadata"]["name"])
        for claim in created_once:
            kopf.adopt(claim, owner=body)
            if _create_once(api, claim):
                kopf.info(body, reason="VolumeClaimed", message=claim["metadata"]["name"])
        changed = []
        for obj in desired.desired_objects(name, namespace, spec):
            kopf.adopt(obj, owner=body)
            outcome = apply(api, obj)
            APPLIED.labels(obj["kind"], outcome).inc()
            changed.append(f"{obj['kind']}/{obj['metadata']['name']} {outcome}")
        created = [c for c in changed if c.endswith("created")]
        if created or announce:
            kopf.info(
                body,
                reason="Reconciled",
                message=f"{len(changed)} objects applied, {len(created)} created",
            )
        logger.debug("applied: %s", "; ".join(changed))
    readiness: dict[str, Readiness | None] = {
        component.name: probe(name, namespace, component.name, component.port)
        for component in desired.COMPONENTS
        if component.installed
    }
    current = conditions(spec, readiness)
    _announce_transitions(body, previous, current)
    READY.labels(name).set(1 if current[0]["status"] == "True" else 0)
    RECONCILES.labels("applied").inc()
    patch.status["conditions"] = merge_transitions(previous, current, now)
    patch.status["endpoints"] = {
        component.name: f"http://{name}-{component.name}.{namespace}.svc:{component.port}"
        for component in desired.COMPONENTS
        if component.installed
    }


def _announce_transitions(
    body: kopf.Body, previous: list[dict[str, Any]], current: list[dict[str, str]]
) -> None:
    """An Event when a condition turns False (or changes its reason), and when it recovers.

    Posted on transitions only, so the periodic timer does not repeat them; this is
    how an expiring certificate or a stale ledger reaches `kubectl get events`.
    """
    before = {c.get("type"): c for c in previous}
    for item in current:
        old = before.get(item["type"]) or {}
        if item["reason"] == "NotInstalled":
            continue
        if item["status"] == "False" and (
            old.get("status") != "False" or old.get("reason") != item["reason"]
        ):
            kopf.warn(body, reason=item["reason"], message=f"{item['type']}: {item['message']}")
        elif item["status"] == "True" and old.get("status") == "False":
            kopf.info(body, reason="Recovered", message=f"{item['type']}: {item['reason']}")


@kopf.on.create("signet.dev", "v1alpha1", "appliances")
@kopf.on.update("signet.dev", "v1alpha1", "appliances", field="spec")
@kopf.on.resume("signet.dev", "v1alpha1", "appliances")
def appliance_changed(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    reconcile(body, patch, logger)


@kopf.timer(
    "signet.dev",
    "v1alpha1",
    "appliances",
    interval=float(os.environ.get("SIGNET_OPERATOR_INTERVAL", "30")),
    initial_delay=2,
)
def appliance_timer(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    """Readiness changes and late Secrets are noticed without a spec change."""
    reconcile(body, patch, logger, announce=False)


# -- SigningPolicy ---------------------------------------------------------------------------


def _policies_patch(namespace: str, data: dict[str, str | None]) -> None:
    """Merge `data` into the namespace's policies ConfigMap (a None value removes a key).

    A merge patch touches only the keys named, so handlers of different policies,
    running concurrently, never overwrite each other's entries.
    """
    with api_client() as api:
        core = client.CoreV1Api(api)
        try:
            core.patch_namespaced_config_map(
                desired.POLICIES_CONFIG_MAP,
                namespace,
                {"data": data},  # a plain dict is a valid body
                _content_type="application/merge-patch+json",  # null removes a key
            )
            return
        except ApiException as exc:
            if exc.status != 404:
                raise
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": desired.POLICIES_CONFIG_MAP,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "signet-operator"},
            },
            "data": {key: value for key, value in data.items() if value is not None},
        }
        apply(api, body)  # created meanwhile by another handler: apply patches it


@kopf.on.create("signet.dev", "v1alpha1", "signingpolicies")
@kopf.on.update("signet.dev", "v1alpha1", "signingpolicies", field="spec")
@kopf.on.resume("signet.dev", "v1alpha1", "signingpolicies")
def policy_changed(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Validate, then publish `<name>.json` into the policies ConfigMap.

    A refused change leaves the previous version in the ConfigMap: services go on
    signing under the last accepted version, and the status says why.
    """
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    version = int(body["metadata"].get("generation") or 1)
    now = datetime.now(UTC).isoformat()
    previous = list(body.get("status", {}).get("conditions", []))
    try:
        spec = SigningPolicySpec.model_validate(dict(body.get("spec", {})))
    except ValidationError as exc:
        message = summarize_validation(exc.errors())
        kopf.warn(body, reason="PolicyRefused", message=message)
        patch.status["conditions"] = merge_transitions(
            previous,
            [
                {"type": "Accepted", "status": "False", "reason": "Invalid", "message": message},
                {
                    "type": "Applied",
                    "status": "False",
                    "reason": "Refused",
                    "message": f"version {version} refused ({message}); "
                    f"version {body.get('status', {}).get('version', 'none')} stays in force",
                },
            ],
            now,
        )
        return
    document = {
        "name": name,
        "version": version,
        "spec": spec.model_dump(mode="json", by_alias=True),
    }
    _policies_patch(namespace, {f"{name}.json": json.dumps(document, sort_keys=True)})
    kopf.info(body, reason="PolicyApplied", message=f"version {version} distributed")
    patch.status["version"] = version
    patch.status["conditions"] = merge_transitions(
        previous,
        [
            {"type": "Accepted", "status": "True", "reason": "Valid", "message": ""},
            {
                "type": "Applied",
                "status": "True",
                "reason": "Distributed",
                "message": f"version {version} in ConfigMap {desired.POLICIES_CONFIG_MAP}",
            },
        ],
        now,
    )


@kopf.on.delete("signet.dev", "v1alpha1", "signingpolicies")
def policy_deleted(body: kopf.Body, **_: Any) -> None:
    """Withdraw the policy from the services.

    Kopf holds a finalizer on each policy for this, so a policy deleted while the
    operator is down is withdrawn when it comes back, never left in force unseen.
    """
    _policies_patch(body["metadata"]["namespace"], {f"{body['metadata']['name']}.json": None})
