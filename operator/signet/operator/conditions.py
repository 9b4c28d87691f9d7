"""Status conditions of an Appliance, computed from what the services' /readyz answered.

Pure: the handler gathers the answers (or the simulated ones, in tests) and
keeps each condition's lastTransitionTime when its status did not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from signet.common.contracts.appliance import ApplianceSpec
from signet.operator.desired import COMPONENTS

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


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
        problems = [
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        ]
        return None, "; ".join(problems)


def invalid_spec(message: str) -> list[dict[str, str]]:
    return [condition("Ready", FALSE, "InvalidSpec", message)]


def missing_secrets(missing: list[str]) -> list[dict[str, str]]:
    return [
        condition(
            "Ready",
            FALSE,
            "SecretMissing",
            "create " + ", ".join(missing) + " in this namespace; nothing was started",
        )
    ]


def conditions(spec: ApplianceSpec, readiness: dict[str, Readiness | None]) -> list[dict[str, str]]:
    result: list[dict[str, str]] = []
    signer = readiness.get("signer")
    storage = readiness.get("storage")
    result.append(_service("SignerReady", signer))
    result.append(_service("StorageReady", storage))
    portal = next(c for c in COMPONENTS if c.name == "portal")
    if not portal.installed:
        result.append(
            condition(
                "PortalReady",
                FALSE,
                "NotInstalled",
                "the portal arrives with a later release; its settings are validated and kept",
            )
        )
    else:
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
    required = {"SignerReady", "StorageReady", "HSMReachable", "RetentionCompliant"}
    if portal.installed and spec.portal.enabled:
        required.add("PortalReady")
    failing = [c["type"] for c in result if c["type"] in required and c["status"] != TRUE]
    result.insert(
        0,
        condition("Ready", TRUE, "AllComponentsReady")
        if not failing
        else condition("Ready", FALSE, "ComponentsNotReady", "not ready: " + ", ".join(failing)),
    )
    return result


def _service(kind: str, answer: Readiness | None) -> dict[str, str]:
    if answer is None or answer.status_code is None:
        return condition(kind, UNKNOWN, "NotAnswering", "the service did not answer /readyz")
    if answer.ready:
        return condition(kind, TRUE, "Ready")
    return condition(
        kind, FALSE, str(answer.body.get("error", "NotReady")), str(answer.body.get("reason", ""))
    )


def _retention(spec: ApplianceSpec, storage: Readiness | None) -> dict[str, str]:
    wanted = spec.object_store.retention_years
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
    if years < wanted:
        return condition(
            "RetentionCompliant",
            FALSE,
            "RetentionTooShort",
            f"the bucket keeps objects {years} years; the Appliance asks for {wanted}",
        )
    return condition("RetentionCompliant", TRUE, "Compliant", f"COMPLIANCE, {years} years")


def merge_transitions(
    previous: list[dict[str, Any]], current: list[dict[str, str]], now: str
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
