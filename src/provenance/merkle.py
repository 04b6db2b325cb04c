"""RFC 6962 (Certificate Transparency) Merkle trees over journal entries.

Leaves are ``SHA-256(0x00 || data)``, interior nodes ``SHA-256(0x01 || left ||
right)``, and the tree over ``n`` leaves splits at the largest power of two
below ``n``.  `CompactTree` keeps only the roots of the perfect subtrees (at most
log2(n) hashes), so a verifier streams a journal of any length in constant
memory.  Proofs follow RFC 6962 section 2.1.1 and 2.1.2 (and RFC 9162 2.1.3-4
for verification).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "EMPTY_ROOT",
    "CompactTree",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactTree:
    """An append-only tree that remembers only its perfect-subtree roots."""

    __slots__ = ("_size", "_stack")

    def __init__(self, size: int = 0, stack: Sequence[bytes] = ()) -> None:
        if len(stack) != bin(size).count("1"):
            raise ValueError("compact range does not match tree size")
        self._size = size
        self._stack = list(stack)

    @property
    def size(self) -> int:
        return self._size

    @property
    def stack(self) -> tuple[bytes, ...]:
        return tuple(self._stack)

    def append(self, leaf: bytes) -> None:
        """Add one leaf *hash*."""
        node = leaf
        size = self._size
        # Merge with each completed subtree of equal size, as binary addition carries.
        while size & 1:
            node = node_hash(self._stack.pop(), node)
            size >>= 1
        self._stack.append(node)
        self._size += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        node = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node

    def copy(self) -> CompactTree:
        return CompactTree(self._size, self._stack)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """Root over leaf hashes (for tests and small trees)."""
    tree = CompactTree()
    for leaf in leaves:
        tree.append(leaf)
    return tree.root()


def _subtree_root(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    return root_of(leaves[lo:hi])


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path for leaf `index` in the tree over `leaves` (RFC 6962 PATH)."""
    if not 0 <= index < len(leaves):
        raise ValueError("leaf index out of range")
    path: list[bytes] = []
    lo, hi = 0, len(leaves)
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(_subtree_root(leaves, lo + k, hi))
            hi = lo + k
        else:
            path.append(_subtree_root(leaves, lo, lo + k))
            lo = lo + k
    path.reverse()
    return path


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    node = leaf
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            node = node_hash(node, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and node == root


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """Proof that the tree of `old_size` leaves is a prefix of the tree over `leaves`."""
    if not 0 < old_size <= len(leaves):
        raise ValueError("old size out of range")
    return _subproof(leaves, old_size, 0, len(leaves), True)


def _subproof(leaves: Sequence[bytes], m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
    n = hi - lo
    if m == n:
        return [] if complete else [_subtree_root(leaves, lo, hi)]
    k = _split(n)
    if m <= k:
        return [*_subproof(leaves, m, lo, lo + k, complete), _subtree_root(leaves, lo + k, hi)]
    return [*_subproof(leaves, m - k, lo + k, hi, False), _subtree_root(leaves, lo, lo + k)]


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2."""
    if old_size == new_size:
        return not proof and old_root == new_root
    if not 0 < old_size < new_size or not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
