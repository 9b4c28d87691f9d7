"""NTP references the admin names, queried in the background (SNTP through `ntplib`).

`ReferenceWatch` keeps each reference's latest answer; the time check
(`signet.signer.pki.timesource.TimeGuard`) reads them per stamp and never waits for a query.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import ntplib
from signet.signer import metrics

log = logging.getLogger("signet.signer.pki.timesource")

#: NTP leap indicator 3: "alarm condition (clock not synchronised)" (RFC 4330 §4).
LEAP_ALARM = 3


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
