"""Who may call which portal route: API keys for senders and admins, link tokens for
recipients, nothing for health.

Checked in the ASGI gate (`signet.common.gate.RequestGate`) before any route and any
body read, as in the signer and storage: an unauthenticated upload of 500 MB costs a
header parse and one indexed lookup.  The recipient routes carry their credential, the
link token, in the path; their routes check it (and the identity check) themselves.
A route not in `ROUTES` needs the admin scope: closed, not open.
"""

from __future__ import annotations

import re

from signet.common.errors import Forbidden
from signet.portal.accounts.service import Accounts, PortalScope
from starlette.types import Scope as ASGIScope

_LINK = r"[A-Za-z0-9_-]{20,64}"
_ID = r"[0-9a-f-]{36}"

#: (methods, full-match path, scope needed; None: no key — public, or a link route)
ROUTES: tuple[tuple[frozenset[str], re.Pattern[str], PortalScope | None], ...] = tuple(
    (frozenset(methods.split()), re.compile(path), needed)
    for methods, path, needed in (
        ("GET HEAD", r"/healthz|/readyz|/metrics", None),
        ("GET HEAD", r"/docs|/docs/oauth2-redirect|/redoc|/openapi\.json", None),
        ("GET", rf"/api/v1/links/{_LINK}(/documents/[0-9]{{1,2}}|/certificate)?", None),
        (
            "POST",
            rf"/api/v1/links/{_LINK}/(identity/code|identity/verify|decline|approve|activation|sign|delegate)",
            None,
        ),
        ("PUT", rf"/api/v1/links/{_LINK}/fields/{_ID}", None),
        ("POST", rf"/api/v1/attachments/{_LINK}/{_ID}", None),
        ("GET", rf"/api/v1/envelopes/{_ID}/attachments/{_ID}", PortalScope.ENVELOPES_READ),
        # the pages: the link's token is the credential there too (signet.portal.pages)
        ("GET HEAD", rf"/(s|sign)/[^/]+|/s/{_LINK}/(sign|decline)|/static/.+", None),
        ("GET", rf"/s/{_LINK}/documents/[0-9]{{1,2}}/pages/[0-9]{{1,4}}\.png", None),
        ("POST", rf"/s/{_LINK}/(code|verify|fields|signature|sign|approve|decline)", None),
        # sign-in and the inbox: the session cookie is checked by the pages themselves
        ("GET HEAD", r"/signin|/inbox", None),
        ("POST", r"/signin|/signout", None),
        ("POST", r"/api/v1/envelopes", PortalScope.ENVELOPES_WRITE),
        ("GET", r"/api/v1/envelopes", PortalScope.ENVELOPES_READ),
        (
            "GET",
            rf"/api/v1/envelopes/{_ID}(/events|/evidence|/certificate|/documents/[0-9]{{1,2}})?",
            PortalScope.ENVELOPES_READ,
        ),
        (
            "POST",
            rf"/api/v1/envelopes/{_ID}/(send|void|remind|complete)",
            PortalScope.ENVELOPES_WRITE,
        ),
        ("POST", rf"/api/v1/envelopes/{_ID}/recipients/{_ID}/forward", PortalScope.ENVELOPES_WRITE),
        ("GET", r"/api/v1/outbox", PortalScope.ADMIN),
        ("POST", rf"/api/v1/outbox/{_ID}/resend", PortalScope.ADMIN),
        ("GET POST", r"/api/v1/keys", PortalScope.ADMIN),
        ("POST", rf"/api/v1/keys/{_ID}/revoke", PortalScope.ADMIN),
        ("POST", r"/api/v1/users", PortalScope.ADMIN),
        ("POST", r"/api/v1/templates", PortalScope.ENVELOPES_WRITE),
        ("GET", rf"/api/v1/templates(/{_ID})?", PortalScope.ENVELOPES_READ),
        ("POST", rf"/api/v1/templates/{_ID}/envelopes", PortalScope.ENVELOPES_WRITE),
        ("GET POST", r"/api/v1/webhooks", PortalScope.WEBHOOKS_MANAGE),
        ("GET DELETE", rf"/api/v1/webhooks/{_ID}", PortalScope.WEBHOOKS_MANAGE),
        ("GET", rf"/api/v1/webhooks/{_ID}/deliveries", PortalScope.WEBHOOKS_MANAGE),
        (
            "POST",
            rf"/api/v1/webhooks/{_ID}/deliveries/{_ID}/replay",
            PortalScope.WEBHOOKS_MANAGE,
        ),
    )
)


def needed_scope(method: str, path: str) -> PortalScope | None:
    for methods, pattern, needed in ROUTES:
        if method in methods and pattern.fullmatch(path):
            return needed
    return PortalScope.ADMIN


class KeyAuthorizer:
    """The gate's check: the API key's principal into ``scope["state"]["principal"]``."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    def __call__(self, scope: ASGIScope) -> None:
        needed = needed_scope(scope["method"], scope["path"])
        if needed is None:
            return
        header = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        principal = self.accounts.authenticate(header.decode("latin-1"))
        if not principal.may(needed):
            raise Forbidden(f"this API key may not {needed.value}")
        scope.setdefault("state", {})["principal"] = principal
