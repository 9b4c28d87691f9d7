"""The batch store guard: a batch directory that is not the batches' own is reported and
refused (readiness and a 503 on the batch API), an intact one works, and a fresh install
only initialises its marker."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from signet.common.contracts.signer import CertificateKind, SignatureLevel, SignOptions
from signet.signer.app import create_app
from signet.signer.batch.guard import (
    MARKER,
    BatchStoreGuard,
    BatchStoreUnavailable,
    StoreHealth,
    StoreState,
)
from signet.signer.batch.queue import BatchRecord, Claim
from signet.signer.batch.store import BatchStore
from signet.signer.batch.worker import CLAIM_SIZE, BatchWorker
from signet.signer.config import SignerSettings
from signet.signer.database import open_registry, open_registry_at
from signet.signer.registry import Registry
from signet.signer.service import SignerService
from sqlalchemy.exc import OperationalError

from tests.conftest import SERVICE_TOKEN
from tests.signer.test_health_and_cli import _signet
from tests.support.pdfs import make_pdf


def _add_batch(registry: Registry, batch_id: str, directory: Path | None = None) -> None:
    """A batch row (and its folder, when `directory` is given), as an upload leaves them."""
    with registry.session() as session, session.begin():
        session.add(
            BatchRecord(
                id=batch_id,
                request_sha256="0" * 64,
                options_json="{}",
                has_image=False,
                certificate_serial="01",
                level="B-B",
                total=1,
                created_at=datetime.now(UTC),
            )
        )
    if directory is not None:
        (directory / batch_id / "in").mkdir(parents=True)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return open_registry_at(tmp_path / "signer.db")


def test_a_fresh_install_only_initialises_its_marker(registry: Registry, tmp_path: Path) -> None:
    directory = tmp_path / "batches"
    state = BatchStoreGuard(registry, directory).open()
    assert state.health is StoreHealth.READY and state.store_id
    marker = json.loads((directory / MARKER).read_text())
    assert marker["store_id"] == state.store_id
    assert [p.name for p in directory.iterdir()] == [MARKER]  # no temporary left behind
    assert state.details() == {
        "batch_store": "ready",
        "batch_directory": str(directory),
        "batch_store_id": state.store_id,
    }
    assert state.report() == {"batch_store": "ready"}  # /readyz: nothing about the volume
    # A restart with batches written meanwhile: the same store, nothing rewritten.
    _add_batch(registry, "b1", directory)
    again = BatchStoreGuard(registry, directory).open()
    assert again.ready and again.store_id == state.store_id


def test_an_emptied_or_replaced_directory_is_missing_and_refused(
    registry: Registry, tmp_path: Path
) -> None:
    directory = tmp_path / "batches"
    first = BatchStoreGuard(registry, directory).open()
    _add_batch(registry, "b1", directory)
    # The pod restarted on a fresh emptyDir (or the claim was not mounted).
    directory.rename(tmp_path / "old-volume")
    guard = BatchStoreGuard(registry, directory)
    state = guard.state()
    assert state.health is StoreHealth.MISSING and state.store_id == first.store_id
    assert "no store marker" in state.problem and str(first.store_id) in state.problem
    assert state.report()["batch_store"] == "missing"
    with pytest.raises(Exception, match=r"batch store unavailable \(missing\)") as refused:
        guard.require()
    assert getattr(refused.value, "status_code", None) == 503
    assert getattr(refused.value, "code", None) == "batch_store_missing"
    assert not (directory / MARKER).exists()  # never initialised over the batches' rows
    # The right volume mounted again, and the signer restarted: served again.
    (tmp_path / "old-volume").rename(directory)
    assert BatchStoreGuard(registry, directory).state().ready


def test_another_stores_volume_is_a_mismatch(registry: Registry, tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    BatchStoreGuard(registry, ours).open()
    _add_batch(registry, "b1", ours)
    other = BatchStoreGuard(open_registry_at(tmp_path / "other.db"), theirs).open()
    state = BatchStoreGuard(registry, theirs).open()
    assert state.health is StoreHealth.MISMATCH
    assert f"belongs to store {other.store_id}" in state.problem


def test_a_volume_lost_under_a_running_signer_is_noticed(
    registry: Registry, tmp_path: Path
) -> None:
    directory = tmp_path / "batches"
    guard = BatchStoreGuard(registry, directory)
    assert guard.state().ready
    _add_batch(registry, "b1", directory)
    (directory / MARKER).unlink()
    state = guard.state()
    assert state.health is StoreHealth.MISSING and "while this signer ran" in state.problem
    (directory / MARKER).write_text(json.dumps({"store_id": "f" * 32}))
    assert guard.state().health is StoreHealth.MISMATCH


def test_batches_from_before_the_guard_adopt_their_directory_or_report_it_missing(
    registry: Registry, tmp_path: Path
) -> None:
    """An upgrade: rows and folders but no marker and no record yet."""
    intact, emptied = tmp_path / "intact", tmp_path / "emptied"
    _add_batch(registry, "old", intact)
    adopted = BatchStoreGuard(registry, intact).open()
    assert adopted.ready and (intact / MARKER).exists()

    other = open_registry_at(tmp_path / "cluster.db")  # a cluster's batches on a lost emptyDir
    _add_batch(other, "lost")
    emptied.mkdir()
    guard = BatchStoreGuard(other, emptied)
    state = guard.open()
    assert state.health is StoreHealth.MISSING and "holds none of their folders" in state.problem
    assert "signet signer batch-store adopt" in state.problem
    # Another installation's marked volume is not taken for theirs either.
    assert BatchStoreGuard(other, intact).open().health is StoreHealth.MISMATCH
    # The admin accepts the new volume: that store from now on, for every process.
    accepted = guard.adopt()
    assert accepted.ready and BatchStoreGuard(other, emptied).open().store_id == accepted.store_id


def test_replicas_initialising_one_shared_volume_agree_on_its_store(tmp_path: Path) -> None:
    registry = open_registry_at(tmp_path / "signer.db")
    directory = tmp_path / "shared"
    results: list[str | None] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        guard = BatchStoreGuard(registry, directory)
        barrier.wait()
        results.append(guard.open().store_id)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and results[0] is not None
    assert json.loads((directory / MARKER).read_text())["store_id"] == results[0]


def test_a_file_system_without_hard_links_still_gets_one_marker(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*_: object) -> None:
        raise PermissionError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    directory = tmp_path / "smb"
    state = BatchStoreGuard(registry, directory).open()
    assert (
        state.ready and json.loads((directory / MARKER).read_text())["store_id"] == state.store_id
    )
    assert BatchStoreGuard(registry, directory).open().store_id == state.store_id
    assert [p.name for p in directory.iterdir()] == [MARKER]


def test_the_signer_reports_the_store_and_refuses_batches_until_it_is_back(
    signer_settings: SignerSettings, tmp_path: Path
) -> None:
    directory = tmp_path / "volume"
    settings = signer_settings.model_copy(
        update={
            "home": tmp_path / "home",
            "batch_directory": directory,
            "service_token": SecretStr(SERVICE_TOKEN),
        }
    )
    auth = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    with TestClient(create_app(settings)) as client:  # a fresh install
        assert client.get("/readyz").json()["batch_store"] == "ready"
        assert client.get("/v1/batches/nope", headers=auth).status_code == 404
        workers = client.app.state.batch_workers  # type: ignore[attr-defined]
        assert len(workers) == 1
        _add_batch(open_registry(settings.resolved_database_url()), "b1", directory)
        # The volume goes away under the running signer: the next readiness check says
        # so and stops the worker; back, and a new worker starts.
        (directory / MARKER).rename(tmp_path / "marker")
        assert client.get("/readyz").json()["batch_store"] == "missing"
        assert workers == [] and client.get("/v1/batches/b1", headers=auth).status_code == 503
        (tmp_path / "marker").rename(directory / MARKER)
        assert client.get("/readyz").json()["batch_store"] == "ready"
        assert len(workers) == 1 and client.get("/v1/batches/b1", headers=auth).status_code == 200
    directory.rename(tmp_path / "elsewhere")  # restarted without its volume

    with TestClient(create_app(settings)) as client:
        body = client.get("/readyz").json()
        assert body["batch_store"] == "missing" and "no store marker" in body["batch_store_problem"]
        assert str(directory) not in json.dumps(body)  # no path to an unauthenticated caller
        for response in (
            client.get("/v1/batches/b1", headers=auth),
            client.get("/v1/batches/b1/results", headers=auth),
            client.post("/v1/batches", headers=auth, files={"documents": ("a.pdf", b"%PDF")}),
        ):
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "batch_store_missing"
        assert client.get("/v1/batches/b1").status_code == 401  # still behind the token
        assert client.app.state.batch_workers == []  # type: ignore[attr-defined]
        assert not directory.exists() or not (directory / MARKER).exists()


def test_batch_store_commands(signer_settings: SignerSettings, tmp_path: Path) -> None:
    home = tmp_path / "home"
    registry = open_registry_at(home / "signer" / "signer.db")
    _add_batch(registry, "lost")
    status = _signet(home, "signer", "batch-store", "status")
    assert status.returncode == 1 and '"batch_store": "missing"' in status.stdout
    refused = _signet(home, "signer", "batch-store", "adopt")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    adopted = _signet(home, "signer", "batch-store", "adopt", "--yes")
    assert adopted.returncode == 0, adopted.stderr
    assert _signet(home, "signer", "batch-store", "status").returncode == 0


# -- the review's fixes ---------------------------------------------------------------------


@pytest.fixture
def own_service(
    signer_service: SignerService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> SignerService:
    """The session's signer with a batch store and guard of its own database and directory
    (other tests' batches are not claimable, and the session's directory stays put)."""
    registry = open_registry_at(tmp_path / "batches.db")
    monkeypatch.setattr(signer_service, "batches", BatchStore(registry, tmp_path / "batches"))
    monkeypatch.setattr(
        signer_service, "batch_store", BatchStoreGuard(registry, tmp_path / "batches")
    )
    return signer_service


def _batch_of(service: SignerService, serial: str, count: int) -> str:
    status, _ = service.batches.create(
        [(f"d{i}.pdf", io.BytesIO(make_pdf(1, title=f"D {i}"))) for i in range(count)],
        SignOptions(certificate_serial=serial, level=SignatureLevel.B_B),
        serial,
        max_document_bytes=10**6,
    )
    return status.id


def _states(service: SignerService, batch_id: str) -> set[str]:
    return {item.state for item in service.batches.status(batch_id).items}


def test_a_worker_postpones_pending_documents_while_the_store_is_gone(
    own_service: SignerService,
    issue: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The volume unmounted under a worker that no readiness check reached: its claims are
    handed back, not failed, and the batch is sealed once the volume is back."""
    serial = issue("Volume Seal", CertificateKind.SEAL)
    store, guard = own_service.batches, own_service.batch_store
    assert guard.state().ready
    batch_id = _batch_of(own_service, serial, 40)
    worker = BatchWorker(own_service, store)
    claims = store.claim(worker.worker, CLAIM_SIZE)
    store.directory.rename(tmp_path / "unmounted")
    worker._work(claims)  # the store is checked before the first document
    group = worker._groups.get_nowait()
    assert group is not None and group.outcomes == [] and group.written == []
    assert _states(own_service, batch_id) == {"pending"}
    # The volume goes between the check and the document (a file error): postponed too.
    with monkeypatch.context() as patch:
        patch.setattr(guard, "require", lambda: None)
        worker._work(store.claim(worker.worker, CLAIM_SIZE))
    group = worker._groups.get_nowait()
    assert group is not None and group.outcomes == [] and group.written == []
    assert _states(own_service, batch_id) == {"pending"}
    (tmp_path / "unmounted").rename(store.directory)
    while claims := store.claim(worker.worker, CLAIM_SIZE):
        worker._work(claims)
        group = worker._groups.get_nowait()
        assert group is not None
        worker.committer.commit(group)
    assert _states(own_service, batch_id) == {"done"}


def test_a_worker_claims_nothing_while_the_store_is_gone(
    own_service: SignerService,
    issue: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    serial = issue("Idle Seal", CertificateKind.SEAL)
    store, guard = own_service.batches, own_service.batch_store
    assert guard.state().ready
    batch_id = _batch_of(own_service, serial, 2)
    store.directory.rename(tmp_path / "unmounted")
    claimed, checked = threading.Event(), threading.Event()
    real_claim, real_state = store.claim, guard.state

    def claim(worker: str, limit: int = 1) -> list[Claim]:
        claimed.set()
        return real_claim(worker, limit)

    def state() -> StoreState:
        result = real_state()
        if not result.ready:
            checked.set()
        return result

    monkeypatch.setattr(store, "claim", claim)
    monkeypatch.setattr(guard, "state", state)
    worker = BatchWorker(own_service, store, idle_poll=0.01)
    worker.start()
    try:
        assert checked.wait(30)
    finally:
        worker.stop()
    assert not claimed.is_set() and _states(own_service, batch_id) == {"pending"}


def test_a_stale_copy_of_the_volume_is_refused_until_adopted(
    registry: Registry, tmp_path: Path
) -> None:
    """A snapshot restored without the database's newer batches has the right marker."""
    directory = tmp_path / "batches"
    assert BatchStoreGuard(registry, directory).open().ready
    _add_batch(registry, "old", directory)
    shutil.copytree(directory, tmp_path / "snapshot")
    _add_batch(registry, "new", directory)
    assert BatchStoreGuard(registry, directory).open().ready
    shutil.rmtree(directory)
    (tmp_path / "snapshot").rename(directory)
    guard = BatchStoreGuard(registry, directory)
    state = guard.open()
    assert state.health is StoreHealth.STALE and "newest missing: new" in state.problem
    assert state.report() == {"batch_store": "stale", "batch_store_problem": state.summary}
    assert guard.adopt().ready
    assert BatchStoreGuard(registry, directory).open().ready  # "new" was written off


def test_replicas_on_different_directories_never_both_serve(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No batch rows yet: a replica starting on another directory takes the record, and
    the running one notices at its next check (the record is re-read)."""
    first = BatchStoreGuard(registry, tmp_path / "a", record_ttl=0)
    assert first.state().ready
    second = BatchStoreGuard(registry, tmp_path / "b", record_ttl=0)
    assert second.state().ready
    state = first.state()
    assert state.health is StoreHealth.MISMATCH and "now records" in state.problem
    # Two replicas judging at once: the one that read the record before the other wrote
    # it does not overwrite it (compare-and-set).
    third = BatchStoreGuard(registry, tmp_path / "c", record_ttl=0)
    monkeypatch.setattr(third, "_row", lambda: None)  # it read "no record yet"
    assert third.open().health is StoreHealth.MISMATCH
    monkeypatch.undo()
    assert second.state().ready


def test_what_clients_see_names_no_path_id_or_database_error(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "secret-mount"
    first = BatchStoreGuard(registry, directory).open()
    _add_batch(registry, "b1", directory)
    (directory / MARKER).write_text(json.dumps({"store_id": "f" * 32}))
    guard = BatchStoreGuard(registry, directory)
    mismatch = guard.state()
    assert mismatch.health is StoreHealth.MISMATCH and str(first.store_id) in mismatch.problem
    with pytest.raises(BatchStoreUnavailable) as refused:
        guard.require()
    for shown in (json.dumps(mismatch.report()), refused.value.detail):
        assert "secret-mount" not in shown and "f" * 32 not in shown
        assert str(first.store_id) not in shown
    assert "BatchStoreReady" in refused.value.detail

    def down() -> None:
        raise OperationalError(
            "SELECT batch_store.store_id FROM batch_store",
            {},
            Exception('connection to "db.internal" failed for user "signet"'),
        )

    broken = BatchStoreGuard(registry, directory)
    monkeypatch.setattr(broken, "_row", down)
    state = broken.state()
    assert state.health is StoreHealth.UNAVAILABLE
    assert state.problem == "cannot check the batch store: OperationalError"
    shown = json.dumps(state.report())
    assert "db.internal" not in shown and "SELECT" not in shown and "OperationalError" in shown


@pytest.mark.parametrize(
    "body", [b"", b"[]", b'"x"', b"{", b"\xff\xfe", b'{"store_id": 7}'], ids=repr
)
def test_an_unparseable_marker_is_its_own_state_and_adopt_replaces_it(
    registry: Registry, tmp_path: Path, body: bytes
) -> None:
    directory = tmp_path / "batches"
    assert BatchStoreGuard(registry, directory).open().ready
    _add_batch(registry, "b1", directory)
    (directory / MARKER).write_bytes(body)  # a crash between O_CREAT and the write, an edit
    guard = BatchStoreGuard(registry, directory)
    state = guard.state()
    assert state.health is StoreHealth.BAD_MARKER and "adopt --yes" in state.problem
    adopted = guard.adopt()
    assert adopted.ready and BatchStoreGuard(registry, directory).open().ready
    assert json.loads((directory / MARKER).read_text())["store_id"] == adopted.store_id


def test_readiness_never_fails_because_of_the_store(
    signer_settings: SignerSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "volume"
    settings = signer_settings.model_copy(
        update={"home": tmp_path / "home", "batch_directory": directory}
    )
    directory.mkdir()
    (directory / MARKER).write_text("[]")
    with TestClient(create_app(settings)) as client:  # the lifespan does not crash
        response = client.get("/readyz")
        assert response.status_code != 500 and response.json()["batch_store"] == "bad_marker"

    def broken(self: BatchStoreGuard) -> StoreState:
        raise AttributeError("a bug")

    monkeypatch.setattr(BatchStoreGuard, "_judge", broken)
    with TestClient(create_app(settings)) as client:
        body = client.get("/readyz").json()
        assert body["batch_store"] == "unavailable" and "AttributeError" in str(body)


def test_adopt_replaces_an_unparseable_marker_from_the_cli(
    signer_settings: SignerSettings, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    registry = open_registry_at(home / "signer" / "signer.db")
    _add_batch(registry, "b1")
    (home / "signer" / "batches").mkdir(parents=True)
    (home / "signer" / "batches" / MARKER).write_text("")
    status = _signet(home, "signer", "batch-store", "status")
    assert status.returncode == 1 and '"batch_store": "bad_marker"' in status.stdout
    adopted = _signet(home, "signer", "batch-store", "adopt", "--yes")
    assert adopted.returncode == 0, adopted.stderr
    assert _signet(home, "signer", "batch-store", "status").returncode == 0


def test_workers_paused_in_the_background_end_before_the_service_closes(
    signer_settings: SignerSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "volume"
    settings = signer_settings.model_copy(
        update={"home": tmp_path / "home", "batch_directory": directory}
    )
    stopped: list[BatchWorker] = []
    real_stop = BatchWorker.stop

    def slow_stop(self: BatchWorker, timeout: float = 30) -> None:
        real_stop(self, timeout)
        time.sleep(0.5)  # a worker finishing its group: the pause outlives the request
        stopped.append(self)

    monkeypatch.setattr(BatchWorker, "stop", slow_stop)
    with TestClient(create_app(settings)) as client:
        (paused,) = client.app.state.batch_workers  # type: ignore[attr-defined]
        _add_batch(open_registry(settings.resolved_database_url()), "b1", directory)
        (directory / MARKER).unlink()
        assert client.get("/readyz").json()["batch_store"] == "missing"
    assert stopped == [paused]  # joined by the shutdown, not left running past close()
