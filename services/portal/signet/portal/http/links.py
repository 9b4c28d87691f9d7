"""The recipient's routes, reached with the link token (no API key): open, prove who
you are with a code, read the documents, decline.

The token is the credential and names one recipient of one envelope; nothing here
takes an envelope id.  A link opened out of turn shows whose turn it is and acts on
nothing; the documents are shown only after the identity check, and only in turn.
Approvers approve here; signers fill their fields and ask for the signer's activation
here.  The signature itself (``/sign``) joins these routes next.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator
from signet.common.errors import Forbidden, SignetError
from signet.portal.envelopes import routing
from signet.portal.envelopes.contracts import SuccessorIn
from signet.portal.envelopes.models import Envelope
from signet.portal.envelopes.service import routing_state
from signet.portal.envelopes.signature import IMAGE_MAX, decoded_png
from signet.portal.http.deps import OriginDep, PortalDep
from signet.portal.http.envelopes import certificate_response, document_response

router = APIRouter(prefix="/api/v1/links", tags=["recipient"])
log = logging.getLogger(__name__)

Token = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{20,64}$", description="the link's token")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CodeIn(_In):
    code: str = Field(pattern=r"^[0-9]{6}$")


class DeclineIn(_In):
    reason: str = Field(min_length=1, max_length=500, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]+$")


class FieldValueIn(_In):
    #: a date (YYYY-MM-DD), a text or initials (a string), or a checkbox (true/false)
    value: StrictStr | StrictBool

    @field_validator("value", mode="before")
    @classmethod
    def _bounded(cls, value: object) -> object:
        if isinstance(value, str) and len(value) > 2000:
            raise ValueError("at most 2000 characters")
        return value


class FieldValueOut(BaseModel):
    id: str
    kind: str
    value: str


class SignIn(_In):
    activation_id: str = Field(min_length=1, max_length=64)
    code: str = Field(pattern=r"^[0-9]{6}$")
    #: the handwritten signature, a PNG in base64 (at most 160 KiB decoded)
    image: str = Field(min_length=8, max_length=4 * (IMAGE_MAX // 3) + 4)


class ActivationOut(BaseModel):
    activation_id: str
    channel: str
    #: where the signer sent the code, partly hidden
    to: str
    expires_at: datetime
    attempts_left: int


class LinkOut(BaseModel):
    envelope_id: str
    recipient_id: str
    title: str
    envelope_status: str
    recipient_status: str
    #: None when this recipient may act now; else why not (``not_your_turn``, …)
    blocked: str | None
    identity_verified: bool


class CodeSentOut(BaseModel):
    channel: str
    #: where the code went, partly hidden
    to: str


@router.get("/{token}", response_model=LinkOut)
async def open_link(portal: PortalDep, origin: OriginDep, token: Token) -> LinkOut:
    view = await run_in_threadpool(portal.envelopes.open, token, origin)
    portal.drain.poke()
    return LinkOut(**view.__dict__)


@router.post("/{token}/identity/code", response_model=CodeSentOut)
async def request_identity_code(portal: PortalDep, origin: OriginDep, token: Token) -> CodeSentOut:
    """A one-time code to the e-mail or mobile the sender entered (never another)."""
    sent = await run_in_threadpool(portal.identity.request_code, token, origin)
    portal.drain.poke()
    return CodeSentOut(channel=sent.channel.value, to=sent.to)


@router.post("/{token}/identity/verify", response_model=LinkOut)
async def verify_identity(
    portal: PortalDep, origin: OriginDep, token: Token, body: CodeIn
) -> LinkOut:
    """Five wrong codes lock the link and tell the sender (403 ``code_locked``)."""
    try:
        await run_in_threadpool(portal.identity.verify, token, body.code, origin)
    finally:
        portal.drain.poke()
    view = await run_in_threadpool(portal.envelopes.open, token, origin)
    return LinkOut(**view.__dict__)


@router.get(
    "/{token}/documents/{index}",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
async def read_document(portal: PortalDep, token: Token, index: int) -> Response:
    envelope = await run_in_threadpool(readable, portal, token)
    return await document_response(portal, envelope, index)


@router.get(
    "/{token}/certificate",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
async def read_certificate(portal: PortalDep, token: Token) -> Response:
    """The certificate of completion, for a party of the completed envelope."""
    envelope = await run_in_threadpool(readable, portal, token)
    return await certificate_response(portal, envelope.id)


@router.post("/{token}/decline", response_model=LinkOut)
async def decline(portal: PortalDep, origin: OriginDep, token: Token, body: DeclineIn) -> LinkOut:
    """Stops the envelope; the sender and every party already reached are told."""
    await run_in_threadpool(portal.envelopes.decline, token, body.reason, origin)
    portal.drain.poke()
    view = await run_in_threadpool(portal.envelopes.open, token, origin)
    return LinkOut(**view.__dict__)


class DelegatedOut(BaseModel):
    envelope_id: str
    #: the recipient who handed over (their link no longer works)
    recipient_id: str
    #: the delegate, who gets their own link and identity check
    delegate_id: str


@router.post("/{token}/delegate", response_model=DelegatedOut)
async def delegate(
    portal: PortalDep, origin: OriginDep, token: Token, body: SuccessorIn
) -> DelegatedOut:
    """In turn and after the identity check, the recipient hands their turn to another
    person (代理): same role, group and fields.  This link stops working; the delegate
    gets a link of their own and passes the identity check as anyone does."""
    envelope_id, recipient_id, delegate_id = await run_in_threadpool(
        portal.envelopes.delegate, token, body, origin
    )
    portal.drain.poke()
    return DelegatedOut(envelope_id=envelope_id, recipient_id=recipient_id, delegate_id=delegate_id)


FieldId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$", description="the field's id")]


@router.put("/{token}/fields/{field_id}", response_model=FieldValueOut)
async def fill_field(
    portal: PortalDep, origin: OriginDep, token: Token, field_id: FieldId, body: FieldValueIn
) -> FieldValueOut:
    """A date, text, initials or checkbox field of this recipient, in turn and after the
    identity check; the value is stamped into the revision their signature covers."""
    field = await run_in_threadpool(portal.filling.fill, token, field_id, body.value, origin)
    portal.drain.poke()
    assert field.value is not None
    return FieldValueOut(id=field.id, kind=field.kind, value=field.value["value"])


@router.post("/{token}/approve", response_model=LinkOut)
async def approve(portal: PortalDep, origin: OriginDep, token: Token) -> LinkOut:
    """An approver's yes; routing goes on to the next group (a rejection is decline)."""
    await run_in_threadpool(portal.envelopes.approve, token, origin)
    portal.drain.poke()
    view = await run_in_threadpool(portal.envelopes.open, token, origin)
    await finish(portal, view.envelope_id)
    return LinkOut(**view.__dict__)


@router.post("/{token}/activation", response_model=ActivationOut)
async def request_activation(portal: PortalDep, origin: OriginDep, token: Token) -> ActivationOut:
    """In turn and after the identity check: the signer sends the person a code for the
    exact revisions they are about to sign (the portal never sees it)."""
    try:
        challenge = await run_in_threadpool(portal.signing.request_activation, token, origin)
    finally:
        portal.drain.poke()
    return ActivationOut(
        activation_id=challenge.activation_id, channel=challenge.channel.value,
        to=challenge.to, expires_at=challenge.expires_at,
        attempts_left=challenge.attempts_left,
    )  # fmt: skip


@router.post("/{token}/sign", response_model=LinkOut)
async def sign(portal: PortalDep, origin: OriginDep, token: Token, body: SignIn) -> LinkOut:
    """One signature per document with the activation code the signer sent; the next
    group gets its links.  A wrong code is the signer's refusal (403), nothing changed;
    a repeated request after success answers the same and signs nothing twice."""
    image = decoded_png(body.image)
    try:
        await run_in_threadpool(
            portal.signature.sign, token, body.activation_id, body.code, image, origin
        )
    finally:
        portal.drain.poke()
    view = await run_in_threadpool(portal.envelopes.open, token, origin)
    await finish(portal, view.envelope_id)
    return LinkOut(**view.__dict__)


async def finish(portal: PortalDep, envelope_id: str) -> None:
    """Completion after the last party acted; a failure leaves the envelope completing
    (logged), and the sender's ``POST /envelopes/{id}/complete`` finishes it later."""
    try:
        await run_in_threadpool(portal.completion.run, envelope_id)
    except SignetError as exc:
        log.warning("completion of %s waits: %s", envelope_id, exc)
    finally:
        portal.drain.poke()


def readable(portal: PortalDep, token: str) -> Envelope:
    """The envelope, if this recipient passed the identity check and it is their turn
    (or they have finished: a signer may read what they signed)."""
    service = portal.envelopes
    with service.sessions() as session:
        recipient, envelope = service.by_link(session, token)
        if recipient.locked_at is not None:
            raise Forbidden("this link is locked after too many wrong codes")
        if recipient.identity_verified_at is None:
            raise Forbidden("confirm your identity with the code first")
        if routing.RecipientStatus(recipient.status) not in routing.FINISHED:
            try:
                routing.may_act(routing_state(envelope), recipient.id)
            except routing.Refused as refused:
                raise Forbidden(refused.detail) from None
        envelope_id, organisation_id = envelope.id, envelope.organisation_id
    return service.get(organisation_id, envelope_id)
