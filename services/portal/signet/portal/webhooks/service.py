"""An organisation's webhook subscriptions, their delivery log, and replays.

A subscription carries every envelope of the organisation to its URL, so only an
administrator's key manages them (scope ``admin`` or ``webhooks:manage``, and the key's
user an administrator): a sender, who sees only their own envelopes, could otherwise
read everyone's through a webhook.  Every query is filtered by the caller's
organisation: another organisation's subscription is "not found", never "forbidden".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from signet.common.errors import Conflict, Forbidden, InvalidRequest, NotFound
from signet.portal.accounts.models import Role
from signet.portal.accounts.service import PortalScope, Principal
from signet.portal.jobs.queue import enqueue
from signet.portal.schema import utc_now
from signet.portal.webhooks.delivery import DELIVERED, FAILED
from signet.portal.webhooks.events import DEFAULT_PATTERNS, invalid_patterns
from signet.portal.webhooks.hook import GIVE_UP_AFTER, JOB_KIND, PENDING
from signet.portal.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from signet.portal.webhooks.signing import subscription_secret
from signet.portal.webhooks.targets import TargetPolicy
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

#: Subscriptions one organisation may have (each event is queued once per subscription).
MAX_SUBSCRIPTIONS = 20


@dataclass(frozen=True)
class NewSubscription:
    subscription: WebhookSubscription
    #: shown this once (it can be derived again only with the portal's secret key)
    secret: str


@dataclass(frozen=True)
class DeliveryLog:
    delivery: WebhookDelivery
    attempts: Sequence[WebhookAttempt]


class WebhookService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        secret_key: bytes,
        policy: TargetPolicy,
        *,
        give_up_after: timedelta = GIVE_UP_AFTER,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.sessions, self.secret_key, self.policy, self.clock = (
            sessions, secret_key, policy, clock,
        )  # fmt: skip
        self.give_up_after = give_up_after

    def create(
        self, principal: Principal, url: str, event_types: Sequence[str] | None,
        description: str = "",
    ) -> NewSubscription:  # fmt: skip
        _require_manager(principal)
        patterns = sorted(set(event_types or DEFAULT_PATTERNS))
        unknown = invalid_patterns(patterns)
        if unknown:
            raise InvalidRequest(f"unknown event types: {', '.join(unknown)}")
        self.policy.check(url)  # 422 naming the reason; checked again at each delivery
        with self.sessions.begin() as session:
            count = session.scalar(
                select(func.count())
                .select_from(WebhookSubscription)
                .where(
                    WebhookSubscription.organisation_id == principal.organisation_id,
                    WebhookSubscription.disabled_at.is_(None),
                )
            )
            if (count or 0) >= MAX_SUBSCRIPTIONS:
                raise Conflict(f"an organisation has at most {MAX_SUBSCRIPTIONS} webhooks")
            row = WebhookSubscription(
                organisation_id=principal.organisation_id, url=url, event_types=patterns,
                description=description, secret_generation=1, created_by=principal.user_id,
                created_at=self.clock(),
            )  # fmt: skip
            session.add(row)
            session.flush()
            secret = subscription_secret(self.secret_key, row.id, row.secret_generation)
            return NewSubscription(row, secret)

    def subscriptions(self, principal: Principal) -> list[WebhookSubscription]:
        _require_manager(principal)
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(WebhookSubscription)
                    .where(WebhookSubscription.organisation_id == principal.organisation_id)
                    .order_by(WebhookSubscription.created_at, WebhookSubscription.id)
                )
            )

    def get(self, principal: Principal, subscription_id: str) -> WebhookSubscription:
        _require_manager(principal)
        with self.sessions() as session:
            return _owned(session, principal, subscription_id)

    def disable(self, principal: Principal, subscription_id: str) -> WebhookSubscription:
        """No new deliveries (queued ones fail, saying so); the log stays readable."""
        _require_manager(principal)
        with self.sessions.begin() as session:
            row = _owned(session, principal, subscription_id)
            if row.disabled_at is None:
                row.disabled_at = self.clock()
            return row

    def deliveries(
        self, principal: Principal, subscription_id: str, *, limit: int = 50,
        envelope_id: str | None = None,
    ) -> list[DeliveryLog]:  # fmt: skip
        """Newest first, each with its attempts (oldest first)."""
        _require_manager(principal)
        with self.sessions() as session:
            _owned(session, principal, subscription_id)
            query = select(WebhookDelivery).where(
                WebhookDelivery.subscription_id == subscription_id
            )
            if envelope_id is not None:
                query = query.where(WebhookDelivery.envelope_id == envelope_id)
            rows = list(
                session.scalars(
                    query.order_by(
                        WebhookDelivery.created_at.desc(), WebhookDelivery.sequence.desc()
                    ).limit(limit)
                )
            )
            attempts: dict[str, list[WebhookAttempt]] = {r.id: [] for r in rows}
            if rows:
                for attempt in session.scalars(
                    select(WebhookAttempt)
                    .where(WebhookAttempt.delivery_id.in_(list(attempts)))
                    .order_by(WebhookAttempt.started_at, WebhookAttempt.id)
                ):
                    attempts[attempt.delivery_id].append(attempt)
            return [DeliveryLog(r, attempts[r.id]) for r in rows]

    def replay(
        self, principal: Principal, subscription_id: str, delivery_id: str
    ) -> WebhookDelivery:
        """Send a delivered or failed delivery again (the same ``webhook-id`` and body,
        a fresh signature); 409 while it is still being delivered."""
        _require_manager(principal)
        with self.sessions.begin() as session:
            subscription = _owned(session, principal, subscription_id)
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None or delivery.subscription_id != subscription.id:
                raise NotFound(f"no delivery {delivery_id} of this webhook")
            if subscription.disabled_at is not None:
                raise Conflict("this webhook is disabled")
            if delivery.state not in (DELIVERED, FAILED):
                raise Conflict("this delivery is still being delivered (retries pending)")
            now = self.clock()
            delivery.state, delivery.updated_at = PENDING, now
            payload = {"delivery_id": delivery.id, "trigger": "replay"}
            enqueue(session, JOB_KIND, payload, give_up_after=self.give_up_after, now=now)
            return delivery


def _require_manager(principal: Principal) -> None:
    if not principal.may(PortalScope.WEBHOOKS_MANAGE):
        raise Forbidden(f"this API key may not {PortalScope.WEBHOOKS_MANAGE.value}")
    if principal.role is not Role.ADMIN:
        raise Forbidden(
            "webhooks carry every envelope of the organisation: only an administrator's "
            "key manages them"
        )


def _owned(session: Session, principal: Principal, subscription_id: str) -> WebhookSubscription:
    row = session.get(WebhookSubscription, subscription_id)
    if row is None or row.organisation_id != principal.organisation_id:
        raise NotFound(f"no webhook {subscription_id}")
    return row
