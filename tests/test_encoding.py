"""Canonical encoding of journal values: exact round trips and strict parsing.

Every value an entry body may hold must come back bit for bit after
encode_value -> canonical_json -> strict_loads -> decode_value, and every
malformed or non-canonical form must be refused (ValueError), because a second
accepted spelling of the same value is a way to change a journal unnoticed.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
import struct
from typing import Any

import pytest
import rfc8785
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from _journal_fixtures import same
from provenance._encoding import (
    MAX_SAFE_INTEGER,
    b64decode,
    b64encode,
    canonical_json,
    decode_value,
    encode_value,
    format_time,
    loads_canonical,
    parse_time,
    strict_loads,
)

# -- strategies ------------------------------------------------------------------

# The decoder accepts $int of up to 40 digits (see test_huge_integers_round_trip).
DECODABLE = 10**40 - 1

EDGE_INTS = [
    0,
    1,
    -1,
    MAX_SAFE_INTEGER,
    -MAX_SAFE_INTEGER,
    MAX_SAFE_INTEGER + 1,
    -MAX_SAFE_INTEGER - 1,
    2**63 - 1,
    -(2**63),
    2**63,
    2**64 - 1,  # the largest 64-bit seed
    DECODABLE,
    -DECODABLE,
]

EDGE_FLOATS = [
    0.0,
    -0.0,
    7.5,
    7.0,
    1.0,
    -1.0,
    0.1,
    1e16,
    1e300,
    5e-324,  # smallest subnormal
    -5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    float(2**53),
    float(2**53 + 2),
    math.inf,
    -math.inf,
    math.nan,
]

integers = st.one_of(
    st.integers(-(2**64), 2**64),
    st.integers(0, 2**64 - 1),  # seeds
    st.integers(-DECODABLE, DECODABLE),
    st.sampled_from(EDGE_INTS),
)
floats = st.one_of(st.floats(), st.sampled_from(EDGE_FLOATS))
keys = st.one_of(
    st.text(max_size=8),
    st.text(max_size=6).map(lambda s: "$" + s),
    st.text(max_size=6).map(lambda s: "$$" + s),
    st.sampled_from(["$int", "$float", "$bytes", "$", "$$", "$$int", "$$$float", "int", ""]),
)
scalars = st.one_of(st.none(), st.booleans(), integers, floats, st.text(), st.binary(max_size=40))
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=25,
)


def round_trip(value: Any) -> Any:
    return decode_value(strict_loads(canonical_json(encode_value(value))))


def assert_json_safe(encoded: Any) -> None:
    """The encoded form holds no float and no integer a double cannot carry."""
    if isinstance(encoded, dict):
        for item in encoded.values():
            assert_json_safe(item)
    elif isinstance(encoded, list):
        for item in encoded:
            assert_json_safe(item)
    else:
        assert not isinstance(encoded, float)
        if isinstance(encoded, int) and not isinstance(encoded, bool):
            assert abs(encoded) <= MAX_SAFE_INTEGER


# -- round trips ---------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(values)
def test_round_trip_is_exact(value: Any) -> None:
    assert same(round_trip(value), value)


@settings(max_examples=100, deadline=None)
@given(values)
def test_encoded_form_is_json_safe_and_canonical(value: Any) -> None:
    encoded = encode_value(value)
    assert_json_safe(encoded)
    text = canonical_json(encoded)
    # Canonical bytes are a fixed point: parsing and re-serialising changes nothing.
    assert canonical_json(strict_loads(text)) == text
    # And they are what the standard library reads too (no exotic JSON).
    assert json.loads(text) == strict_loads(text)


@settings(max_examples=100, deadline=None)
@given(values, values)
def test_encoding_is_injective(a: Any, b: Any) -> None:
    if not same(a, b):
        assert canonical_json(encode_value(a)) != canonical_json(encode_value(b))


@pytest.mark.parametrize("value", EDGE_INTS)
def test_edge_integers(value: int) -> None:
    encoded = encode_value(value)
    if abs(value) <= MAX_SAFE_INTEGER:
        assert encoded == value
    else:
        assert encoded == {"$int": str(value)}
    assert same(round_trip(value), value)


@pytest.mark.parametrize("value", EDGE_FLOATS, ids=repr)
def test_edge_floats_bit_exact(value: float) -> None:
    assert encode_value(value) == {"$float": repr(value)}
    assert same(round_trip(value), value)


def test_float_that_looks_like_an_integer_stays_a_float() -> None:
    assert canonical_json(encode_value({"g": 7.0})) == b'{"g":{"$float":"7.0"}}'
    assert type(round_trip(7.0)) is float
    assert canonical_json(encode_value({"g": 7.5})) == b'{"g":{"$float":"7.5"}}'


def test_bool_is_not_int() -> None:
    assert round_trip(True) is True
    assert round_trip(False) is False
    assert canonical_json(encode_value([True, 1])) == b"[true,1]"


def test_seed_encoding_known_answer() -> None:
    assert canonical_json(encode_value({"seed": 2**64 - 1})) == b'{"seed":{"$int":"18446744073709551615"}}'
    assert canonical_json(encode_value({"seed": 2**53 - 1})) == b'{"seed":9007199254740991}'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"$int": "1"}, b'{"$$int":"1"}'),
        ({"$": 1}, b'{"$$":1}'),
        ({"$$x": 1}, b'{"$$$x":1}'),
        ({"a$": 1}, b'{"a$":1}'),
        (b"\x00\xff", b'{"$bytes":"AP8="}'),
        (b"", b'{"$bytes":""}'),
    ],
)
def test_dollar_keys_are_escaped_and_bytes_tagged(value: Any, expected: bytes) -> None:
    assert canonical_json(encode_value(value)) == expected
    assert same(round_trip(value), value)


def test_user_data_cannot_pose_as_a_tag() -> None:
    """A user dict that looks exactly like a tag decodes back to the dict."""
    for lookalike in ({"$int": "18446744073709551615"}, {"$float": "7.5"}, {"$bytes": "AA=="}):
        assert same(round_trip(lookalike), lookalike)
        assert same(round_trip([lookalike]), [lookalike])


def test_tuples_bytearrays_and_memoryviews_are_accepted() -> None:
    assert round_trip((1, 2)) == [1, 2]
    assert round_trip(bytearray(b"ab")) == b"ab"
    assert round_trip(memoryview(b"ab")) == b"ab"


@pytest.mark.parametrize("value", [{1: "a"}, {None: 1}, object(), {1, 2}, 1j, _dt.datetime(2020, 1, 1)])
def test_unencodable_values_raise_type_error(value: Any) -> None:
    with pytest.raises(TypeError):
        encode_value(value)


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_depth_is_bounded() -> None:
    assert round_trip(nested(60)) == nested(60)
    with pytest.raises(ValueError, match="deeply"):
        encode_value(nested(100))
    with pytest.raises(ValueError, match="deeply"):
        decode_value(nested(100))


def test_lone_surrogates_are_refused_not_written() -> None:
    # Not UTF-8: canonical JSON must refuse rather than write an unreadable entry.
    encoded = encode_value({"text": "\ud800"})
    with pytest.raises(ValueError):
        canonical_json(encoded)


@pytest.mark.parametrize("value", [10**40, -(10**40), 2**200, 10**1000], ids=["1e40", "-1e40", "2^200", "1e1000"])
def test_huge_integers_are_refused_or_round_trip(value: int) -> None:
    """'any size' means: it round-trips, or encode_value refuses it up front (never a write-only value).

    (Regression: integers beyond 40 digits used to be written but could not be read back.)
    """
    try:
        encoded = encode_value(value)
    except ValueError:
        return
    assert decode_value(strict_loads(canonical_json(encoded))) == value


@settings(max_examples=200, deadline=None)
@given(st.integers())
def test_any_integer_is_refused_or_round_trips(value: int) -> None:
    try:
        encode_value(value)
    except ValueError:
        assert abs(value) > DECODABLE
        return
    assert same(round_trip(value), value)


def nan_from_bits(sign: int, payload: int) -> float:
    bits = (sign << 63) | (0x7FF << 52) | payload
    return float(struct.unpack(">d", bits.to_bytes(8, "big"))[0])


nans = st.builds(nan_from_bits, st.integers(0, 1), st.integers(1, 2**52 - 1))


@pytest.mark.parametrize("bits", [0xFFF8000000000000, 0x7FF8000000000001, 0x7FF0000000000001], ids=hex)
def test_every_nan_round_trips_bit_exact(bits: int) -> None:
    """(Regression: every NaN used to be written as 'nan', losing its sign and payload.)"""
    value = struct.unpack(">d", bits.to_bytes(8, "big"))[0]
    assert math.isnan(value)
    assert struct.pack(">d", round_trip(value)) == bits.to_bytes(8, "big")


@settings(max_examples=200, deadline=None)
@given(nans)
def test_random_nans_round_trip_bit_exact(value: float) -> None:
    assert struct.pack(">d", round_trip(value)) == struct.pack(">d", value)
    assert same(round_trip([value, {"x": value}]), [value, {"x": value}])


# -- malformed tags -------------------------------------------------------------------------

MALFORMED = [
    # $int
    {"$int": 9007199254740993},
    {"$int": "12"},  # a safe integer must not be tagged
    {"$int": "-0"},
    {"$int": "09007199254740993"},
    {"$int": "+9007199254740993"},
    {"$int": " 9007199254740993"},
    {"$int": "9007199254740993 "},
    {"$int": "9007199254740993.0"},
    {"$int": "1e20"},
    {"$int": "9_007_199_254_740_993"},
    {"$int": "\uff19" * 20},  # full-width digits, which int() would accept
    {"$int": "\u0669" * 20},  # Arabic-Indic digits
    {"$int": ""},
    {"$int": None},
    {"$int": ["9007199254740993"]},
    # $float
    {"$float": 1.5},
    {"$float": "7.50"},
    {"$float": "7.5 "},
    {"$float": "+7.5"},
    {"$float": "1e5"},
    {"$float": "100000.0000000000000001"},
    {"$float": "NaN"},
    {"$float": "-nan"},
    {"$float": "Infinity"},
    {"$float": "infinity"},
    {"$float": "1_0.0"},
    {"$float": "\uff17.5"},
    {"$float": "1" * 40 + ".0"},
    {"$float": ""},
    {"$float": "abc"},
    {"$float": "nan:7ff8000000000000"},  # the canonical NaN has one spelling: "nan"
    {"$float": "nan:0000000000000000"},  # not a NaN
    {"$float": "nan:3ff0000000000000"},
    {"$float": "nan:FFF8000000000000"},
    {"$float": "nan:fff800000000000"},
    {"$float": "nan:fff80000000000000"},
    {"$float": "nan:"},
    {"$float": "-nan:fff8000000000000"},
    # $bytes
    {"$bytes": "QR=="},  # non-canonical trailing bits
    {"$bytes": "QUJ="},
    {"$bytes": "QQ"},  # missing padding
    {"$bytes": "QQ="},
    {"$bytes": "QQ==="},
    {"$bytes": "Q Q=="},
    {"$bytes": "QQ==\n"},
    {"$bytes": "QQ-_"},  # URL-safe alphabet
    {"$bytes": "\u00e9"},
    {"$bytes": 5},
    {"$bytes": None},
    # tags in the wrong shape
    {"$foo": 1},
    {"$": 1},
    {"$int": "9007199254740993", "x": 1},
    {"x": 1, "$float": "1.0"},
    {"a": {"$bytes": "QR=="}},
    [{"$int": "1"}],
    # bare values that canonical entries never hold
    1.5,
    1.0,
    [0.5],
    {"a": 2.0},
    MAX_SAFE_INTEGER + 1,
    -MAX_SAFE_INTEGER - 1,
    [2**64],
]


@pytest.mark.parametrize("value", MALFORMED, ids=repr)
def test_malformed_values_are_rejected(value: Any) -> None:
    with pytest.raises(ValueError):
        decode_value(value)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["$int", "$float", "$bytes"]), st.text(max_size=50))
def test_tag_text_accepted_only_in_canonical_form(tag: str, text: str) -> None:
    """Whatever a tag decodes to, re-encoding it gives back exactly the same tag."""
    try:
        value = decode_value({tag: text})
    except ValueError:
        return
    assert encode_value(value) == {tag: text}


# -- canonical base64 ---------------------------------------------------------------------

B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_base64_round_trip(data: bytes) -> None:
    text = b64encode(data)
    assert text == base64.b64encode(data).decode()
    assert b64decode(text) == data


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.data())
def test_base64_with_non_canonical_trailing_bits_is_rejected(data: bytes, draw: st.DataObject) -> None:
    assume(len(data) % 3 != 0)
    text = b64encode(data)
    padding = text.count("=")
    last = len(text) - padding - 1
    unused_bits = 4 if padding == 2 else 2
    index = B64_ALPHABET.index(text[last])
    extra = draw.draw(st.integers(1, (1 << unused_bits) - 1))
    other = text[:last] + B64_ALPHABET[index | extra] + text[last + 1 :]
    # A lenient decoder reads both texts as the same bytes ...
    assert base64.b64decode(other) == data
    # ... this one accepts only the canonical text.
    with pytest.raises(ValueError, match="non-canonical"):
        b64decode(other)
    with pytest.raises(ValueError):
        decode_value({"$bytes": other})


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=B64_ALPHABET + "=-_ \n\r\t.\u00e9", max_size=16))
def test_base64_accepts_only_what_it_would_write(text: str) -> None:
    try:
        data = b64decode(text)
    except ValueError:
        return
    assert b64encode(data) == text


@pytest.mark.parametrize("bad", [None, 5, b"QQ==", ["QQ=="]])
def test_base64_non_text_is_a_value_error(bad: Any) -> None:
    with pytest.raises(ValueError):
        b64decode(bad)


# -- strict_loads ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"a":1,"a":1}',
        '{"a":1,"a":2}',
        '{"x":{"b":1,"b":2}}',
        '[{"k":[],"k":{}}]',
        '{"a":1,"\\u0061":2}',  # the same key spelled with an escape
        "NaN",
        "[NaN]",
        '{"a":Infinity}',
        "-Infinity",
    ],
)
def test_strict_loads_rejects_duplicates_and_non_json_constants(text: str) -> None:
    with pytest.raises(ValueError):
        strict_loads(text)
    with pytest.raises(ValueError):
        strict_loads(text.encode())


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.integers(), min_size=1, max_size=5), st.data())
def test_strict_loads_rejects_any_repeated_key(obj: dict[str, int], draw: st.DataObject) -> None:
    key = draw.draw(st.sampled_from(sorted(obj)))
    members = [f"{json.dumps(k)}:{v}" for k, v in obj.items()] + [f"{json.dumps(key)}:0"]
    members = draw.draw(st.permutations(members))
    with pytest.raises(ValueError, match="duplicate"):
        strict_loads("{" + ",".join(members) + "}")


def test_strict_loads_accepts_plain_json() -> None:
    assert strict_loads(b'{"a":[1,"x",null,true],"b":{"c":-2}}') == {"a": [1, "x", None, True], "b": {"c": -2}}


# -- times ------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.datetimes(timezones=st.just(_dt.UTC)))
def test_time_round_trip(moment: _dt.datetime) -> None:
    text = format_time(moment)
    assert parse_time(text) == moment
    assert format_time(parse_time(text)) == text


def test_time_known_answer_and_other_zones() -> None:
    moment = _dt.datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=_dt.timezone(_dt.timedelta(hours=2)))
    assert format_time(moment) == "2025-01-02T01:04:05.000006Z"


def test_naive_time_refused() -> None:
    with pytest.raises(ValueError):
        format_time(_dt.datetime(2025, 1, 1))


@pytest.mark.parametrize(
    "text",
    [
        "2025-01-02T03:04:05Z",
        "2025-01-02T03:04:05.000000+00:00",
        "2025-01-02 03:04:05.000000Z",
        "2025-13-02T03:04:05.000000Z",
        "2025-01-02T03:04:05.000000z",
        " 2025-01-02T03:04:05.000000Z",
        "",
        None,
        12,
    ],
)
def test_malformed_times_rejected(text: Any) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_time_before_year_1000_round_trips() -> None:
    """(Regression: strftime wrote '999-01-01T...', which parse_time refused.)"""
    for moment in (_dt.datetime(999, 1, 1, tzinfo=_dt.UTC), _dt.datetime(1, 1, 1, tzinfo=_dt.UTC)):
        text = format_time(moment)
        assert len(text) == 27
        assert parse_time(text) == moment


@pytest.mark.parametrize(
    "text",
    ["\uff12025-01-02T03:04:05.000000Z", "2025-01-\uff10\uff12T03:04:05.000000Z", "2025-01-02T03:04:05.00000\u0660Z"],
)
def test_time_with_non_ascii_digits_rejected(text: str) -> None:
    """(Regression: \\d matched non-ASCII digits, a second spelling of one time.)"""
    with pytest.raises(ValueError):
        parse_time(text)


@pytest.mark.parametrize(
    "text", ["2025-02-30T00:00:00.000000Z", "2025-01-01T24:00:00.000000Z", "0000-01-01T00:00:00.000000Z"]
)
def test_impossible_times_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


# -- canonical JSON agrees with RFC 8785 --------------------------------------------------------

json_text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\x00", "\x1f", "\x7f", "\b", "\f", "\n", "\r", "\t", '"', "\\", "/", "\u2028",
                         "\u2029", "\ud7ff", "\ue000", "\uffff", "\U00010000", "\U0001f600", "\U0010ffff"]),
    ),
    max_size=12,
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER), json_text),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(json_text, c, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonical_json_is_exactly_rfc8785(value: Any) -> None:
    """Whatever shortcut canonical_json takes, its bytes are those of the reference implementation."""
    assert canonical_json(value) == bytes(rfc8785.dumps(value))


@pytest.mark.parametrize(
    "value",
    [
        {"\ue000": 1, "\U0001f600": 2},  # UTF-16 order differs from code-point order here
        {"\uffff": 1, "\U00010000": 2, "a": 3},
        {"k": "\x00\x1f\x7f\u2028"},
        ["\U0010ffff"],
    ],
)
def test_canonical_json_key_order_is_utf16(value: Any) -> None:
    assert canonical_json(value) == bytes(rfc8785.dumps(value))


# -- loads_canonical: the entry parser's fast path agrees with the reference path ------------


def reference_loads_canonical(text: bytes) -> Any:
    """What loads_canonical must do, spelled with the slow parts: stdlib strict
    parsing, the reference RFC 8785 implementation and the full decode walk."""
    value = strict_loads(text)
    if bytes(rfc8785.dumps(value)) != text:
        raise ValueError("not canonical")
    return decode_value(value)


def outcome(fn: Any, text: bytes) -> tuple[str, Any]:
    try:
        return "ok", fn(text)
    except (ValueError, TypeError, RecursionError, UnicodeDecodeError, rfc8785.CanonicalizationError):
        return "refused", None


NUMBER_TEXTS = [b"1.5", b"-0.5", b"1e+21", b"1e21", b"1E5", b"9007199254740992", b"-9007199254740992",
                b"18446744073709551615", b"123456789012345678901234", b"0", b"-0", b"01", b"2.0", b"5e-324"]


@settings(max_examples=400, deadline=None)
@given(values, st.data())
def test_loads_canonical_agrees_with_the_reference(value: Any, data: st.DataObject) -> None:
    text = canonical_json(encode_value(value))
    assert same(loads_canonical(text), value)
    # Then any small change: both accept the same texts, with the same result.
    mutated = bytearray(text)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(mutated)))
        choice = data.draw(st.sampled_from(["flip", "insert", "delete", "number"]))
        if choice == "flip" and at < len(mutated):
            mutated[at] ^= 1 << data.draw(st.integers(0, 7))
        elif choice == "insert":
            mutated[at:at] = data.draw(st.sampled_from([b"$", b'"$', b"0", b".5", b"e5", b" ", b",", b'"$$', b"{}"]))
        elif choice == "delete" and at < len(mutated):
            del mutated[at]
        elif choice == "number":
            mutated[at:at] = data.draw(st.sampled_from(NUMBER_TEXTS))
    got, expected = outcome(loads_canonical, bytes(mutated)), outcome(reference_loads_canonical, bytes(mutated))
    assert got[0] == expected[0], bytes(mutated)
    if got[0] == "ok":
        assert same(got[1], expected[1])


@pytest.mark.parametrize(
    "text",
    [b'{"a":1.5}', b'[1,2.5]', b'[-1e-7]', b'{"a":9007199254740992}', b'[-9007199254740992]',
     b'{"t":"08:11:52.320701","x":{"$float":"7.5"},"y":[1.5]}', b'{"a":1,"a":1}', b'{"a":NaN}',
     b'{"$int":"5"}', b'{"$x":1}', b'{"$int":"9007199254740993","b":1}', b' {}', b'{} ', b'{"a":"\\ud800"}'],
)
def test_loads_canonical_refuses_what_entries_cannot_hold(text: bytes) -> None:
    with pytest.raises(ValueError):
        loads_canonical(text)


def test_loads_canonical_decodes_tags_and_escaped_keys_anywhere() -> None:
    text = canonical_json(encode_value({"t": "08:11:52.5", "g": 7.5, "s": 2**64 - 1, "$k": [b"\x00", {"$": 1.0}]}))
    assert same(loads_canonical(text), {"t": "08:11:52.5", "g": 7.5, "s": 2**64 - 1, "$k": [b"\x00", {"$": 1.0}]})
