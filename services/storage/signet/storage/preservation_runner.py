"""The preservation job in the storage service: on a period, on one replica, observable.

`signet.storage.preservation` is the pass itself; this module runs it: every
`preservation_interval` seconds on the replica that holds the storage Lease (the
same one that publishes tree heads: one elector, one leader), and on request
(`POST /v1/preservation/runs`, behind `signet storage preserve`).  A real pass asked
of a standby is refused (409 `not_leader`): it would race the leader's.  A dry run,
which only reads, runs on any replica.  One pass at a time per process.

The pass stops between two objects once this replica no longer leads, or at
shutdown: what it renewed is recorded, the rest waits for the next pass
(idempotent, resumable).  Its state is reported in `/readyz` (`preservation`) and
`GET /v1/preservation`, its outcome in Prometheus metrics (`signet.storage.metrics`).
Each real pass is recorded in the vault (`PASSES`, write-once), so a restarted replica,
or a new leader, reports the last pass and the last success until it runs its own.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from signet.common.contracts.preservation import (
    PreservationProgress,
    PreservationRole,
    PreservationRun,
    PreservationStatus,
)
from signet.common.errors import Conflict, SignetError
from signet.storage import metrics
from signet.storage.config import StorageSettings
from signet.storage.evidence_seal import supersede_package
from signet.storage.ledger import Ledger
from signet.storage.preservation import PreservationJob, PreservationReport
from signet.storage.signer_client import SignerClient
from signet.storage.vault import Vault

log = logging.getLogger(__name__)

#: Failures shown per pass in the status (all are counted).
SHOWN_FAILURES = 50
#: Where each real pass is recorded (write-once), by the time it ended.
PASSES = "preservation/passes/"
#: Passes read back at a start, for the last one and the last success.
RESTORED = 30


class NotLeader(Conflict):
    code = "not_leader"


class PassRunning(Conflict):
    code = "preservation_running"


class Parts(Protocol):
    """What the runner uses of the storage service (opened lazily there)."""

    settings: StorageSettings

    @property
    def vault(self) -> Vault: ...

    @property
    def ledger(self) -> Ledger: ...

    @property
    def signer(self) -> SignerClient: ...


class PreservationRunner:
    def __init__(self, service: Parts, role: Callable[[], PreservationRole]) -> None:
        self.service = service
        self.role = role
        settings = service.settings
        self.interval = settings.preservation_interval
        self.margin = timedelta(days=settings.preservation_margin_days)
        self._lock = threading.Lock()
        self._running: PreservationProgress | None = None
        self._last: PreservationRun | None = None
        self._last_success: datetime | None = None
        self._next: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []

    # -- what is reported ------------------------------------------------------------------

    def status(self) -> PreservationStatus:
        with self._lock:
            return PreservationStatus(
                role=self.role(),
                interval_seconds=self.interval,
                margin_days=self.margin.total_seconds() / 86400,
                running=self._running,
                last_run=self._last,
                last_success=self._last_success,
                next_run=self._next if self.interval > 0 else None,
            )

    def leads(self) -> bool:
        return self.role() in ("single", "leader")

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        """The last pass recorded in the vault (after a restart), then the periodic
        passes (none when `preservation_interval` is 0)."""
        if self._thread is not None:
            return
        delay = self.service.settings.preservation_start_delay

        def loop() -> None:
            self._restore()
            if self.interval <= 0:
                return
            due = time.monotonic() + delay
            while True:
                self._next = datetime.now(UTC) + timedelta(seconds=due - time.monotonic())
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return
                due = time.monotonic() + self.interval
                if self.leads():
                    # one asked for by hand may be under way: it is this period's
                    with contextlib.suppress(PassRunning):
                        self.run(dry_run=False)

        self._thread = threading.Thread(target=loop, name="preservation", daemon=True)
        self._thread.start()

    def _restore(self) -> None:
        """The last real pass and the last success, from the vault's write-once records
        (a restarted replica, or a new leader, reports what the last one did)."""
        try:
            names = self.service.vault.records(PASSES)
            runs = [
                PreservationRun.model_validate_json(self.service.vault.get_record(name))
                for name in names[-RESTORED:]
            ]
        except (SignetError, OSError, ValueError) as exc:
            log.warning("the last preservation passes could not be read: %s", exc)
            return
        success = next((r.finished for r in reversed(runs) if r.error is None), None)
        with self._lock:
            if runs and self._last is None:
                self._last = runs[-1]
            if success is not None and self._last_success is None:
                self._last_success = success
                metrics.PRESERVATION_LAST_SUCCESS.set(success.timestamp())
        if runs:
            metrics.PRESERVATION_BACKLOG.set(runs[-1].backlog)
            deadline = runs[-1].backlog_deadline
            metrics.PRESERVATION_DEADLINE.set(deadline.timestamp() if deadline else 0)

    def _record(self, result: PreservationRun) -> None:
        """A real pass, kept in the vault (retained like everything there): the log of
        what preservation did, and what a restart reports."""
        name = f"{PASSES}{result.finished:%Y%m%dT%H%M%S%fZ}.json"
        try:
            self.service.vault.put_record(name, result.model_dump_json().encode())
        except (SignetError, OSError) as exc:
            log.warning("preservation pass not recorded: %s", getattr(exc, "detail", exc))

    def request(self, *, dry_run: bool) -> PreservationStatus:
        """Start a pass in the background (the route); its progress is in `status()`."""
        if not dry_run and not self.leads():
            raise NotLeader(
                f"this replica is {self.role()}: the one holding the storage Lease renews; "
                "ask again (through the Service another replica answers) or use --dry-run"
            )
        self._claim(dry_run)
        worker = threading.Thread(
            target=self._run_claimed, args=(dry_run,), name="preservation-request", daemon=True
        )
        self._workers = [w for w in self._workers if w.is_alive()] + [worker]
        worker.start()
        return self.status()

    def run(self, *, dry_run: bool) -> PreservationRun:
        """One pass, here and now (raises `PassRunning` when one is under way)."""
        self._claim(dry_run)
        return self._run_claimed(dry_run)

    def _claim(self, dry_run: bool) -> None:
        with self._lock:
            if self._running is not None:
                kind = "dry run" if self._running.dry_run else "pass"
                raise PassRunning(
                    f"a preservation {kind} is running since {self._running.started:%H:%M:%S} "
                    f"UTC ({self._running.done} of {self._running.total} objects)"
                )
            self._running = PreservationProgress(
                dry_run=dry_run, started=datetime.now(UTC), done=0, total=0
            )

    def _run_claimed(self, dry_run: bool) -> PreservationRun:
        started = datetime.now(UTC)
        kind = "dry_run" if dry_run else "run"
        error: str | None = None
        report = PreservationReport()
        try:
            report = self._job(dry_run).run(dry_run=dry_run, progress=self._progress)
        except SignetError as exc:  # the vault or the signer unavailable: nothing is lost
            error = exc.detail
        except Exception as exc:  # a bug must not kill the thread or hide the state
            log.exception("preservation pass failed")
            error = f"{type(exc).__name__}: {exc}"[:500]
        finished = datetime.now(UTC)
        outcome = "error" if error else "stopped" if report.stopped else "ok"
        if report.stopped and not error:
            error = f"stopped: {report.stopped}"
        result = PreservationRun(
            dry_run=dry_run,
            started=started,
            finished=finished,
            scanned=report.scanned,
            due=report.due,
            renewed=report.renewed,
            already_preserved=report.already_preserved,
            waiting_for_rollover=report.waiting_for_rollover,
            failed=len(report.failed),
            failures=dict(sorted(report.failed.items())[:SHOWN_FAILURES]),
            packages_renewed=len(report.packages_renewed),
            backlog=report.backlog,
            backlog_deadline=report.backlog_deadline,
            error=error,
        )
        metrics.PRESERVATION_PASSES.labels(kind, outcome).inc()
        if not dry_run:
            metrics.PRESERVATION_RENEWALS.labels("renewed").inc(report.renewed)
            metrics.PRESERVATION_RENEWALS.labels("failed").inc(len(report.failed))
        if error is None or report.stopped:  # a full or partial count of the backlog
            metrics.PRESERVATION_BACKLOG.set(report.backlog)
            deadline = report.backlog_deadline
            metrics.PRESERVATION_DEADLINE.set(deadline.timestamp() if deadline else 0)
        if not dry_run:
            self._record(result)
        with self._lock:
            self._running = None
            self._last = result
            if not dry_run and error is None:
                self._last_success = finished
                metrics.PRESERVATION_LAST_SUCCESS.set(finished.timestamp())
        log.info(
            "preservation %s: %s scanned, %s due, %s renewed, %s failed, backlog %s%s",
            kind,
            report.scanned,
            report.due,
            report.renewed,
            len(report.failed),
            report.backlog,
            f" ({error})" if error else "",
        )
        return result

    def _progress(self, done: int, total: int) -> None:
        with self._lock:
            if self._running is not None:
                self._running = self._running.model_copy(update={"done": done, "total": total})

    def _job(self, dry_run: bool) -> PreservationJob:
        service = self.service
        signer = service.signer
        pki: dict[str, bytes] = {}

        def reseal(envelope_id: str) -> bool:  # called by the pass's one main thread
            if not pki:
                pki.update(signer.pki())
            made = supersede_package(
                envelope_id, vault=service.vault, ledger=service.ledger, signer=signer, pki=pki
            )
            return made is not None

        def stop() -> str | None:
            if self._stop.is_set():
                return "the service is shutting down"
            if not dry_run and not self.leads():
                return f"this replica is no longer the leader ({self.role()})"
            return None

        return PreservationJob(
            service.vault,
            service.ledger,
            renew=signer.renew,
            current_tsa=signer.tsa_certificate,
            margin=self.margin,
            reseal=reseal,
            stop=stop,
            workers=service.settings.preservation_workers,
        )

    def close(self, timeout: float = 30) -> None:
        self._stop.set()
        for thread in [self._thread, *self._workers]:
            if thread is not None:
                thread.join(timeout=timeout)
