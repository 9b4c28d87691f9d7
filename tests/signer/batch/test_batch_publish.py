"""`BatchStore.publish` writes the item rows with one Core executemany: on SQLite and on
PostgreSQL every row arrives with its name, hash and place in the spool, and a reused
Idempotency-Key still returns the first batch."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest
from signet.common.contracts.signer import SignOptions
from signet.signer.batch.store import BatchItemRecord, BatchStore
from signet.signer.database import open_registry
from sqlalchemy import select

from tests.support.postgres import PostgresServer


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.slow])]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BatchStore:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'signer.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.create_database(f"publish_{uuid.uuid4().hex[:12]}")
    return BatchStore(open_registry(url), tmp_path / "batches")


def test_publish_stores_every_item_row(store: BatchStore) -> None:
    documents = [f"%PDF-{i}".encode() * (i + 1) for i in range(1_200)]
    options = SignOptions.model_validate({"certificate_serial": "0a1b2c3d", "level": "B-B"})

    def publish(key: str) -> tuple[str, bool]:
        upload = store.upload(10**6)
        try:
            for i, data in enumerate(documents):
                upload.begin(f"{i}.pdf")
                upload.write(data)
                upload.end()
            status, created = store.publish(upload, options, "0a1b2c3d", idempotency_key=key)
        finally:
            upload.discard()
        return status.id, created

    batch_id, created = publish("key-1")
    assert created
    with store.registry.session() as session:
        rows = session.scalars(
            select(BatchItemRecord)
            .where(BatchItemRecord.batch_id == batch_id)
            .order_by(BatchItemRecord.idx)
        ).all()
    assert [r.idx for r in rows] == list(range(len(documents)))
    assert [r.filename for r in rows] == [f"{i}.pdf" for i in range(len(documents))]
    assert [r.input_sha256 for r in rows] == [hashlib.sha256(d).hexdigest() for d in documents]
    assert {r.state for r in rows} == {"pending"}
    offsets = [0]
    for data in documents[:-1]:
        offsets.append(offsets[-1] + len(data))
    assert [(r.input_offset, r.input_size) for r in rows] == [
        (o, len(d)) for o, d in zip(offsets, documents, strict=True)
    ]
    assert publish("key-1") == (batch_id, False)
