"""The pages' security as code, in one place: the Content-Security-Policy, the other
response headers, and the CSRF token of every form.

CSP: everything from the portal itself and nothing inline, so an injected ``<script>``
or ``style=`` does not run even if escaping ever failed.  ``img-src data:`` is there for
the signature's preview (the PNG the person just drew, never a third party's image);
``blob:`` for pdf.js, which may hand itself the images it decodes.  The browser tests
run pdf.js under exactly this policy and fail on any violation Chromium reports.

CSRF: a signed double-submit cookie (OWASP's recommended variant).  The browser holds a
random nonce in an HttpOnly, SameSite=Strict cookie; every form carries
``HMAC(key, nonce | purpose)`` where the purpose binds it to one link.  A forged form
from another site has neither the cookie (SameSite) nor a token it could compute.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "font-src 'self'",
        "connect-src 'self'",
        "worker-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

#: on every page and static file
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # the link's token is in the address: never hand it to another site
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
#: pages show a person's contract: no shared cache keeps them
PAGE_HEADERS = HEADERS | {"Cache-Control": "no-store"}

CSRF_COOKIE = "signet_csrf"
CSRF_FIELD = "csrf"


def new_nonce() -> str:
    """The cookie's random half (128 bits)."""
    return secrets.token_urlsafe(16)


def csrf_token(key: bytes, nonce: str, purpose: str) -> str:
    """The form's token for this browser's `nonce`, bound to `purpose` (the link)."""
    mac = hmac.new(key, f"{nonce}|{purpose}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def csrf_valid(key: bytes, nonce: str | None, purpose: str, presented: str | None) -> bool:
    """Constant-time: the presented token is the one this browser's nonce gives."""
    if not nonce or not presented or len(presented) > 64 or len(nonce) > 64:
        return False
    return hmac.compare_digest(csrf_token(key, nonce, purpose), presented)
