"""Idempotent appends: an event id appended again with the same content appends nothing.

On both vault kinds, across a restart (the id map is rebuilt from the stored leaves),
and while the first append is still waiting for its segment (many retries at once).
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from signet.common.contracts.storage import LedgerEventIn
from signet.storage.app import create_app
from signet.storage.config import StorageSettings
from signet.storage.ledger import EventConflict, Ledger
from signet.storage.merkle import leaf_hash
from signet.storage.vault import Vault

from tests.conftest import SERVICE_TOKEN


def event(event_id: str | None, n: int = 0, envelope: str = "env-1", **more: Any) -> LedgerEventIn:
    return LedgerEventIn.model_validate(
        {
            "event_id": event_id,
            "event_type": "recipient.signed",
            "envelope_id": envelope,
            "actor": f"signer-{n}@example.com",
            "ip": "192.0.2.1",
            "details": {"page": str(n)},
            **more,
        }
    )


def test_the_same_event_id_twice_is_one_leaf_on_both_vaults_and_after_a_restart(
    vault: Vault,
) -> None:
    ids = [str(uuid.uuid4()) for _ in range(5)] + ["portal_row-42", "A" * 64]
    first = Ledger(vault)
    try:
        receipts = [first.append_sync(event(i, n)) for n, i in enumerate(ids)]
        first.append_sync(event(None, 99))  # without an id: appended every time
        first.append_sync(event(None, 99))
        assert first.size == len(ids) + 2
        for n, (event_id, receipt) in enumerate(zip(ids, receipts, strict=True)):
            assert receipt.event_id == event_id and not receipt.replayed
            again = first.append_sync(event(event_id, n))
            assert again.replayed
            assert (again.index, again.leaf_hash, again.time) == (
                receipt.index,
                receipt.leaf_hash,
                receipt.time,
            )
        assert first.size == len(ids) + 2
        with pytest.raises(EventConflict, match=f"event {ids[0]} is entry 0"):
            first.append_sync(event(ids[0], 1000))
        assert json.loads(first.leaf(0))["event_id"] == ids[0]
        assert "event_id" not in json.loads(first.leaf(len(ids)))  # no id, no key: as before
        size, root = first.size, first.root()
    finally:
        first.close()

    second = Ledger(vault)  # rebuilt from the vault: ids too
    try:
        assert (second.size, second.root()) == (size, root)
        for n, (event_id, receipt) in enumerate(zip(ids, receipts, strict=True)):
            again = second.append_sync(event(event_id, n))
            assert again.replayed and again.model_dump(exclude={"replayed"}) == receipt.model_dump(
                exclude={"replayed"}
            )
        with pytest.raises(EventConflict):
            second.append_sync(event(ids[3], 3, envelope="env-2"))
        with pytest.raises(EventConflict):
            second.append_sync(event(ids[3], 3, auth_method="otp-sms"))
        assert second.size == size
        new = second.append_sync(event("after-restart", 7))
        assert new.index == size and not new.replayed
    finally:
        second.close()


def test_retries_racing_the_first_append_all_get_its_receipt(vault: Vault) -> None:
    ledger = Ledger(vault)
    try:
        with ThreadPoolExecutor(16) as pool:
            receipts = list(
                pool.map(lambda n: ledger.append_sync(event(f"evt-{n % 10}", n % 10)), range(200))
            )
        assert ledger.size == 10
        by_id: dict[str, set[tuple[int, str]]] = {}
        for receipt in receipts:
            assert receipt.event_id is not None
            by_id.setdefault(receipt.event_id, set()).add((receipt.index, receipt.leaf_hash))
        assert all(len(leaves) == 1 for leaves in by_id.values())
        assert sorted(next(iter(v))[0] for v in by_id.values()) == list(range(10))
        assert sum(not r.replayed for r in receipts) == 10
        for leaves in by_id.values():
            index, hashed = next(iter(leaves))
            assert leaf_hash(ledger.leaf(index)).hex() == hashed
    finally:
        ledger.close()


def _app(home: Path) -> TestClient:
    settings = StorageSettings(
        home=home, service_token=SecretStr(SERVICE_TOKEN), tree_head_interval=0
    )
    client = TestClient(create_app(settings))
    client.headers["Authorization"] = f"Bearer {SERVICE_TOKEN}"
    return client


def test_the_http_contract_201_then_200_replayed_then_409_event_conflict(tmp_path: Path) -> None:
    body = event("0b6f3c4e-3f7a-4d3e-9d6c-2b7f2f1d9a10").model_dump(mode="json", exclude_none=True)
    with _app(tmp_path / "storage") as client:
        created = client.post("/v1/ledger/events", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["event_id"] == body["event_id"] and not created.json()["replayed"]
        again = client.post("/v1/ledger/events", json=body)
        assert again.status_code == 200 and again.json() == created.json() | {"replayed": True}
        other = client.post("/v1/ledger/events", json=body | {"actor": "mallory"})
        assert other.status_code == 409 and other.json()["error"] == "event_conflict"
        for bad in ("", "a" * 65, "a b", "../x", "id.with.dots", "é", "a\n"):
            refused = client.post("/v1/ledger/events", json=body | {"event_id": bad})
            assert refused.status_code == 422, (bad, refused.text)
        assert client.get("/readyz").json()["ledger_size"] == 1
    with _app(tmp_path / "storage") as client:
        after = client.post("/v1/ledger/events", json=body)
        assert after.status_code == 200 and after.json() == again.json()
        assert client.post("/v1/ledger/events", json=body | {"details": {}}).status_code == 409
