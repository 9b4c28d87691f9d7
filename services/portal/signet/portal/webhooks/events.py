"""The event types a subscription may ask for: every step the ledger records.

A subscription names exact types (``recipient.signed``), a family (``recipient.*``)
or everything (``*``); a name that is neither is refused (a typo would otherwise
subscribe to nothing, silently).
"""

from __future__ import annotations

from collections.abc import Iterable

#: Every step recorded by `signet.portal.evidence.record.record_event` today.
EVENT_TYPES = frozenset(
    {
        "envelope.created", "envelope.sent", "envelope.reminded", "envelope.voided",
        "envelope.expired", "envelope.completion_due", "envelope.completed",
        "recipient.signed", "recipient.approved", "recipient.declined",
        "recipient.delegated", "recipient.forwarded", "recipient.activation_requested",
        "recipient.certificate_issued",
        "link.opened",
        "identity.code_sent", "identity.passed", "identity.failed", "identity.locked",
        "field.filled",
        "document.signed", "document.completed",
        "certificate.issued",
    }
)  # fmt: skip
FAMILIES = frozenset(t.split(".", 1)[0] for t in EVENT_TYPES)
#: A subscription that names no types: the envelope's and the recipients' state changes.
DEFAULT_PATTERNS = ("envelope.*", "recipient.*")


def invalid_patterns(patterns: Iterable[str]) -> list[str]:
    """The patterns that name no known type or family."""
    return [p for p in patterns if not _known(p)]


def _known(pattern: str) -> bool:
    if pattern == "*" or pattern in EVENT_TYPES:
        return True
    family, _, rest = pattern.partition(".")
    return rest == "*" and family in FAMILIES


def matches(patterns: Iterable[str], event_type: str) -> bool:
    for pattern in patterns:
        if pattern in ("*", event_type):
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False
