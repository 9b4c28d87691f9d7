"""A recipient fills their own date, text, initials and checkbox fields before signing.

Only in turn and after the identity check, only fields of this recipient, and never a
signature or seal field: those are filled by the signature itself.  The values are
kept on the field row and written into the signed revision as stamps when the
recipient signs, so what the person typed is inside what their signature covers.
Values are bounded and checked per kind here, not trusted from the page.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date

from signet.common.errors import NotFound, SignetError
from signet.portal.envelopes.models import EnvelopeField, FieldKind
from signet.portal.envelopes.service import EnvelopeService
from signet.portal.evidence.record import NOWHERE, Origin, record_event

#: The kinds a recipient types into; the others are filled by signing (or not at all).
FILLABLE = frozenset({FieldKind.DATE, FieldKind.TEXT, FieldKind.INITIALS, FieldKind.CHECKBOX})
TEXT_MAX = 500
INITIALS_MAX = 8
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


class FieldValueInvalid(SignetError):
    status_code = 422
    code = "field_value_invalid"


def checked_value(kind: FieldKind, value: str | bool) -> str:
    """The value as stored (a string), or `FieldValueInvalid` saying why not."""
    if kind is FieldKind.CHECKBOX:
        if not isinstance(value, bool):
            raise FieldValueInvalid("a checkbox takes true or false")
        return "true" if value else "false"
    if not isinstance(value, str):
        raise FieldValueInvalid(f"a {kind.value} field takes a string")
    if kind is FieldKind.DATE:
        if not _DATE.fullmatch(value):
            raise FieldValueInvalid("a date is written YYYY-MM-DD")
        try:
            date.fromisoformat(value)
        except ValueError:
            raise FieldValueInvalid(f"{value} is not a calendar date") from None
        return value
    limit = INITIALS_MAX if kind is FieldKind.INITIALS else TEXT_MAX
    text = value.strip()
    if not text or len(text) > limit:
        raise FieldValueInvalid(f"a {kind.value} field takes 1 to {limit} characters")
    if any(unicodedata.category(c).startswith("C") for c in text):
        raise FieldValueInvalid("control and format characters are not allowed")
    if kind is FieldKind.INITIALS and not all(c.isalpha() or c in ".- " for c in text):
        raise FieldValueInvalid("initials are letters (and . or -)")
    return text


class FieldFilling:
    def __init__(self, envelopes: EnvelopeService) -> None:
        self.envelopes = envelopes

    def fill(
        self, token: str, field_id: str, value: str | bool, origin: Origin = NOWHERE
    ) -> EnvelopeField:
        service = self.envelopes
        with service.sessions.begin() as session:
            recipient, envelope = service.by_link(session, token)
            service.require_turn(envelope, recipient)
            field = session.get(EnvelopeField, field_id)
            # another recipient's field is as unknown as a field that does not exist
            if field is None or field.recipient_id != recipient.id:
                raise NotFound(f"no field {field_id} for this recipient")
            kind = FieldKind(field.kind)
            if kind not in FILLABLE:
                raise FieldValueInvalid(f"a {kind.value} field is filled by signing, not typed")
            field.value = {"value": checked_value(kind, value)}
            record_event(
                session, envelope.id, "field.filled", f"recipient:{recipient.id}", origin,
                details={"field": field.id, "kind": kind.value},
            )  # fmt: skip
            session.flush()
            session.expunge(field)
            return field
