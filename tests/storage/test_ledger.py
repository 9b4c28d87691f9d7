"""The ledger: concurrent appends, acknowledgement only when durable, rebuild after restart."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from signet.common.contracts.storage import LedgerEventIn
from signet.common.errors import ServiceUnavailable
from signet.storage.fs_vault import FilesystemVault
from signet.storage.ledger import Ledger
from signet.storage.merkle import leaf_hash, verify_consistency, verify_inclusion
from signet.storage.vault import Vault


def event(envelope: str, n: int) -> LedgerEventIn:
    return LedgerEventIn(
        event_type="document.signed",
        envelope_id=envelope,
        actor=f"signer-{n}@example.com",
        ip="10.0.0.7",
        user_agent="Mozilla/5.0",
        document_hashes=["ab" * 32],
        auth_method="otp-sms",
    )


def test_concurrent_appends_get_unique_indexes_and_proofs(vault: Vault) -> None:
    ledger = Ledger(vault)
    try:
        with ThreadPoolExecutor(16) as pool:
            receipts = list(
                pool.map(lambda n: ledger.append_sync(event(f"env-{n % 7}", n)), range(600))
            )
        assert sorted(r.index for r in receipts) == list(range(600))
        assert ledger.size == 600
        root = ledger.root()
        for receipt in receipts[::37]:
            proof = ledger.inclusion(receipt.index)
            leaf = ledger.leaf(receipt.index)
            assert leaf_hash(leaf).hex() == receipt.leaf_hash == proof.leaf_hash
            assert json.loads(leaf)["index"] == receipt.index
            assert verify_inclusion(
                receipt.index,
                600,
                bytes.fromhex(proof.leaf_hash),
                [bytes.fromhex(p) for p in proof.audit_path],
                root,
            )
        assert len(ledger.envelope_indexes("env-3")) == len(range(3, 600, 7))
    finally:
        ledger.close()


def test_restart_rebuilds_the_same_tree_from_the_vault(vault: Vault) -> None:
    first = Ledger(vault)
    for n in range(250):
        first.append(event("env-a", n))
    first.append_sync(event("env-b", 999))
    size, root = first.size, first.root()
    first.close()

    second = Ledger(vault)
    try:
        assert (second.size, second.root()) == (size, root)
        assert second.envelope_indexes("env-b") == [250]
        more = second.append_sync(event("env-b", 1000))
        assert more.index == 251
        proof = second.consistency(size)
        assert verify_consistency(
            size, 252, root, second.root(), [bytes.fromhex(p) for p in proof.path]
        )
    finally:
        second.close()


class _BrokenVault(FilesystemVault):
    """A vault whose record writes fail (a full disk, an object store outage)."""

    def put_record(self, name: str, data: bytes) -> None:
        raise OSError("no space left on device")


def test_nothing_is_acknowledged_that_was_not_stored(tmp_path: Path) -> None:
    broken = _BrokenVault(tmp_path / "vault", retention_years=5)
    ledger = Ledger(broken)
    with pytest.raises(ServiceUnavailable, match="no space left"):
        ledger.append_sync(event("env", 1))
    with pytest.raises(ServiceUnavailable, match="stopped appending"):
        ledger.append(event("env", 2))
    ledger.close()
    assert Ledger(FilesystemVault(tmp_path / "vault", retention_years=5)).size == 0


def test_a_second_writer_stops_instead_of_forking_the_log(tmp_path: Path) -> None:
    vault = FilesystemVault(tmp_path / "vault", retention_years=5)
    one, two = Ledger(vault), Ledger(vault)
    one.append_sync(event("env", 1))
    with pytest.raises(ServiceUnavailable, match=r"stopped appending|exists"):
        two.append_sync(event("env", 2))
    one.close()
    two.close()
    assert Ledger(vault).size == 1
