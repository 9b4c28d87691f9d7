"""The API's template models: a template names roles; an envelope fills them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator
from signet.portal.envelopes.contracts import Email, Mobile, PlainText
from signet.portal.envelopes.models import FieldKind
from signet.portal.envelopes.routing import RecipientRole

RoleKey = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_-]*$",
                               examples=["buyer"])]  # fmt: skip


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoleIn(_Model):
    key: RoleKey
    role: RecipientRole = RecipientRole.SIGNER
    group: int = Field(default=0, ge=0, le=99)
    label: PlainText | None = None


class TemplateFieldIn(_Model):
    document: int = Field(ge=0, description="index into the template's documents")
    role: RoleKey
    kind: FieldKind
    page: int = Field(ge=1)
    x: float = Field(ge=0)
    y: float = Field(ge=0)
    width: float = Field(gt=0, le=2000)
    height: float = Field(gt=0, le=2000)
    required: bool = True
    label: PlainText | None = None


class TemplateCreate(_Model):
    name: PlainText
    #: the envelopes' title (an envelope may name its own)
    title: PlainText
    message: str = Field(default="", max_length=2000)
    roles: list[RoleIn] = Field(min_length=1, max_length=100)
    fields: list[TemplateFieldIn] = Field(default_factory=list, max_length=1000)
    policy: str | None = Field(default=None, max_length=63)

    @model_validator(mode="after")
    def _roles_and_fields(self) -> TemplateCreate:
        keys = [r.key for r in self.roles]
        if len(set(keys)) != len(keys):
            raise ValueError("role keys must be unique")
        kinds = {r.key: r.role for r in self.roles}
        for field in self.fields:
            if field.role not in kinds:
                raise ValueError(f"a field names role {field.role!r}, which does not exist")
            if kinds[field.role] is not RecipientRole.SIGNER:
                raise ValueError("only signers have fields to fill")
        return self


class PartyIn(_Model):
    """The person who takes a role."""

    name: PlainText
    email: Email | None = None
    mobile: Mobile | None = None
    locale: str = Field(default="en", pattern=r"^[a-z]{2}(-[A-Z]{2})?$")


class EnvelopeFromTemplate(_Model):
    #: every role of the template, each with one person
    parties: dict[RoleKey, PartyIn] = Field(min_length=1, max_length=100)
    title: PlainText | None = None
    message: str | None = Field(default=None, max_length=2000)
    deadline: datetime | None = None


class TemplateOut(BaseModel):
    id: str
    name: str
    title: str
    message: str
    roles: list[RoleIn]
    fields: list[TemplateFieldIn]
    policy: str | None
    documents: list[dict[str, object]]
    created_at: datetime
