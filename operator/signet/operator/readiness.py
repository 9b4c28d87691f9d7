"""What a service's /readyz answered, and the shape of one status condition.

Below `signet.operator.conditions` and the per-service judges (`signer_conditions`,
`storage_conditions`), which all build conditions from these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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


def parse_time(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
