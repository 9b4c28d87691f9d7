"""Can the TSA's clock be trusted right now?  Checked before every stamp (cached ~1 s).

Two trust modes (``SIGNET_SIGNER_TIME_TRUST``):

* ``kernel`` (the default, and the cluster's): the kernel's own synchronisation status
  and estimated error, read with ``adjtimex(2)`` in read-only mode (``modes = 0``).
  The clock is unsynchronised when the call returns ``TIME_ERROR`` or the status has
  ``STA_UNSYNC`` (set by the kernel until chrony/ntpd/systemd-timesyncd disciplines the
  clock, and again when they stop for about 16 minutes).  A stamp is refused when the
  clock is unsynchronised or its estimated error exceeds the accuracy the token claims.
* ``trusted-host`` (the laptop trial, `signet up`): the host's clock is taken as it is,
  unchecked; readiness says so (``time: trusted-host``), never "synchronised".

Optionally, NTP references named by the admin are queried in a background thread
(`ReferenceWatch`, not per stamp): the measured offset of the local clock must stay
within the accuracy too (a warning past 80 %), a reference silent past its expiry
refuses stamps, and a leap indicator of 3 (alarm: the server itself is unsynchronised)
counts as no answer.  A token therefore never claims an accuracy the clock cannot show.

The readers are behind small protocols (`ClockReader`, `ReferenceSource`), so tests inject
statuses; the kernel reader (`signet.signer.pki.clock`) is the only one that touches the
system, the NTP watch is `signet.signer.pki.references`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from signet.common.errors import ServiceUnavailable
from signet.signer import metrics
from signet.signer.pki.clock import ClockReader, ClockReading, KernelClock
from signet.signer.pki.references import (
    ReferenceReading,
    ReferenceSource,
    ReferenceWatch,
    split_reference,
)
from signet.signer.pki.tables import TimeStatusRecord
from signet.signer.registry import Registry
from signet.signer.schema import aware
from sqlalchemy import select

__all__ = [
    "WARNING_SHARE",
    "ClockReader",
    "ClockReading",
    "ClockUnsynchronised",
    "KernelClock",
    "ReferenceReading",
    "ReferenceSource",
    "ReferenceWatch",
    "TimeGuard",
    "TimeJournal",
    "TimeState",
    "TimeStatus",
    "TimeTrust",
    "split_reference",
]

log = logging.getLogger(__name__)

#: A reference whose offset passes this share of the accuracy is a warning (not a refusal).
WARNING_SHARE = 0.8


class TimeTrust(StrEnum):
    KERNEL = "kernel"
    TRUSTED_HOST = "trusted-host"


class ClockUnsynchronised(ServiceUnavailable):
    """The TSA's clock cannot show the accuracy its tokens claim: no stamp is issued."""

    code = "clock_unsynchronised"


class TimeState(StrEnum):
    SYNCHRONISED = "synchronised"
    UNSYNCHRONISED = "unsynchronised"
    TRUSTED_HOST = "trusted-host"


@dataclass(frozen=True)
class TimeStatus:
    """The verdict one check reached; what `/readyz` reports and a stamp records."""

    state: TimeState
    source: TimeTrust
    accuracy_ms: int
    estimated_error_ms: float | None = None
    #: The largest absolute offset among the references that answered in time (ms).
    reference_offset_ms: float | None = None
    references: tuple[str, ...] = ()
    #: Why stamps are refused (empty when they are not).
    problem: str = ""
    warning: str = ""

    @property
    def stamping(self) -> bool:
        return self.state is not TimeState.UNSYNCHRONISED

    def report(self) -> dict[str, Any]:
        """The flat keys of the signer's readiness answer (``time``, ``time_…``)."""
        body: dict[str, Any] = {
            "time": self.state.value,
            "time_source": self.source.value,
            "time_accuracy_ms": self.accuracy_ms,
            "time_estimated_error_ms": self.estimated_error_ms,
        }
        if self.references:
            body["time_references"] = list(self.references)
            body["time_reference_offset_ms"] = self.reference_offset_ms
        if self.problem:
            body["time_problem"] = self.problem
        if self.warning:
            body["time_warning"] = self.warning
        return body


@dataclass
class TimeGuard:
    """Judges the clock against the declared accuracy; one verdict per `interval_s`."""

    trust: TimeTrust
    accuracy_ms: int
    clock: ClockReader | None = None
    references: ReferenceSource | None = None
    #: Seconds a reference's last good answer counts for.
    reference_expiry_s: float = 64.0
    interval_s: float = 1.0
    monotonic: Callable[[], float] = time.monotonic
    #: Called with a verdict when it changes, and at most every `record_every_s` otherwise
    #: (`TimeJournal.record`); outside the lock, its failures logged, never raised.
    record: Callable[[TimeStatus], None] | None = None
    record_every_s: float = 60.0
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _cached: TimeStatus | None = field(default=None, init=False, repr=False)
    _until: float = field(default=float("-inf"), init=False, repr=False)
    _recorded: float = field(default=float("-inf"), init=False, repr=False)

    def status(self) -> TimeStatus:
        now = self.monotonic()
        cached = self._cached
        if cached is not None and now < self._until:
            return cached
        with self._lock:
            if self._cached is not None and now < self._until:
                return self._cached
            status = self._judge(now)
            changed = self._cached is None or _facts(status) != _facts(self._cached)
            if self._cached is None or status.state != self._cached.state:
                level = logging.WARNING if not status.stamping else logging.INFO
                log.log(level, "TSA time: %s %s", status.state.value, status.problem)
            self._cached, self._until = status, now + self.interval_s
            metrics.time_status(status.stamping, status.estimated_error_ms)
            due = self.record is not None and (
                changed or now - self._recorded >= self.record_every_s
            )
            if due:
                self._recorded = now
        if due and self.record is not None:
            try:
                self.record(status)
            except Exception:  # the journal is evidence, not a gate: stamping goes on
                log.exception("could not record the TSA's time status")
        return status

    def require(self) -> TimeStatus:
        """The current status; `ClockUnsynchronised` when no stamp may be issued."""
        status = self.status()
        if not status.stamping:
            metrics.CLOCK_REFUSED.inc()
            raise ClockUnsynchronised(status.problem)
        return status

    def invalidate(self) -> None:
        with self._lock:
            self._cached, self._until = None, float("-inf")

    def _judge(self, now: float) -> TimeStatus:
        accuracy_us = self.accuracy_ms * 1000
        problems: list[str] = []
        warnings: list[str] = []
        error_ms: float | None = None
        if self.trust is TimeTrust.KERNEL:
            if self.clock is None:
                self.clock = KernelClock()
            reading = self.clock.read()
            if reading.estimated_error_us is not None:
                error_ms = reading.estimated_error_us / 1000
            if not reading.synchronised:
                problems.append(reading.detail or "the clock is not synchronised")
            elif reading.estimated_error_us is None:
                problems.append("the clock's estimated error is unknown")
            elif reading.estimated_error_us > accuracy_us:
                problems.append(
                    f"the clock's estimated error {error_ms:g} ms exceeds the declared "
                    f"accuracy {self.accuracy_ms} ms"
                )
        offset_ms, names = self._judge_references(now, problems, warnings)
        if problems:
            state = TimeState.UNSYNCHRONISED
        elif self.trust is TimeTrust.TRUSTED_HOST:
            state = TimeState.TRUSTED_HOST
        else:
            state = TimeState.SYNCHRONISED
        return TimeStatus(
            state,
            self.trust,
            self.accuracy_ms,
            error_ms,
            offset_ms,
            names,
            "; ".join(problems),
            "; ".join(warnings),
        )

    def _judge_references(
        self, now: float, problems: list[str], warnings: list[str]
    ) -> tuple[float | None, tuple[str, ...]]:
        if self.references is None:
            return None, ()
        readings = list(self.references.readings())
        if not readings:
            return None, ()
        fresh = [
            r
            for r in readings
            if r.offset_s is not None
            and r.answered_at is not None
            and now - r.answered_at <= self.reference_expiry_s
        ]
        for reading in readings:
            if reading not in fresh:
                why = reading.problem or "no answer yet"
                warnings.append(
                    f"reference {reading.server} has not answered within "
                    f"{self.reference_expiry_s:g} s ({why})"
                )
        names = tuple(r.server for r in readings)
        if not fresh:
            problems.append(
                "no time reference answered within its expiry: "
                + ", ".join(f"{r.server} ({r.problem or 'no answer yet'})" for r in readings)
            )
            return None, names
        worst = max(fresh, key=lambda r: abs(r.offset_s or 0.0))
        offset_ms = (worst.offset_s or 0.0) * 1000
        if abs(offset_ms) > self.accuracy_ms:
            problems.append(
                f"the clock is {offset_ms:+.1f} ms off reference {worst.server}, beyond the "
                f"declared accuracy {self.accuracy_ms} ms"
            )
        elif abs(offset_ms) > WARNING_SHARE * self.accuracy_ms:
            warnings.append(
                f"the clock is {offset_ms:+.1f} ms off reference {worst.server}, near the "
                f"declared accuracy {self.accuracy_ms} ms"
            )
        return offset_ms, names


def _facts(status: TimeStatus) -> tuple[object, ...]:
    """What makes a verdict worth a journal row when it changes (not the error's drift)."""
    return (status.state, status.source, status.problem, status.references)


class TimeJournal:
    """Writes verdicts to the signer's registry (``tsa_time_status``) and finds the one a
    token was stamped under."""

    def __init__(self, registry: Callable[[], Registry]) -> None:
        self._registry = registry
        self.process = f"{socket.gethostname()[:80]}/{os.getpid()}"

    def record(self, status: TimeStatus) -> None:
        with self._registry().session() as session, session.begin():
            session.add(
                TimeStatusRecord(
                    observed_at=datetime.now(UTC),
                    process=self.process,
                    state=status.state.value,
                    source=status.source.value,
                    accuracy_ms=status.accuracy_ms,
                    estimated_error_ms=status.estimated_error_ms,
                    reference_offset_ms=status.reference_offset_ms,
                    problem=status.problem[:500],
                )
            )

    def at(self, when: datetime, process: str | None = None) -> TimeStatusRecord | None:
        """The newest verdict of `process` (default: this one) at or before `when`."""
        with self._registry().session() as session:
            record = session.scalars(
                select(TimeStatusRecord)
                .where(
                    TimeStatusRecord.process == (process or self.process),
                    TimeStatusRecord.observed_at <= when,
                )
                .order_by(TimeStatusRecord.observed_at.desc(), TimeStatusRecord.id.desc())
                .limit(1)
            ).first()
            if record is not None:
                record.observed_at = aware(record.observed_at) or record.observed_at
            return record
