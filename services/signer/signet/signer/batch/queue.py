"""The batch tables and the work queue on them: claim, record, hand back, recover.

The tables are declared in `signet.signer.batch.tables` (re-exported here).  Every
signer process takes work with `BatchQueue.claim`, one atomic UPDATE, so
several processes (and replicas) share a batch without a coordinator and no
item ever has two claimants.  An item is recorded done only by its claimant
(`finish_many` matches the worker), in the transaction that also says where its
signed document is, so a claimant that lost its claim (dead, or lease expired)
can never overwrite the record of the one that took over.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from signet.common.contracts.signer import BatchItemState
from signet.common.database import claim_rows
from signet.signer.batch.tables import BatchItemRecord, BatchRecord
from signet.signer.registry import Registry
from signet.signer.schema import Base
from sqlalchemy import DateTime, bindparam, select, text, update
from sqlalchemy.orm import Session

__all__ = [
    "CLAIM_LEASE",
    "BatchItemRecord",
    "BatchQueue",
    "BatchRecord",
    "Claim",
    "Outcome",
    "aware",
    "claimant_is_dead",
    "this_worker",
    "utc_now",
]

#: A claim older than this is taken back even if its claimant may still live elsewhere.
CLAIM_LEASE = timedelta(minutes=15)


def this_worker(suffix: str = "") -> str:
    """Identity of a claimant: host and process (so a dead local claimant is recognisable),
    then anything that tells threads of one process apart."""
    return f"{socket.gethostname()}:{os.getpid()}/{suffix}"


def claimant_is_dead(worker: str) -> bool:
    host, _, pid = worker.partition("/")[0].rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's process: only its lease can expire
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def utc_now() -> datetime:
    """Now, in UTC (the time of every batch column)."""
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """`value` as UTC (SQLite returns times without their zone)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True)
class Claim:
    """A claimed item, with where its document is in the batch's spool (None: own file)."""

    batch_id: str
    index: int
    input_offset: int | None = None
    input_size: int | None = None


@dataclass(frozen=True)
class Outcome:
    """How an item ended: signed (where its document is) or failed (why)."""

    batch_id: str
    index: int
    output_sha256: str | None = None
    error: str | None = None
    output_pack: str | None = None
    output_offset: int | None = None
    output_size: int | None = None


class BatchQueue:
    """The queue half of `signet.signer.batch.store.BatchStore` (which adds files and results)."""

    registry: Registry

    def claim(self, worker: str, limit: int = 1) -> list[Claim]:
        """Take up to `limit` of the oldest pending items, atomically (one statement,
        `signet.common.database.claim_rows`, so no item has two claimants).

        Committed without waiting for the disk (`Registry.undurable_session`): a claim
        lost in a power cut leaves its items pending, which is where they were, and the
        claimant records nothing before its own durable commit.  Measured during 1-page
        batches: a claim took 7.6-9.9 ms with its fsync, 2.8-3.6 ms without.
        """
        with self.registry.undurable_session() as session, session.begin():
            rows = claim_rows(
                session.connection(),
                "batch_items",
                keys=("batch_id", "idx"),
                queued=BatchItemState.PENDING.value,
                claimed=BatchItemState.RUNNING.value,
                values={"worker": worker, "claimed_at": utc_now()},
                timestamps=("claimed_at",),
                limit=limit,
                returning=("input_offset", "input_size"),
            )
        claims = (
            Claim(
                str(row[0]),
                int(row[1]),
                None if row[2] is None else int(row[2]),
                None if row[3] is None else int(row[3]),
            )
            for row in rows
        )
        return sorted(claims, key=lambda claim: (claim.batch_id, claim.index))

    def renew(self, worker: str, claims: list[Claim]) -> int:
        """Restart the lease of the `claims` that `worker` still holds (claimed_at = now);
        returns how many it renewed (exact on SQLite and psycopg 3, as `finish_many`).

        A worker renews a group when it starts signing it long after claiming it, and
        while it signs one for long: `recover` takes back only claims older than
        `CLAIM_LEASE`.  Undurable like `claim`: a renewal lost in a power cut leaves
        the older time, and the claimant is gone anyway.
        """
        if not claims:
            return 0
        items = Base.metadata.tables["batch_items"]
        with self.registry.undurable_session() as session, session.begin():
            result = session.connection().execute(
                update(items)
                .where(
                    items.c.batch_id == bindparam("b_batch_id"),
                    items.c.idx == bindparam("b_idx"),
                    items.c.state == BatchItemState.RUNNING.value,
                    items.c.worker == worker,
                )
                .values(claimed_at=utc_now()),
                [{"b_batch_id": c.batch_id, "b_idx": c.index} for c in claims],
            )
        return int(result.rowcount)

    def finish(
        self,
        batch_id: str,
        index: int,
        worker: str,
        *,
        output_sha256: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Record one item's outcome if `worker` still holds it."""
        return self.finish_many(worker, [Outcome(batch_id, index, output_sha256, error)]) == 1

    def finish_many(self, worker: str, outcomes: list[Outcome]) -> int:
        """Record outcomes in one transaction; closes batches whose last item this was.

        The signed documents must be durable before (their pack synced): the row is
        what makes one part of the results.  Returns how
        many were recorded (for several outcomes, exact where the driver counts an
        executemany: SQLite, psycopg 3; `finish` of one outcome is exact everywhere).
        """
        if not outcomes:
            return 0
        now = utc_now()
        with self.registry.session() as session, session.begin():
            connection = session.connection()
            # one prepared statement for all outcomes (executemany), as text: the Core
            # update cost 5.4 ms of CPU per group of 32, this 2.4 (with `_OPEN` below),
            # in the committer thread that shares the GIL with the signing one
            result = connection.execute(
                _FINISH,
                [
                    {
                        "batch_id": o.batch_id,
                        "idx": o.index,
                        "worker": worker,
                        "state": (
                            BatchItemState.DONE if o.error is None else BatchItemState.FAILED
                        ).value,
                        "output_sha256": o.output_sha256,
                        "error": o.error,
                        "output_pack": o.output_pack,
                        "output_offset": o.output_offset,
                        "output_size": o.output_size,
                        "now": now,
                    }
                    for o in outcomes
                ],
            )
            recorded = int(result.rowcount)
            closed = []
            for batch_id in {o.batch_id for o in outcomes}:
                if connection.execute(_OPEN, {"batch_id": batch_id}).first() is None:
                    session.execute(
                        update(BatchRecord)
                        .where(BatchRecord.id == batch_id, BatchRecord.finished_at.is_(None))
                        .values(finished_at=utc_now())
                    )
                    closed.append(batch_id)
        for batch_id in closed:  # committed: now it may be announced
            self.batch_finished(batch_id)
        return recorded

    def batch_finished(self, batch_id: str) -> None:
        """Called once `finish_many` has committed a batch's last outcome (a hook)."""

    def release_many(self, worker: str, claims: Iterable[Claim]) -> None:
        """Give items back in one transaction (the HSM is down, the batch volume was lost
        or is full, the worker stops: nothing is wrong with their documents)."""
        with self.registry.session() as session, session.begin():
            for claim in claims:
                _hand_back(session, claim.batch_id, claim.index, worker)

    def recover(self, is_dead: Callable[[str], bool] = claimant_is_dead) -> int:
        """Hand back items whose claimant died or whose lease expired; returns how many."""
        expired = utc_now() - CLAIM_LEASE
        with self.registry.session() as session, session.begin():
            running = session.execute(
                select(
                    BatchItemRecord.batch_id,
                    BatchItemRecord.idx,
                    BatchItemRecord.worker,
                    BatchItemRecord.claimed_at,
                ).where(BatchItemRecord.state == BatchItemState.RUNNING.value)
            ).all()
            recovered = 0
            for batch_id, index, worker, claimed_at in running:
                claimed = aware(claimed_at)
                if (claimed is not None and claimed < expired) or is_dead(worker or ""):
                    _hand_back(session, batch_id, index, worker)
                    recovered += 1
        return recovered


#: Record one outcome if its claimant still holds the item (`BatchQueue.finish_many`).
_FINISH = text(
    "UPDATE batch_items SET state = :state, output_sha256 = :output_sha256, error = :error, "
    "output_pack = :output_pack, output_offset = :output_offset, "
    "output_size = :output_size, finished_at = :now "
    "WHERE batch_id = :batch_id AND idx = :idx AND state = 'running' AND worker = :worker"
).bindparams(bindparam("now", type_=DateTime(timezone=True)))
#: Is any item of the batch still to be done?  Stops at the first (a count of them read
#: the whole batch: 1.3 ms per group of a 3,200-document batch).
_OPEN = text(
    "SELECT 1 FROM batch_items WHERE batch_id = :batch_id "
    "AND state IN ('pending', 'running') LIMIT 1"
)


def _hand_back(session: Session, batch_id: str, index: int, worker: str | None) -> None:
    """Make a running item pending again, if `worker` still holds it."""
    session.execute(
        update(BatchItemRecord)
        .where(
            BatchItemRecord.batch_id == batch_id,
            BatchItemRecord.idx == index,
            BatchItemRecord.worker == worker,
            BatchItemRecord.state == BatchItemState.RUNNING.value,
        )
        .values(state=BatchItemState.PENDING.value, worker=None, claimed_at=None)
    )
