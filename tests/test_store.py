"""The SQLite journal store: appending, sealing, naming, export, import, durability."""

from __future__ import annotations

import base64
import datetime as _dt
import itertools
import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import provenance.store as store_module
from _journal_fixtures import build_journal, export_bytes, fixed_key, same, split_lines, verify_bytes
from provenance import __version__
from provenance._home import HOME_ENV
from provenance.errors import (
    ForkedJournalError,
    JournalNotFoundError,
    StoreError,
    UsageError,
    VerificationError,
)
from provenance.journal import ENTRY_PAYLOAD_TYPE, GENESIS_KIND, SEAL_KIND, Actor, Checkpoint, SignedEntry, pae
from provenance.merkle import root_of
from provenance.store import NewEntry, Store

A = fixed_key(1, "a")
B = fixed_key(2, "b")
SRC = Path(__file__).resolve().parent.parent / "src"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store.sqlite") as s:
        yield s


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- creating and appending ---------------------------------------------------------------------------


def test_create_journal(store: Store) -> None:
    journal = store.create_journal(A, title="My picture", body={"extra": 1})
    assert len(journal) == 32 and all(c in "0123456789abcdef" for c in journal)
    info = store.info(journal)
    assert (info.id, info.title, info.size, info.sealed) == (journal, "My picture", 1, False)
    (genesis,) = store.entries(journal)
    assert genesis.entry.seq == 0 and genesis.entry.prev is None and genesis.entry.kind == GENESIS_KIND
    assert genesis.entry.actor == Actor.HUMAN
    assert genesis.entry.body == {"title": "My picture", "tool": {"name": "provenance", "version": __version__},
                                  "extra": 1}
    assert info.head == genesis.hash
    assert info.root == root_of([genesis.leaf_hash]) == store.checkpoint(journal).root
    assert store.verify(journal, trusted=[A.public]).status == "valid"


def test_append_chains_and_checkpoints_every_entry(store: Store) -> None:
    journal = store.create_journal(A)
    previous = store.info(journal).head
    hashes = [previous]
    for i in range(1, 6):
        signed = store.append(journal, "prompt.set", {"i": i, "g": 7.5}, key=A, actor="tool")
        assert signed.entry.seq == i and signed.entry.prev == previous
        assert signed.entry.signer == A.keyid and signed.signature_valid(A.public)
        previous = signed.hash
        hashes.append(previous)
        checkpoint = store.checkpoint(journal)
        assert checkpoint.size == i + 1
        assert checkpoint.signers({A.keyid: A.public}) == [A.keyid]
    entries = list(store.entries(journal))
    assert [e.hash for e in entries] == hashes
    assert [e.entry.seq for e in store.entries(journal, start=3)] == [3, 4, 5]
    leaves = store.leaf_hashes(journal)
    assert leaves == [e.leaf_hash for e in entries]
    for size in range(1, 7):
        assert store.checkpoint(journal, size).root == root_of(leaves[:size])
        assert store.leaf_hashes(journal, size) == leaves[:size]
    assert store.info(journal).root == root_of(leaves)
    assert [k.keyid for k in store.public_keys(journal)] == [A.keyid]


def test_append_with_explicit_time_and_actor(store: Store) -> None:
    journal = store.create_journal(A)
    moment = _dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=_dt.UTC)
    signed = store.append(journal, "note", {}, key=A, actor=Actor.AUTOMATION, time=moment)
    assert signed.entry.time == moment and signed.entry.actor == Actor.AUTOMATION


def test_append_many_is_one_transaction_and_one_checkpoint(store: Store) -> None:
    journal = store.create_journal(A)
    assert store.append_many(journal, [], key=A) == []
    assert store.info(journal).size == 1
    batch = store.append_many(journal, [NewEntry("note", {"i": i}) for i in range(5)], key=A)
    assert [s.entry.seq for s in batch] == [1, 2, 3, 4, 5]
    assert all(b.entry.prev == a.hash for a, b in itertools.pairwise(batch))
    # Batched entries are covered by the batch's checkpoint, not signed one by one.
    assert all(s.signature is None for s in batch)
    assert store.checkpoint(journal).size == 6
    for size in range(2, 6):
        with pytest.raises(JournalNotFoundError):
            store.checkpoint(journal, size)
    assert store.verify(journal, trusted=[A.public]).status == "valid"
    assert store.verify(journal, thorough=True).valid
    signed = store.append_many(journal, [NewEntry("note", {"j": i}) for i in range(2)], key=A, sign_entries=True)
    assert all(s.signature_valid(A.public) for s in signed)
    assert verify_bytes(export_bytes(store, journal), thorough=True).status != "invalid"


def test_long_batches_are_checkpointed_every_span(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    span = 3
    monkeypatch.setattr(store_module, "CHECKPOINT_SPAN", span)
    journal = store.create_journal(A)
    store.append_many(journal, [NewEntry("note", {"i": i}) for i in range(10)], key=A)
    assert [store.checkpoint(journal, size).size for size in (3, 6, 9, 11)] == [3, 6, 9, 11]
    thin = split_lines(export_bytes(store, journal))
    kept = [Checkpoint.from_note(json.loads(line)["note"]).size for line in thin if b'"checkpoint"' in line]
    assert kept[-1] == 11
    assert all(b - a <= span for a, b in itertools.pairwise([0, *kept])), kept
    assert verify_bytes(b"".join(thin), trusted=[A.public]).status == "valid"


def test_thinned_export_keeps_each_batch_signers_checkpoint(store: Store) -> None:
    journal = store.create_journal(A)
    store.append_many(journal, [NewEntry("note", {"i": i}) for i in range(3)], key=B)
    store.append(journal, "note", {"after": "the batch"}, key=A)
    assert store.verify(journal).valid  # every checkpoint: fine
    verdict = verify_bytes(export_bytes(store, journal))
    assert verdict.valid, verdict.reason


@pytest.mark.parametrize(
    "items",
    [
        [NewEntry("note"), NewEntry("Bad Kind")],
        [NewEntry("note"), NewEntry(GENESIS_KIND)],
        [NewEntry(SEAL_KIND), NewEntry("note")],
        [NewEntry("note", {1: "non-string key"})],  # type: ignore[dict-item]
        [NewEntry("note", {"x": object()})],
        [NewEntry("note", {"x": "\ud800"})],  # not UTF-8
        [NewEntry("note", {"x": 10**5000})],
        [NewEntry("note", time=_dt.datetime(2024, 1, 1))],  # naive time
    ],
    ids=["kind", "genesis", "after-seal", "key", "object", "surrogate", "huge-int", "naive-time"],
)
def test_a_refused_batch_writes_nothing(store: Store, items: list[NewEntry]) -> None:
    journal = store.create_journal(A)
    before = export_bytes(store, journal, all_checkpoints=True)
    with pytest.raises(UsageError):
        store.append_many(journal, items, key=A)
    assert export_bytes(store, journal, all_checkpoints=True) == before
    assert store.info(journal).size == 1 and not store.info(journal).sealed


def test_append_of_a_huge_integer_is_refused_or_round_trips(store: Store) -> None:
    """(Regression: a 45-digit integer was signed and stored, then the journal could not be read.)"""
    journal = store.create_journal(A)
    try:
        store.append(journal, "note", {"n": 10**45}, key=A)
    except UsageError:
        return
    assert store.verify(journal).valid
    assert list(store.entries(journal))[1].entry.body == {"n": 10**45}


def test_append_to_unknown_journal(store: Store) -> None:
    with pytest.raises(JournalNotFoundError):
        store.append("0" * 32, "note", {}, key=A)


# -- sealing -----------------------------------------------------------------------------------------------


def test_seal_closes_the_journal(store: Store) -> None:
    journal = build_journal(store, A, [{"i": 1}])
    seal = store.seal(journal, key=A, reason="finished")
    assert seal.entry.kind == SEAL_KIND and seal.entry.seq == 2
    assert seal.entry.body == {"entries": 3, "reason": "finished"}
    assert store.info(journal).sealed
    before = export_bytes(store, journal, all_checkpoints=True)
    for attempt in (
        lambda: store.append(journal, "note", {}, key=A),
        lambda: store.append_many(journal, [NewEntry("note")], key=A),
        lambda: store.seal(journal, key=A),
        lambda: store.append(journal, "note", {}, key=B),
    ):
        with pytest.raises(UsageError, match="sealed"):
            attempt()
    assert export_bytes(store, journal, all_checkpoints=True) == before
    verdict = store.verify(journal)
    assert verdict.valid and verdict.sealed


# -- names ----------------------------------------------------------------------------------------------------


def test_resolve_prefixes(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = iter(["abc" + "0" * 29, "abd" + "0" * 29, "f" * 32])
    monkeypatch.setattr(store_module, "new_journal_id", lambda: next(ids))
    first, second, third = (store.create_journal(A) for _ in range(3))
    assert store.resolve(first) == first
    assert store.resolve("abc") == first
    assert store.resolve("abd0") == second
    assert store.resolve("f") == third
    for ambiguous in ("a", "ab"):
        with pytest.raises(UsageError, match="ambiguous"):
            store.resolve(ambiguous)
    for missing in ("b", "abe", "abc1", "0" * 32):
        with pytest.raises(JournalNotFoundError):
            store.resolve(missing)
    for invalid in ("", "ABC", "xyz", "a" * 33, "ab%", "ab_", "../ab", "a b"):
        with pytest.raises(JournalNotFoundError):
            store.resolve(invalid)


def test_journals_lists_every_journal(store: Store) -> None:
    created = [store.create_journal(A, title=f"t{i}") for i in range(3)]
    listed = store.journals()
    assert sorted(j.id for j in listed) == sorted(created)
    assert {j.title for j in listed} == {"t0", "t1", "t2"}
    with pytest.raises(JournalNotFoundError):
        store.info("0" * 32)


# -- the store file ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0o000, 0o022])
def test_store_files_are_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mask: int) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv(HOME_ENV, str(home))
    old = os.umask(mask)
    try:
        with Store() as s:
            s.create_journal(A)
            files = sorted(p.name for p in home.iterdir())
            modes = {p.name: mode(p) for p in home.iterdir()}
    finally:
        os.umask(old)
    assert "store.sqlite" in files
    assert mode(home) == 0o700
    assert all(m == 0o600 for m in modes.values()), modes


def test_reopen_persists(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    with Store(path) as s:
        journal = build_journal(s, A, [{"i": i} for i in range(3)], title="kept")
        exported = export_bytes(s, journal, all_checkpoints=True)
    with Store(path) as s:
        info = s.info(journal)
        assert (info.size, info.title) == (4, "kept")
        assert export_bytes(s, journal, all_checkpoints=True) == exported
        signed = s.append(journal, "note", {"after": "reopen"}, key=A)
        assert signed.entry.seq == 4 and signed.entry.prev == info.head
        assert s.verify(journal).valid


def test_store_with_another_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    with pytest.raises(StoreError, match="schema"):
        Store(path)


def test_a_schema_1_store_is_migrated_and_its_images_still_found(tmp_path: Path) -> None:
    """Schema 1 kept each perceptual hash once per index band; opening it keeps
    every recorded hash once, and the next search rebuilds the bands."""
    from PIL import Image

    from provenance import matching, phash

    image = Image.radial_gradient("L").convert("RGB")
    value = phash.reference_hash(image).to_str()
    path = tmp_path / "store.sqlite"
    with Store(path) as s:
        journal = s.create_journal(A)
        s.append(journal, "generation", {"candidates": [{"phash": value}, {"phash": value}]}, key=A)
    with sqlite3.connect(path) as db:  # rewrite it as schema 1 wrote it
        db.execute("DROP TABLE phash_bands")
        db.execute("DROP TABLE phashes")
        db.execute(
            "CREATE TABLE phash_index (band INTEGER NOT NULL, journal TEXT NOT NULL, seq INTEGER NOT NULL, "
            "phash TEXT NOT NULL, PRIMARY KEY (band, journal, seq, phash)) WITHOUT ROWID"
        )
        db.executemany(
            "INSERT INTO phash_index VALUES (?, ?, 1, ?)",
            [(band, journal, value) for band in phash.index_keys(phash.PerceptualHash.from_str(value))],
        )
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    with Store(path) as s:
        assert s._query("SELECT value FROM meta WHERE key = 'schema'") == [("2",)]
        assert s._query("SELECT journal, seq, phash FROM phashes") == [(journal, 1, value)]
        result = matching.find_in_store(s, phash.suspect_hash(image))
        assert result.matched and result.best is not None and journal in result.best.description


def test_perceptual_hashes_are_indexed_by_the_next_search_not_by_append(store: Store) -> None:
    """Appending writes one row per recorded hash; its index bands (scattered
    pages) are written once, by the next search, and searches with nothing new
    take no write lock."""
    from PIL import Image

    from provenance import phash

    value = phash.reference_hash(Image.radial_gradient("L")).to_str()
    journal = store.create_journal(A)
    store.append(journal, "generation", {"candidates": [{"phash": value}, {"phash": "ph2:not-a-hash"}]}, key=A)
    assert store._query("SELECT COUNT(*) FROM phashes") == [(2,)]
    assert store._query("SELECT COUNT(*) FROM phash_bands") == [(0,)]
    keys = phash.index_keys(phash.PerceptualHash.from_str(value))
    assert store.phash_candidates(keys[:1]) == [(journal, 1, value)]
    assert store._query("SELECT COUNT(*) FROM phash_bands") == [(len(keys),)]  # the bad one is skipped
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    try:
        assert store.phash_candidates(keys[1:2]) == [(journal, 1, value)]
    finally:
        store._db.set_trace_callback(None)
    assert not any(s.startswith(("BEGIN", "INSERT")) for s in statements)


@pytest.mark.parametrize("content", [b"not a database at all" * 100, b"\x89PNG\r\n\x1a\n" + b"\x00" * 200])
def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "store.sqlite"
    path.write_bytes(content)
    with pytest.raises(StoreError):
        Store(path)


def test_unwritable_store_location(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Store(tmp_path / "missing-dir" / "store.sqlite")


def test_rows_altered_in_the_database_are_caught_by_verify(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    with Store(path) as s:
        journal = build_journal(s, A, [{"amount": 10}, {"amount": 20}])
    with sqlite3.connect(path) as db:
        (line,) = db.execute("SELECT line FROM entries WHERE journal = ? AND seq = 1", (journal,)).fetchone()
        record = json.loads(line)
        payload = base64.b64decode(record["payload"]).replace(b'"amount":10', b'"amount":99')
        record["payload"] = base64.b64encode(payload).decode()
        db.execute(
            "UPDATE entries SET line = ? WHERE journal = ? AND seq = 1",
            (json.dumps(record, separators=(",", ":"), sort_keys=True).encode(), journal),
        )
    with Store(path) as s:
        verdict = s.verify(journal)
        assert verdict.status == "invalid"


# -- export ------------------------------------------------------------------------------------------------


def test_export_thinned_and_full(store: Store, tmp_path: Path) -> None:
    journal = store.create_journal(A)
    for i in range(3):
        store.append(journal, "note", {"i": i}, key=A)
    store.append(journal, "export", {"to": "image.png"}, key=A)  # size 5: its checkpoint is kept
    for i in range(2):
        store.append(journal, "note", {"j": i}, key=A)
    thin = split_lines(export_bytes(store, journal))
    full = split_lines(export_bytes(store, journal, all_checkpoints=True))
    thin_sizes = [Checkpoint.from_note(json.loads(line)["note"]).size for line in thin if b'"checkpoint"' in line]
    full_sizes = [Checkpoint.from_note(json.loads(line)["note"]).size for line in full if b'"checkpoint"' in line]
    assert thin_sizes == [5, 7]
    assert full_sizes == list(range(1, 8))
    assert [line for line in thin if b'"entry"' in line] == [line for line in full if b'"entry"' in line]
    assert set(thin) <= set(full)
    for lines in (thin, full):
        assert verify_bytes(b"".join(lines), trusted=[A.public]).status == "valid"
    # To a path: atomic, nothing left behind.
    target = tmp_path / "out" / "j.jsonl"
    target.parent.mkdir()
    store.export(journal, target)
    assert target.read_bytes() == b"".join(thin)
    assert sorted(p.name for p in target.parent.iterdir()) == ["j.jsonl"]
    store.export(journal, str(target), all_checkpoints=True)
    assert target.read_bytes() == b"".join(full)


def test_export_to_an_unwritable_place(store: Store, tmp_path: Path) -> None:
    journal = store.create_journal(A)
    with pytest.raises(StoreError):
        store.export(journal, tmp_path / "no-such-dir" / "j.jsonl")


def test_export_of_an_unknown_journal(store: Store) -> None:
    with pytest.raises(JournalNotFoundError):
        export_bytes(store, "0" * 32)


# -- import ------------------------------------------------------------------------------------------------


@pytest.fixture
def source(tmp_path: Path) -> Iterator[tuple[Store, str]]:
    with Store(tmp_path / "source.sqlite") as s:
        journal = build_journal(
            s, A, [{"i": i, "g": 7.5, "seed": 2**64 - 1, "b": b"\x00"} for i in range(5)], title="origin"
        )
        yield s, journal


def cut_after_checkpoint(data: bytes, size: int) -> bytes:
    lines = split_lines(data)
    for i, line in enumerate(lines):
        if b'"checkpoint"' in line and Checkpoint.from_note(json.loads(line)["note"]).size == size:
            return b"".join(lines[: i + 1])
    raise AssertionError(f"no checkpoint at size {size}")


def test_import_new_journal(source: tuple[Store, str], tmp_path: Path) -> None:
    origin, journal = source
    path = tmp_path / "j.jsonl"
    origin.export(journal, path, all_checkpoints=True)
    with Store(tmp_path / "dest.sqlite") as dest:
        assert dest.import_file(path) == journal
        info = dest.info(journal)
        assert (info.size, info.title, info.sealed) == (6, "origin", False)
        assert info.root == origin.info(journal).root and info.head == origin.info(journal).head
        assert export_bytes(dest, journal, all_checkpoints=True) == path.read_bytes()
        assert [e.hash for e in dest.entries(journal)] == [e.hash for e in origin.entries(journal)]
        assert same(dict(list(dest.entries(journal))[3].entry.body), {"i": 2, "g": 7.5, "seed": 2**64 - 1,
                                                                    "b": b"\x00"})
        # Importing the same file again changes nothing.
        assert dest.import_file(path) == journal
        assert export_bytes(dest, journal, all_checkpoints=True) == path.read_bytes()
        # The imported journal can be continued here, with another key.
        dest.append(journal, "note", {"here": True}, key=B)
        assert dest.verify(journal, trusted=[A.public, B.public]).status == "valid"


def test_import_extends_a_stored_prefix(source: tuple[Store, str], tmp_path: Path) -> None:
    origin, journal = source
    full = export_bytes(origin, journal, all_checkpoints=True)
    prefix, whole = tmp_path / "prefix.jsonl", tmp_path / "whole.jsonl"
    prefix.write_bytes(cut_after_checkpoint(full, 3))
    whole.write_bytes(full)
    with Store(tmp_path / "dest.sqlite") as dest:
        dest.import_file(prefix)
        assert dest.info(journal).size == 3
        dest.import_file(whole)
        assert dest.info(journal).size == 6
        assert dest.info(journal).root == origin.info(journal).root
        assert export_bytes(dest, journal, all_checkpoints=True) == full
        # A shorter prefix of what is stored changes nothing.
        dest.import_file(prefix)
        assert dest.info(journal).size == 6
        # The thinned export (one checkpoint) extends a prefix too.
        with Store(tmp_path / "dest2.sqlite") as dest2:
            dest2.import_file(prefix)
            thin = tmp_path / "thin.jsonl"
            origin.export(journal, thin)
            dest2.import_file(thin)
            assert dest2.info(journal).head == origin.info(journal).head
            assert dest2.verify(journal).valid


def test_import_of_a_fork_is_refused(source: tuple[Store, str], tmp_path: Path) -> None:
    origin, journal = source
    full = export_bytes(origin, journal, all_checkpoints=True)
    prefix, whole = tmp_path / "prefix.jsonl", tmp_path / "whole.jsonl"
    prefix.write_bytes(cut_after_checkpoint(full, 3))
    whole.write_bytes(full)
    with Store(tmp_path / "dest.sqlite") as dest:
        dest.import_file(prefix)
        for i in range(4):
            dest.append(journal, "note", {"fork": i}, key=A)  # the same key, a different history
        before = export_bytes(dest, journal, all_checkpoints=True)
        with pytest.raises(ForkedJournalError):
            dest.import_file(whole)
        assert export_bytes(dest, journal, all_checkpoints=True) == before
        # And the other way round.
        forked = tmp_path / "forked.jsonl"
        dest.export(journal, forked)
    with pytest.raises(ForkedJournalError):
        origin.import_file(forked)
    assert origin.info(journal).size == 6


def test_import_refuses_invalid_files(source: tuple[Store, str], tmp_path: Path) -> None:
    origin, journal = source
    data = export_bytes(origin, journal)
    tampered = data.replace(b'"title":"origin"', b'"title":"forged"')  # inside base64: use a payload byte
    lines = split_lines(data)
    bad_files = {
        "truncated": b"".join(lines[:-1]),
        "reordered": b"".join([*lines[:2], lines[3], lines[2], *lines[4:]]),
        "garbage": b"\x00\xff garbage\n",
        "empty": b"",
        "byte": data[:200] + bytes([data[200] ^ 1]) + data[201:],
    }
    assert tampered == data  # (payloads are base64; the byte change above is the real tamper)
    with Store(tmp_path / "dest.sqlite") as dest:
        for name, content in bad_files.items():
            path = tmp_path / f"{name}.jsonl"
            path.write_bytes(content)
            with pytest.raises(VerificationError):
                dest.import_file(path)
            assert dest.journals() == [], name
        with pytest.raises(StoreError):
            dest.import_file(tmp_path / "missing.jsonl")


def test_import_stores_only_what_it_verified(
    source: tuple[Store, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin, journal = source
    good = export_bytes(origin, journal)
    lines = split_lines(good)
    # The swapped-in file differs in its last entry: a new body in A's name, signed by someone else.
    last = list(origin.entries(journal))[-1]
    evil_entry = attrs.evolve(last.entry, body={"evil": True})
    payload = evil_entry.to_payload()
    evil = SignedEntry(payload, A.keyid, fixed_key(99).sign(pae(ENTRY_PAYLOAD_TYPE, payload)), evil_entry)
    swapped = b"".join([*lines[:-2], evil.to_line() + b"\n", lines[-1]])
    assert verify_bytes(swapped).status == "invalid"
    path = tmp_path / "j.jsonl"
    path.write_bytes(good)
    real_verify = store_module.verify_lines

    def verify_then_swap(*args: Any, **kwargs: Any) -> Any:
        verdict = real_verify(*args, **kwargs)
        path.write_bytes(swapped)  # the file changes after it was checked
        return verdict

    monkeypatch.setattr(store_module, "verify_lines", verify_then_swap)
    with Store(tmp_path / "dest.sqlite") as dest:
        try:
            dest.import_file(path)
        except (VerificationError, StoreError, KeyError):
            return  # refusing is fine
        monkeypatch.setattr(store_module, "verify_lines", real_verify)
        assert dest.verify(journal).valid


def test_import_of_a_sealed_journal(tmp_path: Path) -> None:
    with Store(tmp_path / "a.sqlite") as a:
        journal = build_journal(a, A, [{"x": 1}])
        a.seal(journal, key=A)
        path = tmp_path / "sealed.jsonl"
        a.export(journal, path)
    with Store(tmp_path / "b.sqlite") as b:
        b.import_file(path)
        assert b.info(journal).sealed
        with pytest.raises(UsageError, match="sealed"):
            b.append(journal, "note", {}, key=A)


# -- many processes at once ------------------------------------------------------------------------------

APPENDER = textwrap.dedent(
    """
    import os, sys, time
    from provenance.keys import SigningKey
    from provenance.store import Store

    path, journal, seed, go, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    key = SigningKey.from_seed(bytes([seed]) * 32, f"k{seed}")
    store = Store(path)
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.005)
    for n in range(count):
        store.append(journal, "note", {"proc": seed, "n": n}, key=key)
    store.close()
    print("done", flush=True)
    """
)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_concurrent_appenders_to_one_journal(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    with Store(path) as s:
        journal = s.create_journal(A)
    script = tmp_path / "appender.py"
    script.write_text(APPENDER)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(path), journal, str(seed), str(go), "50"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(),
        )
        for seed in (11, 12, 13, 14)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"ready\n"
        go.touch()  # all four start appending at the same moment
        for proc in procs:
            out, err = proc.communicate(timeout=200)
            assert proc.returncode == 0, err.decode()
            assert out == b"done\n"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    with Store(path) as s:
        entries = list(s.entries(journal))
        assert [e.entry.seq for e in entries] == list(range(201))
        assert all(b.entry.prev == a.hash for a, b in itertools.pairwise(entries))
        for seed in (11, 12, 13, 14):
            mine = [e.entry.body["n"] for e in entries if e.entry.body.get("proc") == seed]
            assert mine == list(range(50))  # each process's entries all there, in its order
        assert s.info(journal).size == 201
        keys = [fixed_key(seed).public for seed in (11, 12, 13, 14)] + [A.public]
        assert s.verify(journal, trusted=keys).status == "valid"
        assert verify_bytes(export_bytes(s, journal), trusted=keys, thorough=True).status == "valid"
        assert s._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# -- killed mid-append ----------------------------------------------------------------------------------------

CRASHER = textwrap.dedent(
    """
    import sys
    from provenance.keys import SigningKey
    from provenance.store import Store

    path, journal = sys.argv[1], sys.argv[2]
    key = SigningKey.from_seed(bytes([1]) * 32, "a")
    store = Store(path)
    n = store.info(journal).size
    sys.stdout.write("ready\\n")
    sys.stdout.flush()
    while True:
        signed = store.append(journal, "note", {"n": n, "pad": "x" * (n % 700)}, key=key)
        sys.stdout.write(signed.hash.hex() + "\\n")
        sys.stdout.flush()
        n += 1
    """
)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_at_random_moments_loses_nothing_returned(tmp_path: Path) -> None:
    rng = random.Random(20240607)
    path = tmp_path / "store.sqlite"
    with Store(path) as s:
        journal = s.create_journal(A)
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    reported: list[str] = []
    deadline = time.monotonic() + 240
    rounds = 0
    for _ in range(15):
        if time.monotonic() > deadline:
            break
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path), journal],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(),
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"ready\n", proc.stderr.read() if proc.stderr else b""
            time.sleep(rng.uniform(0.05, 0.5))
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL
        complete = out.split(b"\n")[:-1]  # the last piece may be a half-written line
        reported.extend(line.decode() for line in complete)
        rounds += 1
    assert rounds >= 5
    assert reported, "the child never completed an append"
    with Store(path) as s:
        assert s._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        verdict = s.verify(journal, trusted=[A.public])
        assert verdict.status == "valid", verdict.reason
        stored = [e.hash.hex() for e in s.entries(journal)]
        assert [e.entry.seq for e in s.entries(journal)] == list(range(len(stored)))
        # Every hash the child saw returned is there, in the order it was returned.
        positions = {h: i for i, h in enumerate(stored)}
        missing = [h for h in reported if h not in positions]
        assert not missing, f"{len(missing)} returned appends lost"
        order = [positions[h] for h in reported]
        assert order == sorted(order) and len(set(order)) == len(order)
        # And the journal can be continued after the crashes.
        s.append(journal, "note", {"after": "crashes"}, key=A)
        assert s.verify(journal).valid


def test_before_commit_sees_the_entry_and_can_cancel_the_append(store: Store) -> None:
    journal = store.create_journal(A)
    seen: list[bytes] = []

    def export(entry: SignedEntry) -> None:
        seen.append(b"".join(store.export_lines(journal, blobs=False)))

    signed = store.append(journal, "note", {"n": 1}, key=A, before_commit=export)
    assert seen == [export_bytes(store, journal)] and signed.to_line() in seen[0]

    def fail(entry: SignedEntry) -> None:
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError):
        store.append(journal, "note", {"n": 2}, key=A, before_commit=fail)
    assert store.info(journal).size == 2 and verify_bytes(export_bytes(store, journal)).valid


def test_a_long_backlog_of_perceptual_hashes_is_indexed_in_short_bounded_batches(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    from provenance import phash

    monkeypatch.setattr(store_module, "_INDEX_BATCH", 2)
    journal = store.create_journal(A)
    values = [phash.reference_hash(Image.radial_gradient("L").rotate(angle)).to_str() for angle in range(0, 50, 10)]
    for value in values:
        store.append(journal, "generation", {"candidates": [{"phash": value}]}, key=A)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    try:
        store.phash_candidates([0])
    finally:
        store._db.set_trace_callback(None)
    # One short transaction per batch of two, so that no search holds the write lock for long.
    assert [s for s in statements if s.startswith(("BEGIN", "COMMIT"))] == ["BEGIN IMMEDIATE", "COMMIT"] * 3
    for seq, value in enumerate(values, start=1):
        keys = phash.index_keys(phash.PerceptualHash.from_str(value))
        assert (journal, seq, value) in store.phash_candidates(keys[:1])
    assert store._query("SELECT value FROM meta WHERE key = 'phash_bands'") == [("5",)]
