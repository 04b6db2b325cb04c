"""Tamper detection: the verifier's verdict on altered, cut, spliced and forked journals.

Journals are made by the real store (module-scoped, so that examples are
cheap) or, where the store would refuse, forged entry by entry with real keys.
Every verification goes through `verify_lines`, which must return a verdict
for any input and never raise.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import tracemalloc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _journal_fixtures import (
    T0,
    ForgedJournal,
    build_journal,
    export_bytes,
    fixed_key,
    forge,
    same,
    split_lines,
)
from provenance._encoding import canonical_json
from provenance.errors import UsageError
from provenance.journal import GENESIS_KIND, SEAL_KIND, Checkpoint, KeyRecord, SignedEntry, TimestampRecord
from provenance.store import Store
from provenance.verify import Verdict, verify_file, verify_lines

A = fixed_key(1, "a")
B = fixed_key(2, "b")
C = fixed_key(3, "c")

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

SMALL_BODIES: list[dict[str, Any]] = [
    {"prompt": "a cat, ünïcode ✓", "guidance": 7.5, "steps": 30, "seed": 2**64 - 1},
    {"mask": b"\x00\x01\xff", "scale": 7.0, "negative": None, "tags": ["a", "b"], "$ref": "x"},
]
LONG_BODIES: list[dict[str, Any]] = [{"i": i, "prompt": f"step {i}"} for i in range(7)]


def check(lines: Sequence[bytes], **options: Any) -> Verdict:
    """verify_lines, asserting that it returned a verdict (an exception fails the test)."""
    verdict = verify_lines(list(lines), **options)
    assert isinstance(verdict, Verdict)
    assert verdict.status in {"valid", "untrusted", "invalid"}
    if verdict.status == "invalid":
        assert not verdict.ok() and not verdict.valid
        assert verdict.reason and "\n" not in verdict.reason
    return verdict


def assert_invalid(lines: Sequence[bytes], what: str = "", **options: Any) -> Verdict:
    verdict = check(lines, **options)
    assert verdict.status == "invalid", f"{what}: accepted ({verdict.reason})"
    return verdict


def assert_sound(lines: Sequence[bytes], **options: Any) -> Verdict:
    verdict = check(lines, **options)
    assert verdict.valid, verdict.reason
    return verdict


@dataclass(repr=False)
class World:
    store: Store
    small: str
    small_thin: bytes
    small_all: bytes
    long: str
    long_thin: bytes
    long_all: bytes
    same_key: bytes  # another journal, same key, same bodies
    other_key: bytes  # another journal, another key, same bodies
    two_keys: str
    two_thin: bytes
    two_all: bytes
    sealed_thin: bytes
    batch_thin: bytes  # entries appended in a batch carry no signature of their own


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    store = Store(tmp_path_factory.mktemp("verify") / "store.sqlite")
    small = build_journal(store, A, SMALL_BODIES)
    long = build_journal(store, A, LONG_BODIES)
    same_key = build_journal(store, A, LONG_BODIES)
    other_key = build_journal(store, B, LONG_BODIES)
    two = store.create_journal(A, title="two keys")
    store.append(two, "note", {"by": "b"}, key=B)
    store.append(two, "note", {"by": "b again"}, key=B)
    store.append(two, "note", {"by": "a"}, key=A)
    sealed = build_journal(store, A, [{"x": 1}])
    store.seal(sealed, key=A, reason="done")
    batch = build_journal(store, A, SMALL_BODIES, batch=True)
    yield World(
        store=store,
        small=small,
        small_thin=export_bytes(store, small),
        small_all=export_bytes(store, small, all_checkpoints=True),
        long=long,
        long_thin=export_bytes(store, long),
        long_all=export_bytes(store, long, all_checkpoints=True),
        same_key=export_bytes(store, same_key),
        other_key=export_bytes(store, other_key),
        two_keys=two,
        two_thin=export_bytes(store, two),
        two_all=export_bytes(store, two, all_checkpoints=True),
        sealed_thin=export_bytes(store, sealed),
        batch_thin=export_bytes(store, batch),
    )
    store.close()


def entry_indices(lines: Sequence[bytes]) -> list[int]:
    return [i for i, line in enumerate(lines) if line.startswith(b'{"payload"')]


def checkpoint_indices(lines: Sequence[bytes]) -> list[int]:
    return [i for i, line in enumerate(lines) if b'"type":"checkpoint"' in line]


def entry_signature_spans(data: bytes) -> set[int]:
    """File offsets of the base64 characters of every entry's signature."""
    spans: set[int] = set()
    offset = 0
    for line in split_lines(data):
        if line.startswith(b'{"payload"') and b'"sig":"' in line:
            start = line.index(b'"sig":"') + len(b'"sig":"')
            end = line.index(b'"', start)
            spans.update(range(offset + start, offset + end))
        offset += len(line)
    return spans


def changed_byte(byte: int) -> int:
    """A different byte of the same kind where possible (a base64 digit stays one)."""
    char = chr(byte)
    if char in B64:
        return ord(B64[(B64.index(char) + 1) % 64])
    return byte ^ 0x01


def with_byte(data: bytes, position: int, value: int) -> bytes:
    return data[:position] + bytes([value]) + data[position + 1 :]


def flip_entry_signature(line: bytes, index: int = 10) -> bytes:
    record = json.loads(line)
    sig = record["signatures"][0]["sig"]
    record["signatures"][0]["sig"] = sig[:index] + B64[(B64.index(sig[index]) + 1) % 64] + sig[index + 1 :]
    return canonical_json(record) + b"\n"


# -- the exports themselves ------------------------------------------------------------------------


def test_store_exports_verify(world: World) -> None:
    for data in (world.small_thin, world.small_all, world.long_thin, world.long_all, world.same_key,
                 world.other_key, world.two_thin, world.two_all, world.sealed_thin, world.batch_thin):
        verdict = check(split_lines(data))
        assert verdict.status == "untrusted" and verdict.code == "unpinned" and verdict.ok()
        assert verdict.valid and not verdict.pinned
    assert check(split_lines(world.long_thin)).entries == 8
    assert len(checkpoint_indices(split_lines(world.long_thin))) == 1
    assert len(checkpoint_indices(split_lines(world.long_all))) == 8
    sealed = check(split_lines(world.sealed_thin))
    assert sealed.sealed and sealed.entries == 3
    two = check(split_lines(world.two_thin))
    assert set(two.signers) == {A.keyid, B.keyid}
    assert world.batch_thin.count(b'"signatures":[]') == 2


def test_verify_file_matches_verify_lines(world: World, tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(world.long_thin)
    assert verify_file(path) == check(split_lines(world.long_thin))


def test_visitor_sees_every_entry_in_order(world: World) -> None:
    seen: list[SignedEntry] = []
    check(split_lines(world.small_thin), visitor=seen.append)
    assert [s.entry.seq for s in seen] == [0, 1, 2]
    assert seen[0].entry.kind == GENESIS_KIND
    assert same(dict(seen[1].entry.body), SMALL_BODIES[0])
    assert same(dict(seen[2].entry.body), SMALL_BODIES[1])


# -- any single changed byte ----------------------------------------------------------------------


@pytest.mark.parametrize("export", ["small_thin", "batch_thin"])
def test_single_byte_change_outside_entry_signatures_is_invalid(world: World, export: str) -> None:
    """Every byte of the file but the entry signatures, in default mode."""
    data = getattr(world, export)
    signatures = entry_signature_spans(data)
    accepted = []
    for position in range(len(data)):
        if position in signatures:
            continue
        changed = with_byte(data, position, changed_byte(data[position]))
        if check(split_lines(changed)).status != "invalid":
            accepted.append(position)
    assert not accepted, f"changed bytes accepted at {accepted[:10]}"


def test_single_byte_change_in_entry_signatures_is_invalid_when_thorough(world: World) -> None:
    data = world.small_thin
    for position in sorted(entry_signature_spans(data)):
        changed = with_byte(data, position, changed_byte(data[position]))
        verdict = assert_invalid(split_lines(changed), f"byte {position}", thorough=True)
        assert verdict.code in {"bad-signature", "malformed"}


@pytest.mark.parametrize("export", ["small_thin", "small_all", "two_all"])
def test_single_byte_change_in_entry_signatures_is_invalid_by_default(world: World, export: str) -> None:
    data = getattr(world, export)
    accepted = [
        position
        for position in sorted(entry_signature_spans(data))
        if check(split_lines(with_byte(data, position, changed_byte(data[position])))).status != "invalid"
    ]
    assert not accepted, f"{len(accepted)} changed signature bytes accepted, e.g. at {accepted[:5]}"


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_random_byte_anywhere_is_invalid_when_thorough(world: World, data: st.DataObject) -> None:
    file = data.draw(
        st.sampled_from([world.small_all, world.two_thin, world.sealed_thin, world.batch_thin]), label="file"
    )
    position = data.draw(st.integers(0, len(file) - 1), label="position")
    value = data.draw(st.integers(0, 255).filter(lambda v: v != file[position]), label="value")
    assert_invalid(split_lines(with_byte(file, position, value)), f"byte {position}", thorough=True)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_random_byte_outside_entry_signatures_is_invalid(world: World, data: st.DataObject) -> None:
    file = data.draw(
        st.sampled_from([world.long_all, world.two_thin, world.sealed_thin, world.batch_thin]), label="file"
    )
    signatures = entry_signature_spans(file)
    position = data.draw(
        st.integers(0, len(file) - 1).filter(lambda p: p not in signatures), label="position"
    )
    value = data.draw(st.integers(0, 255).filter(lambda v: v != file[position]), label="value")
    assert_invalid(split_lines(with_byte(file, position, value)), f"byte {position}")


# -- removed, repeated, reordered lines ----------------------------------------------------------


@pytest.mark.parametrize("export", ["long_thin", "long_all"])
def test_removed_duplicated_or_moved_entry_lines_are_invalid(world: World, export: str) -> None:
    lines = split_lines(getattr(world, export))
    entries = entry_indices(lines)
    for i in entries:
        assert_invalid(lines[:i] + lines[i + 1 :], f"entry line {i} removed")
        for at in range(1, len(lines) + 1):
            assert_invalid([*lines[:at], lines[i], *lines[at:]], f"entry line {i} repeated at {at}")
            moved = lines[:i] + lines[i + 1 :]
            moved.insert(at - 1 if at > i else at, lines[i])
            if moved != lines:
                assert_invalid(moved, f"entry line {i} moved to {at}")
    for i in entries:
        for j in entries:
            if i < j:
                swapped = list(lines)
                swapped[i], swapped[j] = swapped[j], swapped[i]
                assert_invalid(swapped, f"entry lines {i} and {j} swapped")
    assert_invalid(lines[: entries[0]] + lines[entries[0] :][::-1], "reversed")


def test_header_key_and_checkpoint_lines_cannot_be_removed_repeated_or_moved(world: World) -> None:
    lines = split_lines(world.long_all)
    header, key, last = 0, 1, len(lines) - 1
    assert_invalid(lines[1:], "header removed")
    assert_invalid(lines[:1] + lines, "header repeated")
    assert_invalid([lines[key], lines[header], *lines[2:]], "header after the key")
    assert_invalid(lines[:1] + lines[2:], "key removed")
    assert_invalid(lines[:2] + lines[1:], "key repeated")
    assert_invalid(lines[:last], "last checkpoint removed")
    for i in checkpoint_indices(lines):
        for at in range(2, len(lines)):
            if at not in (i, i + 1):  # next to itself: see test_respelled_lines_are_invalid
                assert_invalid([*lines[:at], lines[i], *lines[at:]], f"checkpoint {i} repeated at {at}")
            moved = lines[:i] + lines[i + 1 :]
            moved.insert(at, lines[i])
            if moved != lines:
                assert_invalid(moved, f"checkpoint line {i} moved to {at}")


def test_dropping_intermediate_checkpoints_is_allowed(world: World) -> None:
    """Thinning: a file keeps only the checkpoints an auditor needs (by design)."""
    lines = split_lines(world.long_all)
    checkpoints = checkpoint_indices(lines)
    for i in checkpoints[:-1]:
        assert check(lines[:i] + lines[i + 1 :]).valid
    thinned = [line for i, line in enumerate(lines) if i not in checkpoints[:-1]]
    assert b"".join(thinned) == world.long_thin


# -- splices from other journals ----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["same_key", "other_key", "other_key_listed"])
def test_spliced_entries_are_invalid(world: World, source: str) -> None:
    lines = split_lines(world.long_thin)
    donor = split_lines(world.same_key if source == "same_key" else world.other_key)
    if source == "other_key_listed":  # the forger also lists the donor's key
        lines = [*lines[:2], KeyRecord(B.public).to_line() + b"\n", *lines[2:]]
    ours, theirs = entry_indices(lines), entry_indices(donor)
    assert len(ours) == len(theirs) == 8
    for start in range(8):
        for end in range(start + 1, 9):
            run = [donor[theirs[k]] for k in range(start, end)]
            replaced = lines[: ours[start]] + run + lines[ours[end - 1] + 1 :]
            assert_invalid(replaced, f"entries {start}..{end - 1} replaced")
            inserted = lines[: ours[start]] + run + lines[ours[start] :]
            assert_invalid(inserted, f"entries {start}..{end - 1} inserted")
    # The donor's checkpoint, alone or with its header.
    spliced = [*lines[:-1], donor[-1]]
    assert_invalid(spliced, "checkpoint spliced")
    assert_invalid([donor[0], *lines[1:]], "header spliced")
    assert_invalid([donor[0], *lines[1:-1], donor[-1]], "header and checkpoint spliced")
    assert_invalid([*lines, donor[-1]], "checkpoint appended")


def test_spliced_checkpoint_from_a_longer_journal_is_invalid(world: World) -> None:
    lines = split_lines(world.small_thin)
    donor = split_lines(world.long_all)
    for i in checkpoint_indices(donor):
        assert_invalid([*lines[:-1], donor[i]], f"checkpoint {i} of another journal")
        assert_invalid([*lines, donor[i]], f"checkpoint {i} of another journal appended")


# -- truncation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("export", ["long_thin", "small_thin", "two_thin", "sealed_thin"])
def test_truncation_after_any_line_is_invalid(world: World, export: str) -> None:
    data = getattr(world, export)
    lines = split_lines(data)
    for cut in range(len(lines)):
        assert_invalid(lines[:cut], f"cut after {cut} lines")
        # ... and mid-line: at the start, the middle and just before the newline.
        line = lines[cut]
        for keep in {1, len(line) // 2, len(line) - 1}:
            assert_invalid([*lines[:cut], line[:keep]], f"cut in line {cut} after {keep} bytes")


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_truncation_at_any_byte_is_invalid(world: World, data: st.DataObject) -> None:
    file = data.draw(st.sampled_from([world.long_thin, world.two_thin]), label="file")
    cut = data.draw(st.integers(0, len(file) - 1), label="cut")
    assert_invalid(split_lines(file[:cut]), f"cut at byte {cut}")


def test_well_formed_prefix_is_valid_alone_but_not_against_a_later_held_checkpoint(world: World) -> None:
    lines = split_lines(world.long_all)
    checkpoints = checkpoint_indices(lines)
    store = world.store
    latest = store.checkpoint(world.long)
    assert latest.size == 8
    for size, index in enumerate(checkpoints, start=1):
        prefix = lines[: index + 1]
        alone = check(prefix)
        assert alone.valid and alone.entries == size
        held_here = store.checkpoint(world.long, size)
        assert check(prefix, checkpoints=[held_here]).valid
        for later in range(size + 1, 9):
            verdict = assert_invalid(prefix, f"prefix {size}", checkpoints=[store.checkpoint(world.long, later)])
            assert verdict.code == "truncated"
        for earlier in range(1, size + 1):
            assert check(prefix, checkpoints=[store.checkpoint(world.long, earlier)]).valid
    # Holding several checkpoints at once.
    every = [store.checkpoint(world.long, n) for n in range(1, 9)]
    assert check(lines, checkpoints=every).valid
    assert check(split_lines(world.long_thin), checkpoints=every).valid
    assert assert_invalid(lines[: checkpoints[4] + 1], checkpoints=every).code == "truncated"


# -- forks -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fork_at", [1, 3, 7])
def test_fork_with_a_different_continuation_is_detected(
    world: World, tmp_path: Path, fork_at: int
) -> None:
    """The same prefix, then a different history signed by the same key (a copied store)."""
    lines = split_lines(world.long_all)
    prefix = tmp_path / "prefix.jsonl"
    prefix.write_bytes(b"".join(lines[: checkpoint_indices(lines)[fork_at - 1] + 1]))
    with Store(tmp_path / "fork.sqlite") as fork:
        assert fork.import_file(prefix) == world.long
        for i in range(9 - fork_at):
            fork.append(world.long, "note", {"i": i, "forked": True}, key=A)
        forked = split_lines(export_bytes(fork, world.long))
    held = world.store.checkpoint(world.long)  # what an auditor saw before the fork
    assert check(forked).valid  # a fork is consistent with itself ...
    verdict = assert_invalid(forked, "fork", checkpoints=[held])  # ... but not with what was published
    assert verdict.code == "forked"
    assert check(forked, checkpoints=[world.store.checkpoint(world.long, fork_at)]).valid


def test_a_held_checkpoint_of_no_entries_is_refused_not_taken_for_a_cut(world: World) -> None:
    # It could never be compared, and used to make a sound journal look cut short.
    lines = split_lines(export_bytes(world.store, world.long))
    empty = attrs.evolve(world.store.checkpoint(world.long), size=0)
    with pytest.raises(UsageError, match="covers none"):
        check(lines, checkpoints=[world.store.checkpoint(world.long), empty])


def forged_history(rewrite_at: int | None, size: int = 6) -> tuple[ForgedJournal, list[Checkpoint]]:
    journal = ForgedJournal([A], journal="ab" * 16)
    held = []
    for i in range(size):
        body = {"i": i, "rewritten": rewrite_at is not None and i >= rewrite_at}
        journal.entry(A, GENESIS_KIND if i == 0 else "note", body)
        held.append(journal.checkpoint(A))
    return journal, held


@pytest.mark.parametrize("rewrite_at", [0, 1, 3, 5])
def test_rewritten_history_resigned_by_the_same_key_is_detected(rewrite_at: int) -> None:
    _, original = forged_history(None)
    rewritten, _ = forged_history(rewrite_at)
    lines = rewritten.lines()
    assert check(lines).valid  # well-formed and validly signed
    for held in original:
        verdict = check(lines, checkpoints=[held])
        if held.size <= rewrite_at:
            assert verdict.valid, verdict.reason
        else:
            assert verdict.status == "invalid" and verdict.code == "forked", (held.size, verdict.reason)
            assert "forked" in verdict.reason or "rewritten" in verdict.reason


def test_held_checkpoint_beyond_the_journal_or_of_another_journal() -> None:
    journal, _ = forged_history(None, size=3)
    _, held = forged_history(None, size=5)
    assert assert_invalid(journal.lines(), checkpoints=[held[4]]).code == "truncated"
    other = forge(A, 3)
    other_held = Checkpoint.from_note(json.loads(other.lines()[-1])["note"])
    assert assert_invalid(journal.lines(), checkpoints=[other_held]).status == "invalid"


# -- round trip of recorded values -----------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.sampled_from([2**64 - 1, 2**63, -(2**63), 2**53, 2**53 - 1]),
    st.floats(allow_nan=False),
    st.sampled_from([7.5, 7.0, -0.0, 0.1, float("inf"), float("-inf")]),
    st.text(max_size=20),
    st.binary(max_size=20),
)
values = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=12,
)
bodies = st.dictionaries(
    st.one_of(st.text(max_size=8), st.text(max_size=5).map(lambda s: "$" + s)), values, max_size=6
)


@pytest.fixture(scope="module")
def round_trip_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with Store(tmp_path_factory.mktemp("roundtrip") / "store.sqlite") as store:
        yield store


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies)
def test_recorded_values_round_trip_exactly(round_trip_store: Store, body: dict[str, Any]) -> None:
    store = round_trip_store
    journal = store.create_journal(A, title="values")
    store.append(journal, "note", body, key=A)
    seen: list[SignedEntry] = []
    verdict = check(split_lines(export_bytes(store, journal)), visitor=seen.append, trusted=[A.public])
    assert verdict.status == "valid"
    assert same(dict(seen[1].entry.body), body)
    stored = list(store.entries(journal))
    assert same(dict(stored[1].entry.body), body)


# -- trust -------------------------------------------------------------------------------------------------


def test_trust_outcomes(world: World) -> None:
    lines = split_lines(world.long_thin)
    own = check(lines, trusted=[A.public])
    assert (own.status, own.code, own.ok(), own.pinned) == ("valid", "ok", True, True)
    assert own.untrusted_signers == ()
    other = check(lines, trusted=[B.public])
    assert (other.status, other.code, other.ok(), other.valid) == ("untrusted", "untrusted-signer", False, True)
    assert other.untrusted_signers == (A.keyid,)
    assert A.keyid in other.reason
    unpinned = check(lines)
    assert (unpinned.status, unpinned.code, unpinned.ok(), unpinned.pinned) == ("untrusted", "unpinned", True, False)
    both = check(lines, trusted=[B.public, A.public])
    assert both.status == "valid"


def test_trust_with_two_signers(world: World) -> None:
    lines = split_lines(world.two_thin)
    assert check(lines, trusted=[A.public, B.public]).status == "valid"
    only_a = check(lines, trusted=[A.public])
    assert only_a.status == "untrusted" and only_a.untrusted_signers == (B.keyid,) and not only_a.ok()
    only_b = check(lines, trusted=[B.public])
    assert only_b.status == "untrusted" and only_b.untrusted_signers == (A.keyid,)
    assert check(lines, trusted=[C.public]).status == "untrusted"


def test_verdict_json(world: World) -> None:
    verdict = check(split_lines(world.sealed_thin), trusted=[A.public])
    data = json.loads(json.dumps(verdict.to_json()))
    assert data["status"] == "valid" and data["ok"] is True and data["sealed"] is True
    assert data["signers"] == [{"keyid": A.keyid, "pinned": True}]
    assert data["entries"] == 3 and data["failed_at_entry"] is None
    assert data["root"] == world.store.checkpoint(check(split_lines(world.sealed_thin)).journal or "").root.hex()


# -- signatures --------------------------------------------------------------------------------------------


def test_thorough_detects_a_tampered_entry_signature_under_a_checkpoint(world: World) -> None:
    lines = split_lines(world.small_thin)
    for seq, i in enumerate(entry_indices(lines)):
        tampered = [*lines[:i], flip_entry_signature(lines[i]), *lines[i + 1:]]
        verdict = assert_invalid(tampered, f"entry {seq}", thorough=True)
        assert verdict.code == "bad-signature" and verdict.failed_at == seq
        assert f"entry {seq}" in verdict.reason


def test_default_mode_detects_a_tampered_entry_signature(world: World) -> None:
    lines = split_lines(world.small_thin)
    i = entry_indices(lines)[1]
    tampered = [*lines[:i], flip_entry_signature(lines[i]), *lines[i + 1:]]
    assert_invalid(tampered, "entry 1 signature")


def test_second_signers_entries_are_checked_when_only_the_first_key_checkpoints(world: World) -> None:
    """In the thinned two-key export only A's checkpoint covers B's entries: B's signatures count."""
    lines = split_lines(world.two_thin)
    entries = entry_indices(lines)
    signers = [json.loads(lines[i])["signatures"][0]["keyid"] for i in entries]
    assert signers == [A.keyid, B.keyid, B.keyid, A.keyid]
    assert len(checkpoint_indices(lines)) == 1
    for seq in (1, 2):
        i = entries[seq]
        tampered = [*lines[:i], flip_entry_signature(lines[i]), *lines[i + 1:]]
        verdict = assert_invalid(tampered, f"B's entry {seq}")
        assert verdict.code == "bad-signature" and verdict.failed_at == seq


def test_entry_attributed_to_another_key_needs_that_keys_signature() -> None:
    """A holder of key A cannot slip in an entry in B's name under A's checkpoint."""
    journal = ForgedJournal([A, B])
    journal.entry(A, GENESIS_KIND)
    journal.entry(B, "note", {"approved": True})
    journal.entry(A, "note")
    journal.checkpoint(A)
    lines = journal.lines()
    assert check(lines, trusted=[A.public, B.public]).status == "valid"
    i = entry_indices(lines)[1]
    forged = json.loads(lines[i])
    payload = base64.b64decode(forged["payload"])
    from provenance.journal import ENTRY_PAYLOAD_TYPE, pae

    forged["signatures"][0]["sig"] = base64.b64encode(A.sign(pae(ENTRY_PAYLOAD_TYPE, payload))).decode()
    lines[i] = canonical_json(forged) + b"\n"
    verdict = assert_invalid(lines, "entry signed by A in B's name", trusted=[A.public, B.public])
    assert verdict.code == "bad-signature" and verdict.failed_at == 1


def test_checkpoint_by_an_unlisted_or_wrong_key_is_invalid() -> None:
    journal = forge(A, 2)
    lines = journal.lines()
    body = Checkpoint.from_note(json.loads(lines[-1])["note"])
    unsigned = Checkpoint(body.origin, body.size, body.root, body.time)
    by_c = unsigned.sign(C)
    assert assert_invalid([*lines[:-1], by_c.to_line() + b"\n"]).code == "malformed"  # C is not listed
    with_c = [*lines[:2], KeyRecord(C.public).to_line() + b"\n", *lines[2:-1], by_c.to_line() + b"\n"]
    # C may sign checkpoints, but then A's own entry signatures are checked: still valid.
    assert check(with_c).valid
    # A signature under C's name that C did not make.
    fake = Checkpoint(body.origin, body.size, body.root, body.time, ((C.keyid, *by_c.signatures[0][1:2],
                                                                        body.signatures[0][2]),))
    assert assert_invalid([*with_c[:-1], fake.to_line() + b"\n"]).code == "bad-signature"
    # An extra signature that does not verify spoils the checkpoint.
    both = Checkpoint(body.origin, body.size, body.root, body.time, (body.signatures[0], fake.signatures[0]))
    assert assert_invalid([*with_c[:-1], both.to_line() + b"\n"]).code == "bad-signature"


def test_checkpoint_with_a_wrong_root_or_size_is_invalid() -> None:
    journal = forge(A, 3)
    lines = journal.lines()
    body = Checkpoint.from_note(json.loads(lines[-1])["note"])
    wrong_root = Checkpoint(body.origin, body.size, bytes(32), body.time).sign(A)
    assert assert_invalid([*lines[:-1], wrong_root.to_line() + b"\n"]).code == "tampered"
    too_big = Checkpoint(body.origin, body.size + 1, body.root, body.time).sign(A)
    assert assert_invalid([*lines[:-1], too_big.to_line() + b"\n"]).code == "truncated"
    too_small = Checkpoint(body.origin, body.size - 1, body.root, body.time).sign(A)
    assert assert_invalid([*lines[:-1], too_small.to_line() + b"\n"]).code == "malformed"


# -- seals, genesis, coverage -------------------------------------------------------------------------------


def test_entries_after_a_seal_are_invalid() -> None:
    journal = ForgedJournal([A])
    journal.entry(A, GENESIS_KIND)
    journal.entry(A, SEAL_KIND, {"entries": 2, "reason": None})
    journal.checkpoint(A)
    assert check(journal.lines()).sealed
    journal.entry(A, "note", {"after": "the seal"})
    journal.checkpoint(A)
    verdict = assert_invalid(journal.lines(), "entry after seal")
    assert verdict.code == "incomplete" and verdict.failed_at == 2
    # A second seal is an entry after the seal too.
    twice = ForgedJournal([A])
    twice.entry(A, GENESIS_KIND)
    twice.entry(A, SEAL_KIND)
    twice.entry(A, SEAL_KIND)
    twice.checkpoint(A)
    assert assert_invalid(twice.lines()).code == "incomplete"


def test_genesis_must_be_first_and_only_first() -> None:
    no_genesis = ForgedJournal([A])
    no_genesis.entry(A, "note")
    no_genesis.checkpoint(A)
    assert assert_invalid(no_genesis.lines()).code == "malformed"
    two = ForgedJournal([A])
    two.entry(A, GENESIS_KIND)
    two.entry(A, GENESIS_KIND)
    two.checkpoint(A)
    assert assert_invalid(two.lines()).code == "malformed"


def test_entries_not_covered_by_a_checkpoint_are_invalid() -> None:
    journal = forge(A, 3)
    lines = journal.lines()
    assert assert_invalid(lines[:-1]).code == "incomplete"
    journal.entry(A, "note")  # after the last checkpoint
    assert assert_invalid(journal.lines()).code == "incomplete"


def test_empty_and_headerless_files_are_invalid() -> None:
    journal = forge(A, 1)
    lines = journal.lines()
    assert check([]).code == "malformed"
    assert check(lines[:1]).code == "malformed"  # header only
    assert check(lines[:2]).code == "malformed"  # header and key, no entries
    assert check(lines[1:]).code == "malformed"


def test_timestamp_lines_with_garbage_tokens_are_invalid_not_errors() -> None:
    journal = forge(A, 2)
    lines = journal.lines()
    for token in (b"", b"\x30\x00", b"garbage", b"\x30\x82\xff\xff" + b"\x00" * 16):
        record = TimestampRecord(2, token).to_line() + b"\n"
        assert check([*lines, record]).status == "invalid"
    misplaced = TimestampRecord(1, b"\x30\x00").to_line() + b"\n"
    assert check([*lines, misplaced]).status == "invalid"


GARBAGE = [
    b"\n",
    b" \n",
    b"{}\n",
    b"null\n",
    b"\x00\xff\xfe\n",
    b'{"type":"journal"}\n',
    b'{"type":"key","algorithm":"ed25519","keyid":"00","public_key":"AA=="}\n',
    b'{"type":"timestamp","size":1,"token":"AA=="}\n',
    b'{"type":"checkpoint","note":"x"}\n',
    b"[" * 10_000 + b"\n",
    b'{"a":1}',  # no newline
]


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_inserted_garbage_never_raises(world: World, data: st.DataObject) -> None:
    lines = split_lines(data.draw(st.sampled_from([world.small_thin, world.two_thin]), label="file"))
    for _ in range(data.draw(st.integers(1, 3), label="count")):
        garbage = data.draw(st.one_of(st.sampled_from(GARBAGE), st.binary(max_size=80)), label="garbage")
        lines.insert(data.draw(st.integers(0, len(lines)), label="at"), garbage)
    check(lines)
    check(lines, thorough=True, trusted=[A.public], checkpoints=[world.store.checkpoint(world.small)])


# -- equivalent re-spellings of a line ------------------------------------------------------------------------


def respelled(world: World, how: str) -> list[bytes]:
    lines = split_lines(world.small_thin)
    if how == "space":
        lines[2] = lines[2].replace(b'","payloadType"', b'", "payloadType"')
    elif how == "key-order":
        header = json.loads(lines[0])
        lines[0] = json.dumps(dict(reversed(header.items())), separators=(",", ":")).encode() + b"\n"
    elif how == "escape":
        lines[-1] = lines[-1].replace(b'"type":"checkpoint"', b'"type":"\\u0063heckpoint"')
    elif how == "strip-signature":
        record = json.loads(lines[3])
        record["signatures"] = []
        lines[3] = canonical_json(record) + b"\n"
    elif how == "unused-key":
        lines.insert(2, KeyRecord(C.public).to_line() + b"\n")
    elif how == "repeated-checkpoint":
        lines.append(lines[-1])
    return lines


@pytest.mark.parametrize(
    "how", ["space", "key-order", "escape", "unused-key", "repeated-checkpoint", "strip-signature"]
)
def test_respelled_lines_are_invalid(world: World, how: str) -> None:
    lines = respelled(world, how)
    assert b"".join(lines) != world.small_thin
    assert_invalid(lines, how)


def test_byte_order_mark_is_invalid(world: World) -> None:
    """(Regression: json.loads on bytes skipped a UTF-8 BOM, so a BOM-prefixed line verified.)"""
    lines = split_lines(world.small_thin)
    for i in range(len(lines)):
        assert_invalid([*lines[:i], b"\xef\xbb\xbf" + lines[i], *lines[i + 1 :]], f"BOM on line {i}")
    for encoding in ("utf-16", "utf-32"):
        assert_invalid([line.decode().encode(encoding) for line in lines], encoding)


# -- entries without a signature of their own (batches) --------------------------------------------------


def test_unsigned_entries_need_their_signers_checkpoint() -> None:
    own = ForgedJournal([A, B])
    own.entry(A, GENESIS_KIND)
    own.entry(B, "note", {"batch": 1}, signed=False)
    own.entry(B, "note", {"batch": 2}, signed=False)
    own.checkpoint(B)
    own.entry(A, "note")
    own.checkpoint(A)
    assert check(own.lines(), trusted=[A.public, B.public]).status == "valid"
    assert check(own.lines(), thorough=True).valid
    # Without B's checkpoint, only A's covers B's unsigned entries: not enough.
    lines = [line for line in own.lines() if b'"checkpoint"' not in line or line == own.lines()[-1]]
    verdict = assert_invalid(lines, "B's unsigned entries under A's checkpoint only")
    assert verdict.code == "bad-signature" and verdict.failed_at == 1
    # A checkpoint signed by both covers them.
    both = ForgedJournal([A, B])
    both.entry(A, GENESIS_KIND)
    both.entry(B, "note", signed=False)
    both.checkpoint(A, B)
    assert check(both.lines()).valid
    # Someone holding only A cannot add an entry in B's name.
    forged = ForgedJournal([A, B])
    forged.entry(A, GENESIS_KIND)
    forged.entry(B, "note", {"approved": True}, signed=False)
    forged.entry(A, "note", signed=False)
    forged.checkpoint(A)
    assert assert_invalid(forged.lines(), trusted=[A.public, B.public]).code == "bad-signature"


def test_unsigned_entry_with_a_changed_payload_is_invalid(world: World) -> None:
    lines = split_lines(world.batch_thin)
    for i in entry_indices(lines)[1:]:
        record = json.loads(lines[i])
        assert record["signatures"] == []
        payload = base64.b64decode(record["payload"]).replace(b"cat", b"dog").replace(b"7.0", b"8.0")
        record["payload"] = base64.b64encode(payload).decode()
        changed = [*lines[:i], canonical_json(record) + b"\n", *lines[i + 1 :]]
        assert_invalid(changed, f"unsigned entry line {i}")
        assert_invalid(changed, f"unsigned entry line {i}", thorough=True)


# -- memory --------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_verification_streams_in_bounded_memory(tmp_path: Path) -> None:
    """20,000 entries under one final checkpoint: the verifier must not hold the file."""
    journal = ForgedJournal([A])
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as out:
        for line in journal.lines():
            out.write(line)
        journal.records.clear()
        for i in range(20_000):
            journal.entry(A, GENESIS_KIND if i == 0 else "note", {"i": i, "prompt": "a photo of a cat " * 8})
            out.write(journal.records.pop())
            journal.entries.clear()
        journal.checkpoint(A)
        out.write(journal.records.pop())
    size = path.stat().st_size
    assert size > 15_000_000
    tracemalloc.start()
    try:
        verdict = verify_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert verdict.valid and verdict.entries == 20_000
    assert peak < 20_000_000, f"peak {peak} bytes for a {size}-byte file"
    assert peak < size / 2


def test_times_reported(world: World) -> None:
    verdict = check(split_lines(world.long_thin))
    assert verdict.first_time is not None and verdict.last_time is not None
    assert verdict.first_time <= verdict.last_time
    assert verdict.first_time > T0 - _dt.timedelta(days=365 * 100)
