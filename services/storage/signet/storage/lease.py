"""Leader election on a `coordination.k8s.io/v1` Lease, for a one-at-a-time duty.

DESIGN.md ("Scaling out"): a singleton duty such as tree-head publication is
held through a Kubernetes Lease, never a home-made election. The API server is
the arbiter: a replica leads only after its write of the Lease was accepted,
and writes are compare-and-swap on ``metadata.resourceVersion`` (a replace
carrying a stale version is refused with 409), so of two replicas racing for
the same Lease exactly one wins.

Why this module and not ``kubernetes.leaderelection`` (the client's own
elector, which does have a ``LeaseLock``): we read it (client v37) and it is
unfit for a duty that must never run twice:

- its API calls carry no request timeout, so a leader whose renewal hangs on
  an unresponsive API server stays in ``renew_loop`` and keeps running its
  ``onstarted_leading`` work long after its Lease expired and another replica
  took over;
- its renew deadline is counted from the start of each renewal round, which
  begins ``retry_period`` after the last success, so even with prompt errors
  the leader gives up ``retry_period`` + one call later than the deadline says;
- leadership is a thread that runs a callback, with no "do I lead *now*?" to
  ask before each unit of work, no way to stop a candidate (``acquire`` loops
  forever), ``sys.exit`` on a bad setting, and periods of at least 1 s;
- one ``run()`` is one term: after losing, the caller must build a new one.

What this elector guarantees, and how:

- `LeaseElector.is_leader` is a deadline, not a flag: it is true only until
  ``start of the last accepted write + renew_deadline``, checked against the
  monotonic clock at the moment of asking. A renewal thread stuck in a call
  cannot extend it. Because ``renew_deadline < lease_duration`` and the write
  happened after that start, this replica stops believing it leads before any
  other replica may consider the Lease expired.
- Another replica considers the Lease expired only when the record it read has
  not changed for ``leaseDurationSeconds`` *on its own monotonic clock*
  (client-go does the same). It does not compare ``renewTime`` with its wall
  clock, so skew between the nodes' clocks cannot make two replicas lead; the
  price is that a replica which starts next to a long-dead holder waits one
  lease duration before taking over.
- A write the API server refused (409), or a read showing another holder,
  ends leadership at once.
- ``stop(release=True)`` first stops answering "leader", then clears the
  holder so a successor takes over without waiting out the Lease.

The verbs it calls on ``leases`` are `VERBS`: get (the named Lease), create
(only when it is missing) and update (``PUT``; renew, take over, release). The
operator's Role for the storage ServiceAccount grants exactly these.

The work guarded by the Lease should still be idempotent or fenced: a unit of
work started just before the deadline can finish just after it. (Tree heads
are: the vault refuses a second record for the same tree size.)
"""

from __future__ import annotations

import enum
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

#: The verbs this module calls on `coordination.k8s.io` `leases`.
VERBS: tuple[str, ...] = ("get", "create", "update")

#: Where Kubernetes mounts the pod's namespace (with automountServiceAccountToken).
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class LeaseTiming:
    """The three periods of an election, in seconds (client-go's names and defaults' shape).

    `lease_duration` is written to the Lease (an integer field) and is how long
    the others wait after the last change they saw; `renew_deadline` is how long
    the leader goes on leading since its last accepted renewal; `retry_period`
    is the pause between attempts (renewals included).
    """

    lease_duration: int = 15
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "lease timing needs 0 < retry_period < renew_deadline < lease_duration, got "
                f"{self.retry_period} / {self.renew_deadline} / {self.lease_duration}"
            )

    @property
    def request_timeout(self) -> float:
        """Each API call's bound: a hung call must not hold the loop for long."""
        return max(self.retry_period, 1.0)


class _Outcome(enum.Enum):
    HELD = "held"  # our write was accepted: we hold the Lease
    OTHER = "other"  # someone else holds it (or won the race): we do not
    FAILED = "failed"  # no answer or an error: nothing learnt


def default_identity() -> str:
    """The pod's name (``POD_NAME``, else the hostname, which is the pod's name in a pod)
    plus a random suffix: two processes in one pod, or a restarted container, are
    different candidates and never mistake each other's Lease for their own."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{uuid.uuid4().hex[:8]}"


def current_namespace(explicit: str | None = None) -> str:
    """The namespace of the Lease: the setting, ``POD_NAMESPACE``, or the pod's own."""
    if explicit:
        return explicit
    if namespace := os.environ.get("POD_NAMESPACE"):
        return namespace
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(
            "no namespace for the Lease: set POD_NAMESPACE or run in a pod with a service account"
        ) from exc


def coordination_api(api_url: str | None = None) -> Any:
    """A `CoordinationV1Api` on its own API client.

    `api_url` (tests, a local ``kubectl proxy``) is reached over plain HTTP
    without credentials; otherwise the pod's service account (in-cluster), else
    the kubeconfig. Connection errors are not retried by urllib3: the elector
    has its own retry period and deadline.
    """
    configuration = client.Configuration()
    if api_url:
        configuration.host = api_url.rstrip("/")
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.retries = 0
    return client.CoordinationV1Api(client.ApiClient(configuration))


class LeaseElector:
    """One candidate for one Lease; a daemon thread campaigns and renews.

    Call `start()` once, ask `is_leader()` right before each unit of the duty,
    and `stop()` at shutdown. `api` is a `CoordinationV1Api` (`coordination_api`).
    """

    def __init__(
        self,
        api: Any,
        *,
        name: str,
        namespace: str,
        identity: str | None = None,
        timing: LeaseTiming | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.name = name
        self.namespace = namespace
        self.identity = identity or default_identity()
        self.timing = timing or LeaseTiming()
        self._clock = clock
        self._lock = threading.Lock()
        self._valid_until: float | None = None  # monotonic; None: not leading
        self._stopping = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lease: Any = None  # our last accepted write, for release
        self._observed: tuple[Any, ...] | None = None  # another holder's record, as last read
        self._observed_at = 0.0
        self._failing = False

    # -- what callers use ---------------------------------------------------------------------

    def is_leader(self) -> bool:
        """True only while this replica holds the Lease and its renew deadline has not passed."""
        with self._lock:
            return self._valid_until is not None and self._clock() < self._valid_until

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        """Stop leading now; with `release`, hand the Lease over instead of letting it expire
        (whenever our last accepted write made us its holder, leading or not this instant).

        Pass ``release=False`` if the guarded work may still be running: then the
        successor waits the Lease out.
        """
        with self._lock:
            self._stopping = True
            was_leading = self._valid_until is not None and self._clock() < self._valid_until
            self._valid_until = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.timing.request_timeout + self.timing.retry_period)
        if was_leading:
            log.info("lease %s/%s: %s stops leading", self.namespace, self.name, self.identity)
        if release:
            # Also when the deadline lapsed (a renewal slower than renew_deadline): the
            # Lease may still name us, and the others would wait it out for nothing.
            # Safe either way: the write carries our last accepted resourceVersion, so
            # it is refused (409) if anyone wrote since.
            self._release()
        self.api.api_client.close()

    # -- the campaign -------------------------------------------------------------------------

    def _run(self) -> None:
        log.info(
            "lease %s/%s: %s is a candidate (lease %ss, renew deadline %ss)",
            self.namespace,
            self.name,
            self.identity,
            self.timing.lease_duration,
            self.timing.renew_deadline,
        )
        while not self._stop.is_set():
            started = self._clock()
            outcome = self._attempt()
            self._settle(outcome, started)
            pause = self.timing.retry_period
            if not self.is_leader():  # candidates spread out; the leader keeps its rhythm
                pause *= random.uniform(1.0, 1.2)  # noqa: S311 - jitter, not secrecy
            self._stop.wait(pause)

    def _attempt(self) -> _Outcome:
        try:
            return self._try_acquire_or_renew()
        except ApiException as exc:
            self._failed(f"HTTP {exc.status} {exc.reason}")
        except Exception as exc:  # any failure is "no answer"; the loop must live
            self._failed(type(exc).__name__)
        return _Outcome.FAILED

    def _failed(self, why: str) -> None:
        if not self._failing:  # once per outage, not every retry period
            log.warning("lease %s/%s: API server call failed: %s", self.namespace, self.name, why)
        self._failing = True

    def _try_acquire_or_renew(self) -> _Outcome:
        timeout = self.timing.request_timeout
        now = datetime.now(UTC)
        try:
            lease = self.api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=timeout
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=client.V1LeaseSpec(
                    holder_identity=self.identity,
                    lease_duration_seconds=self.timing.lease_duration,
                    acquire_time=now,
                    renew_time=now,
                    lease_transitions=0,
                ),
            )
            return self._write(
                lambda: self.api.create_namespaced_lease(
                    self.namespace, body, _request_timeout=timeout
                )
            )
        self._failing = False
        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity
        if holder != self.identity:
            if holder and not self._expired(lease):
                return _Outcome.OTHER
            spec.holder_identity = self.identity
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + (1 if holder else 0)
        spec.lease_duration_seconds = self.timing.lease_duration
        spec.renew_time = now
        lease.spec = spec
        # The body carries the resourceVersion we read: a write in between makes this a 409.
        return self._write(
            lambda: self.api.replace_namespaced_lease(
                self.name, self.namespace, lease, _request_timeout=timeout
            )
        )

    def _write(self, call: Callable[[], Any]) -> _Outcome:
        with self._lock:
            if self._stopping:
                # `stop` gave up waiting for this attempt (its read outlasted the join)
                # and may have released already: writing now would take the Lease back
                # for a replica that has stopped, and its successor would wait it out
                return _Outcome.FAILED
        try:
            self._lease = call()
        except ApiException as exc:
            if exc.status == 409:  # another candidate wrote first
                return _Outcome.OTHER
            raise
        self._failing = False
        return _Outcome.HELD

    def _expired(self, lease: Any) -> bool:
        """Has another holder's record stayed unchanged for its lease duration, by our clock?"""
        spec = lease.spec
        record = (
            lease.metadata.resource_version,
            spec.holder_identity,
            spec.renew_time,
            spec.lease_duration_seconds,
        )
        now = self._clock()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = spec.lease_duration_seconds or self.timing.lease_duration
        return now >= self._observed_at + duration

    def _settle(self, outcome: _Outcome, started: float) -> None:
        """Turn one attempt into the leadership state, and log the transitions."""
        with self._lock:
            if self._stopping:
                return
            now = self._clock()
            leading = self._valid_until is not None and now < self._valid_until
            if outcome is _Outcome.HELD:
                # From the start of the attempt: the server recorded the write after it.
                self._valid_until = started + self.timing.renew_deadline
                if not leading:
                    log.info(
                        "lease %s/%s: %s is now the leader",
                        self.namespace,
                        self.name,
                        self.identity,
                    )
                return
            if self._valid_until is None:
                return
            if outcome is _Outcome.OTHER:
                why = "another replica holds the lease"
            elif not leading:
                why = f"not renewed within {self.timing.renew_deadline}s"
            else:
                return  # a failed renewal, still within the deadline: retry
            self._valid_until = None
        log.warning(
            "lease %s/%s: %s stepped down: %s", self.namespace, self.name, self.identity, why
        )

    def _release(self) -> None:
        """Clear the holder (client-go's ReleaseOnCancel), if the Lease is still ours."""
        lease = self._lease
        if lease is None or lease.spec is None or lease.spec.holder_identity != self.identity:
            return
        lease.spec.holder_identity = None
        lease.spec.renew_time = datetime.now(UTC)
        try:
            self.api.replace_namespaced_lease(
                self.name, self.namespace, lease, _request_timeout=self.timing.request_timeout
            )
        except ApiException as exc:  # 409: someone else wrote since; nothing of ours to release
            log.info("lease %s/%s: not released: HTTP %s", self.namespace, self.name, exc.status)
        except Exception as exc:  # shutting down: the Lease then simply expires
            log.info("lease %s/%s: not released: %s", self.namespace, self.name, type(exc).__name__)
        else:
            log.info("lease %s/%s: released by %s", self.namespace, self.name, self.identity)
