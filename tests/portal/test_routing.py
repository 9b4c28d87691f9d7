"""The routing rules, driven exhaustively: random envelopes, random action orders.

Valid and invalid actions are interleaved; after every step the invariants that the
peers' order bugs broke must hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from signet.portal.envelopes.routing import (
    TERMINAL,
    Action,
    Approve,
    Complete,
    Decline,
    Delegate,
    Envelope,
    EnvelopeStatus,
    Expire,
    Forward,
    NoticeReason,
    Notify,
    Recipient,
    RecipientRole,
    RecipientStatus,
    Refused,
    Send,
    Sign,
    Void,
    apply,
    draft,
    may_act,
)

S, A, V = RecipientRole.SIGNER, RecipientRole.APPROVER, RecipientRole.VIEWER


def envelope(*members: tuple[str, RecipientRole, int]) -> Envelope:
    return draft(Recipient(rid, role, group) for rid, role, group in members)


def statuses(env: Envelope) -> dict[str, RecipientStatus]:
    return {r.id: r.status for r in env.recipients}


def test_mixed_routing_story() -> None:
    """The acceptance story's order: the approver first, then two parties in parallel."""
    env = envelope(("approver", A, 0), ("customer", S, 1), ("partner", S, 1), ("cc", V, 2))
    sent = apply(env, Send())
    assert sent.envelope.status is EnvelopeStatus.SENT
    assert sent.effects == (Notify(("approver",), NoticeReason.YOUR_TURN),)
    with pytest.raises(Refused) as early:
        may_act(sent.envelope, "customer")  # a copied link, opened out of turn
    assert early.value.code == "not_your_turn"

    approved = apply(sent.envelope, Approve("approver"))
    assert approved.effects == (Notify(("customer", "partner"), NoticeReason.YOUR_TURN),)
    one = apply(approved.envelope, Sign("partner"))
    assert one.envelope.status is EnvelopeStatus.IN_PROGRESS and one.effects == ()
    done = apply(one.envelope, Sign("customer"))
    assert done.envelope.status is EnvelopeStatus.COMPLETED
    assert Complete() in done.effects
    assert Notify(("approver", "customer", "partner", "cc"), NoticeReason.COMPLETED) in done.effects
    assert statuses(done.envelope)["cc"] is RecipientStatus.RECEIVED


def test_viewers_get_a_copy_when_their_group_is_reached_and_never_block() -> None:
    env = apply(envelope(("a", S, 0), ("cc", V, 1), ("b", S, 2)), Send()).envelope
    after = apply(env, Sign("a"))
    assert after.effects == (
        Notify(("b",), NoticeReason.YOUR_TURN),
        Notify(("cc",), NoticeReason.COPY),
    )
    with pytest.raises(Refused, match="no_action_for_viewer"):
        apply(after.envelope, Sign("cc"))


def test_refusals_name_their_reason() -> None:
    env = envelope(("a", S, 0), ("b", A, 1))
    with pytest.raises(Refused, match="envelope_not_open"):
        apply(env, Sign("a"))
    with pytest.raises(Refused, match="no_signer"):
        apply(envelope(("cc", V, 0)), Send())
    sent = apply(env, Send()).envelope
    with pytest.raises(Refused, match="not_a_draft"):
        apply(sent, Send())
    with pytest.raises(Refused, match="wrong_action"):
        apply(sent, Approve("a"))
    with pytest.raises(Refused, match="unknown_recipient"):
        apply(sent, Sign("nobody"))
    signed = apply(sent, Sign("a")).envelope
    with pytest.raises(Refused, match="already_done"):
        apply(signed, Sign("a"))
    with pytest.raises(Refused, match="duplicate_recipient"):
        draft([Recipient("x", S, 0), Recipient("x", S, 1)])


def test_decline_stops_the_envelope_and_tells_who_was_reached() -> None:
    env = apply(envelope(("a", S, 0), ("b", S, 0), ("c", S, 1)), Send()).envelope
    env = apply(env, Sign("a")).envelope
    out = apply(env, Decline("b"))
    assert out.envelope.status is EnvelopeStatus.DECLINED
    assert out.effects == (Notify(("a", "b"), NoticeReason.DECLINED),)
    for action in (Sign("c"), Sign("b"), Void(), Expire(), Send()):
        with pytest.raises(Refused):
            apply(out.envelope, action)


def test_delegation_keeps_the_original_as_evidence_and_the_turn_moves() -> None:
    env = apply(envelope(("a", S, 0), ("b", S, 1)), Send()).envelope
    out = apply(env, Delegate("a", "a-deputy"))
    assert statuses(out.envelope) == {
        "a": RecipientStatus.DELEGATED,
        "b": RecipientStatus.WAITING,
        "a-deputy": RecipientStatus.ACTIVE,
    }
    assert out.effects == (Notify(("a-deputy",), NoticeReason.YOUR_TURN),)
    with pytest.raises(Refused, match="already_done"):
        apply(out.envelope, Sign("a"))
    # a waiting recipient cannot delegate (not their turn), but the sender may forward
    with pytest.raises(Refused, match="not_your_turn"):
        apply(out.envelope, Delegate("b", "b2"))
    forwarded = apply(out.envelope, Forward("b", "b2"))
    assert forwarded.effects == ()
    assert statuses(forwarded.envelope)["b2"] is RecipientStatus.WAITING


def test_void_of_a_draft_tells_nobody() -> None:
    out = apply(envelope(("a", S, 0)), Void())
    assert out.envelope.status is EnvelopeStatus.VOIDED and out.effects == ()


# --- the exhaustive part ---------------------------------------------------------------

members = st.lists(
    st.tuples(st.sampled_from([S, S, A, V]), st.integers(min_value=0, max_value=3)),
    min_size=1,
    max_size=6,
)


@dataclass
class Trace:
    """What the envelope went through, for the invariants."""

    envelope: Envelope
    acted: list[str] = field(default_factory=list)
    completions: int = 0
    fresh: int = 0

    def new_id(self) -> str:
        self.fresh += 1
        return f"new{self.fresh}"


def candidate_action(trace: Trace, data: st.DataObject) -> Action:
    """Any action at all, valid or not, on known or unknown recipients."""
    draw = data.draw
    ids = [r.id for r in trace.envelope.recipients] + ["ghost"]
    rid = draw(st.sampled_from(ids))
    kinds = ["send", "sign", "approve", "decline", "delegate", "forward", "void", "expire"]
    kind = draw(st.sampled_from(kinds))
    match kind:
        case "send":
            return Send()
        case "sign":
            return Sign(rid)
        case "approve":
            return Approve(rid)
        case "decline":
            return Decline(rid)
        case "delegate":
            return Delegate(rid, trace.new_id())
        case "forward":
            return Forward(rid, draw(st.sampled_from([trace.new_id(), *ids])))
        case "void":
            return Void()
    return Expire()


def check_invariants(before: Envelope, action: Action, after: Envelope, trace: Trace) -> None:
    if isinstance(action, Sign | Approve):
        actor = before.recipient(action.recipient_id)
        # never out of order: nobody in an earlier group still had to act
        assert all(not r.blocking for r in before.recipients if r.group < actor.group)
        trace.acted.append(actor.id)
    if after.status is EnvelopeStatus.COMPLETED:
        assert all(not r.blocking for r in after.recipients)
        assert all(r.status is not RecipientStatus.WAITING for r in after.recipients)
    if after.status in (EnvelopeStatus.SENT, EnvelopeStatus.IN_PROGRESS):
        # exactly the current group works: all its signers and approvers, nobody else
        group = after.current_group
        for r in after.recipients:
            if r.status is RecipientStatus.ACTIVE:
                assert r.group == group
            elif r.blocking:
                assert r.group > (group if group is not None else -1)
    # ids stay unique and recipients are never lost
    ids = [r.id for r in after.recipients]
    assert len(set(ids)) == len(ids)
    assert {r.id for r in before.recipients} <= set(ids)


@settings(max_examples=400, deadline=None)
@given(members=members, data=st.data())
def test_random_action_orders_keep_every_invariant(
    members: list[tuple[RecipientRole, int]], data: st.DataObject
) -> None:
    env = draft(Recipient(f"r{i}", role, group) for i, (role, group) in enumerate(members))
    trace = Trace(env)
    for _ in range(30):
        action = candidate_action(trace, data)
        before = trace.envelope
        try:
            outcome = apply(before, action)
        except Refused:
            continue  # refused: nothing changed (the envelope is immutable)
        check_invariants(before, action, outcome.envelope, trace)
        trace.completions += outcome.effects.count(Complete())
        assert before.status not in TERMINAL, f"{action} changed a finished envelope"
        trace.envelope = outcome.envelope
    assert trace.completions <= 1


@settings(max_examples=300, deadline=None)
@given(members=members, data=st.data())
def test_every_path_ends_when_the_active_recipients_act(
    members: list[tuple[RecipientRole, int]], data: st.DataObject
) -> None:
    """Whatever the routing, letting any active recipient act finishes the envelope in at
    most one step per signer or approver (delegations add one each)."""
    env = draft(Recipient(f"r{i}", role, group) for i, (role, group) in enumerate(members))
    if not any(role is not V for role, _ in members):
        with pytest.raises(Refused, match="no_signer"):
            apply(env, Send())
        return
    env = apply(env, Send()).envelope
    steps, budget = 0, len(members) * 2
    delegations = 0
    while env.status is not EnvelopeStatus.COMPLETED:
        active = [r for r in env.recipients if r.status is RecipientStatus.ACTIVE]
        assert active, f"stuck with nobody able to act: {env}"
        who = data.draw(st.sampled_from(active))
        if delegations < 2 and data.draw(st.booleans()):
            delegations += 1
            env = apply(env, Delegate(who.id, f"d{delegations}")).envelope
        else:
            env = apply(env, Sign(who.id) if who.role is S else Approve(who.id)).envelope
        steps += 1
        assert steps <= budget + delegations
    blocking = sum(1 for role, _ in members if role is not V)
    assert steps == blocking + delegations
