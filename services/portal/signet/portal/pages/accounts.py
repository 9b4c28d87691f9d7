"""Sign-in for local accounts and the sender's inbox (first slice of the staff pages).

The session cookie (`signet_session`) is HttpOnly, SameSite=Lax (a link from an e-mail
to the inbox arrives signed in; every form still carries its CSRF token) and Secure
whenever the portal is reached over HTTPS; it expires with the session (8 hours).
The lock-out and the session store are `signet.portal.accounts.signin`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from signet.common.errors import SignetError
from signet.portal.accounts.signin import SignedIn
from signet.portal.envelopes.models import Envelope
from signet.portal.http.deps import Portal, get_origin
from signet.portal.pages.render import PageContext
from signet.portal.pages.security import CSRF_COOKIE, CSRF_FIELD, csrf_valid
from signet.portal.pages.signing import portal_and_context

router = APIRouter()

SESSION_COOKIE = "signet_session"
#: the inbox's tabs: envelope statuses (None: every envelope)
TABS = (None, "in_progress", "sent", "completed", "declined", "voided", "expired", "draft")
PAGE_SIZE = 50


def _session(portal: Portal, request: Request) -> SignedIn | None:
    return portal.signins.signed_in(request.cookies.get(SESSION_COOKIE))


def _purpose(who: SignedIn | None) -> str:
    """The CSRF token's binding: the sign-in form, or this session's forms."""
    return "signin" if who is None else f"session:{who.session_id}"


def _form_ok(context: PageContext, request: Request, purpose: str, form: dict[str, str]) -> bool:
    nonce = request.cookies.get(CSRF_COOKIE)
    return csrf_valid(context.csrf_key, nonce, purpose, form.get(CSRF_FIELD))


@router.get("/signin", response_class=HTMLResponse)
async def sign_in_form(request: Request) -> Response:
    portal, context = portal_and_context(request)
    who = await run_in_threadpool(_session, portal, request)
    if who is not None:
        return context.redirect("/inbox")
    return context.page("signin.html", error=None, email="", csrf=context.csrf("signin"))


@router.post("/signin", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    portal, context = portal_and_context(request)
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    email = form.get("email", "")[:254]
    if not _form_ok(context, request, "signin", form):
        return context.page("signin.html", status_code=403, error="csrf", email=email,
                            csrf=context.csrf("signin"))  # fmt: skip
    password = form.get("password", "")
    if not email or not password or len(password) > 1024:
        return context.page("signin.html", status_code=400, error="sign_in_refused",
                            email=email, csrf=context.csrf("signin"))  # fmt: skip
    try:
        token, expires = await run_in_threadpool(
            portal.signins.sign_in, email, password, get_origin(request)
        )
    except SignetError as exc:
        return context.page("signin.html", status_code=exc.status_code, error=exc.code,
                            email=email, csrf=context.csrf("signin"))  # fmt: skip
    response = context.redirect("/inbox")
    response.set_cookie(
        SESSION_COOKIE, token, expires=expires, httponly=True, samesite="lax",
        secure=request.url.scheme == "https", path="/",
    )  # fmt: skip
    return response


@router.post("/signout", response_class=HTMLResponse)
async def sign_out(request: Request) -> Response:
    portal, context = portal_and_context(request)
    who = await run_in_threadpool(_session, portal, request)
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    if who is None or not _form_ok(context, request, _purpose(who), form):
        return context.page("problem.html", status_code=403, error="csrf", detail="", token=None)
    await run_in_threadpool(portal.signins.sign_out, request.cookies.get(SESSION_COOKIE))
    response = context.redirect("/signin")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/inbox", response_class=HTMLResponse)
async def inbox(request: Request) -> Response:
    """The envelopes this person may see (a sender's own; an admin's or auditor's whole
    organisation), newest first, by status and by a search over title and parties."""
    portal, context = portal_and_context(request)
    who = await run_in_threadpool(_session, portal, request)
    if who is None:
        return context.redirect("/signin")
    status = request.query_params.get("status") or None
    if status not in TABS:
        status = None
    text = (request.query_params.get("q") or "")[:100].strip()
    rows = await run_in_threadpool(
        lambda: portal.envelopes.list(
            who.organisation_id, None if who.sees_all else who.user_id, status=status,
            text=text or None, limit=PAGE_SIZE,
        )
    )  # fmt: skip
    return context.page(
        "inbox.html", who=who, status=status, q=text, tabs=TABS,
        envelopes=[_row(envelope) for envelope in rows], csrf=context.csrf(_purpose(who)),
    )  # fmt: skip


def _row(envelope: Envelope) -> dict[str, Any]:
    return {
        "title": envelope.title,
        "status": envelope.status,
        "created_at": envelope.created_at,
        "deadline": envelope.deadline,
        "documents": [d.name for d in envelope.documents],
        "parties": [
            {"name": r.name, "role": r.role, "status": r.status} for r in envelope.recipients
        ],
    }
