"""Enqueueing jobs in the caller's transaction, and the worker that runs them.

A step that makes work due writes the job in its own transaction (`enqueue`), so the
work is neither lost if the step commits nor done if it rolls back.  Any replica's
`Worker` then, in one pass (`run_due`):

1. gives back jobs whose claim's lease ran out (a replica died with them ``running``);
2. marks due the ``scheduled`` jobs whose time has come and that no earlier unfinished
   job with the same ordering key holds back (per-key order: a webhook's events of one
   envelope);
3. claims due jobs with `signet.common.database.claim_rows` (``FOR UPDATE SKIP LOCKED``
   on PostgreSQL: replicas take different rows instead of waiting for each other);
4. runs each one's handler outside any transaction, then records the outcome under
   the claim's token (a worker whose lease ran out records nothing).

A handler that raises `Retry` is tried again after an exponential back-off with
jitter (`Backoff`) until the job's `give_up_at`, then the job is ``failed`` with the
reason; `GiveUp` fails it at once; any other exception counts as a retryable failure.
Handlers must be idempotent: a job is run at least once (twice if a worker dies
between the handler's effect and the recorded outcome).
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from signet.common.database import claim_rows
from signet.portal.jobs.models import Job
from signet.portal.schema import utc_now
from sqlalchemy import Connection, Table, and_, delete, exists, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

SCHEDULED, PENDING, RUNNING = "scheduled", "pending", "running"
SUCCEEDED, FAILED = "succeeded", "failed"
UNFINISHED = (SCHEDULED, PENDING, RUNNING)
#: How often (seconds) a worker looks for succeeded jobs old enough to delete.
PURGE_EVERY = 60.0
#: How long one `Worker.step` waits for a running job to finish (seconds).
STEP_WAIT = 0.2


#: Rows a handler writes about its run (a delivery log entry), in the transaction that
#: records the job's outcome: one commit per pass of the worker, not one per job.
Record = Callable[[Session], None]


class Retry(Exception):
    """This attempt failed in a way that may heal; try again after the back-off."""

    def __init__(self, reason: str, record: Record | None = None) -> None:
        super().__init__(reason)
        self.reason, self.record = reason, record


class GiveUp(Exception):
    """This job cannot succeed (a refused target, a vanished row): fail it now."""

    def __init__(self, reason: str, record: Record | None = None) -> None:
        super().__init__(reason)
        self.reason, self.record = reason, record


@dataclass(frozen=True)
class Backoff:
    """Attempt n waits ``min(base·2^(n-1), cap)`` seconds, times a random factor in
    [1 - jitter, 1] (so that replicas retrying one target do not stampede in step)."""

    base: float = 30.0
    cap: float = 3 * 3600.0
    jitter: float = 0.2

    def delay(self, attempts: int, rng: Callable[[], float] = random.random) -> float:
        plain = min(self.base * 2 ** max(attempts - 1, 0), self.cap)
        return float(plain * (1 - self.jitter * rng()))


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    payload: Mapping[str, Any]
    #: attempts before this one
    attempts: int


@dataclass(frozen=True)
class Outcome:
    job: ClaimedJob
    token: str
    #: succeeded, failed, or scheduled (a retry)
    state: str
    reason: str | None
    handler: Handler | None
    record: Record | None = None


class Handler(Protocol):
    """What runs one kind of job: returns (or raises `Retry`/`GiveUp` with) the rows to
    write about the run, or None."""

    #: how long a claim lasts before another worker may take the job again
    lease: timedelta
    backoff: Backoff

    def __call__(self, job: ClaimedJob) -> Record | None: ...

    def failed(self, session: Session, job: ClaimedJob, reason: str) -> None:
        """The job is failed for good: in the transaction that records it."""


def enqueue(
    executor: Session | Connection,
    kind: str,
    payload: Mapping[str, Any],
    *,
    ordering_key: str | None = None,
    give_up_after: timedelta | None = None,
    now: datetime | None = None,
) -> int:
    """A job written in the caller's transaction (a `Session`, or the `Connection` of a
    flush event); its id."""
    now = now or utc_now()
    values = {
        "kind": kind, "payload": dict(payload), "state": SCHEDULED, "ordering_key": ordering_key,
        "run_at": now, "give_up_at": now + give_up_after if give_up_after else None,
        "attempts": 0, "created_at": now, "updated_at": now,
    }  # fmt: skip
    statement = insert(Job).values(values).returning(Job.id)
    job_id = executor.execute(statement).scalar_one()
    return int(job_id)


class Worker:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        handlers: Mapping[str, Handler],
        *,
        concurrency: int = 4,
        keep_succeeded: timedelta = timedelta(days=7),
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.sessions, self.handlers, self.clock = sessions, dict(handlers), clock
        self.concurrency, self.keep_succeeded = concurrency, keep_succeeded
        self._purged_at = 0.0
        #: the jobs thread's jobs still running (`step`)
        self._inflight: set[Future[Outcome]] = set()
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="job")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._inflight:
            self._finish([f.result() for f in self._inflight])
            self._inflight.clear()
        for handler in self.handlers.values():
            closing = getattr(handler, "close", None)
            if callable(closing):
                closing()

    def run_due(self, limit: int | None = None) -> int:
        """One pass; how many jobs were run (truthy: call again at once).

        Three commits whatever the number of jobs: the claim (with the lease release
        and the promotion before it), then the handlers run side by side, then every
        outcome in one transaction."""
        with self.sessions.begin() as session:
            self._purge(session)
            self._release_expired(session)
            self._promote(session)
            claimed = self._claim(session, limit or 2 * self.concurrency)
        if claimed:
            self._finish(list(self._pool.map(self._run, claimed)))
        return len(claimed)

    def step(self) -> int:
        """One step of the jobs thread: like `run_due`, but a slow job (a receiver that
        takes its time) holds back no other: outcomes are recorded as jobs finish, and
        new jobs are claimed as threads free up.  How many jobs were claimed or
        finished (truthy: call again at once)."""
        done = self._collect()
        with self.sessions.begin() as session:
            self._purge(session)
            self._release_expired(session)
            self._promote(session)
            free = self.concurrency - len(self._inflight)
            claimed = self._claim(session, free) if free > 0 else []
        self._inflight.update(self._pool.submit(self._run, c) for c in claimed)
        if self._inflight:
            wait(self._inflight, timeout=STEP_WAIT, return_when=FIRST_COMPLETED)
            done += self._collect()
        return len(claimed) + done

    def _collect(self) -> int:
        finished = {f for f in self._inflight if f.done()}
        if finished:
            self._inflight -= finished
            self._finish([f.result() for f in finished])
        return len(finished)

    # -- steps ---------------------------------------------------------------------------

    def _purge(self, session: Session) -> None:
        """Succeeded jobs older than `keep_succeeded` go, at most once a minute and 500 at
        a time (what they did is in their own records, e.g. the delivery log); failed
        jobs stay, saying why."""
        if time.monotonic() - self._purged_at < PURGE_EVERY:
            return
        self._purged_at = time.monotonic()
        old = (
            select(Job.id)
            .where(Job.state == SUCCEEDED, Job.finished_at < self.clock() - self.keep_succeeded)
            .limit(500)
        )
        session.execute(delete(Job).where(Job.id.in_(old)))

    def _release_expired(self, session: Session) -> None:
        now = self.clock()
        session.execute(
            update(Job)
            .where(Job.state == RUNNING, Job.lease_until < now)
            .values(state=SCHEDULED, run_at=now, claim_token=None, updated_at=now,
                    last_error="the worker's lease ran out (a replica stopped?)")
        )  # fmt: skip

    def _promote(self, session: Session) -> None:
        now = self.clock()
        table = Job.__table__
        assert isinstance(table, Table)
        earlier = table.alias("earlier")
        held_back = exists().where(
            earlier.c.ordering_key == table.c.ordering_key,
            earlier.c.state.in_(UNFINISHED),
            earlier.c.id < table.c.id,
        )
        session.execute(
            update(table)
            .where(
                and_(table.c.state == SCHEDULED, table.c.run_at <= now),
                or_(table.c.ordering_key.is_(None), ~held_back),
            )
            .values(state=PENDING, updated_at=now)
        )

    def _claim(self, session: Session, limit: int) -> list[tuple[ClaimedJob, str]]:
        now = self.clock()
        token = secrets.token_hex(16)
        # one claim statement for every kind: the longest lease of any handler
        lease = max((h.lease for h in self.handlers.values()), default=timedelta(minutes=5))
        rows = claim_rows(
            session.connection(), "jobs", keys=("id",), queued=PENDING, claimed=RUNNING,
            values={"claim_token": token, "lease_until": now + lease, "updated_at": now},
            limit=limit, returning=("kind", "payload", "attempts"),
            timestamps=("lease_until", "updated_at"),
        )  # fmt: skip
        return [
            (ClaimedJob(int(job_id), kind, _json(payload), int(attempts)), token)
            for job_id, kind, payload, attempts in rows
        ]

    def _run(self, claimed: tuple[ClaimedJob, str]) -> Outcome:
        job, token = claimed
        handler = self.handlers.get(job.kind)
        if handler is None:
            return Outcome(job, token, FAILED, f"no handler for jobs of kind {job.kind!r}", None)
        try:
            record = handler(job)
        except GiveUp as refused:
            return Outcome(job, token, FAILED, refused.reason, handler, refused.record)
        except Retry as failed:
            return Outcome(job, token, SCHEDULED, failed.reason, handler, failed.record)
        except Exception as exc:  # a bug or a broken dependency: retried, and logged
            log.exception("a %s job failed", job.kind)
            return Outcome(job, token, SCHEDULED, f"error: {type(exc).__name__}", handler)
        return Outcome(job, token, SUCCEEDED, None, handler, record)

    def _finish(self, outcomes: list[Outcome]) -> None:
        """Every outcome of a pass in one transaction.  The handler's rows are facts (the
        attempt happened) and are always written; the job's row only under the claim's
        token (a worker whose lease ran out changes nothing of the job)."""
        now = self.clock()
        with self.sessions.begin() as session:
            for outcome in outcomes:
                if outcome.record is not None:
                    outcome.record(session)
                self._settle(session, outcome, now)

    def _settle(self, session: Session, outcome: Outcome, now: datetime) -> None:
        job, state, reason, handler = outcome.job, outcome.state, outcome.reason, outcome.handler
        row = session.get(Job, job.id, with_for_update=True)
        if row is None or row.state != RUNNING or row.claim_token != outcome.token:
            log.warning("job %s was taken again after its lease ran out", job.id)
            return
        row.attempts += 1
        row.updated_at, row.claim_token, row.lease_until = now, None, None
        row.last_error = reason[:2000] if reason else None
        if state == SCHEDULED and handler is not None:
            wait = timedelta(seconds=handler.backoff.delay(row.attempts))
            if row.give_up_at is None or now + wait <= row.give_up_at:
                row.state, row.run_at = SCHEDULED, now + wait
                return
            state = FAILED
            row.last_error = f"gave up after {row.attempts} attempts: {reason}"[:2000]
        row.state, row.finished_at = state, now
        if state == FAILED and handler is not None:
            handler.failed(session, job, row.last_error or "failed")


def _json(payload: Any) -> dict[str, Any]:
    """The payload column as a dict (a raw ``RETURNING`` gives SQLite's JSON text)."""
    if isinstance(payload, dict):
        return payload
    loaded = json.loads(payload)
    assert isinstance(loaded, dict)
    return loaded
