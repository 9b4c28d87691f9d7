"""A background thread that runs one step of work every few seconds until stopped.

The portal's background duties (the outbox dispatcher, the deadline watch) are each a
step that is idempotent and safe on any replica; this is the loop around them.  A
step that returns something truthy found work and is run again at once; an exception
is logged and the loop goes on (the database may be briefly unavailable).  `wake`
cuts the wait short (new work was just committed in this process).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class PeriodicThread:
    def __init__(self, name: str, step: Callable[[], object], interval: float) -> None:
        self.name, self.step, self.interval = name, step, interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while self.step() and not self._stop.is_set():
                    pass
            except Exception:  # never die: the next interval tries again
                log.exception("%s failed; trying again", self.name)
            self._wake.wait(self.interval)
            self._wake.clear()
