"""RFC 6962 Merkle trees: known answers, proofs, and the compact tree.

Known answers are the certificate-transparency test vectors
(merkle_tree_test.cc); the recursive reference below is RFC 6962 section 2.1
written out literally, independent of the iterative code under test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.merkle import (
    EMPTY_ROOT,
    CompactTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

# -- certificate-transparency known answers ------------------------------------------------

CT_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]

CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

# Interior hashes of the 8-leaf tree that the CT proof vectors are made of.
H_LEAF1 = "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"  # leaf "00"
H_2_4 = "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"  # leaves 2..3
H_4_8 = "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"  # leaves 4..7
H_LEAF4 = "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"  # leaf "3031"
H_6_8 = "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"  # leaves 6..7
H_4_6 = "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"  # leaves 4..5
H_0_4 = CT_ROOTS[3]

CT_INCLUSION = [  # (leaf index, tree size, path)
    (0, 8, [H_LEAF1, H_2_4, H_4_8]),
    (5, 8, [H_LEAF4, H_6_8, H_0_4]),
    (2, 3, [CT_ROOTS[1]]),
    (1, 5, [CT_ROOTS[0], H_2_4, H_LEAF4]),
    (0, 1, []),
]

CT_CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, [H_LEAF1, H_2_4, H_4_8]),
    (6, 8, [H_4_6, H_6_8, H_0_4]),
    (2, 5, [H_2_4, H_LEAF4]),
]

CT_HASHES = [leaf_hash(leaf) for leaf in CT_LEAVES]


def test_empty_root() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_of([]) == EMPTY_ROOT
    assert CompactTree().root() == EMPTY_ROOT


def test_leaf_and_node_hash_domain_separation() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert leaf_hash(b"").hex() == CT_ROOTS[0]
    assert leaf_hash(bytes.fromhex("00")).hex() == H_LEAF1
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert node_hash(CT_HASHES[0], CT_HASHES[1]).hex() == CT_ROOTS[1]
    # A leaf can never be mistaken for a node over the same bytes.
    assert leaf_hash(left + right) != node_hash(left, right)


@pytest.mark.parametrize("size", range(1, 9))
def test_ct_roots(size: int) -> None:
    assert root_of(CT_HASHES[:size]).hex() == CT_ROOTS[size - 1]
    assert ref_root(CT_HASHES[:size]).hex() == CT_ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
def test_ct_inclusion_proofs(index: int, size: int, path: list[str]) -> None:
    proof = inclusion_proof(CT_HASHES[:size], index)
    assert [p.hex() for p in proof] == path
    root = bytes.fromhex(CT_ROOTS[size - 1])
    assert verify_inclusion(CT_HASHES[index], index, size, proof, root)


@pytest.mark.parametrize(("old", "new", "path"), CT_CONSISTENCY)
def test_ct_consistency_proofs(old: int, new: int, path: list[str]) -> None:
    proof = consistency_proof(CT_HASHES[:new], old)
    assert [p.hex() for p in proof] == path
    old_root, new_root = (bytes.fromhex(CT_ROOTS[n - 1]) for n in (old, new))
    assert verify_consistency(old, new, old_root, new_root, proof)


# -- an independent reference (RFC 6962 section 2.1, recursively) -------------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_root(hashes: Sequence[bytes]) -> bytes:
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = _k(len(hashes))
    return hashlib.sha256(b"\x01" + ref_root(hashes[:k]) + ref_root(hashes[k:])).digest()


def ref_path(m: int, hashes: Sequence[bytes]) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = _k(len(hashes))
    if m < k:
        return [*ref_path(m, hashes[:k]), ref_root(hashes[k:])]
    return [*ref_path(m - k, hashes[k:]), ref_root(hashes[:k])]


def ref_subproof(m: int, hashes: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(hashes)
    if m == n:
        return [] if complete else [ref_root(hashes)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, hashes[:k], complete), ref_root(hashes[k:])]
    return [*ref_subproof(m - k, hashes[k:], False), ref_root(hashes[:k])]


def leaves(n: int, salt: int = 0) -> list[bytes]:
    """n distinct leaf hashes (distinct, so that a moved index cannot verify by coincidence)."""
    return [leaf_hash(f"{salt}:{i}".encode()) for i in range(n)]


MAX_SIZE = 70
LEAVES = leaves(MAX_SIZE + 8)
ROOTS = [root_of(LEAVES[:n]) for n in range(len(LEAVES) + 1)]


def test_reference_agrees_for_every_size() -> None:
    tree = CompactTree()
    for n in range(MAX_SIZE + 1):
        assert ROOTS[n] == ref_root(LEAVES[:n])
        assert tree.root() == ROOTS[n]
        tree.append(LEAVES[n])


def test_every_inclusion_proof_up_to_40_verifies() -> None:
    for n in range(1, 41):
        for i in range(n):
            proof = inclusion_proof(LEAVES[:n], i)
            assert proof == ref_path(i, LEAVES[:n])
            assert verify_inclusion(LEAVES[i], i, n, proof, ROOTS[n])


def test_every_consistency_proof_up_to_40_verifies() -> None:
    for n in range(1, 41):
        for m in range(1, n + 1):
            proof = consistency_proof(LEAVES[:n], m)
            assert proof == ref_subproof(m, LEAVES[:n], True)
            assert verify_consistency(m, n, ROOTS[m], ROOTS[n], proof)


# -- hypothesis: proofs verify, and any alteration fails ---------------------------------------

sizes = st.integers(1, MAX_SIZE)


@st.composite
def size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(sizes)
    return n, draw(st.integers(0, n - 1))


def flip(data: bytes, position: int, mask: int) -> bytes:
    out = bytearray(data)
    out[position % len(out)] ^= mask
    return bytes(out)


@settings(max_examples=300, deadline=None)
@given(size_and_index(), st.data())
def test_inclusion_proof_verifies_and_alterations_fail(case: tuple[int, int], data: st.DataObject) -> None:
    n, i = case
    proof = inclusion_proof(LEAVES[:n], i)
    assert proof == ref_path(i, LEAVES[:n])
    assert verify_inclusion(LEAVES[i], i, n, proof, ROOTS[n])

    # Another leaf, another index, another size, another root: all fail.
    assert not verify_inclusion(LEAVES[n], i, n, proof, ROOTS[n])
    for other in {data.draw(st.integers(-2, n + 2), label="index"), i - 1, i + 1, -1, n}:
        if other != i:
            assert not verify_inclusion(LEAVES[i], other, n, proof, ROOTS[n])
    # Another size, with the root a checkpoint of that size would carry (a proof is
    # checked against a (size, root) pair that one signature covers; see
    # test_size_and_root_must_come_from_one_checkpoint).
    for other in range(MAX_SIZE + 8):
        if other != n:
            assert not verify_inclusion(LEAVES[i], i, other, proof, ROOTS[other])
    assert not verify_inclusion(LEAVES[i], i, -1, proof, ROOTS[n])
    assert not verify_inclusion(LEAVES[i], i, 0, proof, ROOTS[n])
    for other in range(1, len(ROOTS)):
        if other != n:
            assert not verify_inclusion(LEAVES[i], i, n, proof, ROOTS[other])
    position = data.draw(st.integers(0, 31), label="byte")
    mask = data.draw(st.integers(1, 255), label="mask")
    assert not verify_inclusion(LEAVES[i], i, n, proof, flip(ROOTS[n], position, mask))
    assert not verify_inclusion(flip(LEAVES[i], position, mask), i, n, proof, ROOTS[n])

    # An altered proof: a changed element, one more, one fewer, reordered.
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1), label="element")
        changed = [*proof[:k], flip(proof[k], position, mask), *proof[k + 1 :]]
        assert not verify_inclusion(LEAVES[i], i, n, changed, ROOTS[n])
        assert not verify_inclusion(LEAVES[i], i, n, proof[:-1], ROOTS[n])
        assert not verify_inclusion(LEAVES[i], i, n, proof[1:], ROOTS[n])
        if len(proof) > 1 and len(set(proof)) == len(proof):
            assert not verify_inclusion(LEAVES[i], i, n, proof[::-1], ROOTS[n])
    extra = data.draw(st.sampled_from([*LEAVES[:n], ROOTS[n], EMPTY_ROOT]), label="extra")
    assert not verify_inclusion(LEAVES[i], i, n, [*proof, extra], ROOTS[n])
    assert not verify_inclusion(LEAVES[i], i, n, [extra, *proof], ROOTS[n])


@st.composite
def old_and_new(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(sizes)
    return draw(st.integers(1, n)), n


@settings(max_examples=300, deadline=None)
@given(old_and_new(), st.data())
def test_consistency_proof_verifies_and_alterations_fail(case: tuple[int, int], data: st.DataObject) -> None:
    m, n = case
    proof = consistency_proof(LEAVES[:n], m)
    assert proof == ref_subproof(m, LEAVES[:n], True)
    assert verify_consistency(m, n, ROOTS[m], ROOTS[n], proof)

    # Sizes: every other old or new size fails (with the root of that size).
    for other in range(0, len(ROOTS)):
        if other != m:
            assert not verify_consistency(other, n, ROOTS[other], ROOTS[n], proof)
        if other != n:
            assert not verify_consistency(m, other, ROOTS[m], ROOTS[other], proof)
    # Roots: the root of any other size, or a flipped byte, fails.
    for other in range(0, len(ROOTS)):
        if other != m:
            assert not verify_consistency(m, n, ROOTS[other], ROOTS[n], proof)
        if other != n:
            assert not verify_consistency(m, n, ROOTS[m], ROOTS[other], proof)
    position = data.draw(st.integers(0, 31), label="byte")
    mask = data.draw(st.integers(1, 255), label="mask")
    assert not verify_consistency(m, n, flip(ROOTS[m], position, mask), ROOTS[n], proof)
    assert not verify_consistency(m, n, ROOTS[m], flip(ROOTS[n], position, mask), proof)
    # A different tree with the same old prefix is not consistent with this one.
    forked = [*LEAVES[:m], *leaves(n - m, salt=1)]
    if m < n:
        assert not verify_consistency(m, n, ROOTS[m], root_of(forked), proof)
        assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], consistency_proof(forked, m))
    # An altered proof: a changed element, one more, one fewer, reordered.
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1), label="element")
        changed = [*proof[:k], flip(proof[k], position, mask), *proof[k + 1 :]]
        assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], changed)
        assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], proof[:-1])
        assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], proof[1:])
        if len(proof) > 1 and len(set(proof)) == len(proof):
            assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], proof[::-1])
    extra = data.draw(st.sampled_from([*LEAVES[:n], ROOTS[m], ROOTS[n], EMPTY_ROOT]), label="extra")
    assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], [*proof, extra])
    assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], [extra, *proof])


def test_size_and_root_must_come_from_one_checkpoint() -> None:
    """RFC 9162 proofs take the tree size on trust: the same path can fit two sizes.

    The path [l1, l2] for leaf 0 of the 3-leaf tree also "verifies" for size 4
    against the 3-leaf root (l2 standing in for the subtree over leaves 2..3).
    That is harmless only because a verifier takes size and root from one signed
    checkpoint, whose note commits to both; this test documents why it must.
    """
    proof = inclusion_proof(LEAVES[:3], 0)
    assert verify_inclusion(LEAVES[0], 0, 3, proof, ROOTS[3])
    assert verify_inclusion(LEAVES[0], 0, 4, proof, ROOTS[3])
    assert not verify_inclusion(LEAVES[0], 0, 4, proof, ROOTS[4])
    assert verify_consistency(1, 4, ROOTS[1], ROOTS[3], consistency_proof(LEAVES[:3], 1))


def test_degenerate_consistency_inputs() -> None:
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [ROOTS[5]])
    assert not verify_consistency(5, 3, ROOTS[5], ROOTS[3], [ROOTS[3]])
    assert not verify_consistency(3, 3, ROOTS[3], ROOTS[3], [ROOTS[3]])
    assert not verify_consistency(3, 5, ROOTS[3], ROOTS[5], [])


def test_proof_arguments_out_of_range() -> None:
    for index in (-1, 5, 6):
        with pytest.raises(ValueError):
            inclusion_proof(LEAVES[:5], index)
    for old in (0, -1, 6):
        with pytest.raises(ValueError):
            consistency_proof(LEAVES[:5], old)
    assert not verify_inclusion(LEAVES[0], 0, 0, [], EMPTY_ROOT)


# -- the compact tree --------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=8), max_size=MAX_SIZE))
def test_compact_tree_equals_root_of_at_every_size(data: list[bytes]) -> None:
    hashes = [leaf_hash(d) for d in data]
    tree = CompactTree()
    for n, h in enumerate(hashes):
        assert tree.size == n
        assert len(tree.stack) == bin(n).count("1")
        assert tree.root() == root_of(hashes[:n]) == ref_root(hashes[:n])
        # The stack alone is enough to resume the tree.
        resumed = CompactTree(tree.size, tree.stack)
        tree.append(h)
        resumed.append(h)
        assert resumed.root() == tree.root()
    assert tree.root() == ref_root(hashes)


def test_compact_tree_copy_is_independent() -> None:
    tree = CompactTree()
    for h in LEAVES[:5]:
        tree.append(h)
    copy = tree.copy()
    copy.append(LEAVES[5])
    assert tree.size == 5 and tree.root() == ROOTS[5]
    assert copy.size == 6 and copy.root() == ROOTS[6]


@pytest.mark.parametrize(("size", "count"), [(1, 0), (1, 2), (3, 1), (4, 2), (0, 1)])
def test_compact_tree_rejects_a_stack_of_the_wrong_length(size: int, count: int) -> None:
    with pytest.raises(ValueError):
        CompactTree(size, LEAVES[:count])
