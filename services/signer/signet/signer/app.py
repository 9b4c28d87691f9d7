"""The signer's FastAPI application factory."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from signet.common.auth import Authorizer
from signet.common.errors import SignetError
from signet.common.gate import GateRules, RequestGate
from signet.common.http import service_app
from signet.common.logging import configure_logging
from signet.common.policies import PolicyDirectory
from signet.signer.api import (
    activations,
    batches,
    certificates,
    completion,
    pki,
    preservation,
    seal_authorisations,
    seals,
    signing,
)
from signet.signer.api.deps import ROUTES
from signet.signer.batch.wait import FinishWatch, stop_on_exit_signals
from signet.signer.batch.worker import BatchWorker
from signet.signer.config import SignerSettings
from signet.signer.pades.appearance import warm_up
from signet.signer.pki.rotation import rollover_report
from signet.signer.service import SignerService
from sqlalchemy.exc import SQLAlchemyError


def create_app(
    settings: SignerSettings | None = None, service: SignerService | None = None
) -> FastAPI:
    settings = settings or (service.settings if service else SignerSettings())
    service = service or SignerService(settings)
    configure_logging(settings.log_level)

    workers: list[BatchWorker] = []
    workers_guard = threading.Lock()
    pauses: list[threading.Thread] = []  # `pause_batch_workers`' stoppers, joined at shutdown
    serving = threading.Event()  # the lifespan ran: this app owns the batch workers

    def start_batch_workers() -> None:
        """Batch workers start once the batch store is verified (at start, or at a later
        readiness check if the database was down then), never on a directory that is not
        the batches' own: they would fail every pending document whose upload is not there."""
        with workers_guard:
            if not serving.is_set() or workers or not settings.batch_workers:
                return  # shutting down (or not started): never a worker after the last stop
            if not service.batch_store.state().ready:
                return
            count = settings.batch_workers
            workers.extend(BatchWorker(service, service.batches) for _ in range(count))
            for worker in workers:
                worker.start()

    def pause_batch_workers() -> None:
        """The batch store went missing under running workers (a volume unmounted): stop
        them, in the background (a worker finishes its claim first, and readiness must
        answer now); `start_batch_workers` starts new ones once the store is back."""
        with workers_guard:
            stopping = list(workers)
            workers.clear()

        def stop_all() -> None:
            for worker in stopping:
                worker.stop()

        if stopping:
            pausing = threading.Thread(target=stop_all, name="batch-pause", daemon=True)
            with workers_guard:
                pauses[:] = [*(t for t in pauses if t.is_alive()), pausing]
            pausing.start()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.batch_workers = workers
        stop_on_exit_signals(app.state.batch_watch)
        # the NTP references' watch starts now (its first poll included), not at a stamp
        await run_in_threadpool(lambda: service.time)
        serving.set()
        threading.Thread(target=warm_up, name="stamp-font", daemon=True).start()
        await run_in_threadpool(start_batch_workers)
        yield
        with workers_guard:
            serving.clear()  # under the lock: no `start_batch_workers` after this one
            running, paused = list(workers), list(pauses)
            workers.clear()
        for worker in running:
            worker.stop()
        for pausing in paused:  # workers paused in the background end before the HSM closes
            await run_in_threadpool(pausing.join)
        service.close()

    async def batch_store_ready() -> None:
        await run_in_threadpool(service.batch_store.require)

    app = service_app("Signet signer", lifespan, service="signer")
    app.state.service = service
    app.state.batch_workers = []
    app.state.batch_watch = FinishWatch(
        lambda batch_id: service.batches.finished_hint(batch_id),
        lambda batch_ids: service.batches.finished_of(batch_ids),
    )
    app.include_router(pki.router)
    app.include_router(pki.installation_router)
    app.include_router(certificates.router)
    app.include_router(signing.router)
    app.include_router(activations.router)
    app.include_router(completion.router)
    app.include_router(preservation.router)
    app.include_router(batches.router, dependencies=[Depends(batch_store_ready)])
    app.include_router(seals.router)
    app.include_router(seal_authorisations.router)
    # Outermost: the caller's token and scope (`deps.ROUTES`) before any body is read.
    app.add_middleware(
        RequestGate,
        authorize=Authorizer(settings.token_registry(), ROUTES),
        rules=GateRules(
            limits={
                # a document and its appearance image, with the form's overhead
                "/v1/sign": settings.max_document_bytes + 8 * 1024 * 1024,
                "/v1/verify": settings.max_document_bytes + 1024 * 1024,
                # each document of a batch is bounded by the upload parser itself
                "/v1/batches": None,
                "/ocsp": 64 * 1024,
                "/tsa": 64 * 1024,
            },
        ),
    )

    policies = PolicyDirectory(settings.policy_dir)

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        """Readiness: the HSM answers and the CA is initialised.

        The body is what the operator turns into conditions: the CA and TSA
        certificates' expiry (CertificatesValid), the batch store (BatchStoreReady) and
        the signing policies in force.  A batch store that is missing does not make the
        pod unready: signing, timestamps and OCSP do not need it, only batches do (they
        answer 503 meanwhile).  Nor does an unsynchronised clock (``time``): OCSP, CRLs
        and B-B signatures go on; timestamps are refused with 503 ``clock_unsynchronised``
        and the operator's TimeSynchronized condition says why.
        """
        store: dict[str, object] = {
            **(await run_in_threadpool(service.batch_store.state)).report(),
            **service.time.status().report(),
        }
        if serving.is_set():
            if store["batch_store"] == "ready":
                await run_in_threadpool(start_batch_workers)
            else:
                pause_batch_workers()
        try:
            service.check_ready()
            service.tsa  # noqa: B018 - notices a rollover made by another process
            ca = service.ca
            certificates = [
                {
                    "name": name,
                    "serial": issued.record.serial,
                    "not_after": issued.record.not_after.isoformat(),
                }
                for name, issued in (("root", ca.root), ("issuing", ca.issuing), ("tsa", ca.tsa))
            ]
            certificates[-1] |= rollover_report(
                ca.tsa.record, timedelta(days=settings.tsa_rollover_margin_days)
            )
            certificates += [
                {
                    "name": f"seal {record.key_label}",
                    "serial": record.serial,
                    "not_after": record.not_after.isoformat(),
                }
                for record in await run_in_threadpool(service.registry.current_seals)
            ]
        except SignetError as exc:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "error": exc.code,
                    "reason": exc.detail,
                    **store,
                    **_start_nonce(),
                },
                status_code=503,
            )
        except SQLAlchemyError as exc:  # the registry's database: say so, not a bare 500
            return JSONResponse(
                {
                    "status": "unavailable",
                    "error": "database_unavailable",
                    "reason": str(exc.__class__.__name__),
                    **store,
                    **_start_nonce(),
                },
                status_code=503,
            )
        current = policies.current()
        return JSONResponse(
            {
                "status": "ready",
                "hsm": "reachable",
                "certificates": certificates,
                "policies": current.versions(),
                "policy_problems": sorted(current.problems.values()),
                **store,
                **_start_nonce(),
            }
        )

    return app


def _start_nonce() -> dict[str, str | None]:
    """The nonce `signet up` gave this process: its readiness check believes only an
    answer that carries it (not one from leftovers of an earlier start on the port)."""
    return {"start_nonce": os.environ.get("SIGNET_START_NONCE")}
