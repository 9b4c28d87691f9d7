"""Saving templates and making envelopes from them.

A template belongs to its organisation: every sender of it may use it, another
organisation's is "not found".  Its documents are stored once, in the vault, and an
envelope made from it refers to the same originals (content-addressed).  Making the
envelope is the envelope service's `create` (the same checks, the same ledger event),
from the template's roles filled with people: every role must be filled, and nothing
else.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError
from signet.common.errors import Conflict, InvalidRequest, NotFound, summarize_validation
from signet.portal.accounts.service import Principal
from signet.portal.envelopes.contracts import EnvelopeCreate
from signet.portal.envelopes.service import EnvelopeService, StoredDocument
from signet.portal.evidence.record import NOWHERE, Origin
from signet.portal.templates.contracts import EnvelopeFromTemplate, TemplateCreate
from signet.portal.templates.models import Template
from sqlalchemy import select
from sqlalchemy.orm import Session


class TemplateService:
    def __init__(self, envelopes: EnvelopeService) -> None:
        self.envelopes = envelopes

    def create(
        self, principal: Principal, spec: TemplateCreate, documents: Sequence[StoredDocument]
    ) -> Template:
        if not documents:
            raise Conflict("a template needs at least one document")
        for field in spec.fields:
            if field.document >= len(documents):
                raise Conflict(f"a field names document {field.document}, which does not exist")
            if field.page > documents[field.document].pages:
                pages = documents[field.document].pages
                raise Conflict(f"a field on page {field.page} of a {pages}-page document")
        self.envelopes.policy(spec.policy)  # an unknown policy is refused now, not later
        with self.envelopes.sessions.begin() as session:
            row = Template(
                organisation_id=principal.organisation_id, name=spec.name,
                definition=spec.model_dump(mode="json"),
                documents=[{"name": d.name, "sha256": d.sha256, "size": d.size,
                            "pages": d.pages} for d in documents],
                created_by=principal.user_id, created_at=self.envelopes.clock(),
            )  # fmt: skip
            session.add(row)
            session.flush()
            return row

    def templates(self, principal: Principal) -> list[Template]:
        with self.envelopes.sessions() as session:
            return list(
                session.scalars(
                    select(Template)
                    .where(Template.organisation_id == principal.organisation_id)
                    .order_by(Template.created_at.desc(), Template.id)
                    .limit(500)
                )
            )

    def get(self, principal: Principal, template_id: str) -> Template:
        with self.envelopes.sessions() as session:
            return _owned(session, principal, template_id)

    def instantiate(
        self, principal: Principal, template_id: str, fill: EnvelopeFromTemplate, *,
        idempotency_key: str | None = None, origin: Origin = NOWHERE,
    ) -> str:  # fmt: skip
        """A draft envelope from the template, its roles filled with `fill`'s parties."""
        template = self.get(principal, template_id)
        spec = TemplateCreate.model_validate(template.definition)
        keys = [r.key for r in spec.roles]
        missing = [k for k in keys if k not in fill.parties]
        unknown = [k for k in fill.parties if k not in keys]
        if missing or unknown:
            said = [f"missing roles: {', '.join(missing)}"] if missing else []
            said += [f"roles the template does not have: {', '.join(unknown)}"] if unknown else []
            raise InvalidRequest("; ".join(said))
        recipients = []
        for role in spec.roles:
            party = fill.parties[role.key]
            recipients.append({**party.model_dump(exclude_none=True), "role": role.role.value,
                               "group": role.group})  # fmt: skip
        position = {k: i for i, k in enumerate(keys)}
        fields = [
            {**f.model_dump(exclude={"role"}, exclude_none=True), "recipient": position[f.role]}
            for f in spec.fields
        ]
        try:
            request = EnvelopeCreate.model_validate(
                {"title": fill.title or spec.title,
                 "message": spec.message if fill.message is None else fill.message,
                 "recipients": recipients, "fields": fields, "deadline": fill.deadline,
                 "policy": spec.policy}
            )  # fmt: skip
        except ValidationError as exc:  # a party without a contact, a deadline without a zone
            raise InvalidRequest(f"parties: {summarize_validation(exc.errors())}") from None
        documents = [
            StoredDocument(d["name"], d["sha256"], int(d["size"]), int(d["pages"]))
            for d in template.documents
        ]
        return self.envelopes.create(
            principal.organisation_id, principal.user_id, request, documents,
            idempotency_key=idempotency_key, origin=origin,
        )  # fmt: skip


def _owned(session: Session, principal: Principal, template_id: str) -> Template:
    row = session.get(Template, template_id)
    if row is None or row.organisation_id != principal.organisation_id:
        raise NotFound(f"no template {template_id}")
    return row
