"""Seal many files in-process on every core: `signet seal-batch` and the engine benchmark.

One Python process signs on one core (pyHanko's PDF work holds the GIL), so
the pool has one *process* per core, each with its own `SignerService`: its
own PKCS#11 session and registry connection, no shared mutable state.
Processes are spawned, never forked: a PKCS#11 module initialised in the
parent must not be inherited by a child.  Only file paths cross process
boundaries; documents are read and written by the worker that signs them.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from signet.common.contracts.signer import SignOptions
from signet.common.errors import SignetError
from signet.signer.batch.durable import write_atomically
from signet.signer.config import SignerSettings
from signet.signer.pki.ca import Issued
from signet.signer.service import SignerService


@dataclass(frozen=True)
class SealJob:
    source: Path
    target: Path


@dataclass(frozen=True)
class SealResult:
    job: SealJob
    error: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Worker:
    service: SignerService
    issued: Issued
    options: SignOptions
    image: bytes | None


_worker: _Worker | None = None


def _initialise(
    settings: SignerSettings, serial: str, options_json: str, image: bytes | None
) -> None:
    global _worker  # one signing context per pool process
    service = SignerService(settings)
    _worker = _Worker(
        service,
        service.ca.signing_material(serial),
        SignOptions.model_validate_json(options_json),
        image,
    )


def seal_one(job: SealJob) -> SealResult:
    worker = _worker
    assert worker is not None, "pool process not initialised"
    start = time.perf_counter()
    try:
        with job.source.open("rb") as source:
            write_atomically(
                job.target,
                lambda target: worker.service.engine.sign_stream(
                    source, target, worker.issued, worker.options, worker.image
                ),
            )
    except SignetError as exc:
        return SealResult(job, exc.detail, time.perf_counter() - start)
    except OSError as exc:
        return SealResult(job, f"cannot read or write the file: {exc}", time.perf_counter() - start)
    return SealResult(job, None, time.perf_counter() - start)


class BulkSealer:
    """A pool of signing processes for one key and one set of options."""

    def __init__(
        self,
        settings: SignerSettings,
        certificate_serial: str,
        options: SignOptions,
        *,
        image: bytes | None = None,
        processes: int | None = None,
    ) -> None:
        self.processes = max(1, processes or os.cpu_count() or 1)
        context = multiprocessing.get_context("spawn")
        self._pool = context.Pool(
            self.processes,
            initializer=_initialise,
            initargs=(settings, certificate_serial, options.model_dump_json(), image),
        )

    def run(
        self, jobs: Iterable[SealJob], on_result: Callable[[SealResult], None] | None = None
    ) -> Iterator[SealResult]:
        """Results in completion order; small chunks keep every process busy to the end."""
        for result in self._pool.imap_unordered(seal_one, jobs, chunksize=4):
            if on_result is not None:
                on_result(result)
            yield result

    def close(self) -> None:
        self._pool.close()
        self._pool.join()

    def __enter__(self) -> BulkSealer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
