"""Approving and filling fields on the service level (SQLite): in turn, after the
identity check, only one's own fields, values checked per kind."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from signet.common.errors import Forbidden, NotFound
from signet.portal import models
from signet.portal.envelopes.contracts import EnvelopeCreate
from signet.portal.envelopes.filling import FieldFilling, FieldValueInvalid, checked_value
from signet.portal.envelopes.models import FieldKind
from signet.portal.envelopes.service import EnvelopeService, RoutingRefused
from signet.portal.identity.service import IdentityService

from tests.portal.test_envelope_service import DOC, _outbox, _token

_KINDS = ("signature", "date", "text", "initials", "checkbox")


def _envelope() -> EnvelopeCreate:
    fields = [
        {"document": 0, "recipient": r, "kind": kind, "page": 1,
         "x": 50, "y": 50 + 40 * i, "width": 150, "height": 30}
        for r in (1, 2) for i, kind in enumerate(_KINDS)
    ]  # fmt: skip
    return EnvelopeCreate.model_validate(
        {
            "title": "Lease",
            "recipients": [
                {"name": "Boss", "email": "boss@acme.example", "role": "approver"},
                {"name": "Ann", "email": "ann@partner.example", "group": 1},
                {"name": "Bob", "email": "bob@partner.example", "group": 1},
            ],
            "fields": fields,
        }
    )


def _verified(envelopes: EnvelopeService, identity: IdentityService, token: str) -> None:
    identity.request_code(token)
    code = re.search(r"\b(\d{6})\b", _outbox(envelopes)[-1].body)
    assert code is not None
    identity.verify(token, code.group(1))


def _fields(envelopes: EnvelopeService, name: str) -> dict[str, str]:
    with envelopes.sessions() as session:
        rows = session.execute(
            sa.select(models.EnvelopeField.kind, models.EnvelopeField.id)
            .join(models.Recipient, models.Recipient.id == models.EnvelopeField.recipient_id)
            .where(models.Recipient.name == name)
        )
        return {kind: field_id for kind, field_id in rows}


def test_values_are_checked_per_kind() -> None:
    assert checked_value(FieldKind.DATE, "2026-12-07") == "2026-12-07"
    assert checked_value(FieldKind.CHECKBOX, True) == "true"
    assert checked_value(FieldKind.INITIALS, " M.G. ") == "M.G."
    assert checked_value(FieldKind.TEXT, "北京市朝阳区") == "北京市朝阳区"
    cases: list[tuple[FieldKind, str | bool]] = [
        (FieldKind.DATE, "2026-02-30"), (FieldKind.DATE, "07.12.2026"),
        (FieldKind.CHECKBOX, "true"), (FieldKind.TEXT, True), (FieldKind.TEXT, "  "),
        (FieldKind.TEXT, "x" * 501), (FieldKind.TEXT, "a\u202eb"), (FieldKind.INITIALS, "M9"),
        (FieldKind.INITIALS, "ABCDEFGHI"),
    ]  # fmt: skip
    for kind, bad in cases:
        with pytest.raises(FieldValueInvalid):
            checked_value(kind, bad)


def test_approve_then_fill_in_turn_only_ones_own_fields(world: tuple) -> None:  # type: ignore[type-arg]
    envelopes, identity, _, org, sender = world
    filling = FieldFilling(envelopes)
    envelope_id = envelopes.create(org, sender, _envelope(), [DOC])
    envelopes.send(org, envelope_id, sender)
    boss = _token(_outbox(envelopes)[0])
    with pytest.raises(Forbidden, match="identity"):
        envelopes.approve(boss)
    _verified(envelopes, identity, boss)
    envelopes.approve(boss)
    with pytest.raises(RoutingRefused):
        envelopes.approve(boss)  # approved once; a second yes changes nothing
    turn = [m for m in _outbox(envelopes) if m.notice == "your_turn"]
    assert [m.to for m in turn[1:]] == ["ann@partner.example", "bob@partner.example"]
    ann = _token(turn[1])
    with pytest.raises(Forbidden, match="identity"):
        envelopes.approve(ann)
    ann_fields, bob_fields = _fields(envelopes, "Ann"), _fields(envelopes, "Bob")
    with pytest.raises(Forbidden, match="identity"):
        filling.fill(ann, ann_fields["text"], "Flat 3")
    _verified(envelopes, identity, ann)
    with pytest.raises(Forbidden, match="approver"):
        envelopes.approve(ann)
    assert filling.fill(ann, ann_fields["text"], "Flat 3").value == {"value": "Flat 3"}
    assert filling.fill(ann, ann_fields["checkbox"], False).value == {"value": "false"}
    filling.fill(ann, ann_fields["date"], "2026-12-07")
    with pytest.raises(NotFound):
        filling.fill(ann, bob_fields["text"], "not mine")
    with pytest.raises(FieldValueInvalid, match="signing"):
        filling.fill(ann, ann_fields["signature"], "Ann")
    with envelopes.sessions() as session:
        bob_text = session.get(models.EnvelopeField, bob_fields["text"])
        assert bob_text is not None and bob_text.value is None
        events = session.scalars(
            sa.select(models.LedgerEvent.event_type).where(
                models.LedgerEvent.envelope_id == envelope_id
            )
        ).all()
    assert events.count("field.filled") == 3 and "recipient.approved" in events
    envelopes.void(org, envelope_id, sender)
    with pytest.raises(Forbidden):
        filling.fill(ann, ann_fields["text"], "after void")
