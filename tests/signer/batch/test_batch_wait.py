"""Waiting for a batch with one request (``?wait=N``) instead of polling its status."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from signet.common.contracts.signer import CertificateKind, SignOptions
from signet.signer.batch.store import BatchStore, Outcome
from signet.signer.batch.wait import FinishWatch
from signet.signer.batch.worker import BatchWorker
from signet.signer.database import open_registry_at
from signet.signer.service import SignerService

from tests.support.pdfs import make_pdf


def _create(client: httpx.Client, serial: str, count: int) -> str:
    response = client.post(
        "/v1/batches",
        files=[("documents", (f"{i}.pdf", make_pdf(1, title=f"Letter {i}"))) for i in range(count)],
        data={"options": json.dumps({"certificate_serial": serial, "level": "B-B"})},
    )
    assert response.status_code == 201, response.text
    batch_id: str = response.json()["id"]
    return batch_id


def test_one_waiting_request_answers_when_the_batch_finishes(
    signer_client: httpx.Client,
    signer_service: SignerService,
    batch_worker: BatchWorker,
    issue: Callable[..., str],
) -> None:
    batch_id = _create(signer_client, issue("Waiting Seal", CertificateKind.SEAL), 120)
    status = signer_client.get(f"/v1/batches/{batch_id}?wait=50").raise_for_status().json()
    assert status["state"] == "finished", "one request, no polling: it waited for the end"
    assert (status["done"], status["failed"], len(status["items"])) == (120, 0, 120)
    assert signer_service.batches.finished_hint(batch_id)
    # a finished batch answers at once, whatever the wait
    started = time.monotonic()
    again = signer_client.get(f"/v1/batches/{batch_id}?items=false&wait=50").json()
    assert again["state"] == "finished" and again["items"] == []
    assert time.monotonic() - started < 10


def test_a_wait_ends_with_the_running_status_when_nobody_signs(
    signer_client: httpx.Client, signer_service: SignerService, issue: Callable[..., str]
) -> None:
    batch_id = _create(signer_client, issue("Idle Seal", CertificateKind.SEAL), 3)
    started = time.monotonic()
    status = signer_client.get(f"/v1/batches/{batch_id}?items=false&wait=0.5").json()
    assert status["state"] == "running" and status["pending"] == 3
    assert time.monotonic() - started >= 0.5
    worker = BatchWorker(signer_service, signer_service.batches, idle_poll=0.05)
    worker.start()  # a worker comes: the same kind of request now sees the end
    try:
        status = signer_client.get(f"/v1/batches/{batch_id}?items=false&wait=50").json()
    finally:
        worker.stop()
    assert status["state"] == "finished" and status["done"] == 3


def test_a_wait_is_refused_for_an_unknown_batch_or_too_long(signer_client: httpx.Client) -> None:
    started = time.monotonic()
    assert signer_client.get("/v1/batches/0123456789abcdef?wait=30").status_code == 404
    assert time.monotonic() - started < 10, "no waiting for a batch that does not exist"
    assert signer_client.get("/v1/batches/0123456789abcdef?wait=3600").status_code == 422
    assert signer_client.get("/v1/batches/0123456789abcdef?wait=-1").status_code == 422


def test_the_marker_appears_with_the_last_outcome_only(
    tmp_path: Path, issue: Callable[..., str]
) -> None:
    """`finish_many` announces a batch once its last outcome is committed, not before."""
    store = BatchStore(open_registry_at(tmp_path / "batches.db"), tmp_path / "batches")
    serial = issue("Marker Seal", CertificateKind.SEAL)
    status, _ = store.create(
        [(f"{i}.pdf", io.BytesIO(make_pdf(1))) for i in range(3)],
        SignOptions(certificate_serial=serial),
        serial,
        max_document_bytes=10**6,
    )
    claims = store.claim("tester", 3)
    assert {c.batch_id for c in claims} == {status.id}
    store.finish_many("tester", [Outcome(status.id, c.index, error="x") for c in claims[:2]])
    assert not store.finished_hint(status.id)
    store.finish_many("tester", [Outcome(status.id, claims[2].index, error="x")])
    assert store.finished_hint(status.id)
    assert store.finished_of([status.id, "0123456789abcdef"]) == [status.id]


def test_the_watch_wakes_every_waiter_from_a_marker() -> None:
    markers: set[str] = set()
    watch = FinishWatch(markers.__contains__, lambda ids: [], tick=0.005, recheck=60)

    async def scenario() -> list[bool]:
        waiting = [asyncio.create_task(watch.wait("b1", 30)) for _ in range(3)]
        other = asyncio.create_task(watch.wait("b2", 0.2))
        await asyncio.sleep(0.05)
        assert not any(task.done() for task in waiting)
        markers.add("b1")
        results = await asyncio.gather(*waiting, other)
        return list(results)

    assert asyncio.run(scenario()) == [True, True, True, False]
    assert watch._waiters == {}, "waiters that ended are forgotten"


def test_the_watch_asks_the_database_for_batches_without_a_marker() -> None:
    """Another host finished the batch (its marker is not on this volume, or not yet
    visible): the periodic database check wakes the waiter."""
    finished: set[str] = set()
    asked: list[list[str]] = []

    def finished_of(ids: list[str]) -> list[str]:
        asked.append(ids)
        return [i for i in ids if i in finished]

    watch = FinishWatch(lambda _: False, finished_of, tick=0.005, recheck=0.05)

    async def scenario() -> bool:
        task = asyncio.create_task(watch.wait("b1", 30))
        await asyncio.sleep(0.2)
        assert not task.done()
        finished.add("b1")
        return await task

    assert asyncio.run(scenario()) is True
    assert asked and all(ids == ["b1"] for ids in asked), "one query for all awaited batches"


def test_the_watch_survives_a_database_error() -> None:
    markers: set[str] = set()
    calls: list[int] = []

    def failing(ids: list[str]) -> list[str]:
        calls.append(1)
        raise RuntimeError("database away")

    watch = FinishWatch(markers.__contains__, failing, tick=0.005, recheck=0.01)

    async def scenario() -> bool:
        task = asyncio.create_task(watch.wait("b1", 30))
        await asyncio.sleep(0.1)
        markers.add("b1")
        return await task

    assert asyncio.run(scenario()) is True
    assert calls, "the database was asked (and failed) while waiting"
