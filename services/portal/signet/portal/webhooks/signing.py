"""Signing a delivery: ``webhook-signature: v1,<base64 HMAC-SHA256(secret, "<timestamp>.<body>")>``.

The headers are Standard Webhooks' (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``), the signed content is Stripe's shape, the timestamp and the
body joined by a dot (see docs/api/webhooks.md for why, and the five-line check).  The
secret is ``whsec_`` and the base64 of 32 bytes derived from the portal's secret key
with HMAC, the subscription's id and a generation: nothing in the database lets anyone
sign, and a new generation is a new secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
#: A receiver refuses deliveries signed longer ago than this (the docs' snippet does).
TOLERANCE_SECONDS = 300


def subscription_secret(key: bytes, subscription_id: str, generation: int) -> str:
    raw = hmac.new(key, f"{subscription_id}\x00{generation}".encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(raw).decode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header's value for `body` sent at `timestamp`."""
    raw = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(raw, f"{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, now: float) -> bool:
    """A receiver's check (the docs show the same in five lines): a signature made with
    `secret` over this timestamp and body, and a timestamp within the tolerance."""
    try:
        timestamp = int(headers["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        return False
    expected = signature(secret, timestamp, body)
    offered = headers.get("webhook-signature", "").split()
    return any(hmac.compare_digest(expected, s) for s in offered)
