"""The external signer's pages, from the link in their message (``/s/{token}``, no
account): whose turn it is, the identity code, the documents, the fields, the drawn
signature, the intent code (the signer service's activation), done; or a decline.

Each form posts here and is translated to the very service call the recipient API makes
(`signet.portal.http.links`); the services check the order, the identity and the
activation, so a page can never do what the API would refuse.  Every form carries a
CSRF token bound to the link (`signet.portal.pages.security`), checked before any work.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from signet.common.errors import SignetError
from signet.portal.envelopes.models import Envelope, FieldKind
from signet.portal.envelopes.service import LinkView
from signet.portal.envelopes.signature import decoded_png
from signet.portal.http.deps import Portal, get_origin, get_portal
from signet.portal.http.links import finish, readable
from signet.portal.pages.render import PageContext
from signet.portal.pages.security import CSRF_COOKIE, CSRF_FIELD, csrf_valid
from signet.portal.pages.typed import typed_name_ok, typed_signature_png

router = APIRouter()

TOKEN = re.compile(r"[A-Za-z0-9_-]{20,64}")
#: the fields a person types or ticks; signature fields take the drawn image
TYPED = (FieldKind.DATE, FieldKind.TEXT, FieldKind.INITIALS, FieldKind.CHECKBOX)
DATA_URL = "data:image/png;base64,"


def portal_and_context(request: Request) -> tuple[Portal, PageContext]:
    portal = get_portal(request)
    return portal, PageContext.of(request, portal.settings.derived_key("pages-csrf"))


def problem_page(context: PageContext, exc: SignetError, token: str | None = None) -> HTMLResponse:
    """A refusal as a page: the error's code picks a translated sentence."""
    status = exc.status_code if 400 <= exc.status_code < 600 else 500
    return context.page(
        "problem.html", status_code=status, error=exc.code, detail=exc.detail, token=token
    )


async def _checked_form(
    request: Request, context: PageContext, token: str
) -> dict[str, str] | HTMLResponse:
    """The form's fields, once the CSRF token matches this browser and this link."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not csrf_valid(
        context.csrf_key, request.cookies.get(CSRF_COOKIE), token, fields.get(CSRF_FIELD)
    ):
        return context.page("problem.html", status_code=403, error="csrf", detail="", token=token)
    return fields


def bad_link_page(context: PageContext) -> HTMLResponse:
    return context.page(
        "problem.html", status_code=404, error="link_invalid", detail="", token=None
    )


@router.get("/sign/{token}")
async def sign_alias(token: str) -> RedirectResponse:
    """The brief's name for the link; messages carry the shorter ``/s/``."""
    target = token if TOKEN.fullmatch(token) else "invalid"
    return RedirectResponse(f"/s/{target}", status_code=308)


@router.get("/s/{token}", response_class=HTMLResponse)
async def landing(request: Request, token: str) -> Response:
    """What the link shows now: a state page, the identity step, or the documents."""
    portal, context = portal_and_context(request)
    if not TOKEN.fullmatch(token):
        return bad_link_page(context)
    origin = get_origin(request)
    try:
        view = await run_in_threadpool(portal.envelopes.open, token, origin)
    except SignetError as exc:
        return problem_page(context, exc)
    finally:
        portal.drain.poke()
    if not view.identity_verified and _may_act(view):
        return context.page("identity.html", token=token, view=view, sent=None, error=None,
                            csrf=context.csrf(token))  # fmt: skip
    if not _may_act(view):
        return await _state(portal, context, token, view)
    envelope = await envelope_of(portal, token)
    if isinstance(envelope, SignetError):
        return problem_page(context, envelope, token)
    return context.page("documents.html", **_documents(context, token, view, envelope))


async def _state(portal: Portal, context: PageContext, token: str, view: LinkView) -> Response:
    """Not your turn, finished (with downloads), declined, voided or expired."""
    envelope: Envelope | None = None
    if view.identity_verified and view.recipient_status in {"signed", "approved"}:
        found = await envelope_of(portal, token)
        envelope = found if isinstance(found, Envelope) else None
    return context.page(
        "state.html", token=token, view=view,
        documents=[d.name for d in envelope.documents] if envelope else [],
        completed=view.envelope_status == "completed",
    )  # fmt: skip


def _may_act(view: LinkView) -> bool:
    return view.blocked is None


async def envelope_of(portal: Portal, token: str) -> Envelope | SignetError:
    try:
        return await run_in_threadpool(readable, portal, token)
    except SignetError as exc:
        return exc


def _documents(
    context: PageContext, token: str, view: LinkView, envelope: Envelope
) -> dict[str, Any]:
    recipient = next(r for r in envelope.recipients if r.id == view.recipient_id)
    position = {d.id: d.position for d in envelope.documents}
    fields = [
        {"id": f.id, "kind": f.kind, "label": f.label, "required": f.required,
         "document": position[f.document_id], "page": f.page,
         "value": (f.value or {}).get("value", "")}
        for f in envelope.fields
        if f.recipient_id == recipient.id and FieldKind(f.kind) in TYPED
    ]  # fmt: skip
    return {
        "token": token, "view": view, "title": envelope.title, "message": envelope.message,
        "recipient": recipient.name, "role": recipient.role,
        "documents": [{"index": d.position, "name": d.name, "pages": d.pages}
                      for d in envelope.documents],
        "fields": fields, "error": None, "csrf": context.csrf(token),
    }  # fmt: skip


@router.post("/s/{token}/code", response_class=HTMLResponse)
async def send_identity_code(request: Request, token: str) -> Response:
    portal, context = portal_and_context(request)
    if not TOKEN.fullmatch(token):
        return bad_link_page(context)
    form = await _checked_form(request, context, token)
    if isinstance(form, HTMLResponse):
        return form
    origin = get_origin(request)
    try:
        sent = await run_in_threadpool(portal.identity.request_code, token, origin)
        view = await run_in_threadpool(portal.envelopes.open, token, origin)
    except SignetError as exc:
        return problem_page(context, exc, token)
    finally:
        portal.drain.poke()
    return context.page("identity.html", token=token, view=view, sent=sent, error=None,
                        csrf=context.csrf(token))  # fmt: skip


@router.post("/s/{token}/verify", response_class=HTMLResponse)
async def verify_identity_code(request: Request, token: str) -> Response:
    portal, context = portal_and_context(request)
    if not TOKEN.fullmatch(token):
        return bad_link_page(context)
    form = await _checked_form(request, context, token)
    if isinstance(form, HTMLResponse):
        return form
    origin = get_origin(request)
    code = form.get("code", "").strip()
    try:
        if not re.fullmatch(r"[0-9]{6}", code):
            view = await run_in_threadpool(portal.envelopes.open, token, origin)
            return context.page(
                "identity.html", status_code=400, token=token, view=view, sent=None,
                error="code_format", csrf=context.csrf(token),
            )  # fmt: skip
        try:
            await run_in_threadpool(portal.identity.verify, token, code, origin)
        except SignetError as exc:
            if not exc.code.startswith("code_") or exc.code == "code_locked":
                return problem_page(context, exc, token)
            view = await run_in_threadpool(portal.envelopes.open, token, origin)
            return context.page("identity.html", status_code=exc.status_code, token=token,
                                view=view, sent=None, error=exc.code, detail=exc.detail,
                                csrf=context.csrf(token))  # fmt: skip
    except SignetError as exc:
        return problem_page(context, exc, token)
    finally:
        portal.drain.poke()
    return context.redirect(f"/s/{token}")


@router.post("/s/{token}/fields", response_class=HTMLResponse)
async def fill_fields(request: Request, token: str) -> Response:
    """Every typed field of this recipient from one form, then on to the signature."""
    portal, context = portal_and_context(request)
    if not TOKEN.fullmatch(token):
        return bad_link_page(context)
    form = await _checked_form(request, context, token)
    if isinstance(form, HTMLResponse):
        return form
    origin = get_origin(request)
    envelope = await envelope_of(portal, token)
    if isinstance(envelope, SignetError):
        return problem_page(context, envelope, token)
    view = await run_in_threadpool(portal.envelopes.open, token, origin)
    mine = [
        f for f in envelope.fields
        if f.recipient_id == view.recipient_id and FieldKind(f.kind) in TYPED
    ]  # fmt: skip
    try:
        for field in mine:
            raw = form.get(f"field-{field.id}", "")
            value: str | bool = raw == "on" if field.kind == FieldKind.CHECKBOX else raw.strip()
            if value == "" and not field.required:
                continue
            await run_in_threadpool(portal.filling.fill, token, field.id, value, origin)
    except SignetError as exc:
        values = _documents(context, token, view, await _reloaded(portal, token, envelope))
        values |= {"error": exc.code, "detail": exc.detail}
        return context.page("documents.html", status_code=exc.status_code, **values)
    finally:
        portal.drain.poke()
    return context.redirect(f"/s/{token}/sign")


async def _reloaded(portal: Portal, token: str, fallback: Envelope) -> Envelope:
    found = await envelope_of(portal, token)
    return found if isinstance(found, Envelope) else fallback


@router.get("/s/{token}/sign", response_class=HTMLResponse)
async def signature_pad(request: Request, token: str) -> Response:
    """The pad: the person draws their signature (signature_pad, mouse, touch or pen)."""
    portal, context = portal_and_context(request)
    if not TOKEN.fullmatch(token):
        return bad_link_page(context)
    envelope = await envelope_of(portal, token)
    if isinstance(envelope, SignetError):
        return problem_page(context, envelope, token)
    return context.page("sign.html", token=token, title=envelope.title, error=None,
                        csrf=context.csrf(token))  # fmt: skip


@router.post("/s/{token}/signature", response_class=HTMLResponse)
async def signature_drawn(request: Request, token: str) -> Response:
    """The drawn PNG checked, then the signer service sends the intent code for exactly
    these revisions; the confirm page carries the image on to the signature."""
    portal, context = portal_and_context(request)
    if not TOKEN.fullmatch(token):
        return bad_link_page(context)
    form = await _checked_form(request, context, token)
    if isinstance(form, HTMLResponse):
        return form
    envelope = await envelope_of(portal, token)
    if isinstance(envelope, SignetError):
        return problem_page(context, envelope, token)
    if "typed" in form:  # the keyboard's way: the name typed, rendered by the portal
        typed = form["typed"].strip()
        if not typed_name_ok(typed):
            return context.page("sign.html", status_code=400, token=token, title=envelope.title,
                                error="typed_invalid", csrf=context.csrf(token))  # fmt: skip
        font = portal.settings.certificate_font
        png = await run_in_threadpool(typed_signature_png, typed, font)
        encoded = base64.b64encode(png).decode()
    else:
        encoded = _png_of(form.get("image", ""))
    try:
        decoded_png(encoded)
    except SignetError:
        return context.page("sign.html", status_code=400, token=token, title=envelope.title,
                            error="image_invalid", csrf=context.csrf(token))  # fmt: skip
    try:
        challenge = await run_in_threadpool(
            portal.signing.request_activation, token, get_origin(request)
        )
    except SignetError as exc:
        return problem_page(context, exc, token)
    finally:
        portal.drain.poke()
    return context.page(
        "confirm.html", token=token, title=envelope.title, image=encoded,
        activation_id=challenge.activation_id, to=challenge.to, channel=challenge.channel.value,
        expires_at=challenge.expires_at, error=None, csrf=context.csrf(token),
    )  # fmt: skip


def _png_of(value: str) -> str:
    """The base64 of a ``data:image/png`` URL (what the pad gives), or the value as is."""
    return value[len(DATA_URL) :] if value.startswith(DATA_URL) else value


@router.post("/s/{token}/sign", response_class=HTMLResponse)
async def sign(request: Request, token: str) -> Response:
    """The signature with the intent code; the last party's signature completes."""
    portal, context = portal_and_context(request)
    if not TOKEN.fullmatch(token):
        return bad_link_page(context)
    form = await _checked_form(request, context, token)
    if isinstance(form, HTMLResponse):
        return form
    encoded, code = _png_of(form.get("image", "")), form.get("code", "").strip()
    activation_id = form.get("activation_id", "")[:64]
    origin = get_origin(request)
    confirm = {
        "token": token, "image": encoded, "activation_id": activation_id,
        "to": form.get("to", "")[:200], "channel": form.get("channel", "")[:10],
        "expires_at": None, "csrf": context.csrf(token),
    }  # fmt: skip
    envelope = await envelope_of(portal, token)
    if isinstance(envelope, SignetError):
        return problem_page(context, envelope, token)
    if not re.fullmatch(r"[0-9]{6}", code):
        return context.page("confirm.html", status_code=400, title=envelope.title,
                            error="code_format", **confirm)  # fmt: skip
    try:
        image = decoded_png(encoded)
        await run_in_threadpool(portal.signature.sign, token, activation_id, code, image, origin)
    except SignetError as exc:
        if exc.code in {"activation_code_wrong", "code_wrong"}:
            return context.page("confirm.html", status_code=exc.status_code, title=envelope.title,
                                error=exc.code, **confirm)  # fmt: skip
        return problem_page(context, exc, token)
    finally:
        portal.drain.poke()
    view = await run_in_threadpool(portal.envelopes.open, token, origin)
    await finish(portal, view.envelope_id)
    return context.redirect(f"/s/{token}")


@router.post("/s/{token}/approve", response_class=HTMLResponse)
async def approve(request: Request, token: str) -> Response:
    portal, context = portal_and_context(request)
    if not TOKEN.fullmatch(token):
        return bad_link_page(context)
    form = await _checked_form(request, context, token)
    if isinstance(form, HTMLResponse):
        return form
    origin = get_origin(request)
    try:
        await run_in_threadpool(portal.envelopes.approve, token, origin)
        view = await run_in_threadpool(portal.envelopes.open, token, origin)
    except SignetError as exc:
        return problem_page(context, exc, token)
    finally:
        portal.drain.poke()
    await finish(portal, view.envelope_id)
    return context.redirect(f"/s/{token}")


@router.get("/s/{token}/decline", response_class=HTMLResponse)
async def decline_form(request: Request, token: str) -> Response:
    portal, context = portal_and_context(request)
    if not TOKEN.fullmatch(token):
        return bad_link_page(context)
    envelope = await envelope_of(portal, token)
    if isinstance(envelope, SignetError):
        return problem_page(context, envelope, token)
    return context.page("decline.html", token=token, title=envelope.title, error=None,
                        reason="", csrf=context.csrf(token))  # fmt: skip


@router.post("/s/{token}/decline", response_class=HTMLResponse)
async def decline(request: Request, token: str) -> Response:
    """Stops the envelope for everyone, with the reason the person gave."""
    portal, context = portal_and_context(request)
    if not TOKEN.fullmatch(token):
        return bad_link_page(context)
    form = await _checked_form(request, context, token)
    if isinstance(form, HTMLResponse):
        return form
    reason = form.get("reason", "").strip()
    if not reason or len(reason) > 500 or re.search(r"[\x00-\x08\x0b-\x1f\x7f]", reason):
        envelope = await envelope_of(portal, token)
        title = envelope.title if isinstance(envelope, Envelope) else ""
        return context.page(
            "decline.html", status_code=400, token=token, title=title, error="reason",
            reason=reason[:500], csrf=context.csrf(token),
        )  # fmt: skip
    try:
        await run_in_threadpool(portal.envelopes.decline, token, reason, get_origin(request))
    except SignetError as exc:
        return problem_page(context, exc, token)
    finally:
        portal.drain.poke()
    return context.redirect(f"/s/{token}")
