"""Sending one delivery: the jobs table's handler for ``webhook.deliver``.

Each run checks the target again (`TargetPolicy`: resolved now, every address allowed),
connects to the address it checked, sends the stored body signed with the current
timestamp, and writes the attempt to the delivery log: the status, the latency and the
first KiB of the answer, or why there was none.  A 2xx answer is delivered; anything
else (a redirect included: it is not followed) is retried by the jobs table with its
back-off until a day after the event, then the delivery is failed with the reason.  A
refused target fails at once.

A job run twice (its worker's lease ran out mid-request) may send twice: deliveries are
at least once, and the receiver drops the duplicate by ``webhook-id``.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from signet.portal.jobs.queue import Backoff, ClaimedJob, GiveUp, Record, Retry
from signet.portal.schema import utc_now
from signet.portal.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from signet.portal.webhooks.signing import signature, subscription_secret
from signet.portal.webhooks.targets import Target, TargetPolicy, TargetRefused
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

#: How much of the receiver's answer the log keeps.
ANSWER_BYTES = 1024
DELIVERED, FAILED = "delivered", "failed"
USER_AGENT = "Signet-Webhooks/1"
#: Receivers with a kept-alive client (the least recently used beyond are closed).
MAX_CLIENTS = 64


class DeliveryHandler:
    lease = timedelta(seconds=120)

    def __init__(
        self,
        sessions: sessionmaker[Session],
        secret_key: bytes,
        policy: TargetPolicy,
        *,
        backoff: Backoff,
        timeout: float = 10.0,
        ca_file: Path | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.sessions, self.secret_key, self.policy = sessions, secret_key, policy
        self.backoff, self.timeout, self.clock = backoff, timeout, clock
        self._tls = ssl.create_default_context()  # made once: each costs milliseconds
        if ca_file is not None:
            self._tls.load_verify_locations(cafile=ca_file)
        self._clients: OrderedDict[tuple[str, str, str, int], httpx.Client] = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def _client(self, target: Target) -> httpx.Client:
        """A kept-alive client per name and checked address: connections are reused for
        one receiver, never across names (a TLS session is verified for its name)."""
        key = (target.scheme, target.host, str(target.address), target.port)
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
            client = httpx.Client(
                verify=self._tls, timeout=self.timeout, follow_redirects=False,
                trust_env=False, limits=httpx.Limits(max_keepalive_connections=4),
            )  # fmt: skip
            self._clients[key] = client
            while len(self._clients) > MAX_CLIENTS:
                _, oldest = self._clients.popitem(last=False)
                oldest.close()
            return client

    def __call__(self, job: ClaimedJob) -> Record | None:
        delivery_id, trigger = str(job.payload["delivery_id"]), str(job.payload["trigger"])
        with self.sessions() as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None:
                raise GiveUp(f"no delivery {delivery_id}")
            subscription = session.get(WebhookSubscription, delivery.subscription_id)
            assert subscription is not None
            if delivery.state == DELIVERED:
                return None  # a job run again after a lost outcome: already done
            if subscription.disabled_at is not None:
                raise GiveUp("the subscription was disabled")
            secret = subscription_secret(
                self.secret_key, subscription.id, subscription.secret_generation
            )
            url, body, event_id = subscription.url, delivery.body.encode(), delivery.event_id
        try:
            target = self.policy.check(url)
        except TargetRefused as refused:
            entry = self._entry(delivery_id, trigger, self.clock(), None, None, None, "",
                                refused.detail)  # fmt: skip
            raise GiveUp(refused.detail, entry) from None
        return self._send(delivery_id, trigger, target, event_id, body, secret)

    def failed(self, session: Session, job: ClaimedJob, reason: str) -> None:
        """The jobs table gave up: the delivery is failed, with the reason."""
        delivery = session.get(WebhookDelivery, str(job.payload["delivery_id"]))
        if delivery is not None and delivery.state != DELIVERED:
            delivery.state, delivery.last_error = FAILED, reason[:2000]
            delivery.updated_at = self.clock()

    def _send(
        self, delivery_id: str, trigger: str, target: Target, event_id: str, body: bytes,
        secret: str,
    ) -> Record:  # fmt: skip
        timestamp = int(self.clock().timestamp())
        default_port = 443 if target.scheme == "https" else 80
        host = target.host if target.port == default_port else f"{target.host}:{target.port}"
        headers = {
            "host": host,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, timestamp, body),
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        began, started = self.clock(), time.monotonic()
        try:
            with (
                self._client(target).stream(
                    "POST", target.connect_url(), content=body, headers=headers,
                    extensions=extensions,
                ) as answer,
            ):  # fmt: skip
                head = _first_bytes(answer)
                status = answer.status_code
        except httpx.HTTPError as exc:
            latency = int((time.monotonic() - started) * 1000)
            reason = f"no answer from {target.address}: {type(exc).__name__}: {exc}"[:500]
            raise Retry(reason, self._entry(delivery_id, trigger, began, target, None, latency,
                                            "", reason)) from None  # fmt: skip
        latency = int((time.monotonic() - started) * 1000)
        text = head.decode("utf-8", errors="replace")
        if 200 <= status < 300:
            return self._entry(delivery_id, trigger, began, target, status, latency, text, None)
        reason = f"the receiver answered {status}"
        entry = self._entry(delivery_id, trigger, began, target, status, latency, text, reason)
        raise Retry(reason, entry)

    def _entry(
        self, delivery_id: str, trigger: str, began: datetime, target: Target | None,
        status: int | None, latency: int | None, answer: str, error: str | None,
    ) -> Record:  # fmt: skip
        """The attempt's log entry and the delivery's new state, written by the jobs
        table with the job's outcome."""
        now = self.clock()

        def record(session: Session) -> None:
            session.add(
                WebhookAttempt(
                    delivery_id=delivery_id, started_at=began,
                    address=str(target.address) if target else None, status_code=status,
                    latency_ms=latency, response=answer, error=error, trigger=trigger,
                )
            )  # fmt: skip
            delivery = session.get(WebhookDelivery, delivery_id)
            assert delivery is not None
            delivery.attempts += 1
            delivery.last_status, delivery.last_error, delivery.updated_at = status, error, now
            if error is None:
                delivery.state, delivery.delivered_at = DELIVERED, now

        return record


def _first_bytes(answer: httpx.Response) -> bytes:
    """At most `ANSWER_BYTES` of the answer, never more read (a receiver may send GiBs)."""
    kept = b""
    for chunk in answer.iter_raw():
        kept += chunk
        if len(kept) >= ANSWER_BYTES:
            break
    return kept[:ANSWER_BYTES]
