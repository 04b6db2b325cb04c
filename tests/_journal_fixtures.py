"""Shared helpers for the journal-core tests (keys, journals, exported files).

Not a conftest: test modules import what they need from here explicitly.
Everything is deterministic where it can be (keys from fixed seeds, entry
times fixed) so that failures replay.
"""

from __future__ import annotations

import datetime as _dt
import io
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from provenance import merkle
from provenance.journal import (
    GENESIS_KIND,
    Actor,
    Checkpoint,
    Entry,
    Header,
    KeyRecord,
    SignedEntry,
    new_journal_id,
    origin_for,
)
from provenance.keys import SigningKey
from provenance.store import NewEntry, Store
from provenance.verify import Verdict, verify_lines

__all__ = [
    "FAST_SCRYPT",
    "T0",
    "ForgedJournal",
    "build_journal",
    "export_bytes",
    "fixed_key",
    "forge",
    "same",
    "split_lines",
    "verify_bytes",
]

# scrypt cost for encrypted keys made in tests (the minimum the key store accepts).
FAST_SCRYPT = 14

T0 = _dt.datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=_dt.UTC)


def fixed_key(n: int, name: str = "default") -> SigningKey:
    """A deterministic Ed25519 key (seed = 32 copies of byte `n`)."""
    return SigningKey.from_seed(bytes([n % 256]) * 32, name)


def same(a: Any, b: Any) -> bool:
    """Equality that also compares types and float bits (so -0.0 != 0.0, nan == nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def split_lines(data: bytes) -> list[bytes]:
    """The lines of a file, each keeping its newline (the last may lack one)."""
    return io.BytesIO(data).readlines()


def verify_bytes(data: bytes, **options: Any) -> Verdict:
    """Verify a journal file given as bytes, exactly as `verify_file` reads it."""
    return verify_lines(split_lines(data), **options)


def export_bytes(store: Store, journal: str, *, all_checkpoints: bool = False) -> bytes:
    out = io.BytesIO()
    store.export(journal, out, all_checkpoints=all_checkpoints)
    return out.getvalue()


def build_journal(
    store: Store,
    key: SigningKey,
    bodies: Sequence[Mapping[str, Any]],
    *,
    title: str = "test journal",
    kind: str = "note",
    batch: bool = False,
) -> str:
    """A journal in `store`: the genesis entry, then one entry per body."""
    journal = store.create_journal(key, title=title)
    if batch:
        store.append_many(journal, [NewEntry(kind, body) for body in bodies], key=key)
    else:
        for body in bodies:
            store.append(journal, kind, body, key=key)
    return journal


class ForgedJournal:
    """A journal file built by hand, entry by entry, bypassing the store.

    This is what an attacker holding (or not holding) a key can produce: any
    entries, any checkpoints, any order.  `lines()` gives the file's lines.
    """

    def __init__(self, keys: Iterable[SigningKey], journal: str | None = None) -> None:
        self.journal = journal or new_journal_id()
        self.keys = list(keys)
        self.records: list[bytes] = []
        self.tree = merkle.CompactTree()
        self.prev: bytes | None = None
        self.seq = 0
        self.entries: list[SignedEntry] = []

    def entry(
        self,
        key: SigningKey,
        kind: str = "note",
        body: Mapping[str, Any] | None = None,
        *,
        seq: int | None = None,
        prev: bytes | bool | None = True,
        journal: str | None = None,
        signed: bool = True,
    ) -> SignedEntry:
        """Sign and add an entry (by default the correct next one in the chain).

        With `signed=False` the entry carries no signature of its own, as the
        entries of a batch do (its signer's checkpoint must cover it).
        """
        entry = Entry(
            journal=journal or self.journal,
            seq=self.seq if seq is None else seq,
            prev=self.prev if prev is True else (prev or None),
            time=T0 + _dt.timedelta(seconds=self.seq),
            actor=Actor.TOOL,
            kind=kind,
            body=dict(body or {}),
            signer=key.keyid,
        )
        record = SignedEntry.sign(entry, key) if signed else SignedEntry.sign(entry, key, own_signature=False)
        self.records.append(record.to_line() + b"\n")
        self.tree.append(record.leaf_hash)
        self.prev = record.hash
        self.seq += 1
        self.entries.append(record)
        return record

    def checkpoint(self, *keys: SigningKey, origin: str | None = None) -> Checkpoint:
        """Sign a checkpoint over everything added so far and add it."""
        checkpoint = Checkpoint(origin or origin_for(self.journal), self.tree.size, self.tree.root(), T0)
        for key in keys or self.keys[:1]:
            checkpoint = checkpoint.sign(key)
        self.records.append(checkpoint.to_line() + b"\n")
        return checkpoint

    def lines(self) -> list[bytes]:
        head = [Header(self.journal).to_line() + b"\n"]
        head += [KeyRecord(key.public).to_line() + b"\n" for key in self.keys]
        return head + self.records

    def data(self) -> bytes:
        return b"".join(self.lines())

    def write(self, path: Path) -> Path:
        path.write_bytes(self.data())
        return path


def forge(key: SigningKey, n_entries: int, *, checkpoint_every: bool = False) -> ForgedJournal:
    """A well-formed forged journal of `n_entries` (genesis included), one key."""
    journal = ForgedJournal([key])
    for i in range(n_entries):
        journal.entry(key, GENESIS_KIND if i == 0 else "note", {"i": i})
        if checkpoint_every:
            journal.checkpoint(key)
    if not checkpoint_every:
        journal.checkpoint(key)
    return journal
