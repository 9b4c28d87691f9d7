"""The thread that works through queued batch items in one signer process.

Each signer process (uvicorn worker) runs one, so a batch uses every core
the signer has; they coordinate only through `BatchStore.claim`.  The worker
appends each claimed group's signed documents to its own pack in the batch
(`signet.signer.batch.results.Pack`); beside it a committer thread makes the
group durable (one fsync of the pack) and records it in one transaction while
the worker signs the next group: the fsync overlaps with signing
(`signet.signer.batch.committer`).  An idle
worker watches the store's queue marker (a file every new batch touches), so
the processes that did not receive the upload start within milliseconds too;
the database poll is the fallback for batches created on another host.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from signet.common.contracts.signer import SignOptions
from signet.common.errors import ServiceUnavailable, SignetError
from signet.hsm import HsmUnavailable
from signet.signer.batch.committer import DISK_FULL, DISK_FULL_WAIT, Committer, Group
from signet.signer.batch.results import Pack, Packed
from signet.signer.batch.store import (
    CLAIM_LEASE,
    BatchImageUnreadable,
    BatchStore,
    Claim,
    Outcome,
    this_worker,
)
from signet.signer.pki.ca import Issued
from signet.signer.service import SignerService

log = logging.getLogger(__name__)

#: How long a batch's key and options are reused before the certificate's status
#: (revoked? expired?) is read again: a revocation stops a running batch within this.
CONTEXT_TTL = 2.0
#: Items a worker takes at a time: they are made durable together (one fsync of the
#: pack) and recorded in one transaction.  Larger groups amortise more; smaller ones balance
#: the last documents of a batch better across processes.
CLAIM_SIZE = 32
#: How often an idle worker looks at the queue marker (a stat, no database query).
MARKER_POLL = 0.01
#: Packs a worker keeps open (one per batch it works on); the least recently used
#: beyond this is closed after its last group is committed, and a new one started
#: should that batch come back.
OPEN_PACKS = 8
#: A group's claims older than this are renewed (`BatchStore.renew`) before its next
#: document: when it starts, if it waited behind a long group, and between its documents
#: while it runs for long.  A fifth of the lease: `recover` never takes back a group a
#: live worker is signing, unless one document alone outlasts the rest of the lease.
RENEW_AFTER = CLAIM_LEASE.total_seconds() / 5
#: The next group is claimed ahead only after a group of at most this many input bytes:
#: ahead of large documents the claim's wait is nothing beside signing, and the group
#: claimed ahead would only wait, kept from the other workers.
AHEAD_BYTES = 8 * 1024 * 1024


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service, self.store = service, store
        self.idle_poll, self.recover_every = idle_poll, recover_every
        #: Seconds, for claim ages (`RENEW_AFTER`): injectable so tests need not wait.
        self.clock = clock
        self.worker = this_worker(f"{id(self):x}")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._contexts: dict[str, _Context] = {}
        # written by the worker thread only; closed by the committer (after their last
        # group is durable and recorded), never reopened: a new pack instead
        self._packs: dict[str, Pack] = {}
        self.committer = Committer(
            store, service.batch_store, self.worker, self._packs, pause=self._pause, wake=self.wake
        )
        # the committer's queues: signed groups to it, groups to sign again from it
        self._groups, self._retries = self.committer.groups, self.committer.retries
        # the next group's claim, made while this one is signed (worker thread only)
        self._claimer = ThreadPoolExecutor(1, thread_name_prefix="batch-claim")
        self._ahead: Future[list[Claim]] | None = None
        # the failed attempts of the retried claims being signed (worker thread only)
        self._retried: dict[tuple[str, int], int] = {}
        # no claims before this (`time.monotonic`): the batch volume was full
        self._paused_until = 0.0
        # when the group being signed was claimed (or its claims last renewed), by `clock`;
        # for the group claimed ahead: when that claim was started (it can only be younger)
        self._held_since = self._ahead_since = clock()
        # the upload spools of the batches this worker signs from (worker thread only)
        self._spools: dict[str, BinaryIO | None] = {}

    def start(self) -> None:
        _freeze_startup_heap()
        self.committer.start()
        self._thread = threading.Thread(target=self._run, name="batch-worker", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A batch was just created here: no need to wait for the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        self.committer.join(max(0.0, deadline - time.monotonic()))  # ends after the worker

    def _pause(self, seconds: float) -> None:
        """Claim nothing for `seconds` (the batch volume is full)."""
        self._paused_until = time.monotonic() + seconds

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._release_ahead()
            self._claimer.shutdown(wait=True)
            self._groups.put(None)  # the committer records what was signed, then ends
            for spool in self._spools.values():
                if spool is not None:
                    spool.close()

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
                claims = self._next_claims() if self._may_claim() else []
                if claims:
                    self._work(claims)
            except Exception:  # the database may be briefly unavailable; never die
                log.exception("batch queue unavailable")
                self._stop.wait(1.0)
                continue
            if not claims:
                self._idle(mark)

    def _may_claim(self) -> bool:
        """The store is ready and the volume was not found full a moment ago; while it was,
        a group claimed ahead is handed back to the others too."""
        if time.monotonic() < self._paused_until:
            self._release_ahead()
            return False
        return self.service.batch_store.state().ready

    def _next_claims(self) -> list[Claim]:
        """The next group: the one claimed ahead while the last was signed, else claimed
        now; in both cases the claim of the group after it starts in the background.

        A claim is a database write that waits for the other processes' commits (3 ms on
        average during a 1-page batch, against 45 ms to sign a group): ahead, that wait
        overlaps with signing.  A worker holds at most one group ahead; it is handed
        back when the worker stops, or recovered as any claim of a dead worker.  No
        group is claimed ahead of one larger than `AHEAD_BYTES`: there is nothing to
        overlap worth keeping documents from the other workers for.  A group to sign
        again (its pack's fsync failed) comes first, its claims renewed before its first
        document.
        """
        try:
            retry = self._retries.get_nowait()
        except queue.Empty:
            pass
        else:
            self._retried.update(retry.attempts)
            self._held_since = self.clock() - RENEW_AFTER
            return retry.claims
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            claims, self._held_since = ahead.result(), self._ahead_since
        else:
            self._held_since = self.clock()
            claims = self.store.claim(self.worker, CLAIM_SIZE)
        if claims and not self._stop.is_set() and _input_bytes(claims) <= AHEAD_BYTES:
            self._ahead_since = self.clock()
            self._ahead = self._claimer.submit(self.store.claim, self.worker, CLAIM_SIZE)
        return claims

    def _keep(self, claims: list[Claim]) -> None:
        """Renew the group's claims if they are older than `RENEW_AFTER` (it waited behind
        a long group, or has run long): its lease starts again, so `recover` does not
        hand the group to another worker while this one signs it."""
        now = self.clock()
        if now - self._held_since < RENEW_AFTER:
            return
        try:
            renewed = self.store.renew(self.worker, claims)
        except Exception:  # the group is signed regardless: at worst its lease runs out
            log.warning("renewing %d batch claims failed", len(claims), exc_info=True)
            return
        self._held_since = now
        if renewed < len(claims):
            log.warning(
                "%d of %d claims were taken back before renewal", len(claims) - renewed, len(claims)
            )

    def _release_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return
        try:
            claims = ahead.result()
        except Exception:  # nothing was claimed, or the lease will hand it back
            log.warning("claim ahead failed", exc_info=True)
            return
        self.store.release_many(self.worker, claims)

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
        """Sign a claimed group into this worker's packs and hand it to the committer."""
        outcomes: list[Outcome] = []
        written: list[tuple[Claim, Packed]] = []
        retired: list[Pack] = []
        keys = [(claim.batch_id, claim.index) for claim in claims]
        attempts = {key: self._retried.pop(key) for key in keys if key in self._retried}
        for position, claim in enumerate(claims):
            if not self._stop.is_set():
                self._keep(claims)
            result = None if self._stop.is_set() else self._sign(claim, retired)
            if result is None:  # postponed (HSM down, disk full) or stopping: hand the rest back
                self.store.release_many(self.worker, claims[position:])
                break
            if isinstance(result, Outcome):
                outcomes.append(result)
            else:
                written.append((claim, result))
        self._groups.put(Group(written, outcomes, retired, attempts))

    def _pack(self, batch_id: str, retired: list[Pack]) -> Pack:
        """This worker's open pack in the batch, started on first use."""
        pack = self._packs.pop(batch_id, None)
        if pack is not None and pack.broken is not None:
            retired.append(pack)  # closed once the groups before this one are recorded
            pack = None
        if pack is None:
            pack = Pack(self.store.output_folder(batch_id))
            if len(self._packs) >= OPEN_PACKS:
                oldest = next(iter(self._packs))
                retired.append(self._packs.pop(oldest))
        self._packs[batch_id] = pack  # most recently used last
        return pack

    def _sign(self, claim: Claim, retired: list[Pack]) -> Outcome | Packed | None:
        """Sign one document into this worker's pack; an `Outcome` when it failed; None
        when it must wait (HSM unavailable, batch store not ready, batch volume full)."""
        batch_id, index = claim.batch_id, claim.index
        try:
            with self.service.batch_store.in_use():  # store gone: postponed, never failed
                context = self._context(batch_id)
                with self.store.open_input(claim, self._spool(batch_id)) as source:
                    return self._pack(batch_id, retired).write(
                        lambda target: self.service.engine.sign_stream(
                            source, target, context.issued, context.options, context.image
                        )
                    )
        except (HsmUnavailable, ServiceUnavailable) as exc:
            log.warning("batch %s item %d postponed: %s", batch_id, index, exc)
            self._stop.wait(1.0)
            return None
        except SignetError as exc:
            return Outcome(batch_id, index, error=exc.detail)
        except BatchImageUnreadable as exc:  # the store is ready: the image itself is gone
            log.error("%s", exc)
            return Outcome(batch_id, index, error=exc.detail)
        except OSError as exc:
            if exc.errno not in DISK_FULL:
                return _unexpected(claim, exc)
            self._pause(DISK_FULL_WAIT)
            log.warning(
                "batch volume full (%s): batch %s item %d and the rest of its group handed "
                "back, none claimed for %.0f s: free space on the batch volume",
                exc.strerror,
                batch_id,
                index,
                DISK_FULL_WAIT,
            )
            return None
        except Exception as exc:
            return _unexpected(claim, exc)

    def _spool(self, batch_id: str) -> BinaryIO | None:
        """The batch's upload spool, kept open while this worker signs from it."""
        if batch_id not in self._spools:
            if len(self._spools) >= OPEN_PACKS:
                oldest = self._spools.pop(next(iter(self._spools)))
                if oldest is not None:
                    oldest.close()
            self._spools[batch_id] = self.store.open_spool(batch_id)
        return self._spools[batch_id]

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
                # has_image and no image: raised (postponed or failed), never sealed without
                self.store.image(batch_id) if record.has_image else None,
                now,
            )
            if len(self._contexts) > 64:
                self._contexts.clear()
            self._contexts[batch_id] = context
        return context


_frozen = threading.Lock()
_frozen_once: list[bool] = []


def _freeze_startup_heap() -> None:
    """Leave what the process holds when its first batch worker starts (the app, the ORM,
    pyHanko, their caches: about 160,000 objects) out of the cyclic collector: a full
    collection over it held the GIL, and so stopped signing, for about 180 ms every few
    batches.  Once per process: workers stopped and started again (a batch store that
    went missing and came back) do not pin what was made in between."""
    with _frozen:
        if not _frozen_once:
            gc.freeze()
            _frozen_once.append(True)


def _unexpected(claim: Claim, exc: Exception) -> Outcome:
    log.exception("batch %s item %d failed unexpectedly", claim.batch_id, claim.index)
    return Outcome(claim.batch_id, claim.index, error=f"internal error ({type(exc).__name__})")


def _input_bytes(claims: list[Claim]) -> int:
    """The claimed documents' size (staged before the spool: unknown, counted as 0)."""
    return sum(claim.input_size or 0 for claim in claims)
