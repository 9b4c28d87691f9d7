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
statuses; the kernel reader is the only one that touches the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import ntplib
from signet.common.errors import ServiceUnavailable
from signet.signer import metrics
from signet.signer.pki.tables import TimeStatusRecord
from signet.signer.registry import Registry
from signet.signer.schema import aware
from sqlalchemy import select

log = logging.getLogger(__name__)

#: A reference whose offset passes this share of the accuracy is a warning (not a refusal).
WARNING_SHARE = 0.8
#: adjtimex(2) return values and status bits (linux/timex.h).
TIME_ERROR = 5
STA_UNSYNC = 0x0040
STA_CLOCKERR = 0x1000
#: NTP leap indicator 3: "alarm condition (clock not synchronised)" (RFC 4330 §4).
LEAP_ALARM = 3


class TimeTrust(StrEnum):
    KERNEL = "kernel"
    TRUSTED_HOST = "trusted-host"


class ClockUnsynchronised(ServiceUnavailable):
    """The TSA's clock cannot show the accuracy its tokens claim: no stamp is issued."""

    code = "clock_unsynchronised"


@dataclass(frozen=True)
class ClockReading:
    """What the local clock's discipline says of itself."""

    synchronised: bool
    #: The kernel's estimated error (µs); None when not known.
    estimated_error_us: int | None
    #: Why it is not synchronised, in words (empty when it is).
    detail: str = ""


class ClockReader(Protocol):
    def read(self) -> ClockReading: ...


@dataclass(frozen=True)
class ReferenceReading:
    """The latest answer of one NTP reference."""

    server: str
    #: The reference's time minus the local clock (s; NTP's θ, RFC 4330 §5), from the
    #: last good answer; None: never answered.
    offset_s: float | None = None
    #: `time.monotonic()` of the last good answer.
    answered_at: float | None = None
    #: Why the last query gave nothing usable (empty when it did).
    problem: str = ""


class ReferenceSource(Protocol):
    def readings(self) -> Sequence[ReferenceReading]: ...


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _Timex(ctypes.Structure):
    """glibc's ``struct timex`` on LP64 Linux (x86_64, aarch64: the same layout, 208 bytes;
    ctypes adds the padding after each ``int`` that the C compiler does)."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    )


@dataclass(frozen=True)
class KernelStatus:
    """One read-only ``adjtimex`` answer, as the kernel gave it."""

    state: int
    status: int
    estimated_error_us: int
    maximum_error_us: int
    offset: int
    tai: int


class KernelClock:
    """The kernel's synchronisation status through ``adjtimex(2)`` (Linux, glibc, LP64)."""

    def __init__(self) -> None:
        self._adjtimex: Callable[[Any], int] | None = None
        if sys.platform.startswith("linux") and ctypes.sizeof(ctypes.c_long) == 8:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            function = libc.adjtimex
            function.argtypes = (ctypes.POINTER(_Timex),)
            function.restype = ctypes.c_int
            self._adjtimex = function

    def kernel_status(self) -> KernelStatus:
        """The raw answer; OSError when the call fails, RuntimeError off Linux/LP64."""
        if self._adjtimex is None:
            raise RuntimeError("adjtimex(2) is read only on 64-bit Linux")
        timex = _Timex()  # modes = 0: read, never adjust
        state = self._adjtimex(ctypes.byref(timex))
        if state == -1:
            errno = ctypes.get_errno()
            raise OSError(errno, f"adjtimex failed (errno {errno})")
        return KernelStatus(
            state, timex.status, timex.esterror, timex.maxerror, timex.offset, timex.tai
        )

    def read(self) -> ClockReading:
        try:
            kernel = self.kernel_status()
        except (OSError, RuntimeError) as exc:
            return ClockReading(False, None, f"the kernel's clock status is unreadable: {exc}")
        if kernel.state == TIME_ERROR or kernel.status & (STA_UNSYNC | STA_CLOCKERR):
            return ClockReading(
                False,
                kernel.estimated_error_us,
                "the kernel reports the clock unsynchronised (no NTP daemon disciplines it, "
                "or it lost its servers)",
            )
        return ClockReading(True, kernel.estimated_error_us)


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


def split_reference(reference: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` -> (host, port); NTP's port 123 by default."""
    if reference.startswith("["):
        host, _, rest = reference[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 123
    if reference.count(":") == 1:
        host, _, port = reference.partition(":")
        return host, int(port)
    return reference, 123


class ReferenceWatch:
    """Queries each NTP reference every `interval_s` in one daemon thread (SNTP, RFC 4330,
    through `ntplib`); stamps read the latest answers, never wait for a query."""

    def __init__(
        self,
        references: Sequence[str],
        *,
        interval_s: float = 16.0,
        timeout_s: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.references = tuple(references)
        self.interval_s, self.timeout_s, self.monotonic = interval_s, timeout_s, monotonic
        self._latest = {r: ReferenceReading(r) for r in self.references}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def readings(self) -> Sequence[ReferenceReading]:
        with self._guard:
            return [self._latest[r] for r in self.references]

    def start(self) -> None:
        """The first poll here, before returning (at most `timeout_s` per silent reference):
        a stamp right after start (the CLI signs in process) has answers to judge."""
        if self._thread is None and self.references:
            self.poll()
            self._thread = threading.Thread(target=self._run, name="tsa-ntp", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 1)

    def poll(self) -> None:
        """Query every reference once (the thread's loop; tests call it directly too)."""
        for reference in self.references:
            reading = self._query(reference)
            with self._guard:
                previous = self._latest[reference]
                if reading.offset_s is None:  # keep the last good answer; it expires
                    reading = ReferenceReading(
                        reference, previous.offset_s, previous.answered_at, reading.problem
                    )
                self._latest[reference] = reading
            if reading.offset_s is not None:
                metrics.reference_offset(reference, reading.offset_s)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # never let the watch die silently: the references expire
                log.exception("NTP reference poll failed")

    def _query(self, reference: str) -> ReferenceReading:
        host, port = split_reference(reference)
        try:
            answer = ntplib.NTPClient().request(host, version=4, port=port, timeout=self.timeout_s)
        except (ntplib.NTPException, OSError, ValueError) as exc:
            return ReferenceReading(reference, problem=f"no answer: {exc}")
        if answer.leap == LEAP_ALARM:
            return ReferenceReading(reference, problem="leap indicator 3: it is unsynchronised")
        if answer.stratum == 0 or answer.stratum > 15:
            return ReferenceReading(
                reference, problem=f"stratum {answer.stratum}: not a usable time source"
            )
        # ntplib: offset = ((t2 - t1) + (t3 - t4)) / 2, the reference minus the local clock.
        return ReferenceReading(reference, float(answer.offset), self.monotonic())
