"""The batch committer: makes each signed group durable, records it, retries what failed.

A `BatchWorker` signs a group of claimed documents into its packs and hands the group
here (`Group`, through a queue of one); this thread fsyncs the packs and records the
outcomes in one transaction while the worker signs the next group, so the fsync overlaps
with signing.  A pack whose fsync fails is never trusted again: its documents are handed
back (volume gone or full) or signed again into a new pack (`Retry`, back to the worker)
until `SYNC_ATTEMPTS` packs failed them.  Split from the worker so that each of the two
threads' duties reads on its own; they share only the queues and the packs named here.
"""

from __future__ import annotations

import errno
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from signet.signer.batch.guard import BatchStoreGuard
from signet.signer.batch.results import Pack, Packed
from signet.signer.batch.store import BatchStore, Claim, Outcome

log = logging.getLogger(__name__)

#: Packs a document is signed into before it fails when each one's fsync fails (EIO and
#: the like: after a failed fsync nothing in that pack is trusted, so its documents are
#: signed again into a new pack).  A disk that fails this many in a row is not healing.
SYNC_ATTEMPTS = 3
#: How long a worker claims nothing after the batch volume was full (ENOSPC, EDQUOT): the
#: documents are handed back, never failed, and tried again once space may be free.
DISK_FULL_WAIT = 5.0
#: Errors that say the batch volume is full: documents are postponed, not failed.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
#: fsync errors no new pack cures: the file system cannot sync such a file at all.
_CANNOT_SYNC = frozenset({errno.EINVAL, errno.EBADF, errno.EOPNOTSUPP})


@dataclass(frozen=True)
class Group:
    """A signed claim on its way to the committer: documents written into packs (to sync,
    then record), outcomes with nothing to sync (failures), packs to close afterwards."""

    written: list[tuple[Claim, Packed]]
    outcomes: list[Outcome]
    retired: list[Pack]
    #: (batch, index) -> packs the item was already signed into whose fsync failed
    attempts: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass(frozen=True)
class Retry:
    """Claims still held whose pack could not be synced: to be signed again (committer to
    worker), with the failed attempts so far."""

    claims: list[Claim]
    attempts: dict[tuple[str, int], int]


class Committer:
    """The committing half of one batch worker (see the module docstring).

    `packs` is the worker's dict of open packs: written by the worker thread only, closed
    here once the worker has ended (`groups` received None).  `pause(seconds)` stops the
    worker claiming (the volume is full); `wake()` makes it take a `Retry` at once.
    """

    def __init__(
        self,
        store: BatchStore,
        guard: BatchStoreGuard,
        worker: str,
        packs: dict[str, Pack],
        *,
        pause: Callable[[float], None],
        wake: Callable[[], None],
    ) -> None:
        self.store, self.guard, self.worker, self.packs = store, guard, worker, packs
        self.pause, self.wake = pause, wake
        # one group waits while another is committed: bounded, and signing never waits
        # for an fsync unless the disk is slower than signing
        self.groups: queue.Queue[Group | None] = queue.Queue(maxsize=1)
        # groups to sign again (their pack's fsync failed), for the worker; taken before
        # any new claim, and handed back here once the worker ended
        self.retries: queue.SimpleQueue[Retry] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="batch-commit", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        while (group := self.groups.get()) is not None:
            try:
                self.commit(group)
            except Exception:  # the claims stay ours until the lease expires: then the
                # next worker signs them again; what we wrote stays unreferenced
                log.exception("recording %d batch items failed", len(group.written))
            for pack in group.retired:
                pack.close()
        for pack in self.packs.values():  # the worker has ended: nothing writes them now
            pack.close()
        while True:  # groups to sign again that the worker will not take any more
            try:
                retry = self.retries.get_nowait()
            except queue.Empty:
                break
            try:
                self.store.release_many(self.worker, retry.claims)
            except Exception:  # the lease hands them back
                log.warning("handing back %d batch items failed", len(retry.claims), exc_info=True)

    def commit(self, group: Group) -> None:
        """Make a signed group durable together, then record it in one transaction.

        One fsync per pack the group wrote into (one, unless the claim spans batches),
        and one of ``out/`` the first time a pack is synced; only then are the items
        recorded with where their documents are (`finish_many`).  A worker killed
        before that leaves bytes no row points to: the next worker signs those
        documents again into its own pack.  A pack that cannot be synced is retired
        (the worker starts a new one) and its documents are never recorded from it:
        `_unsynced` says what becomes of them.
        """
        outcomes = list(group.outcomes)
        failed: dict[str, tuple[OSError, bool]] = {}
        for pack in {id(packed.pack): packed.pack for _, packed in group.written}.values():
            if pack.broken is not None:  # an earlier group's fsync failed: not this one's
                failed[pack.name] = (pack.broken, False)
                continue
            try:
                pack.sync()
            except OSError as exc:
                # after a failed fsync the kernel may have dropped pages and a later one
                # may succeed regardless: nothing in this pack is trusted any more
                failed[pack.name] = (exc, True)
                pack.broken = exc
        unsynced: dict[str, list[Claim]] = {}
        for claim, packed in group.written:
            if packed.pack.name in failed:
                unsynced.setdefault(packed.pack.name, []).append(claim)
            else:
                outcomes.append(
                    Outcome(
                        claim.batch_id,
                        claim.index,
                        output_sha256=packed.sha256,
                        output_pack=packed.pack.name,
                        output_offset=packed.offset,
                        output_size=packed.size,
                    )
                )
        for name, claims in unsynced.items():
            outcomes += self._unsynced(name, claims, *failed[name], group.attempts)
        for attempt in range(3):  # the signed documents are durable: only the record is missing
            try:
                self.store.finish_many(self.worker, outcomes)
                return
            except Exception:
                if attempt == 2:
                    raise
                log.warning("recording batch outcomes failed; retrying", exc_info=True)
                time.sleep(0.5)

    def _unsynced(
        self,
        pack: str,
        claims: list[Claim],
        error: OSError,
        counted: bool,
        attempts: dict[tuple[str, int], int],
    ) -> list[Outcome]:
        """What becomes of documents whose pack could not be synced; the failures to record.

        - The store is not ready any more (the volume unmounted or replaced): not the
          documents' fault, nor the disk's; handed back, signed again once it is back.
        - The volume is full (ENOSPC, EDQUOT): handed back too, and this worker claims
          nothing for `DISK_FULL_WAIT` (as with the HSM down: postponed, never failed).
        - Otherwise (EIO and the like) the disk failed this pack: the claims stay this
          worker's and are signed again into a new pack (`_retries`, before any new
          claim: the attempts are counted exactly, no other worker takes them meanwhile),
          until `SYNC_ATTEMPTS` packs failed them, or at once if the file system cannot
          sync at all; then they fail with the reason.  An attempt is counted only for
          the group whose own fsync failed (`counted`), not for one written into the
          pack before the worker knew it was broken.
        """
        state = self.guard.recheck()
        if not state.ready or error.errno in DISK_FULL:
            if state.ready:
                self.pause(DISK_FULL_WAIT)
                log.warning(
                    "batch volume full: pack %s cannot be synced (%s); %d documents handed "
                    "back, none claimed for %.0f s: free space on the batch volume",
                    pack,
                    error.strerror,
                    len(claims),
                    DISK_FULL_WAIT,
                )
            else:
                log.warning(
                    "pack %s cannot be synced (%s) and the batch store is not ready (%s): "
                    "%d documents handed back",
                    pack,
                    error.strerror,
                    state.health.value,
                    len(claims),
                )
            self.store.release_many(self.worker, claims)
            return []
        failures, again, retried = [], [], {}
        for claim in claims:
            key = (claim.batch_id, claim.index)
            tried = attempts.get(key, 0) + counted
            if error.errno in _CANNOT_SYNC or tried >= SYNC_ATTEMPTS:
                log.error("batch %s item %d not stored: %s", claim.batch_id, claim.index, error)
                detail = (
                    f"internal error (cannot store the signed document: {error.strerror}; "
                    f"{max(tried, 1)} attempt{'s' if tried > 1 else ''})"
                )
                failures.append(Outcome(claim.batch_id, claim.index, error=detail))
            else:
                again.append(claim)
                retried[key] = tried
        if again:
            log.warning(
                "pack %s cannot be synced (%s): %d documents are signed again into a new pack",
                pack,
                error.strerror,
                len(again),
            )
            self.retries.put(Retry(again, retried))
            self.wake()
        return failures
