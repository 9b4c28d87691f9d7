"""The public API's envelope models (request and response), apart from the tables."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator
from signet.portal.envelopes.models import FieldKind
from signet.portal.envelopes.routing import RecipientRole

#: Text a person types: no control characters (a CR/LF in a name forged evidence lines).
PlainText = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Mobile = Annotated[str, Field(pattern=r"^\+[1-9][0-9]{6,14}$", examples=["+8613800000000"])]
Email = Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecipientIn(_Model):
    name: PlainText
    email: Email | None = None
    mobile: Mobile | None = None
    role: RecipientRole = RecipientRole.SIGNER
    #: routing group: groups go in ascending order, members of one group in parallel
    group: int = Field(default=0, ge=0, le=99)
    locale: str = Field(default="en", pattern=r"^[a-z]{2}(-[A-Z]{2})?$")

    @model_validator(mode="after")
    def _reachable(self) -> RecipientIn:
        if self.email is None and self.mobile is None:
            raise ValueError("a recipient needs an e-mail address or a mobile number")
        return self


class SuccessorIn(_Model):
    """Who takes over a recipient's turn: a delegate named by the recipient (代理), or a
    replacement named by the sender (转交).  Role, routing group and fields stay those
    of the recipient replaced; the successor's identity is checked as anyone's."""

    name: PlainText
    email: Email | None = None
    mobile: Mobile | None = None
    locale: str = Field(default="en", pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    reason: str = Field(min_length=1, max_length=500, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]+$")

    @model_validator(mode="after")
    def _reachable(self) -> SuccessorIn:
        if self.email is None and self.mobile is None:
            raise ValueError("a successor needs an e-mail address or a mobile number")
        return self


class FieldIn(_Model):
    document: int = Field(ge=0, description="index into the envelope's documents")
    recipient: int = Field(ge=0, description="index into the envelope's recipients")
    kind: FieldKind
    page: int = Field(ge=1)
    x: float = Field(ge=0)
    y: float = Field(ge=0)
    width: float = Field(gt=0, le=2000)
    height: float = Field(gt=0, le=2000)
    required: bool = True
    label: PlainText | None = None


class EnvelopeCreate(_Model):
    title: PlainText
    message: str = Field(default="", max_length=2000)
    recipients: list[RecipientIn] = Field(min_length=1, max_length=100)
    fields: list[FieldIn] = Field(default_factory=list, max_length=1000)
    deadline: datetime | None = None
    policy: str | None = Field(default=None, max_length=63)

    @model_validator(mode="after")
    def _fields_name_recipients(self) -> EnvelopeCreate:
        for field in self.fields:
            if field.recipient >= len(self.recipients):
                raise ValueError(f"field names recipient {field.recipient}, which does not exist")
            if self.recipients[field.recipient].role is not RecipientRole.SIGNER:
                raise ValueError("only signers have fields to fill")
        if self.deadline is not None and self.deadline.tzinfo is None:
            raise ValueError("the deadline needs a time zone")
        return self
