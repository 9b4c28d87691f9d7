"""Link tokens: derived from the recipient and a generation under the portal's link key.

A token is HMAC-SHA256(link key, recipient id, generation), 256 bits: the database
keeps only its SHA-256 (for lookup), and the portal can derive the same token again
when a message is (re)sent, so no outbox row or job ever holds a usable link.  A new
generation (a resent link, a delegate, a forward) makes every older link useless.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from signet.common.otp import link_token_hash


def link_token(key: bytes, recipient_id: str, generation: int) -> str:
    message = f"signet-link\x00{recipient_id}\x00{generation}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


__all__ = ["link_token", "link_token_hash"]
