"""Status conditions of an Appliance, computed from what the services' /readyz answered.

The signer's own conditions are judged in `signet.operator.signer_conditions`, storage's
in `signet.operator.storage_conditions`; this module assembles them with Ready.

Pure: the handler gathers the answers (or the simulated ones, in tests) and
keeps each condition's lastTransitionTime when its status did not change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from signet.common.contracts.appliance import ApplianceSpec
from signet.common.errors import summarize_validation
from signet.operator.readiness import FALSE, TRUE, UNKNOWN, Readiness, condition
from signet.operator.signer_conditions import (
    EXPIRY_WARNING,
    batch_store,
    certificates,
    time_condition,
)
from signet.operator.storage_conditions import STALE_INTERVALS, retention, tree_heads

__all__ = [
    "EXPIRY_WARNING",
    "FALSE",
    "OBSERVED",
    "STALE_INTERVALS",
    "TRUE",
    "UNKNOWN",
    "Readiness",
    "apply_failed",
    "batch_claim_pending",
    "batch_claim_refused",
    "condition",
    "conditions",
    "invalid_spec",
    "merge_transitions",
    "missing_secrets",
    "observed",
    "parse_spec",
    "ready",
    "refused",
]


def parse_spec(raw: dict[str, Any]) -> tuple[ApplianceSpec | None, str]:
    """The validated spec, or None and a message an admin can act on."""
    try:
        return ApplianceSpec.model_validate(raw), ""
    except ValidationError as exc:
        return None, summarize_validation(exc.errors())


def invalid_spec(message: str) -> dict[str, str]:
    return condition("Ready", FALSE, "InvalidSpec", message)


def missing_secrets(missing: list[str]) -> dict[str, str]:
    return condition(
        "Ready",
        FALSE,
        "SecretMissing",
        "create " + ", ".join(missing) + " in this namespace; nothing is applied until then",
    )


def apply_failed(message: str) -> dict[str, str]:
    return condition("Ready", FALSE, "ApplyFailed", message)


def batch_claim_refused(
    spec: ApplianceSpec, claim: str, access_modes: Sequence[str] | None, *, deleting: bool = False
) -> dict[str, str] | None:
    """Why the signer's batch claim as it exists (`access_modes` None: it does not) cannot
    carry this spec, or None.  Judged on the claim, not the spec: a claim's access modes
    never change, so scaling a one-replica signer out needs another claim."""
    if access_modes is None:
        return condition(
            "Ready",
            FALSE,
            "VolumeClaimMissing",
            f"create PersistentVolumeClaim {claim} (signer.batchStorage.claimName) in this "
            "namespace; nothing is applied until then",
        )
    if deleting:
        return condition(
            "Ready",
            FALSE,
            "BatchStorageDeleting",
            f"PersistentVolumeClaim {claim} is being deleted, and it holds the signed batch "
            "documents; nothing is applied while it is (the running signer pods keep it "
            "mounted until they stop)",
        )
    replicas = spec.signer.replicas
    if replicas > 1 and "ReadWriteMany" not in access_modes:
        return condition(
            "Ready",
            FALSE,
            "BatchStorageNotShared",
            f"signer.replicas is {replicas} but the batch volume claim {claim} is "
            f"{', '.join(access_modes) or 'without an access mode'}: every replica must reach "
            "every batch, and a claim's access mode cannot change; keep signer.replicas 1, or "
            "copy the volume to a ReadWriteMany claim and name it in "
            "signer.batchStorage.claimName; nothing is applied until then",
        )
    explicit = spec.signer.batch_storage.access_mode
    if explicit is not None and explicit.value not in access_modes:
        return condition(
            "Ready",
            FALSE,
            "BatchStorageModeMismatch",
            f"signer.batchStorage.accessMode is {explicit.value} but the batch volume claim "
            f"{claim} is {', '.join(access_modes) or 'without an access mode'}: a claim's "
            "access mode cannot change, and the signer's rollout strategy follows it (a "
            "rollout of two pods on a ReadWriteOnce volume waits forever for the attachment); "
            "make accessMode the claim's, or remove it; nothing is applied until then",
        )
    return None


def batch_claim_pending(claim: str, phase: str | None) -> dict[str, str] | None:
    """Ready=False while the batch claim is not bound to a volume (None: not reported),
    or None.  Not a refusal: the children are applied (a claim of a WaitForFirstConsumer
    class binds only once a pod uses it), but the signer pods cannot start until then."""
    if phase is None or phase == "Bound":
        return None
    return condition(
        "Ready",
        FALSE,
        "BatchStoragePending",
        f"PersistentVolumeClaim {claim} is {phase}, not bound to a volume: the signer pods "
        "cannot start until it is.  More than one signer replica needs a ReadWriteMany "
        "volume (NFS, CephFS, Azure Files, EFS...); on a cluster whose storage classes "
        "offer only ReadWriteOnce the claim never binds: set signer.batchStorage."
        "storageClassName to a ReadWriteMany class, name a claim of yours in "
        f"signer.batchStorage.claimName, or run one signer replica (kubectl describe pvc "
        f"{claim} says what the provisioner answered)",
    )


#: The conditions besides Ready, in the order status lists them.
OBSERVED = (
    "SignerReady",
    "StorageReady",
    "PortalReady",
    "HSMReachable",
    "RetentionCompliant",
    "CertificatesValid",
    "TreeHeadsPublished",
    "BatchStoreReady",
    "TimeSynchronized",
)


def conditions(
    spec: ApplianceSpec, readiness: dict[str, Readiness | None], now: datetime | None = None
) -> list[dict[str, str]]:
    """Ready first, then every condition of `OBSERVED`."""
    current = observed(spec, readiness, now)
    return [ready(spec, current), *current]


def observed(
    spec: ApplianceSpec | None,
    readiness: dict[str, Readiness | None],
    now: datetime | None = None,
) -> list[dict[str, str]]:
    """Every condition of `OBSERVED`, from the services' answers.

    Retention and tree-head staleness are judged against what storage reports it
    runs with (its retention years and publication interval), not against the
    spec: during a rollout, or while a new spec is refused (invalid, a Secret
    missing, the API server saying no), the pods still run the old one.  `spec`
    (None when it is invalid) stands in only for a storage release that does
    not report them."""
    now = now or datetime.now(UTC)
    result: list[dict[str, str]] = []
    signer = readiness.get("signer")
    storage = readiness.get("storage")
    result.append(_service("SignerReady", signer))
    result.append(_service("StorageReady", storage))
    if spec is not None and not spec.portal.enabled:
        result.append(condition("PortalReady", FALSE, "Disabled", "spec.portal.enabled is false"))
    else:  # the portal's /readyz: database, signer and storage reachable
        result.append(_service("PortalReady", readiness.get("portal")))
    if signer is None or signer.status_code is None:
        result.append(condition("HSMReachable", UNKNOWN, "SignerNotAnswering"))
    elif signer.ready and signer.body.get("hsm") == "reachable":
        result.append(condition("HSMReachable", TRUE, "Reachable"))
    else:
        result.append(
            condition("HSMReachable", FALSE, "HsmUnavailable", str(signer.body.get("reason", "")))
        )
    result.append(retention(spec, storage))
    result.append(certificates(signer, now))
    result.append(tree_heads(spec, storage, now))
    result.append(batch_store(signer))
    result.append(time_condition(signer))
    return result


def ready(spec: ApplianceSpec, current: list[dict[str, str]]) -> dict[str, str]:
    """Ready from the conditions `observed` returned for a valid spec."""
    by_type = {c["type"]: c for c in current}
    required = {"SignerReady", "StorageReady", "HSMReachable", "RetentionCompliant"}
    if by_type["CertificatesValid"]["reason"] == "Expired":  # nothing valid can be signed
        required.add("CertificatesValid")
    if by_type["BatchStoreReady"]["status"] == FALSE:  # batches refused: documents not there
        required.add("BatchStoreReady")
    if by_type["TimeSynchronized"]["status"] == FALSE:  # timestamps (B-T and up) refused
        required.add("TimeSynchronized")
    if spec.portal.enabled:
        required.add("PortalReady")
    failing = [c["type"] for c in current if c["type"] in required and c["status"] != TRUE]
    if not failing:
        return condition("Ready", TRUE, "AllComponentsReady")
    return condition("Ready", FALSE, "ComponentsNotReady", "not ready: " + ", ".join(failing))


def refused(why: dict[str, str], current: list[dict[str, str]]) -> list[dict[str, str]]:
    """Ready=False for `why` (InvalidSpec, SecretMissing, ApplyFailed, a batch volume
    that cannot carry the spec: `batch_claim_refused`), and every other
    condition as `observed` now: a refused spec or a missing Secret says nothing new
    about the HSM or the bucket, and the services go on running what was applied."""
    return [why, *current]


def _service(kind: str, answer: Readiness | None) -> dict[str, str]:
    if answer is None or answer.status_code is None:
        return condition(kind, UNKNOWN, "NotAnswering", "the service did not answer /readyz")
    if answer.ready:
        return condition(kind, TRUE, "Ready")
    return condition(
        kind, FALSE, str(answer.body.get("error", "NotReady")), str(answer.body.get("reason", ""))
    )


def merge_transitions(
    previous: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]], now: str
) -> list[dict[str, Any]]:
    """Keep lastTransitionTime where a condition's status did not change."""
    before = {c.get("type"): c for c in previous}
    merged = []
    for item in current:
        old = before.get(item["type"])
        since = (
            old.get("lastTransitionTime") if old and old.get("status") == item["status"] else now
        )
        merged.append({**item, "lastTransitionTime": since or now})
    return merged
