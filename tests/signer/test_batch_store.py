"""The batch store guard: a batch directory that is not the batches' own is reported and
refused (readiness and a 503 on the batch API), an intact one works, and a fresh install
only initialises its marker."""

from __future__ import annotations

import errno
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from signet.signer.app import create_app
from signet.signer.batch_queue import BatchRecord
from signet.signer.batch_store import MARKER, BatchStoreGuard, StoreHealth
from signet.signer.config import SignerSettings
from signet.signer.registry import Registry

from tests.conftest import SERVICE_TOKEN
from tests.signer.test_health_and_cli import _signet


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
    return Registry.sqlite(tmp_path / "signer.db")


def test_a_fresh_install_only_initialises_its_marker(registry: Registry, tmp_path: Path) -> None:
    directory = tmp_path / "batches"
    state = BatchStoreGuard(registry, directory).open()
    assert state.health is StoreHealth.READY and state.store_id
    marker = json.loads((directory / MARKER).read_text())
    assert marker["store_id"] == state.store_id
    assert [p.name for p in directory.iterdir()] == [MARKER]  # no temporary left behind
    assert state.report() == {
        "batch_store": "ready",
        "batch_directory": str(directory),
        "batch_store_id": state.store_id,
    }
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
    with pytest.raises(Exception, match="no store marker") as refused:
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
    other = BatchStoreGuard(Registry.sqlite(tmp_path / "other.db"), theirs).open()
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

    other = Registry.sqlite(tmp_path / "cluster.db")  # a cluster's batches on a lost emptyDir
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
    registry = Registry.sqlite(tmp_path / "signer.db")
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
        _add_batch(Registry(settings.resolved_database_url()), "b1", directory)
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
    registry = Registry.sqlite(home / "signer" / "signer.db")
    _add_batch(registry, "lost")
    status = _signet(home, "signer", "batch-store", "status")
    assert status.returncode == 1 and '"batch_store": "missing"' in status.stdout
    refused = _signet(home, "signer", "batch-store", "adopt")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    adopted = _signet(home, "signer", "batch-store", "adopt", "--yes")
    assert adopted.returncode == 0, adopted.stderr
    assert _signet(home, "signer", "batch-store", "status").returncode == 0
