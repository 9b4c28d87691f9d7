"""The Merkle tree against RFC 9162: known answers, a literal reference, and properties."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st
from signet.storage.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# The test vectors of RFC 6962's reference implementation (certificate-transparency),
# which RFC 9162 keeps for SHA-256: leaves, then the root of each prefix of the tree.
RFC_LEAVES = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
RFC_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH exactly as RFC 9162 2.1.1 defines it, recursively and slowly."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


def tree_of(leaves: list[bytes]) -> MerkleTree:
    tree = MerkleTree()
    for data in leaves:
        tree.append(leaf_hash(data))
    return tree


def test_known_answers_of_the_rfc_vectors() -> None:
    tree = MerkleTree()
    assert tree.root() == EMPTY_ROOT
    for data, expected in zip(RFC_LEAVES, RFC_ROOTS, strict=True):
        tree.append(leaf_hash(bytes.fromhex(data)))
        assert tree.root().hex() == expected
    # Every earlier size is still answerable from the grown tree.
    for size, expected in enumerate(RFC_ROOTS, start=1):
        assert tree.root(size).hex() == expected


leaf_lists = st.lists(st.binary(max_size=24), min_size=1, max_size=70)


@settings(max_examples=150, deadline=None)
@given(leaves=leaf_lists, data=st.data())
def test_every_inclusion_proof_verifies_and_any_change_fails(
    leaves: list[bytes], data: st.DataObject
) -> None:
    tree = tree_of(leaves)
    size = data.draw(st.integers(1, len(leaves)), label="size")
    root = tree.root(size)
    assert root == reference_root(leaves[:size])
    for index in range(size):
        proof = tree.inclusion_proof(index, size)
        assert verify_inclusion(index, size, tree.leaf(index), proof, root)
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = tree.inclusion_proof(index, size)
    leaf = tree.leaf(index)
    other_leaf = leaf_hash(leaves[index] + b"!")
    assert not verify_inclusion(index, size, other_leaf, proof, root)
    assert not verify_inclusion(index, size, leaf, proof, hashlib.sha256(root).digest())
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1), label="position")
        bad = list(proof)
        bad[position] = bytes(b ^ 0x01 for b in bad[position][:1]) + bad[position][1:]
        assert not verify_inclusion(index, size, leaf, bad, root)
        assert not verify_inclusion(index, size, leaf, proof[:-1], root)
        assert not verify_inclusion(index, size, leaf, [*proof, proof[0]], root)
    if size > 1:
        wrong_index = (index + 1) % size
        if tree.leaf(wrong_index) != leaf:
            assert not verify_inclusion(wrong_index, size, leaf, proof, root)


@settings(max_examples=150, deadline=None)
@given(leaves=leaf_lists, data=st.data())
def test_every_consistency_proof_verifies_and_any_change_fails(
    leaves: list[bytes], data: st.DataObject
) -> None:
    tree = tree_of(leaves)
    second = data.draw(st.integers(1, len(leaves)), label="second")
    first = data.draw(st.integers(0, second), label="first")
    proof = tree.consistency_proof(first, second)
    first_root, second_root = tree.root(first), tree.root(second)
    assert verify_consistency(first, second, first_root, second_root, proof)
    if 0 < first < second:
        assert proof
        forged_first = hashlib.sha256(first_root).digest()
        assert not verify_consistency(first, second, forged_first, second_root, proof)
        forged_second = hashlib.sha256(second_root).digest()
        assert not verify_consistency(first, second, first_root, forged_second, proof)
        position = data.draw(st.integers(0, len(proof) - 1), label="position")
        bad = list(proof)
        bad[position] = hashlib.sha256(bad[position]).digest()
        assert not verify_consistency(first, second, first_root, second_root, bad)
        assert not verify_consistency(first, second, first_root, second_root, proof[:-1])
        # A log that rewrote history (one earlier leaf changed) cannot prove consistency.
        changed = list(leaves[:second])
        victim = data.draw(st.integers(0, first - 1), label="victim")
        changed[victim] = changed[victim] + b"rewritten"
        rewritten = tree_of(changed)
        assert not verify_consistency(
            first, second, first_root, rewritten.root(second), rewritten.consistency_proof(first)
        )


def test_proofs_stay_logarithmic_at_a_large_size() -> None:
    tree = MerkleTree()
    for i in range(5000):
        tree.append(leaf_hash(i.to_bytes(4, "big")))
    proof = tree.inclusion_proof(4321)
    assert len(proof) <= 13
    assert verify_inclusion(4321, 5000, tree.leaf(4321), proof, tree.root())
    assert len(tree.consistency_proof(1234, 5000)) <= 2 * 13
