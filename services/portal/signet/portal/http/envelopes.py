"""The sender's REST routes: create, send, read, list, void, the timeline, downloads.

HTTP to the service and nothing more: every object is looked up within the key's
organisation (and, for a sender's key, among the sender's own envelopes), so another
organisation's id is simply not found.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Header, Path, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from signet.common.contracts.storage import ObjectKind
from signet.common.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    summarize_validation,
)
from signet.portal.envelopes.contracts import EnvelopeCreate, SuccessorIn
from signet.portal.envelopes.documents import document_name, page_count
from signet.portal.envelopes.models import Envelope
from signet.portal.envelopes.service import StoredDocument
from signet.portal.envelopes.views import EnvelopeOut, EnvelopePage, EventOut
from signet.portal.evidence.models import LedgerEvent
from signet.portal.http.deps import OriginDep, PortalDep, PrincipalDep
from sqlalchemy import select

router = APIRouter(prefix="/api/v1/envelopes", tags=["envelopes"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key", max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$",
        description="the same key again returns the first answer and does nothing twice",
    ),
]  # fmt: skip


class VoidRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=500, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")


@router.post("", status_code=201, response_model=EnvelopeOut)
async def create_envelope(
    portal: PortalDep,
    principal: PrincipalDep,
    origin: OriginDep,
    envelope: Annotated[str, Form(description="EnvelopeCreate as JSON")],
    documents: Annotated[list[UploadFile], File(description="the PDFs, in order")],
    idempotency_key: IdempotencyKey = None,
) -> EnvelopeOut:
    """A draft envelope: its documents go to the vault first, then the envelope is made.

    Send it with ``POST /api/v1/envelopes/{id}/send``."""
    try:
        request = EnvelopeCreate.model_validate_json(envelope)
    except ValidationError as exc:
        raise InvalidRequest(f"envelope: {summarize_validation(exc.errors())}") from None
    settings = portal.settings
    if len(documents) > settings.max_documents:
        raise InvalidRequest(f"at most {settings.max_documents} documents per envelope")
    service = portal.envelopes
    if idempotency_key is not None:
        found = await run_in_threadpool(
            service.existing, principal.organisation_id, idempotency_key
        )
        if found is not None:
            return await _out(portal, principal, found)
    stored = []
    for position, upload in enumerate(documents):
        name = document_name(upload.filename, position)
        data = await upload.read(settings.max_document_bytes + 1)
        if len(data) > settings.max_document_bytes:
            raise PayloadTooLarge(
                f"{name} is larger than the limit of {settings.max_document_bytes} bytes"
            )
        pages = await run_in_threadpool(page_count, data, name)
        info = await run_in_threadpool(portal.storage.put, data, ObjectKind.ORIGINAL)
        stored.append(StoredDocument(name, info.sha256, len(data), pages))
    envelope_id = await run_in_threadpool(
        lambda: service.create(
            principal.organisation_id, principal.user_id, request, stored,
            idempotency_key=idempotency_key, origin=origin,
        )
    )  # fmt: skip
    portal.drain.poke()
    return await _out(portal, principal, envelope_id)


@router.get("", response_model=EnvelopePage)
async def list_envelopes(
    portal: PortalDep,
    principal: PrincipalDep,
    status: Annotated[str | None, Query(pattern=r"^[a-z_]{1,16}$")] = None,
    q: Annotated[str | None, Query(max_length=100, description="title or party")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> EnvelopePage:
    after = _cursor(cursor) if cursor else None
    rows = await run_in_threadpool(
        lambda: portal.envelopes.list(
            principal.organisation_id, _own(principal), status=status, text=q, after=after,
            limit=limit + 1,
        )
    )  # fmt: skip
    more = len(rows) > limit
    rows = rows[:limit]
    following = None
    if more:
        last = rows[-1]
        raw = f"{last.created_at.isoformat()}|{last.id}".encode()
        following = base64.urlsafe_b64encode(raw).decode()
    return EnvelopePage(items=[EnvelopeOut.of(e) for e in rows], next_cursor=following)


@router.get("/{envelope_id}", response_model=EnvelopeOut)
async def get_envelope(portal: PortalDep, principal: PrincipalDep, envelope_id: str) -> EnvelopeOut:
    return await _out(portal, principal, envelope_id)


@router.post("/{envelope_id}/send", response_model=EnvelopeOut)
async def send_envelope(
    portal: PortalDep, principal: PrincipalDep, origin: OriginDep, envelope_id: str
) -> EnvelopeOut:
    """Draft → sent: the first routing group gets its links (sending twice is refused 409)."""
    await run_in_threadpool(
        portal.envelopes.send, principal.organisation_id, envelope_id, principal.user_id,
        origin, _own(principal),
    )  # fmt: skip
    portal.drain.poke()
    return await _out(portal, principal, envelope_id)


@router.post("/{envelope_id}/void", response_model=EnvelopeOut)
async def void_envelope(
    portal: PortalDep,
    principal: PrincipalDep,
    origin: OriginDep,
    envelope_id: str,
    body: VoidRequest | None = None,
) -> EnvelopeOut:
    reason = body.reason if body is not None else ""
    await run_in_threadpool(
        lambda: portal.envelopes.void(
            principal.organisation_id, envelope_id, principal.user_id, origin,
            _own(principal), reason=reason,
        )
    )  # fmt: skip
    portal.drain.poke()
    return await _out(portal, principal, envelope_id)


@router.post("/{envelope_id}/recipients/{recipient_id}/forward", response_model=EnvelopeOut)
async def forward_recipient(
    portal: PortalDep,
    principal: PrincipalDep,
    origin: OriginDep,
    envelope_id: str,
    recipient_id: Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")],
    body: SuccessorIn,
) -> EnvelopeOut:
    """The sender replaces a recipient who has not acted yet (转交): the replacement takes
    their role, group and fields, gets their own link when it is their turn, and passes
    the identity check as anyone does; the replaced recipient's link stops working."""
    await run_in_threadpool(
        lambda: portal.envelopes.forward(
            principal.organisation_id, envelope_id, recipient_id, body, principal.user_id,
            origin, _own(principal),
        )
    )  # fmt: skip
    portal.drain.poke()
    return await _out(portal, principal, envelope_id)


class RemindOut(BaseModel):
    #: the recipients reminded: everyone whose turn it is
    reminded: list[str]


@router.post("/{envelope_id}/remind", response_model=RemindOut)
async def remind(
    portal: PortalDep, principal: PrincipalDep, origin: OriginDep, envelope_id: str
) -> RemindOut:
    """Send everyone whose turn it is their link again (409 once the envelope is
    finished); the policy's own reminders go without asking."""
    reminded = await run_in_threadpool(
        lambda: portal.envelopes.remind(
            principal.organisation_id, envelope_id, principal.user_id, origin,
            _own(principal),
        )
    )  # fmt: skip
    portal.drain.poke()
    return RemindOut(reminded=list(reminded))


@router.post("/{envelope_id}/complete", response_model=EnvelopeOut)
async def complete_envelope(
    portal: PortalDep, principal: PrincipalDep, envelope_id: str
) -> EnvelopeOut:
    """Finish a completion that failed half-way (B-LTA, final revisions, sealed
    evidence); idempotent, and a no-op for an envelope that is not completing."""
    await _out(portal, principal, envelope_id)  # visible to this key, or 404
    try:
        await run_in_threadpool(portal.completion.run, envelope_id)
    finally:
        portal.drain.poke()
    return await _out(portal, principal, envelope_id)


@router.get(
    "/{envelope_id}/evidence",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
async def envelope_evidence(
    portal: PortalDep, principal: PrincipalDep, envelope_id: str
) -> Response:
    """The sealed evidence package, as storage keeps it (409 before completion)."""
    await _out(portal, principal, envelope_id)  # visible to this key, or 404
    if await run_in_threadpool(portal.completion.due, envelope_id) or not await run_in_threadpool(
        portal.completion.sealed, envelope_id
    ):
        raise Conflict("the evidence is sealed when the envelope completes")
    data = await run_in_threadpool(portal.storage.evidence, envelope_id)
    disposition = f'attachment; filename="evidence-{envelope_id}.zip"'
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": disposition})  # fmt: skip


@router.get(
    "/{envelope_id}/certificate",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
async def envelope_certificate(
    portal: PortalDep, principal: PrincipalDep, envelope_id: str
) -> Response:
    """The certificate of completion, sealed by the platform (409 before completion)."""
    await _out(portal, principal, envelope_id)  # visible to this key, or 404
    return await certificate_response(portal, envelope_id)


async def certificate_response(portal: PortalDep, envelope_id: str) -> Response:
    sha256 = await run_in_threadpool(portal.completion.certificate_sha256, envelope_id)
    if sha256 is None:
        raise Conflict("the certificate of completion is made when the envelope completes")
    data = await run_in_threadpool(portal.storage.get, sha256)
    disposition = f'attachment; filename="certificate-{envelope_id}.pdf"'
    headers = {"Content-Disposition": disposition, "X-Signet-Sha256": sha256}
    return Response(data, media_type="application/pdf", headers=headers)


@router.get("/{envelope_id}/events", response_model=list[EventOut])
async def envelope_events(
    portal: PortalDep, principal: PrincipalDep, envelope_id: str
) -> list[EventOut]:
    """The timeline: every step, in order, with its place in the ledger once appended."""
    await _out(portal, principal, envelope_id)  # visible to this key, or 404

    def rows() -> list[LedgerEvent]:
        with portal.envelopes.sessions() as session:
            return list(
                session.scalars(
                    select(LedgerEvent)
                    .where(LedgerEvent.envelope_id == envelope_id)
                    .order_by(LedgerEvent.sequence, LedgerEvent.created_at)
                )
            )

    return [EventOut.of(row) for row in await run_in_threadpool(rows)]


@router.get(
    "/{envelope_id}/documents/{index}",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
async def download_document(
    portal: PortalDep, principal: PrincipalDep, envelope_id: str, index: int
) -> Response:
    """The document's newest revision (the signed one once every party has signed)."""
    envelope = await run_in_threadpool(
        portal.envelopes.get, principal.organisation_id, envelope_id, _own(principal)
    )
    return await document_response(portal, envelope, index)


async def document_response(portal: PortalDep, envelope: Envelope, index: int) -> Response:
    if not 0 <= index < len(envelope.documents):
        raise NotFound(f"the envelope has no document {index}")
    document = envelope.documents[index]
    data = await run_in_threadpool(portal.storage.get, document.current_sha256)
    fallback = document.name.encode("ascii", "replace").decode().replace("?", "_")
    disposition = f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(document.name)}"
    return Response(
        data,
        media_type="application/pdf",
        headers={"Content-Disposition": disposition, "X-Signet-Sha256": document.current_sha256},
    )


def _own(principal: PrincipalDep) -> str | None:
    """The sender filter: a sender's key sees their own envelopes, an admin's all."""
    return None if principal.sees_all else principal.user_id


async def _out(portal: PortalDep, principal: PrincipalDep, envelope_id: str) -> EnvelopeOut:
    envelope = await run_in_threadpool(
        portal.envelopes.get, principal.organisation_id, envelope_id, _own(principal)
    )
    return EnvelopeOut.of(envelope)


def _cursor(raw: str) -> tuple[datetime, str]:
    try:
        created, _, last_id = base64.urlsafe_b64decode(raw.encode()).decode().partition("|")
        return datetime.fromisoformat(created), last_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("cursor: not one this API gave") from None
