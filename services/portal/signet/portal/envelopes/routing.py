"""Who may act on an envelope now, and what an action leads to: pure functions, no I/O.

Every workflow decision the portal makes about order lives here, so that tests can
drive it exhaustively (hypothesis over random envelopes and action orders) and the
service layer only persists what `apply` returns.  The peers' worst bugs were order
bugs: a copied link signed out of turn (DocuSeal #481, OpenSign #2021), envelopes
completed with a signer still pending, envelopes stuck forever.  Here a recipient
acts only when `may_act` says so, an envelope completes only when no signer or
approver is left, and every action either changes the state or is refused with a
reason, never half-applied.

Routing is by **groups**: every recipient has a `group` number; groups are worked
through in ascending order, the members of one group in parallel.  Sequential
routing is one recipient per group, parallel is everyone in one group, mixed is
anything between; "sender signs first" is the sender as the only member of the
lowest group.  Signers and approvers block their group until they finish; viewers
(CC) block nothing: they get a copy when their group is reached, and the final
documents when the envelope completes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum


class RecipientRole(StrEnum):
    SIGNER = "signer"
    APPROVER = "approver"  # approves or rejects; no signature image
    VIEWER = "viewer"  # CC: receives, never acts


class RecipientStatus(StrEnum):
    WAITING = "waiting"  # its group has not been reached yet
    ACTIVE = "active"  # may act now
    SIGNED = "signed"
    APPROVED = "approved"
    RECEIVED = "received"  # a viewer who got their copy
    DECLINED = "declined"  # declined to sign, or an approver's rejection
    DELEGATED = "delegated"  # handed the turn to someone else, who replaced them


class EnvelopeStatus(StrEnum):
    DRAFT = "draft"
    SENT = "sent"  # sent, nobody has acted yet
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    DECLINED = "declined"
    VOIDED = "voided"
    EXPIRED = "expired"


#: States from which no action leads anywhere.
TERMINAL = frozenset(
    {
        EnvelopeStatus.COMPLETED,
        EnvelopeStatus.DECLINED,
        EnvelopeStatus.VOIDED,
        EnvelopeStatus.EXPIRED,
    }
)
#: States in which recipients may act.
OPEN = frozenset({EnvelopeStatus.SENT, EnvelopeStatus.IN_PROGRESS})
#: Recipient states that no longer hold up their group.
FINISHED = frozenset(
    {
        RecipientStatus.SIGNED,
        RecipientStatus.APPROVED,
        RecipientStatus.RECEIVED,
        RecipientStatus.DELEGATED,
    }
)
BLOCKING_ROLES = frozenset({RecipientRole.SIGNER, RecipientRole.APPROVER})


@dataclass(frozen=True)
class Recipient:
    id: str
    role: RecipientRole
    group: int
    status: RecipientStatus = RecipientStatus.WAITING

    @property
    def blocking(self) -> bool:
        """Whether the envelope waits for this recipient before it can go on."""
        return self.role in BLOCKING_ROLES and self.status not in FINISHED


@dataclass(frozen=True)
class Envelope:
    status: EnvelopeStatus
    recipients: tuple[Recipient, ...]

    def recipient(self, recipient_id: str) -> Recipient:
        for recipient in self.recipients:
            if recipient.id == recipient_id:
                return recipient
        raise Refused("unknown_recipient", f"no recipient {recipient_id!r} on this envelope")

    @property
    def current_group(self) -> int | None:
        """The lowest group someone still has to act in; None once nobody has to."""
        groups = [r.group for r in self.recipients if r.blocking]
        return min(groups) if groups else None


# --- actions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """The sender sends a draft: the first group is notified."""


@dataclass(frozen=True)
class Sign:
    recipient_id: str


@dataclass(frozen=True)
class Approve:
    recipient_id: str


@dataclass(frozen=True)
class Decline:
    """A signer declines, or an approver rejects: the envelope stops for everyone."""

    recipient_id: str


@dataclass(frozen=True)
class Delegate:
    """The active recipient hands their turn to another person (`delegate`, a new id).

    The delegate takes the same role and group; the original recipient is kept as
    `delegated`, so the evidence shows who handed over to whom.
    """

    recipient_id: str
    delegate_id: str


@dataclass(frozen=True)
class Forward:
    """The sender replaces a recipient who has not acted yet (转交), waiting or active."""

    recipient_id: str
    replacement_id: str


@dataclass(frozen=True)
class Void:
    """The sender withdraws the envelope."""


@dataclass(frozen=True)
class Expire:
    """The deadline passed with someone still to act."""


Action = Send | Sign | Approve | Decline | Delegate | Forward | Void | Expire


# --- effects: what the service layer turns into jobs -----------------------------------


class NoticeReason(StrEnum):
    YOUR_TURN = "your_turn"
    COPY = "copy"  # a viewer's copy when their group is reached
    COMPLETED = "completed"  # final documents for everyone
    DECLINED = "declined"
    VOIDED = "voided"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Notify:
    recipient_ids: tuple[str, ...]
    reason: NoticeReason


@dataclass(frozen=True)
class Complete:
    """Every signer and approver has finished: run completion (B-LTA, certificate of
    completion, evidence package, retention)."""


Effect = Notify | Complete


@dataclass(frozen=True)
class Outcome:
    envelope: Envelope
    effects: tuple[Effect, ...] = field(default_factory=tuple)


class Refused(Exception):
    """An action the envelope's state does not allow; nothing was changed.

    `code` is stable for API clients (`not_your_turn`, `envelope_not_open`, ...).
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


# --- decisions ---------------------------------------------------------------------


def draft(recipients: Iterable[Recipient]) -> Envelope:
    """A new draft; ids must be unique and every recipient starts waiting."""
    members = tuple(replace(r, status=RecipientStatus.WAITING) for r in recipients)
    ids = [r.id for r in members]
    if len(set(ids)) != len(ids):
        raise Refused("duplicate_recipient", "every recipient needs its own id")
    if any(r.group < 0 for r in members):
        raise Refused("invalid_group", "routing groups are numbered from 0")
    return Envelope(EnvelopeStatus.DRAFT, members)


def may_act(envelope: Envelope, recipient_id: str) -> None:
    """Raise `Refused` unless this recipient may sign, approve, decline or delegate now.

    What a link opened out of turn is told: `not_your_turn` while earlier groups work.
    """
    if envelope.status not in OPEN:
        raise Refused("envelope_not_open", f"the envelope is {envelope.status.value}")
    recipient = envelope.recipient(recipient_id)
    if recipient.role is RecipientRole.VIEWER:
        raise Refused("no_action_for_viewer", "a viewer receives copies and does not act")
    if recipient.status is RecipientStatus.WAITING:
        raise Refused("not_your_turn", "earlier recipients have not finished yet")
    if recipient.status is not RecipientStatus.ACTIVE:
        raise Refused("already_done", f"this recipient is {recipient.status.value}")


def apply(envelope: Envelope, action: Action) -> Outcome:
    """The envelope after `action`, and what must happen because of it.

    Raises `Refused` (and changes nothing) for an action the state does not allow.
    """
    match action:
        case Send():
            return _send(envelope)
        case Sign(recipient_id):
            return _finish(envelope, recipient_id, RecipientRole.SIGNER, RecipientStatus.SIGNED)
        case Approve(recipient_id):
            return _finish(envelope, recipient_id, RecipientRole.APPROVER, RecipientStatus.APPROVED)
        case Decline(recipient_id):
            may_act(envelope, recipient_id)
            declined = _with_status(envelope, recipient_id, RecipientStatus.DECLINED)
            return _stop(declined, EnvelopeStatus.DECLINED, NoticeReason.DECLINED)
        case Delegate(recipient_id, delegate_id):
            may_act(envelope, recipient_id)
            return _hand_over(envelope, recipient_id, delegate_id)
        case Forward(recipient_id, replacement_id):
            _require_open(envelope)
            recipient = envelope.recipient(recipient_id)
            if recipient.status not in (RecipientStatus.WAITING, RecipientStatus.ACTIVE):
                raise Refused("already_done", f"this recipient is {recipient.status.value}")
            return _hand_over(envelope, recipient_id, replacement_id)
        case Void():
            if envelope.status is not EnvelopeStatus.DRAFT:
                _require_open(envelope)
            return _stop(envelope, EnvelopeStatus.VOIDED, NoticeReason.VOIDED)
        case Expire():
            _require_open(envelope)
            return _stop(envelope, EnvelopeStatus.EXPIRED, NoticeReason.EXPIRED)
    raise TypeError(f"not a routing action: {action!r}")  # pragma: no cover


def _require_open(envelope: Envelope) -> None:
    if envelope.status not in OPEN:
        raise Refused("envelope_not_open", f"the envelope is {envelope.status.value}")


def _send(envelope: Envelope) -> Outcome:
    if envelope.status is not EnvelopeStatus.DRAFT:
        raise Refused("not_a_draft", f"the envelope is {envelope.status.value}")
    if not any(r.role in BLOCKING_ROLES for r in envelope.recipients):
        raise Refused("no_signer", "an envelope needs at least one signer or approver")
    return _advance(replace(envelope, status=EnvelopeStatus.SENT), ())


def _finish(
    envelope: Envelope, recipient_id: str, role: RecipientRole, done: RecipientStatus
) -> Outcome:
    may_act(envelope, recipient_id)
    if envelope.recipient(recipient_id).role is not role:
        verb = "sign" if role is RecipientRole.SIGNER else "approve"
        raise Refused("wrong_action", f"only a {role.value} may {verb}")
    moved = _with_status(envelope, recipient_id, done)
    return _advance(replace(moved, status=EnvelopeStatus.IN_PROGRESS), ())


def _hand_over(envelope: Envelope, recipient_id: str, new_id: str) -> Outcome:
    if any(r.id == new_id for r in envelope.recipients):
        raise Refused("duplicate_recipient", f"{new_id!r} is already on this envelope")
    old = envelope.recipient(recipient_id)
    successor = Recipient(new_id, old.role, old.group, old.status)
    handed = _with_status(envelope, recipient_id, RecipientStatus.DELEGATED)
    recipients = (*handed.recipients, successor)
    effects: tuple[Effect, ...] = ()
    if successor.status is RecipientStatus.ACTIVE:
        effects = (Notify((new_id,), NoticeReason.YOUR_TURN),)
    return Outcome(replace(envelope, recipients=recipients), effects)


def _advance(envelope: Envelope, effects: tuple[Effect, ...]) -> Outcome:
    """Open every group that nothing earlier holds up; complete when nothing is left."""
    while True:
        group = envelope.current_group
        if group is None:
            everyone = tuple(r.id for r in envelope.recipients if _receives_result(r))
            done = replace(_reach_viewers(envelope), status=EnvelopeStatus.COMPLETED)
            return Outcome(done, (*effects, Complete(), Notify(everyone, NoticeReason.COMPLETED)))
        waiting = [
            r
            for r in envelope.recipients
            if r.group <= group and r.status is RecipientStatus.WAITING
        ]
        if not waiting:
            return Outcome(envelope, effects)
        turn = tuple(r.id for r in waiting if r.role in BLOCKING_ROLES)
        copies = tuple(r.id for r in waiting if r.role is RecipientRole.VIEWER)
        envelope = replace(
            envelope,
            recipients=tuple(
                replace(r, status=RecipientStatus.ACTIVE)
                if r.id in turn
                else replace(r, status=RecipientStatus.RECEIVED)
                if r.id in copies
                else r
                for r in envelope.recipients
            ),
        )
        if turn:
            effects = (*effects, Notify(turn, NoticeReason.YOUR_TURN))
        if copies:
            effects = (*effects, Notify(copies, NoticeReason.COPY))


def _reach_viewers(envelope: Envelope) -> Envelope:
    """On completion, viewers of groups never reached (all after the last signer) get
    their copy with everyone else's final documents."""
    return replace(
        envelope,
        recipients=tuple(
            replace(r, status=RecipientStatus.RECEIVED)
            if r.role is RecipientRole.VIEWER and r.status is RecipientStatus.WAITING
            else r
            for r in envelope.recipients
        ),
    )


def _receives_result(recipient: Recipient) -> bool:
    return recipient.status is not RecipientStatus.DELEGATED


def _stop(envelope: Envelope, status: EnvelopeStatus, reason: NoticeReason) -> Outcome:
    """Declined, voided or expired: everyone who was reached is told; nobody acts again."""
    told = tuple(
        r.id
        for r in envelope.recipients
        if r.status not in (RecipientStatus.WAITING, RecipientStatus.DELEGATED)
    )
    effects: tuple[Effect, ...] = (Notify(told, reason),) if told else ()
    return Outcome(replace(envelope, status=status), effects)


def _with_status(envelope: Envelope, recipient_id: str, status: RecipientStatus) -> Envelope:
    return replace(
        envelope,
        recipients=tuple(
            replace(r, status=status) if r.id == recipient_id else r for r in envelope.recipients
        ),
    )
