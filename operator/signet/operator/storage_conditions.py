"""The Appliance's conditions judged from storage's /readyz: retention and the signed
tree heads of the evidence ledger."""

from __future__ import annotations

from datetime import datetime, timedelta

from signet.common.contracts.appliance import ApplianceSpec
from signet.operator.readiness import FALSE, TRUE, UNKNOWN, Readiness, condition, parse_time

#: Entries left without a signed tree head for this many publication intervals are stale.
STALE_INTERVALS = 3


def _reported(storage: Readiness, key: str) -> float | None:
    value = storage.body.get(key)
    return float(value) if isinstance(value, int | float) else None


def retention(spec: ApplianceSpec | None, storage: Readiness | None) -> dict[str, str]:
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


def tree_heads(
    spec: ApplianceSpec | None, storage: Readiness | None, now: datetime
) -> dict[str, str]:
    """Is the evidence ledger being sealed?  A log that grows without signed tree heads
    gives evidence packages nothing to prove inclusion against."""
    if storage is None or storage.status_code is None or not storage.ready:
        return condition("TreeHeadsPublished", UNKNOWN, "StorageNotReady")
    size = int(storage.body.get("ledger_size", 0))
    head_size = storage.body.get("tree_head_size")
    head_time = parse_time(storage.body.get("tree_head_time"))
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
    unsigned_since = parse_time(storage.body.get("unsigned_since"))
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
