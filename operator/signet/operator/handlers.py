"""The Kopf handlers of `Appliance`: it becomes its children, and its status follows the services.

All decisions are made by the pure functions of `desired` and `conditions`;
this module reads the cluster and applies objects through `cluster` (create,
or merge-patch when they exist) with owner references so the cluster removes
them with the Appliance (all but the signer's batch volume, which holds signed
documents and outlives it), writes status and posts Events.  It never deletes
anything, and never touches the object store.  The `SigningPolicy` handlers
are in `policies`, registered with these.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter, Gauge
from signet.common.contracts.appliance import ApplianceSpec
from signet.operator import cluster, desired, policies, portal
from signet.operator.components import Manifest
from signet.operator.conditions import (
    apply_failed,
    batch_claim_pending,
    batch_claim_refused,
    invalid_spec,
    merge_transitions,
    missing_secrets,
    observed,
    parse_spec,
    ready,
    refused,
)

__all__ = ["appliance_changed", "appliance_timer", "policies", "reconcile"]

RECONCILES = Counter(
    "signet_operator_reconciles_total", "Appliance reconciliations by outcome", ["outcome"]
)
APPLIED = Counter(
    "signet_operator_objects_applied_total",
    "Children applied by kind and outcome",
    ["kind", "outcome"],
)
READY = Gauge("signet_operator_appliance_ready", "1 when the Appliance is Ready", ["appliance"])


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.peering.standalone = True
    settings.scanning.disabled = True  # namespaced: no cluster-wide listing needed
    settings.posting.level = 20  # our own kopf.info/warn calls become Events…
    settings.posting.loggers = False  # …but not every handler log line (noise for admins)
    settings.persistence.finalizer = "signet.dev/operator"


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    if cluster.API_URL:
        # An emulator or a local proxy: no credentials (a real API server needs a token).
        return kopf.ConnectionInfo(server=cluster.API_URL.rstrip("/"), insecure=True)
    return kopf.login_via_client(**kwargs)


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
        _reconcile(body, patch, logger, announce=announce)


#: The newest generation reconciled per Appliance (uid), guarded by that Appliance's lock.
_NEWEST: dict[str, int] = {}
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(key: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def _reconcile(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, *, announce: bool) -> None:
    """Apply what a valid spec asks for, then probe the services either way.

    A refusal (invalid spec, missing Secret, the API server saying no) makes
    Ready False with the reason and leaves the other conditions as observed:
    the services are probed either way, and retention and tree heads are judged
    against what storage reports it runs with, not the spec just refused.
    """
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    previous = list(body.get("status", {}).get("conditions", []))
    was: dict[str, Any] = next((c for c in previous if c.get("type") == "Ready"), {})
    patch.status["observedGeneration"] = body["metadata"].get("generation")
    spec, problem = parse_spec(dict(body.get("spec", {})))
    why: dict[str, str] | None = None
    if spec is None:
        RECONCILES.labels("invalid_spec").inc()
        why = invalid_spec(problem)
    else:
        try:
            why = _apply_children(body, spec, logger, announce=announce)
        except ApiException as exc:
            RECONCILES.labels("apply_failed").inc()
            why = apply_failed(
                f"the API server answered {exc.status} {exc.reason}: {cluster.api_message(exc)}"
            )
        else:
            if why is not None:
                RECONCILES.labels(_OUTCOMES.get(why["reason"], "refused")).inc()
    if why is not None and (announce or was.get("reason") != why["reason"]):
        kopf.warn(body, reason=why["reason"], message=why["message"])
    answers = cluster.probe_all(name, namespace, spec)
    current = observed(spec, answers)
    storage = answers.get("storage")
    if storage is not None and isinstance(storage.body.get("retention_years"), int):
        patch.status["retentionYears"] = storage.body["retention_years"]  # in force
    if spec is not None and why is None:
        status = [ready(spec, current), *current]
        _announce_transitions(body, previous, status)
        RECONCILES.labels("applied").inc()
        patch.status["endpoints"] = {
            component.name: f"http://{name}-{component.name}.{namespace}.svc:{component.port}"
            for component in desired.COMPONENTS
            if component.installed and component.enabled(spec)
        }
    else:
        status = refused(why or invalid_spec(problem), current)
        _announce_transitions(body, previous, status[1:])  # the refusal had its own Event
    READY.labels(name).set(1 if status[0]["status"] == "True" else 0)
    patch.status["conditions"] = merge_transitions(previous, status, datetime.now(UTC).isoformat())


#: Refusal reason -> the outcome label of `RECONCILES`.
_OUTCOMES = {
    "SecretMissing": "secret_missing",
    "VolumeClaimMissing": "batch_storage_refused",
    "BatchStorageDeleting": "batch_storage_refused",
    "BatchStorageNotShared": "batch_storage_refused",
    "BatchStorageModeMismatch": "batch_storage_refused",
    "BatchStoragePending": "batch_storage_pending",
}


def _apply_children(
    body: kopf.Body, spec: ApplianceSpec, logger: kopf.Logger, *, announce: bool
) -> dict[str, str] | None:
    """Create or patch every child, or nothing and the refusal (Ready False): Secrets the
    spec names that are missing, a batch volume that cannot carry the spec."""
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        missing = [
            f"Secret {secret} (key {key})"
            for secret, key in desired.referenced_secrets(spec)
            if not cluster.secret_has(core, namespace, secret, key)
        ]
        if missing:
            return missing_secrets(missing)
        refused_claim, pending_claim = _batch_claim(api, core, body, spec, announce=announce)
        if refused_claim is not None:
            return refused_claim
        # Made once, read every time after: tokens and PINs are generated only when absent.
        once: list[tuple[str, str, Callable[[], Manifest], str]] = [
            (
                "Secret",
                f"{name}-service-token",
                lambda: desired.service_token_secret(name, namespace, secrets.token_urlsafe(32)),
                "SecretGenerated",
            )
        ]
        if spec.hsm.softhsm:
            once.append(
                (
                    "Secret",
                    f"{name}-softhsm-pin",
                    lambda: desired.softhsm_pin_secret(
                        name, namespace, secrets.token_hex(8), secrets.token_hex(8)
                    ),
                    "SecretGenerated",
                )
            )
            once.append(
                (
                    "PersistentVolumeClaim",
                    f"{name}-softhsm-token",
                    lambda: desired.softhsm_token_claim(name, namespace),
                    "VolumeClaimed",
                )
            )
        if spec.portal.enabled:
            once.append(
                (
                    "Secret",
                    portal.secret_key_secret_name(name),
                    lambda: portal.secret_key_secret(name, namespace, secrets.token_hex(32)),
                    "SecretGenerated",
                )
            )
            once.append(
                (
                    "Secret",
                    portal.first_admin_secret_name(name),
                    lambda: portal.first_admin_secret(
                        name, namespace, spec.portal.first_admin_email, secrets.token_urlsafe(18)
                    ),
                    "SecretGenerated",
                )
            )
        for kind, child, build, reason in once:
            if cluster.create_once(api, kind, namespace, child, _adopted(build, body)):
                kopf.info(body, reason=reason, message=child)
        changed = []
        for obj in desired.desired_objects(name, namespace, spec):
            kopf.adopt(obj, owner=body)
            outcome = cluster.apply(api, obj)
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
    return pending_claim  # applied, but the signer cannot start until its volume is bound


def _batch_claim(
    api: client.ApiClient,
    core: client.CoreV1Api,
    body: kopf.Body,
    spec: ApplianceSpec,
    *,
    announce: bool,
) -> tuple[dict[str, str] | None, dict[str, str] | None]:
    """The signer's batch volume claim: created once when the operator owns the name, and
    deliberately *not* adopted (no owner reference): it holds signed documents, so the
    garbage collector must not take it with the Appliance.  Then judged as it exists:
    (a refusal, nothing to apply; Ready False while it is not bound, applied anyway)."""
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    claim_name = desired.batch_claim_name(name, spec)
    try:
        claim = core.read_namespaced_persistent_volume_claim(claim_name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        if spec.signer.batch_storage.claim_name is not None:  # the admin's own: not made here
            return batch_claim_refused(spec, claim_name, None), None

        def build() -> Manifest:
            return desired.batch_claim(name, namespace, spec)

        if cluster.create_once(api, "PersistentVolumeClaim", namespace, claim_name, build):
            kopf.info(
                body,
                reason="VolumeClaimed",
                message=f"{claim_name} (batch documents; never deleted by the operator)",
            )
        return None, None
    modes = list((claim.spec.access_modes if claim.spec else None) or [])
    deleting = claim.metadata is not None and claim.metadata.deletion_timestamp is not None
    refusal = batch_claim_refused(spec, claim_name, modes, deleting=deleting)
    phase = claim.status.phase if claim.status is not None else None
    if announce and spec.signer.batch_storage.claim_name is None:
        requests = (
            claim.spec.resources.requests if claim.spec and claim.spec.resources else None
        ) or {}
        size = spec.signer.batch_storage.size
        if requests.get("storage") not in (None, size):
            kopf.warn(
                body,
                reason="BatchStorageSizeUnchanged",
                message=f"{claim_name} stays {requests['storage']}: signer.batchStorage.size "
                f"{size} applies only when the claim is created; to grow it, edit the "
                "claim's spec.resources.requests.storage (its class must allow volume "
                "expansion)",
            )
    return refusal, batch_claim_pending(claim_name, phase)


def _adopted(build: Callable[[], Manifest], owner: kopf.Body) -> Callable[[], Manifest]:
    def adopted() -> Manifest:
        obj = build()
        kopf.adopt(obj, owner=owner)
        return obj

    return adopted


def _announce_transitions(
    body: kopf.Body, previous: list[dict[str, Any]], current: list[dict[str, Any]]
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
        elif (
            item["type"] in _EVERY_CHANGE
            and old
            and (old.get("status"), old.get("reason")) != (item["status"], item["reason"])
        ):
            kopf.info(body, reason=item["reason"], message=f"{item['type']}: {item['message']}")


#: Conditions whose every change is an Event (not only turning False and recovering):
#: the TSA's time source, whose Unknown (trusted-host) or near-the-limit states matter.
_EVERY_CHANGE = frozenset({"TimeSynchronized"})


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
