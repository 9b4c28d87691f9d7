"""The batch store's verdicts: what `BatchStoreGuard` says about the batch directory.

Apart from the guard so that the words clients see (`StoreState.summary`: never a path,
a store id or an error's text) and the 503 they get read in one place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from signet.common.errors import ServiceUnavailable

log = logging.getLogger("signet.signer.batch.guard")


class StoreHealth(StrEnum):
    READY = "ready"
    #: the database knows batches, the directory has no marker (empty, replaced, unmounted)
    MISSING = "missing"
    #: the directory's marker names another store (another volume, another installation),
    #: or the database now records another store (another replica's directory)
    MISMATCH = "mismatch"
    #: the right marker, but the newest batches' folders are not there: an older copy of
    #: the volume (a snapshot restored without the database's newer batches)
    STALE = "stale"
    #: the marker file is not a store marker (empty after a crash while it was created,
    #: edited by hand); judged again at the next check
    BAD_MARKER = "bad_marker"
    #: the database or the directory could not be read; judged again at the next check
    UNAVAILABLE = "unavailable"


#: What clients are told per verdict (the batch API's 503, ``/readyz``, the Appliance's
#: BatchStoreReady condition): never a path, a store id or an error's text.
_SUMMARY = {
    StoreHealth.READY: "the batch directory is the store of the database's batches",
    StoreHealth.MISSING: "the batch directory has no store marker but the database lists "
    "batches: the volume is empty, replaced or not mounted",
    StoreHealth.MISMATCH: "the batch directory belongs to another batch store than the "
    "one the database's batches were written to",
    StoreHealth.STALE: "the batch directory lacks the folders of the newest batches: an "
    "older copy of the volume than the database",
    StoreHealth.BAD_MARKER: "the batch directory's store marker cannot be read (empty or "
    "not a store marker)",
    StoreHealth.UNAVAILABLE: "the batch store could not be checked",
}
_DETAILS = "; details in the signer's log and `signet signer batch-store status`"


@dataclass(frozen=True)
class StoreState:
    health: StoreHealth
    directory: Path
    store_id: str | None = None
    #: for the log and the CLI (paths, store ids, what to do); `UNAVAILABLE`: the
    #: exception's class name only
    problem: str = ""

    @property
    def ready(self) -> bool:
        return self.health is StoreHealth.READY

    @property
    def summary(self) -> str:
        """The verdict in a sentence fit for a client: no path, id or error text."""
        summary = _SUMMARY[self.health]
        if self.health is StoreHealth.UNAVAILABLE and self.problem:
            summary += f" ({self.problem.rsplit(': ', 1)[-1]})"  # the class name
        return summary if self.ready else summary + _DETAILS

    def report(self) -> dict[str, str]:
        """The readiness fields (what the operator reads for `BatchStoreReady`): the
        verdict and its summary, nothing about the volume (``/readyz`` needs no token)."""
        report = {"batch_store": self.health.value}
        if not self.ready:
            report["batch_store_problem"] = self.summary
        return report

    def details(self) -> dict[str, str]:
        """Everything, for the admin at the CLI (`signet signer batch-store status`)."""
        details = {"batch_store": self.health.value, "batch_directory": str(self.directory)}
        if self.store_id:
            details["batch_store_id"] = self.store_id
        if self.problem:
            details["batch_store_problem"] = self.problem
        return details


class BatchStoreUnavailable(ServiceUnavailable):
    """Batches are refused: their documents are not where the database says (503)."""

    code = "batch_store_missing"

    def __init__(self, state: StoreState) -> None:
        super().__init__(
            f"batch store unavailable ({state.health.value}); see the BatchStoreReady "
            "condition or the signer's readiness"
        )
        self.state = state


def unavailable(directory: Path, exc: BaseException, doing: str) -> StoreState:
    """`UNAVAILABLE` for `exc`: logged in full (a database error's text names hosts and
    SQL), the state's problem carries the class name only."""
    log.error("batch store %s: cannot %s: %s: %s", directory, doing, type(exc).__name__, exc)
    return StoreState(
        StoreHealth.UNAVAILABLE,
        directory,
        problem=f"cannot {doing}: {type(exc).__name__}",
    )
