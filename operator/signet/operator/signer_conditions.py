"""The Appliance's conditions judged from the signer's /readyz: its batch store, its
TSA's clock and its certificates (root, issuing CA, TSA, seals)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from signet.operator.readiness import FALSE, TRUE, UNKNOWN, Readiness, condition, parse_time

#: Certificates expiring within this window turn CertificatesValid False (ExpiringSoon);
#: a TSA certificate past its reported ``rollover_due`` turns it False (RolloverDue).
EXPIRY_WARNING = timedelta(days=30)

#: The signer's `batch_store` report -> the reason of a False BatchStoreReady.
_BATCH_STORE_REASONS = {
    "missing": "BatchStoreMissing",
    "mismatch": "BatchStoreMismatch",
    "stale": "BatchStoreStale",
    "bad_marker": "BatchStoreMarkerUnreadable",
    "unavailable": "BatchStoreUnavailable",
}


def batch_store(signer: Readiness | None) -> dict[str, str]:
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


def time_condition(signer: Readiness | None) -> dict[str, str]:
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


def certificates(signer: Readiness | None, now: datetime) -> dict[str, str]:
    """Root, issuing CA, TSA and seal certificates, from the signer's readiness report."""
    if signer is None or signer.status_code is None:
        return condition("CertificatesValid", UNKNOWN, "SignerNotAnswering")
    reported = signer.body.get("certificates")
    if not isinstance(reported, list) or not reported:
        return condition("CertificatesValid", UNKNOWN, "NotReported")
    expired, soon, due = [], [], []
    first: tuple[datetime, str] | None = None
    for item in reported:
        not_after = parse_time(item.get("not_after"))
        name = str(item.get("name", "?"))
        if not_after is None:
            continue
        # the TSA's entry names the preservation step due before it expires (issue 19)
        step = f": {item['step']}" if item.get("step") else ""
        rollover = parse_time(item.get("rollover_due")) if item.get("rollover_due") else None
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
