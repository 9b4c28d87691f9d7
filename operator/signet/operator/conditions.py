"""Status conditions of an Appliance, computed from what the services' /readyz answered.

Pure: the handler gathers the answers (or the simulated ones, in tests) and
keeps each condition's lastTransitionTime when its status did not change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from signet.common.contracts.appliance import ApplianceSpec
from signet.common.errors import summarize_validation

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
#: Certificates expiring within this window turn CertificatesValid False (ExpiringSoon);
#: a TSA certificate past its reported ``rollover_due`` turns it False (RolloverDue).
EXPIRY_WARNING = timedelta(days=30)
#: Entries left without a signed tree head for this many publication intervals are stale.
STALE_INTERVALS = 3


@dataclass(frozen=True)
class Readiness:
    """One service's answer to GET /readyz (None body: it did not answer at all)."""

    status_code: int | None
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.status_code == 200


def condition(kind: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


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
    result.append(_retention(spec, storage))
    result.append(_certificates(signer, now))
    result.append(_tree_heads(spec, storage, now))
    result.append(_batch_store(signer))
    result.append(_time(signer))
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


#: The signer's `batch_store` report -> the reason of a False BatchStoreReady.
_BATCH_STORE_REASONS = {
    "missing": "BatchStoreMissing",
    "mismatch": "BatchStoreMismatch",
    "stale": "BatchStoreStale",
    "bad_marker": "BatchStoreMarkerUnreadable",
    "unavailable": "BatchStoreUnavailable",
}


def _batch_store(signer: Readiness | None) -> dict[str, str]:
    """Are the batches' documents where the database says?  A signer on a volume that is
    not its batches' own (lost, unmounted, another installation's) refuses batches; the
    rest of it keeps signing, so this is its own condition, not SignerReady.  The signer
    reports a verdict and a sentence, never its paths or store ids (``/readyz`` needs no
    token); the details are in its log and ``signet signer batch-store status``."""
    if signer is None or signer.status_code is None:
        return condition("BatchStoreReady", UNKNOWN, "SignerNotAnswering")
    health = signer.body.get("batch_store")
    if health is None:
        if signer.status_code >= 500 and signer.status_code != 503:  # an error, not an answer
            return condition(
                "BatchStoreReady",
                UNKNOWN,
                "ReadinessFailed",
                f"the signer's readiness failed (HTTP {signer.status_code})",
            )
        return condition(
            "BatchStoreReady", UNKNOWN, "NotReported", "this signer release does not report it"
        )
    if health == "ready":
        return condition("BatchStoreReady", TRUE, "Ready", "the batch directory is verified")
    return condition(
        "BatchStoreReady",
        FALSE,
        _BATCH_STORE_REASONS.get(str(health), "BatchStoreNotReady"),
        str(signer.body.get("batch_store_problem") or f"batch store: {health}"),
    )


def _milliseconds(value: Any) -> str:
    return f"{float(value):g} ms" if isinstance(value, int | float) else "unknown"


def _time(signer: Readiness | None) -> dict[str, str]:
    """Can the signer's TSA stamp?  From its ``time`` report: the kernel's verdict on the
    clock and, when the admin named NTP references, the measured offset against them.
    Unsynchronised, every timestamp (``POST /tsa``, B-T signatures and up) is refused
    with 503; OCSP, CRLs and B-B signatures go on, so this is not SignerReady."""
    if signer is None or signer.status_code is None:
        return condition("TimeSynchronized", UNKNOWN, "SignerNotAnswering")
    body = signer.body
    state = body.get("time")
    if state is None:
        return condition(
            "TimeSynchronized", UNKNOWN, "NotReported", "this signer release does not report it"
        )
    accuracy = _milliseconds(body.get("time_accuracy_ms"))
    facts = f"estimated error {_milliseconds(body.get('time_estimated_error_ms'))}"
    if body.get("time_references"):
        facts += f", reference offset {_milliseconds(body.get('time_reference_offset_ms'))}"
    if state == "synchronised":
        warning = body.get("time_warning")
        return condition(
            "TimeSynchronized",
            TRUE,
            "NearAccuracy" if warning else "Synchronised",
            f"{facts}; tokens claim {accuracy}" + (f"; {warning}" if warning else ""),
        )
    if state == "trusted-host":
        return condition(
            "TimeSynchronized",
            UNKNOWN,
            "TrustedHost",
            f"the signer takes the host's clock unchecked (time trust trusted-host); tokens "
            f"claim {accuracy}",
        )
    return condition(
        "TimeSynchronized",
        FALSE,
        "ClockUnsynchronised",
        f"timestamps are refused: {body.get('time_problem') or state}; {facts}; tokens "
        f"claim {accuracy}",
    )


def _reported(storage: Readiness, key: str) -> float | None:
    value = storage.body.get(key)
    return float(value) if isinstance(value, int | float) else None


def _retention(spec: ApplianceSpec | None, storage: Readiness | None) -> dict[str, str]:
    if storage is None or storage.status_code is None:
        return condition("RetentionCompliant", UNKNOWN, "StorageNotAnswering")
    if not storage.ready:
        return condition(
            "RetentionCompliant",
            FALSE,
            str(storage.body.get("error", "StorageNotReady")),
            str(storage.body.get("reason", "")),
        )
    lock, years = storage.body.get("object_lock"), int(storage.body.get("retention_years", 0))
    if lock != "COMPLIANCE":
        return condition(
            "RetentionCompliant", FALSE, "NoObjectLock", f"the bucket's Object Lock mode is {lock}"
        )
    running = _reported(storage, "configured_retention_years")
    asked = spec.object_store.retention_years if spec is not None else None
    if running is None and asked is None:
        return condition(
            "RetentionCompliant",
            UNKNOWN,
            "NotReported",
            f"COMPLIANCE, {years} years; this storage release does not say how long it "
            "retains objects, and the Appliance's spec is invalid",
        )
    wanted = int(running) if running is not None else int(asked or 0)
    who = "storage runs with" if running is not None else "the Appliance asks for"
    if years < wanted:
        return condition(
            "RetentionCompliant",
            FALSE,
            "RetentionTooShort",
            f"the bucket keeps objects {years} years; {who} {wanted}",
        )
    return condition("RetentionCompliant", TRUE, "Compliant", f"COMPLIANCE, {years} years")


def _parse_time(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _certificates(signer: Readiness | None, now: datetime) -> dict[str, str]:
    """Root, issuing CA, TSA and seal certificates, from the signer's readiness report."""
    if signer is None or signer.status_code is None:
        return condition("CertificatesValid", UNKNOWN, "SignerNotAnswering")
    reported = signer.body.get("certificates")
    if not isinstance(reported, list) or not reported:
        return condition("CertificatesValid", UNKNOWN, "NotReported")
    expired, soon, due = [], [], []
    first: tuple[datetime, str] | None = None
    for item in reported:
        not_after = _parse_time(item.get("not_after"))
        name = str(item.get("name", "?"))
        if not_after is None:
            continue
        # the TSA's entry names the preservation step due before it expires (issue 19)
        step = f": {item['step']}" if item.get("step") else ""
        rollover = _parse_time(item.get("rollover_due")) if item.get("rollover_due") else None
        if first is None or not_after < first[0]:
            first = (not_after, name)
        if not_after <= now:
            expired.append(f"{name} (expired {not_after:%Y-%m-%d}){step}")
        elif not_after - now <= EXPIRY_WARNING:
            days = (not_after - now).days
            soon.append(f"{name} (expires {not_after:%Y-%m-%d}, in {days} days){step}")
        elif rollover is not None and rollover <= now:
            due.append(
                f"{name} (expires {not_after:%Y-%m-%d}, rollover due {rollover:%Y-%m-%d}){step}"
            )
    if expired:
        return condition("CertificatesValid", FALSE, "Expired", "; ".join(expired + soon))
    if soon:
        return condition("CertificatesValid", FALSE, "ExpiringSoon", "; ".join(soon))
    if due:  # a warning like ExpiringSoon: signing goes on, preservation must start
        return condition("CertificatesValid", FALSE, "RolloverDue", "; ".join(due))
    message = f"next expiry: {first[1]} on {first[0]:%Y-%m-%d}" if first else ""
    return condition("CertificatesValid", TRUE, "Valid", message)


def _tree_heads(
    spec: ApplianceSpec | None, storage: Readiness | None, now: datetime
) -> dict[str, str]:
    """Is the evidence ledger being sealed?  A log that grows without signed tree heads
    gives evidence packages nothing to prove inclusion against."""
    if storage is None or storage.status_code is None or not storage.ready:
        return condition("TreeHeadsPublished", UNKNOWN, "StorageNotReady")
    size = int(storage.body.get("ledger_size", 0))
    head_size = storage.body.get("tree_head_size")
    head_time = _parse_time(storage.body.get("tree_head_time"))
    if storage.body.get("tree_head_publisher") == "unavailable":
        # Not a matter of time: this replica will never publish, whatever the log holds.
        problem = storage.body.get("tree_head_publisher_problem") or "no reason given"
        return condition(
            "TreeHeadsPublished",
            FALSE,
            "PublisherUnavailable",
            f"the storage replica cannot publish tree heads ({problem}); the log has {size} "
            f"entries, the latest tree head covers {head_size or 0}",
        )
    if size == 0:
        return condition("TreeHeadsPublished", TRUE, "EmptyLog")
    if head_size == size:
        return condition("TreeHeadsPublished", TRUE, "UpToDate", f"{size} entries signed")
    # Measured from the oldest entry still waiting for a head: after a quiet hour the
    # first new entry is not late just because the last head is an hour old.  A storage
    # release that does not report it yet is judged by the head's age, as before.
    unsigned_since = _parse_time(storage.body.get("unsigned_since"))
    waiting = unsigned_since or head_time
    # The interval storage runs with; the spec's only for a release that does not say.
    interval = _reported(storage, "tree_head_interval_seconds")
    if interval is None and spec is not None:
        interval = float(spec.tree_head_interval_seconds)
    if interval is None:
        return condition(
            "TreeHeadsPublished",
            UNKNOWN,
            "NotReported",
            f"signed up to {head_size or 0} of {size} entries; this storage release does not "
            "say how often it publishes, and the Appliance's spec is invalid",
        )
    allowed = timedelta(seconds=STALE_INTERVALS * interval)
    if waiting is not None and now - waiting <= allowed:
        return condition(
            "TreeHeadsPublished",
            TRUE,
            "Publishing",
            f"signed up to {head_size or 0} of {size} entries",
        )
    since = f"signed at {head_time:%Y-%m-%d %H:%M:%S}Z" if head_time else "never signed"
    unsigned = (
        f"; unsigned entries waiting since {unsigned_since:%Y-%m-%d %H:%M:%S}Z"
        if unsigned_since
        else ""
    )
    return condition(
        "TreeHeadsPublished",
        FALSE,
        "Stale",
        f"the log has {size} entries; the latest tree head covers {head_size or 0}, {since}"
        f"{unsigned}; publisher: {storage.body.get('tree_head_publisher') or 'none'}",
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
