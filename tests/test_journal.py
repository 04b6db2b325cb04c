"""The journal format: entries, DSSE signatures, checkpoints (signed notes), lines.

Where a byte layout is normative the expected bytes are written out here by
hand (or assembled with hashlib/cryptography directly), not taken from the
code under test.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import hashlib
import json
from typing import Any

import attrs
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from _journal_fixtures import T0, fixed_key
from provenance._encoding import canonical_json, strict_loads
from provenance.errors import MalformedDataError
from provenance.journal import (
    ENTRY_PAYLOAD_TYPE,
    Actor,
    Checkpoint,
    Entry,
    Header,
    KeyRecord,
    SignedEntry,
    TimestampRecord,
    new_journal_id,
    origin_for,
    pae,
    parse_line,
)

KEY = fixed_key(1)
KEY2 = fixed_key(2)
JOURNAL = "0123456789abcdef0123456789abcdef"
ROOT = bytes(range(32))


def raw_verify(public_raw: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def make_entry(**changes: Any) -> Entry:
    fields: dict[str, Any] = {
        "journal": JOURNAL,
        "seq": 0,
        "prev": None,
        "time": T0,
        "actor": Actor.HUMAN,
        "kind": "journal.create",
        "body": {"title": "t", "g": 7.5, "seed": 2**64 - 1, "b": b"\x00", "$x": [1, None, True]},
        "signer": KEY.keyid,
    }
    fields.update(changes)
    return Entry(**fields)


# -- entries ------------------------------------------------------------------------------------


def test_payload_known_answer() -> None:
    expected = (
        '{"actor":"human",'
        '"body":{"$$x":[1,null,true],"b":{"$bytes":"AA=="},"g":{"$float":"7.5"},'
        '"seed":{"$int":"18446744073709551615"},"title":"t"},'
        f'"journal":"{JOURNAL}","kind":"journal.create","prev":null,"seq":0,'
        f'"signer":"{KEY.keyid}","time":"2025-01-02T03:04:05.678901Z","v":1}}'
    ).encode()
    assert make_entry().to_payload() == expected


def test_payload_is_canonical_and_complete() -> None:
    entry = make_entry(seq=3, prev=b"\xab" * 32, kind="prompt.set", actor="tool", body={"é": "ü", "a": [2.5]})
    payload = entry.to_payload()
    assert canonical_json(strict_loads(payload)) == payload
    data = strict_loads(payload)
    assert set(data) == {"v", "journal", "seq", "prev", "time", "actor", "kind", "body", "signer"}
    assert data["prev"] == "ab" * 32
    assert data["actor"] == "tool"
    assert "é".encode() in payload  # RFC 8785 writes non-ASCII as UTF-8, not \u escapes
    assert Entry.from_payload(payload) == entry


def test_entry_time_is_normalised_to_utc() -> None:
    other_zone = T0.astimezone(_dt.timezone(_dt.timedelta(hours=-5)))
    assert make_entry(time=other_zone).to_payload() == make_entry().to_payload()


@pytest.mark.parametrize(
    "changes",
    [
        {"journal": "0123"},
        {"journal": JOURNAL.upper()},
        {"seq": -1},
        {"seq": 1},  # seq 1 needs a prev
        {"prev": b"\x00" * 32},  # seq 0 must not have one
        {"seq": 1, "prev": b"\x00" * 31},
        {"actor": "robot"},
        {"kind": "Bad"},
        {"kind": "a..b"},
        {"kind": "a" * 65},
        {"kind": ""},
        {"signer": "abc"},
        {"signer": KEY.keyid.upper()},
    ],
)
def test_invalid_entries_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        make_entry(**changes)


def test_pae_known_answers() -> None:
    # The DSSE specification's own example.
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae(ENTRY_PAYLOAD_TYPE, b"hello") == b"DSSEv1 48 application/vnd.provenance.entry+json; version=1 5 hello"
    assert pae(ENTRY_PAYLOAD_TYPE, b"") == b"DSSEv1 48 application/vnd.provenance.entry+json; version=1 0 "
    # Lengths are byte lengths.
    assert pae("t", "é".encode()) == b"DSSEv1 1 t 2 \xc3\xa9"


def test_signature_is_over_the_pae_of_the_exact_payload() -> None:
    entry = make_entry()
    signed = SignedEntry.sign(entry, KEY)
    payload = entry.to_payload()
    assert signed.payload == payload
    assert signed.keyid == KEY.keyid
    message = b"DSSEv1 %d %s %d %s" % (len(ENTRY_PAYLOAD_TYPE), ENTRY_PAYLOAD_TYPE.encode(), len(payload), payload)
    assert raw_verify(KEY.public.raw, signed.signature, message)
    assert not raw_verify(KEY.public.raw, signed.signature, payload)  # not over the bare payload
    assert signed.signature_valid(KEY.public)
    assert not signed.signature_valid(KEY2.public)
    assert signed.hash == hashlib.sha256(payload).digest()
    assert signed.leaf_hash == hashlib.sha256(b"\x00" + signed.to_line()).digest()


def test_signature_does_not_cover_altered_payloads() -> None:
    signed = SignedEntry.sign(make_entry(), KEY)
    for i in range(0, len(signed.payload), 7):
        payload = bytearray(signed.payload)
        payload[i] ^= 0x01
        altered = attrs.evolve(signed, payload=bytes(payload))
        assert not altered.signature_valid(KEY.public)
    # Claiming another key id fails even with that key's real public key.
    assert not attrs.evolve(signed, keyid=KEY2.keyid).signature_valid(KEY2.public)


def test_sign_refuses_an_entry_naming_another_signer() -> None:
    with pytest.raises(ValueError, match="another signer"):
        SignedEntry.sign(make_entry(signer=KEY2.keyid), KEY)


def test_entry_line_known_form_and_round_trip() -> None:
    signed = SignedEntry.sign(make_entry(), KEY)
    line = signed.to_line()
    expected = (
        '{"payload":"' + base64.b64encode(signed.payload).decode() + '",'
        f'"payloadType":"{ENTRY_PAYLOAD_TYPE}",'
        f'"signatures":[{{"keyid":"{KEY.keyid}","sig":"' + base64.b64encode(signed.signature).decode() + '"}],'
        '"type":"entry"}'
    ).encode()
    assert line == expected
    parsed = parse_line(line)
    assert parsed == signed
    assert isinstance(parsed, SignedEntry) and parsed.entry == signed.entry


def test_unsigned_batch_entry_line() -> None:
    """An entry of a batch may carry no signature: its signer's checkpoint covers it."""
    entry = make_entry()
    unsigned = SignedEntry.sign(entry, KEY, own_signature=False)
    assert unsigned.signature is None and unsigned.keyid == KEY.keyid
    assert unsigned.payload == entry.to_payload()
    assert not unsigned.signature_valid(KEY.public)
    line = unsigned.to_line()
    assert line == (
        '{"payload":"' + base64.b64encode(entry.to_payload()).decode() + '",'
        f'"payloadType":"{ENTRY_PAYLOAD_TYPE}","signatures":[],"type":"entry"}}'
    ).encode()
    parsed = parse_line(line)
    assert isinstance(parsed, SignedEntry)
    assert parsed.signature is None and parsed.keyid == KEY.keyid and parsed.payload == unsigned.payload
    assert parsed.to_line() == line
    # The signed and unsigned forms of one entry have the same hash: the payload is what counts.
    assert parsed.hash == SignedEntry.sign(entry, KEY).hash


# -- checkpoints --------------------------------------------------------------------------------


def note_key_hash(name: str, public_raw: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + b"\x01" + public_raw).digest()[:4]


def test_checkpoint_note_exact_format() -> None:
    checkpoint = Checkpoint(origin_for(JOURNAL), 5, ROOT, T0).sign(KEY)
    body = (
        f"provenance/{JOURNAL}\n"
        "5\n"
        f"{base64.b64encode(ROOT).decode()}\n"
        "time 2025-01-02T03:04:05.678901Z\n"
    )
    assert checkpoint.body() == body.encode()
    ((name, key_hash, signature),) = checkpoint.signatures
    assert name == KEY.keyid
    assert key_hash == note_key_hash(KEY.keyid, KEY.public.raw)
    assert raw_verify(KEY.public.raw, signature, body.encode())
    blob = base64.b64encode(key_hash + signature).decode()
    assert checkpoint.note() == body + "\n" + f"\u2014 {KEY.keyid} {blob}\n"
    assert len(base64.b64decode(blob)) == 68


def test_checkpoint_with_two_signatures() -> None:
    checkpoint = Checkpoint(origin_for(JOURNAL), 1, ROOT, T0).sign(KEY).sign(KEY2)
    lines = checkpoint.note().split("\n")
    assert lines[4] == ""
    assert lines[5].startswith(f"\u2014 {KEY.keyid} ")
    assert lines[6].startswith(f"\u2014 {KEY2.keyid} ")
    assert lines[7] == ""
    keys = {KEY.keyid: KEY.public, KEY2.keyid: KEY2.public}
    assert checkpoint.signers(keys) == [KEY.keyid, KEY2.keyid]
    assert checkpoint.signers({KEY.keyid: KEY.public}) == [KEY.keyid]
    # A key listed under another key's name does not count.
    assert checkpoint.signers({KEY.keyid: KEY2.public, KEY2.keyid: KEY.public}) == []
    assert Checkpoint.from_note(checkpoint.note()) == checkpoint


def test_checkpoint_signature_covers_every_body_field() -> None:
    checkpoint = Checkpoint(origin_for(JOURNAL), 5, ROOT, T0).sign(KEY)
    keys = {KEY.keyid: KEY.public}
    assert checkpoint.signers(keys) == [KEY.keyid]
    for change in (
        {"origin": origin_for(new_journal_id())},
        {"size": 6},
        {"root": bytes(32)},
        {"time": T0 + _dt.timedelta(microseconds=1)},
    ):
        assert attrs.evolve(checkpoint, **change).signers(keys) == []


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 10**16 - 1),
    st.binary(min_size=32, max_size=32),
    st.datetimes(min_value=_dt.datetime(1000, 1, 1), timezones=st.just(_dt.UTC)),
    st.lists(st.sampled_from([KEY, KEY2]), min_size=1, max_size=3),
)
def test_from_note_round_trip(size: int, root: bytes, moment: _dt.datetime, signers: list[Any]) -> None:
    checkpoint = Checkpoint(origin_for(JOURNAL), size, root, moment)
    for key in signers:
        checkpoint = checkpoint.sign(key)
    note = checkpoint.note()
    parsed = Checkpoint.from_note(note)
    assert parsed == checkpoint
    assert parsed.note() == note
    assert parse_line(checkpoint.to_line()) == checkpoint


GOOD_NOTE = Checkpoint(origin_for(JOURNAL), 5, ROOT, T0).sign(KEY).note()
GOOD_BODY, GOOD_SIG = GOOD_NOTE.split("\n\n")
SIG_BLOB = GOOD_SIG.split(" ")[2].rstrip("\n")
ROOT_B64 = base64.b64encode(ROOT).decode()


def replace_line(index: int, text: str) -> str:
    lines = GOOD_BODY.split("\n")
    lines[index] = text
    return "\n".join(lines) + "\n\n" + GOOD_SIG


MALFORMED_NOTES = [
    "",
    "\n",
    GOOD_BODY,  # no signature block
    GOOD_BODY + "\n",
    GOOD_BODY + "\n\n",
    GOOD_NOTE[:-1],  # no final newline
    GOOD_NOTE + "\n",  # a blank line after the signatures
    GOOD_NOTE.replace("\n\n", "\n\n\n"),
    GOOD_NOTE.replace("\n", "\r\n"),
    GOOD_NOTE.replace("\u2014", "-"),
    GOOD_NOTE.replace("\u2014", "\u2013"),
    GOOD_NOTE.replace(KEY.keyid, KEY.keyid.upper()),
    GOOD_NOTE.replace(KEY.keyid, KEY.keyid[:-1]),
    GOOD_NOTE.replace(SIG_BLOB, SIG_BLOB[:-4]),  # 65 bytes
    GOOD_NOTE.replace(SIG_BLOB, base64.b64encode(b"\x00" * 72).decode()),
    GOOD_NOTE.replace(SIG_BLOB, SIG_BLOB + " "),
    GOOD_NOTE.replace(SIG_BLOB, SIG_BLOB.rstrip("=")),
    GOOD_NOTE[:-1] + " \n",
    replace_line(1, "05"),
    replace_line(1, "-5"),
    replace_line(1, "+5"),
    replace_line(1, "5.0"),
    replace_line(1, " 5"),
    replace_line(1, "5 "),
    replace_line(1, "1" * 17),
    replace_line(1, "\uff15"),
    replace_line(1, ""),
    replace_line(2, ROOT_B64.rstrip("=")),
    replace_line(2, base64.b64encode(bytes(31)).decode()),
    replace_line(2, base64.b64encode(bytes(33)).decode()),
    replace_line(2, ROOT_B64[:-2] + "B="),  # non-canonical trailing bits
    replace_line(3, "time 2025-01-02T03:04:05Z"),
    replace_line(3, "time  2025-01-02T03:04:05.678901Z"),
    replace_line(3, "Time 2025-01-02T03:04:05.678901Z"),
    replace_line(3, "2025-01-02T03:04:05.678901Z"),
    replace_line(3, "time 2025-01-02T03:04:05.678901Z extra"),
    GOOD_NOTE.replace("\n5\n", "\n5\nextra line\n"),
    GOOD_NOTE.split("\n", 1)[1],  # no origin line
]


@pytest.mark.parametrize("note", MALFORMED_NOTES, ids=range(len(MALFORMED_NOTES)))
def test_malformed_notes_are_rejected(note: str) -> None:
    with pytest.raises(MalformedDataError):
        Checkpoint.from_note(note)
    with pytest.raises(MalformedDataError):
        parse_line(canonical_json({"type": "checkpoint", "note": note}))


def test_from_note_of_bytes_is_malformed() -> None:
    with pytest.raises(MalformedDataError):
        Checkpoint.from_note(GOOD_NOTE.encode())  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_any_accepted_note_is_canonical(data: st.DataObject) -> None:
    """Mutate a good note; whatever is still accepted re-serialises to exactly itself."""
    note = GOOD_NOTE
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        at = data.draw(st.integers(0, len(note)), label="at")
        char = data.draw(st.sampled_from(["\n", " ", "0", "a", "=", "+", "\u2014", "x", "-", "\r"]), label="char")
        how = data.draw(st.sampled_from(["replace", "insert", "delete"]), label="how")
        if how == "replace":
            note = note[:at] + char + note[at + 1 :]
        elif how == "insert":
            note = note[:at] + char + note[at:]
        else:
            note = note[:at] + note[at + 1 :]
    try:
        parsed = Checkpoint.from_note(note)
    except MalformedDataError:
        return
    assert parsed.note() == note


# -- lines ------------------------------------------------------------------------------------------


def valid_lines() -> list[bytes]:
    signed = SignedEntry.sign(make_entry(), KEY)
    second = SignedEntry.sign(
        make_entry(seq=1, prev=signed.hash, kind="note", actor="automation", body={"n": 1}), KEY
    )
    unsigned = SignedEntry.sign(make_entry(seq=2, prev=second.hash, kind="note", body={"b": 2}), KEY,
                                own_signature=False)
    return [
        Header(JOURNAL).to_line(),
        KeyRecord(KEY.public).to_line(),
        signed.to_line(),
        second.to_line(),
        Checkpoint(origin_for(JOURNAL), 2, ROOT, T0).sign(KEY).to_line(),
        TimestampRecord(2, b"\x30\x03\x02\x01\x01").to_line(),
        unsigned.to_line(),
    ]


VALID_LINES = valid_lines()


def test_every_record_type_round_trips() -> None:
    for line in VALID_LINES:
        record = parse_line(line)
        assert record.to_line() == line


def test_header_and_key_lines_known_form() -> None:
    assert Header(JOURNAL).to_line() == (
        f'{{"format":"provenance-journal","journal":"{JOURNAL}","origin":"provenance/{JOURNAL}",'
        '"type":"journal","version":1}'
    ).encode()
    public_b64 = base64.b64encode(KEY.public.raw).decode()
    assert KeyRecord(KEY.public).to_line() == (
        f'{{"algorithm":"ed25519","keyid":"{KEY.keyid}","public_key":"{public_b64}","type":"key"}}'
    ).encode()


def line_with(index: int, **changes: Any) -> bytes:
    data = json.loads(VALID_LINES[index])
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data).encode()


ENTRY_DATA = json.loads(VALID_LINES[2])
OTHER_SIG = base64.b64encode(b"\x00" * 64).decode()

MALFORMED_LINES = [
    b"",
    b"null",
    b"[]",
    b'"entry"',
    b"{}",
    b'{"type":"nope"}',
    b'{"type":null}',
    b'{"type":["entry"]}',
    b"{" * 100_000,
    b"[" * 100_000 + b"]" * 100_000,
    b"\xff\xfe{}",
    b'{"type":"entry","type":"entry"}',
    VALID_LINES[0] + b"x",
    VALID_LINES[0] + b"\n{}",
    VALID_LINES[0][:-1],
    line_with(0, version=2),
    line_with(0, format="other"),
    line_with(0, origin="provenance/" + "f" * 32),
    line_with(0, journal="xyz"),
    line_with(0, extra=1),
    line_with(0, origin=...),
    line_with(1, keyid=KEY2.keyid),
    line_with(1, algorithm="rsa"),
    line_with(1, public_key=base64.b64encode(b"\x00" * 31).decode()),
    line_with(1, public_key=5),
    line_with(2, payloadType="application/json"),
    line_with(2, signatures=None),
    line_with(2, signatures=[{}]),
    line_with(2, signatures=[None]),
    line_with(2, signatures=[ENTRY_DATA["signatures"][0]] * 2),
    line_with(2, signatures=[{"keyid": KEY.keyid}]),
    line_with(2, signatures=[{"keyid": KEY.keyid, "sig": OTHER_SIG, "x": 1}]),
    line_with(2, signatures=[{"keyid": KEY2.keyid, "sig": ENTRY_DATA["signatures"][0]["sig"]}]),
    line_with(2, signatures=[{"keyid": KEY.keyid, "sig": base64.b64encode(b"\x00" * 63).decode()}]),
    line_with(2, signatures={"keyid": KEY.keyid, "sig": OTHER_SIG}),
    line_with(2, payload="not base64!"),
    line_with(2, payload=base64.b64encode(b"{}").decode()),
    line_with(2, payload=base64.b64encode(b"\xff").decode()),
    line_with(2, payload=base64.b64encode(b"[" * 50_000).decode()),
    line_with(2, payload=None),
    line_with(2, sig=OTHER_SIG),
    line_with(4, note=None),
    line_with(4, note="x"),
    line_with(4, note=GOOD_NOTE, extra=True),
    line_with(5, size=0),
    line_with(5, size=-1),
    line_with(5, size=True),
    line_with(5, size=2.0),
    line_with(5, size="2"),
    line_with(5, token="AAA"),
    b'{"size":1e400,"token":"","type":"timestamp"}',
    b'{"size":' + b"9" * 5000 + b',"token":"","type":"timestamp"}',
    b'{"size":NaN,"token":"","type":"timestamp"}',
]


@pytest.mark.parametrize("line", MALFORMED_LINES, ids=range(len(MALFORMED_LINES)))
def test_malformed_lines_are_rejected(line: bytes) -> None:
    with pytest.raises(MalformedDataError):
        parse_line(line)


def payload_line(payload: bytes, key: Any = KEY) -> bytes:
    return canonical_json(
        {
            "type": "entry",
            "payloadType": ENTRY_PAYLOAD_TYPE,
            "payload": base64.b64encode(payload).decode(),
            "signatures": [
                {"keyid": key.keyid, "sig": base64.b64encode(key.sign(pae(ENTRY_PAYLOAD_TYPE, payload))).decode()}
            ],
        }
    )


def entry_payload(**changes: Any) -> bytes:
    data = strict_loads(make_entry().to_payload())
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


@pytest.mark.parametrize(
    "payload",
    [
        entry_payload(v=2),
        entry_payload(v="1"),
        entry_payload(seq="0"),
        entry_payload(seq=True),
        entry_payload(seq=0.0),
        entry_payload(seq=-1),
        entry_payload(prev="00" * 32),
        entry_payload(seq=1),
        entry_payload(seq=1, prev="AB" * 32),
        entry_payload(seq=1, prev="ab" * 31),
        entry_payload(time="2025-01-02T03:04:05Z"),
        entry_payload(time=None),
        entry_payload(actor="robot"),
        entry_payload(actor=None),
        entry_payload(kind="Journal.Create"),
        entry_payload(kind=5),
        entry_payload(body=[]),
        entry_payload(body=None),
        entry_payload(body={"x": 1.5}),
        entry_payload(body={"x": {"$float": "7.50"}}),
        entry_payload(body={"$x": 1}),
        entry_payload(body={"x": 2**53}),
        entry_payload(signer="0" * 31),
        entry_payload(journal=JOURNAL[:-1]),
        entry_payload(extra=1),
        entry_payload(body=...),
        b'{"v":1,"v":1}',
        b"",
        b"\xc3\x28",
    ],
    ids=range(29),
)
def test_malformed_payloads_are_rejected_even_when_validly_signed(payload: bytes) -> None:
    with pytest.raises(MalformedDataError):
        Entry.from_payload(payload)
    with pytest.raises(MalformedDataError):
        parse_line(payload_line(payload))


@pytest.mark.parametrize(
    "payload",
    [
        make_entry().to_payload().replace(b'"seq":0', b'"seq": 0'),
        json.dumps(dict(reversed(strict_loads(make_entry().to_payload()).items())), separators=(",", ":")).encode(),
        entry_payload(v=1.0),
        entry_payload(v=True),
        make_entry().to_payload().replace(b'"kind":"journal', b'"kind":"\\u006aournal'),
    ],
    ids=["whitespace", "key-order", "v-float", "v-true", "escape"],
)
def test_non_canonical_payloads_are_rejected(payload: bytes) -> None:
    assert payload != make_entry().to_payload()
    with pytest.raises(MalformedDataError):
        Entry.from_payload(payload)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_a_record_or_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedDataError):
        parse_line(data)


PIECES = [b"{", b"}", b"[", b"]", b'"', b":", b",", b"\\", b"\\u0000", b"\xff", b"\x00", b"1e999", b"-",
          b"null", b"true", b"NaN", b"=", b"A", b"\n", b" ", b'"type":"entry"', b'"$int"', b"\xe2\x80\x94"]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(VALID_LINES), st.data())
def test_mutated_valid_lines_are_a_record_or_malformed(line: bytes, data: st.DataObject) -> None:
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        at = data.draw(st.integers(0, len(line)), label="at")
        how = data.draw(st.sampled_from(["flip", "insert", "delete", "cut", "duplicate"]), label="how")
        if how == "flip" and at < len(line):
            mask = data.draw(st.integers(1, 255), label="mask")
            line = line[:at] + bytes([line[at] ^ mask]) + line[at + 1 :]
        elif how == "insert":
            line = line[:at] + data.draw(st.sampled_from(PIECES), label="piece") + line[at:]
        elif how == "delete":
            line = line[:at] + line[at + data.draw(st.integers(1, 8), label="n") :]
        elif how == "cut":
            line = line[:at]
        else:
            end = data.draw(st.integers(at, len(line)), label="end")
            line = line[:end] + line[at:end] + line[end:]
    try:
        record = parse_line(line)
    except MalformedDataError:
        return
    # Whatever is accepted is a record that can be written out again.
    assert isinstance(record.to_line(), bytes)
