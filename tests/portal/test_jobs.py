"""The jobs table on a real database (SQLite, and PostgreSQL for concurrent claims):
enqueued with the caller's transaction or not at all, retried with back-off until it
gives up with the reason, held in order per key, taken again when a worker's lease runs
out, and never run by two workers at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from signet.portal.database import open_portal_database
from signet.portal.jobs.models import Job
from signet.portal.jobs.queue import (
    FAILED,
    RUNNING,
    SCHEDULED,
    SUCCEEDED,
    Backoff,
    ClaimedJob,
    GiveUp,
    Outcome,
    Retry,
    Worker,
    enqueue,
)
from sqlalchemy.orm import Session, sessionmaker

from tests.portal.conftest import Clock
from tests.support.postgres import start_postgres


@dataclass
class Recorder:
    """A handler that fails the first `failures` runs of each job (then succeeds), and
    remembers every run."""

    failures: int = 0
    lease: timedelta = timedelta(seconds=30)
    backoff: Backoff = field(default_factory=lambda: Backoff(base=10, cap=60, jitter=0.2))
    runs: list[int] = field(default_factory=list)
    give_up: bool = False
    gave_up: list[tuple[int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, job: ClaimedJob) -> None:
        with self.lock:
            self.runs.append(job.id)
        if self.give_up:
            raise GiveUp("the target is refused")
        if job.attempts < self.failures:
            raise Retry(f"receiver answered 503 (attempt {job.attempts + 1})")

    def failed(self, session: Session, job: ClaimedJob, reason: str) -> None:
        self.gave_up.append((job.id, reason))


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    database = open_portal_database(f"sqlite:///{tmp_path / 'portal.db'}")
    yield sessionmaker(database.engine, expire_on_commit=False)
    database.engine.dispose()


def _job(sessions: sessionmaker[Session], job_id: int) -> Job:
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_a_job_is_enqueued_with_its_transaction_or_not_at_all(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        kept = enqueue(session, "test", {"n": 1})
    with pytest.raises(RuntimeError), sessions.begin() as session:
        enqueue(session, "test", {"n": 2})
        raise RuntimeError("the step failed")
    handler = Recorder()
    worker = Worker(sessions, {"test": handler}, concurrency=2)
    assert worker.run_due() == 1
    assert handler.runs == [kept]
    assert _job(sessions, kept).state == SUCCEEDED
    assert worker.run_due() == 0  # done is done
    worker.close()


def test_retries_back_off_with_jitter_then_give_up_with_the_reason(
    sessions: sessionmaker[Session],
) -> None:
    clock = Clock()
    handler = Recorder(failures=100)
    worker = Worker(sessions, {"test": handler}, clock=clock)
    with sessions.begin() as session:
        job_id = enqueue(session, "test", {}, give_up_after=timedelta(seconds=100), now=clock())
    waits = []
    for _ in range(10):
        before = clock()
        if worker.run_due() == 0:
            break
        job = _job(sessions, job_id)
        if job.state != SCHEDULED:
            break
        waits.append((job.run_at - before).total_seconds())
        assert worker.run_due() == 0  # not due before its time
        clock.advance_to(job.run_at)
    # 10·2^(n-1) seconds capped at 60, less up to 20 %: 10, 20, 40, then past 100 s
    assert len(waits) == 3, waits
    for wait, plain in zip(waits, (10, 20, 40), strict=True):
        assert plain * 0.8 - 0.1 <= wait <= plain + 0.1, waits
    job = _job(sessions, job_id)
    assert job.state == FAILED and job.attempts == 4
    assert job.last_error == "gave up after 4 attempts: receiver answered 503 (attempt 4)"
    assert handler.gave_up == [(job_id, job.last_error)]  # told, in the same transaction
    worker.close()


def test_a_job_that_cannot_succeed_fails_at_once(sessions: sessionmaker[Session]) -> None:
    worker = Worker(sessions, {"test": Recorder(give_up=True)})
    with sessions.begin() as session:
        job_id = enqueue(session, "test", {})
        unknown = enqueue(session, "nobody-handles-this", {})
    assert worker.run_due() == 2
    assert _job(sessions, job_id).state == FAILED
    assert _job(sessions, job_id).last_error == "the target is refused"
    assert "no handler" in (_job(sessions, unknown).last_error or "")
    worker.close()


def test_jobs_with_one_ordering_key_run_in_order_one_at_a_time(
    sessions: sessionmaker[Session],
) -> None:
    clock = Clock()
    handler = Recorder(failures=1)
    worker = Worker(sessions, {"test": handler}, concurrency=1, clock=clock)
    with sessions.begin() as session:
        first = enqueue(session, "test", {}, ordering_key="a", now=clock())
        second = enqueue(session, "test", {}, ordering_key="a", now=clock())
        other = enqueue(session, "test", {}, ordering_key="b", now=clock())
    worker.run_due()
    # the first of "a" failed once; the second waits for it; "b" is not held back
    assert handler.runs == [first, other]
    assert _job(sessions, second).state == SCHEDULED
    clock.advance(timedelta(seconds=11))
    worker.run_due()  # first (and other) succeed now
    worker.run_due()  # then second, failing once as every job here
    clock.advance(timedelta(seconds=11))
    worker.run_due()
    assert handler.runs == [first, other, first, other, second, second]
    assert {_job(sessions, j).state for j in (first, second, other)} == {SUCCEEDED}
    worker.close()


def test_a_job_left_running_by_a_dead_worker_is_taken_again_and_the_late_answer_ignored(
    sessions: sessionmaker[Session],
) -> None:
    clock = Clock()
    handler = Recorder()
    dead = Worker(sessions, {"test": handler}, clock=clock)
    with sessions.begin() as session:
        job_id = enqueue(session, "test", {}, now=clock())
    with sessions.begin() as session:
        dead._promote(session)
        [(claimed, token)] = dead._claim(session, 1)  # claimed, then the replica died
    assert _job(sessions, job_id).state == RUNNING
    alive = Worker(sessions, {"test": handler}, clock=clock)
    assert alive.run_due() == 0  # the lease still holds
    clock.advance(timedelta(seconds=31))
    assert alive.run_due() == 1
    assert _job(sessions, job_id).state == SUCCEEDED
    late = Outcome(claimed, token, FAILED, "a late answer", handler)
    dead._finish([late])  # ignored: not its claim any more
    job = _job(sessions, job_id)
    assert job.state == SUCCEEDED and job.attempts == 1
    dead.close()
    alive.close()


def test_concurrent_workers_on_postgresql_never_run_a_job_twice() -> None:
    server = start_postgres()
    try:
        database = open_portal_database(server.create_database("jobs"))
        sessions = sessionmaker(database.engine, expire_on_commit=False)
        with sessions.begin() as session:
            made = [enqueue(session, "test", {"n": n}) for n in range(60)]
        handler = Recorder()
        workers = [Worker(sessions, {"test": handler}, concurrency=2) for _ in range(3)]

        def drain(worker: Worker) -> None:
            while worker.run_due(limit=3):
                pass

        threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(handler.runs) == made  # each once
        for worker in workers:
            worker.close()
        database.engine.dispose()
    finally:
        server.stop()


def test_succeeded_jobs_are_purged_after_a_week_and_failed_ones_kept(
    sessions: sessionmaker[Session],
) -> None:
    clock = Clock()
    worker = Worker(sessions, {"test": Recorder(), "refused": Recorder(give_up=True)},
                    clock=clock)  # fmt: skip
    with sessions.begin() as session:
        done = enqueue(session, "test", {}, now=clock())
        refused = enqueue(session, "refused", {}, now=clock())
    worker.run_due()
    clock.advance(timedelta(days=7, minutes=1))
    with sessions.begin() as session:
        recent = enqueue(session, "test", {}, now=clock())
    worker._purged_at = 0.0  # the minute between purges has passed
    worker.run_due()
    with sessions() as session:
        assert session.get(Job, done) is None
        assert {j.id for j in session.query(Job)} == {refused, recent}
    assert _job(sessions, recent).state == SUCCEEDED
    worker.close()


@dataclass
class Sleeper:
    """A handler that takes `payload["seconds"]` to run."""

    lease: timedelta = timedelta(seconds=30)
    backoff: Backoff = field(default_factory=Backoff)

    def __call__(self, job: ClaimedJob) -> None:
        time.sleep(float(job.payload["seconds"]))

    def failed(self, session: Session, job: ClaimedJob, reason: str) -> None:
        pass


def test_the_jobs_thread_step_lets_no_slow_job_hold_back_the_others(
    sessions: sessionmaker[Session],
) -> None:
    worker = Worker(sessions, {"sleep": Sleeper()}, concurrency=2)
    with sessions.begin() as session:
        slow = enqueue(session, "sleep", {"seconds": 3})
        fast = [enqueue(session, "sleep", {"seconds": 0}) for _ in range(4)]
    started = time.monotonic()
    while _job(sessions, fast[-1]).state != SUCCEEDED:
        worker.step()
        assert time.monotonic() - started < 2.5, "the slow job held the others back"
    assert {_job(sessions, j).state for j in fast} == {SUCCEEDED}
    assert _job(sessions, slow).state == RUNNING
    while _job(sessions, slow).state != SUCCEEDED:
        worker.step()
        assert time.monotonic() - started < 10
    worker.close()
