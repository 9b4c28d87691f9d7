"""The thread that works through queued batch items in one signer process.

Each signer process (uvicorn worker) runs one, so a batch uses every core
the signer has; they coordinate only through `BatchStore.claim`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from signet.common.contracts.signer import SignOptions
from signet.common.errors import ServiceUnavailable, SignetError
from signet.hsm import HsmUnavailable
from signet.signer.batches import (
    BatchStore,
    Outcome,
    file_sha256,
    this_worker,
    write_atomically,
)
from signet.signer.ca import Issued
from signet.signer.service import SignerService

log = logging.getLogger(__name__)

#: How long a batch's key and options are reused before the certificate's status
#: (revoked? expired?) is read again: a revocation stops a running batch within this.
CONTEXT_TTL = 2.0
#: Items a worker takes at a time: their outcomes are recorded in one transaction.
CLAIM_SIZE = 16


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
        self._contexts: dict[str, _Context] = {}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="batch-worker", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A batch was just created here: no need to wait for the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        last_recovery = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() - last_recovery > self.recover_every:
                    recovered = self.store.recover()
                    if recovered:
                        log.warning("took back %d batch items from dead workers", recovered)
                    last_recovery = time.monotonic()
                jobs = self.store.claim(self.worker, CLAIM_SIZE)
            except Exception:  # the database may be briefly unavailable; never die
                log.exception("batch queue unavailable")
                self._stop.wait(1.0)
                continue
            if not jobs:
                self._wake.wait(self.idle_poll)
                self._wake.clear()
                continue
            self._work(jobs)

    def _work(self, jobs: list[tuple[str, int]]) -> None:
        """Sign a claimed chunk, then record it in one transaction (see `finish_many`)."""
        outcomes: list[Outcome] = []
        for position, (batch_id, index) in enumerate(jobs):
            outcome = None if self._stop.is_set() else self.process(batch_id, index)
            if outcome is None:  # postponed (HSM down) or stopping: hand the rest back
                for rest_batch, rest_index in jobs[position:]:
                    self.store.release(rest_batch, rest_index, self.worker)
                break
            outcomes.append(outcome)
        self.store.finish_many(self.worker, outcomes)

    def process(self, batch_id: str, index: int) -> Outcome | None:
        """Sign one document into ``out/``; None when it must wait (HSM unavailable)."""
        output = self.store.output_path(batch_id, index)
        if output.exists():  # signed before a crash, not yet recorded: never sign twice
            return Outcome(batch_id, index, output_sha256=file_sha256(output))
        try:
            context = self._context(batch_id)
            with self.store.input_path(batch_id, index).open("rb") as source:
                digest = write_atomically(
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
        return Outcome(batch_id, index, output_sha256=digest)

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
