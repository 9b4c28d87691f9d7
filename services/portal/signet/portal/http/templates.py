"""``/api/v1/templates``: save documents, roles and fields for reuse, and make an
envelope from a template by naming the person for each role."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Path, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from signet.common.contracts.storage import ObjectKind
from signet.common.errors import InvalidRequest, PayloadTooLarge, summarize_validation
from signet.portal.envelopes.documents import document_name, page_count
from signet.portal.envelopes.service import StoredDocument
from signet.portal.envelopes.views import EnvelopeOut
from signet.portal.http.deps import OriginDep, PortalDep, PrincipalDep
from signet.portal.http.envelopes import IdempotencyKey
from signet.portal.templates.contracts import EnvelopeFromTemplate, TemplateCreate, TemplateOut
from signet.portal.templates.models import Template

router = APIRouter(prefix="/api/v1/templates", tags=["templates"])

IdPath = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


def _out(row: Template) -> TemplateOut:
    spec = TemplateCreate.model_validate(row.definition)
    return TemplateOut(
        id=row.id, name=row.name, title=spec.title, message=spec.message, roles=spec.roles,
        fields=spec.fields, policy=spec.policy, documents=row.documents,
        created_at=row.created_at,
    )  # fmt: skip


@router.post("", status_code=201, response_model=TemplateOut)
async def create_template(
    portal: PortalDep,
    principal: PrincipalDep,
    template: Annotated[str, Form(description="TemplateCreate as JSON")],
    documents: Annotated[list[UploadFile], File(description="the PDFs, in order")],
) -> TemplateOut:
    """A template: its documents go to the vault first (as an envelope's would)."""
    try:
        spec = TemplateCreate.model_validate_json(template)
    except ValidationError as exc:
        raise InvalidRequest(f"template: {summarize_validation(exc.errors())}") from None
    settings = portal.settings
    if len(documents) > settings.max_documents:
        raise InvalidRequest(f"at most {settings.max_documents} documents per template")
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
    row = await run_in_threadpool(portal.templates.create, principal, spec, stored)
    return _out(row)


@router.get("", response_model=list[TemplateOut])
async def list_templates(portal: PortalDep, principal: PrincipalDep) -> list[TemplateOut]:
    return [_out(t) for t in await run_in_threadpool(portal.templates.templates, principal)]


@router.get("/{template_id}", response_model=TemplateOut)
async def get_template(
    portal: PortalDep, principal: PrincipalDep, template_id: IdPath
) -> TemplateOut:
    return _out(await run_in_threadpool(portal.templates.get, principal, template_id))


@router.post("/{template_id}/envelopes", status_code=201, response_model=EnvelopeOut)
async def envelope_from_template(
    portal: PortalDep,
    principal: PrincipalDep,
    origin: OriginDep,
    template_id: IdPath,
    body: EnvelopeFromTemplate,
    idempotency_key: IdempotencyKey = None,
) -> EnvelopeOut:
    """A draft envelope from the template, every role filled with a person; send it with
    ``POST /api/v1/envelopes/{id}/send``."""
    envelope_id = await run_in_threadpool(
        lambda: portal.templates.instantiate(
            principal, template_id, body, idempotency_key=idempotency_key, origin=origin
        )
    )
    portal.drain.poke()
    sender = None if principal.sees_all else principal.user_id
    envelope = await run_in_threadpool(
        portal.envelopes.get, principal.organisation_id, envelope_id, sender
    )
    return EnvelopeOut.of(envelope)
