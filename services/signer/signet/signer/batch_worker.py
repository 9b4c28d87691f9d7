"""The thread that works through queued batch items in one signer process.

Each signer process (uvicorn worker) runs one, so a batch uses every core
the signer has; they coordinate only through `BatchStore.claim`.  Beside it
a committer thread makes each signed group durable and records it while the
worker signs the next group: the fsyncs overlap with signing.  An idle
worker watches the store's queue marker (a file every new batch touches), so
the processes that did not receive the upload start within milliseconds too;
the database poll is the fallback for batches created on another host.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

from signet.common.contracts.signer import SignOptions
from signet.common.errors import ServiceUnavailable, SignetError
from signet.hsm import HsmUnavailable
from signet.signer.batches import BatchStore, Claim, Outcome, this_worker
from signet.signer.ca import Issued
from signet.signer.durable import Unpublished, file_sha256, publish, write_unpublished
from signet.signer.service import SignerService

log = logging.getLogger(__name__)

#: How long a batch's key and options are reused before the certificate's status
#: (revoked? expired?) is read again: a revocation stops a running batch within this.
CONTEXT_TTL = 2.0
#: Items a worker takes at a time: they are made durable together (`publish`) and
#: recorded in one transaction.  Larger groups amortise more; smaller ones balance
#: the last documents of a batch better across processes.
CLAIM_SIZE = 32
#: How often an idle worker looks at the queue marker (a stat, no database query).
MARKER_POLL = 0.01


@dataclass(frozen=True)
class _Group:
    """A signed claim on its way to the committer: files to publish, outcomes to record."""

    written: list[tuple[Claim, Unpublished]]
    outcomes: list[Outcome]


@dataclass(frozen=True)
class _Context:
    issued: Issued
    options: SignOptions
    image: bytes | None
    loaded_at: float


class BatchWorker:
    def __init__(
        self,
        service: SignerService,
        store: BatchStore,
        *,
        idle_poll: float = 0.2,
        recover_every: float = 5.0,
    ) -> None:
        self.service, self.store = service, store
        self.idle_poll, self.recover_every = idle_poll, recover_every
        self.worker = this_worker(f"{id(self):x}")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._committer: threading.Thread | None = None
        # one group waits while another is committed: bounded, and signing never waits
        # for an fsync unless the disk is slower than signing
        self._groups: queue.Queue[_Group | None] = queue.Queue(maxsize=1)
        self._contexts: dict[str, _Context] = {}

    def start(self) -> None:
        self._committer = threading.Thread(
            target=self._commit_loop, name="batch-commit", daemon=True
        )
        self._committer.start()
        self._thread = threading.Thread(target=self._run, name="batch-worker", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A batch was just created here: no need to wait for the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for thread in (self._thread, self._committer):  # the committer ends after the worker
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._groups.put(None)  # the committer records what was signed, then ends

    def _loop(self) -> None:
        last_recovery = 0.0
        while not self._stop.is_set():
            mark = self.store.queue_mark()
            try:
                if time.monotonic() - last_recovery > self.recover_every:
                    recovered = self.store.recover()
                    if recovered:
                        log.warning("took back %d batch items from dead workers", recovered)
                    last_recovery = time.monotonic()
                claims = self.store.claim(self.worker, CLAIM_SIZE)
                if claims:
                    self._work(claims)
            except Exception:  # the database may be briefly unavailable; never die
                log.exception("batch queue unavailable")
                self._stop.wait(1.0)
                continue
            if not claims:
                self._idle(mark)

    def _idle(self, mark: int) -> None:
        """Wait for a wake-up, a new batch (the queue marker moved) or the next poll."""
        deadline = time.monotonic() + self.idle_poll
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._wake.wait(min(MARKER_POLL, remaining)):
                break
            if self.store.queue_mark() != mark:
                break
        self._wake.clear()

    def _work(self, claims: list[Claim]) -> None:
        """Sign a claimed group into temporary files and hand it to the committer."""
        outcomes: list[Outcome] = []
        written: list[tuple[Claim, Unpublished]] = []
        for position, claim in enumerate(claims):
            result = None if self._stop.is_set() else self._sign(claim)
            if result is None:  # postponed (HSM down) or stopping: hand the rest back
                for rest in claims[position:]:
                    self.store.release(rest.batch_id, rest.index, self.worker)
                break
            if isinstance(result, Outcome):
                outcomes.append(result)
            else:
                written.append((claim, result))
        self._groups.put(_Group(written, outcomes))

    def _commit_loop(self) -> None:
        while (group := self._groups.get()) is not None:
            try:
                self._commit(group)
            except Exception:  # the claims stay ours until the lease expires: then the
                # next worker records the published files as found, signing nothing twice
                log.exception("recording %d batch items failed", len(group.outcomes))

    def _commit(self, group: _Group) -> None:
        """Make a signed group durable together, then record it in one transaction.

        `publish` fsyncs the group's files concurrently, renames them into ``out/``
        and fsyncs the folder once; only then are they recorded (`finish_many`).
        A worker killed before `publish` returns leaves no file under its final
        name that is not durable, and nothing recorded: the next worker signs those
        documents again; one killed after it finds them and records them as they are.
        """
        outcomes = list(group.outcomes)
        errors = publish([file for _, file in group.written])
        for (claim, file), error in zip(group.written, errors, strict=True):
            if error is not None:
                log.error("batch %s item %d not stored: %s", claim.batch_id, claim.index, error)
                detail = f"internal error (cannot store the signed document: {error.strerror})"
                outcomes.append(Outcome(claim.batch_id, claim.index, error=detail))
            else:
                outcomes.append(Outcome(claim.batch_id, claim.index, output_sha256=file.sha256))
        for attempt in range(3):  # the signed files are durable: only the record is missing
            try:
                self.store.finish_many(self.worker, outcomes)
                return
            except Exception:
                if attempt == 2:
                    raise
                log.warning("recording batch outcomes failed; retrying", exc_info=True)
                time.sleep(0.5)

    def _sign(self, claim: Claim) -> Outcome | Unpublished | None:
        """Sign one document into a temporary file; an `Outcome` when
        there is nothing to publish (failed, or signed before a crash); None when it must
        wait (HSM unavailable)."""
        batch_id, index = claim.batch_id, claim.index
        output = self.store.output_path(batch_id, index)
        if output.exists():  # signed before a crash, not yet recorded: never sign twice
            return Outcome(batch_id, index, output_sha256=file_sha256(output))
        try:
            context = self._context(batch_id)
            with self.store.open_input(claim) as source:
                return write_unpublished(
                    output,
                    lambda target: self.service.engine.sign_stream(
                        source, target, context.issued, context.options, context.image
                    ),
                )
        except (HsmUnavailable, ServiceUnavailable) as exc:
            log.warning("batch %s item %d postponed: %s", batch_id, index, exc)
            self._stop.wait(1.0)
            return None
        except SignetError as exc:
            return Outcome(batch_id, index, error=exc.detail)
        except Exception as exc:
            log.exception("batch %s item %d failed unexpectedly", batch_id, index)
            return Outcome(batch_id, index, error=f"internal error ({type(exc).__name__})")

    def _context(self, batch_id: str) -> _Context:
        """The batch's key, options and image; re-read (and the key re-checked) every few s."""
        now = time.monotonic()
        context = self._contexts.get(batch_id)
        if context is None or now - context.loaded_at > CONTEXT_TTL:
            self._contexts.pop(batch_id, None)  # a revoked key must not stay cached
            record = self.store.record(batch_id)
            context = _Context(
                self.service.ca.signing_material(record.certificate_serial),
                self.store.options(batch_id),
                self.store.image(batch_id) if record.has_image else None,
                now,
            )
            if len(self._contexts) > 64:
                self._contexts.clear()
            self._contexts[batch_id] = context
        return context
