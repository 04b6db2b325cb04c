"""Canonical encoding of journal values.

Entries are canonical JSON (RFC 8785).  JSON numbers are IEEE doubles, so any
value that a double cannot carry exactly is *tagged* instead, which makes every
value round-trip bit for bit:

* integers outside the safe range ``±(2**53 - 1)`` (64-bit seeds) become
  ``{"$int": "<decimal>"}``;
* every float (a guidance scale of 7.5, but also 7.0, which JSON would turn
  into an integer) becomes ``{"$float": "<repr>"}``; ``repr`` is the shortest
  string that parses back to the same double, and covers ``nan``/``inf``;
* bytes become ``{"$bytes": "<base64>"}``;
* a user mapping key that starts with ``$`` is escaped with one more ``$``,
  so no user data can pose as a tag.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
import math
import re
import struct
from collections.abc import Mapping
from typing import Any

import orjson
import rfc8785

__all__ = [
    "MAX_SAFE_INTEGER",
    "b64decode",
    "b64encode",
    "canonical_json",
    "canonical_json_encoded",
    "decode_canonical",
    "decode_value",
    "encode_value",
    "format_time",
    "is_canonical_json",
    "loads_canonical",
    "parse_time",
    "strict_loads",
]

MAX_SAFE_INTEGER = 2**53 - 1
_MAX_DEPTH = 64

_TAG_INT = "$int"
_TAG_FLOAT = "$float"
_TAG_BYTES = "$bytes"
_TAGS = frozenset({_TAG_INT, _TAG_FLOAT, _TAG_BYTES})
_INT_RE = re.compile(r"-?(0|[1-9][0-9]{0,39})")
_MAX_TAGGED_INT = 10**40
_CANONICAL_NAN = struct.pack(">d", float("nan")).hex()


def encode_value(value: Any, _depth: int = 0) -> Any:
    """Turn a Python value into the JSON-safe tagged form described above."""
    if _depth > _MAX_DEPTH:
        raise ValueError("value is nested too deeply")
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is dict:
        # The common case, without the ABC check `isinstance(value, Mapping)` costs.
        return _encode_mapping(value, _depth)
    if kind is int and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return value
    if kind is list:
        return [encode_value(item, _depth + 1) for item in value]
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value
        if abs(value) >= _MAX_TAGGED_INT:
            raise ValueError("integers of more than 40 digits are not recorded")
        return {_TAG_INT: str(value)}
    if isinstance(value, float):
        if math.isnan(value):
            # repr() says "nan" for every NaN; keep the sign and payload bits too.
            bits = struct.pack(">d", value).hex()
            return {_TAG_FLOAT: "nan" if bits == _CANONICAL_NAN else f"nan:{bits}"}
        return {_TAG_FLOAT: repr(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {_TAG_BYTES: b64encode(bytes(value))}
    if isinstance(value, Mapping):
        return _encode_mapping(value, _depth)
    if isinstance(value, (list, tuple)):
        return [encode_value(item, _depth + 1) for item in value]
    raise TypeError(f"cannot record a value of type {type(value).__name__}")


def _encode_mapping(value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is not str:
            if not isinstance(key, str):
                raise TypeError(f"mapping keys must be strings, not {type(key).__name__}")
            key = str(key)
        out["$" + key if key[:1] == "$" else key] = item if type(item) is str else encode_value(item, depth + 1)
    return out


def decode_value(value: Any, _depth: int = 0) -> Any:
    """Invert `encode_value`; raises ValueError on a malformed tag."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value
        raise ValueError("bare integer outside the safe range")
    if _depth > _MAX_DEPTH:
        raise ValueError("value is nested too deeply")
    depth = _depth + 1
    if kind is dict:
        if len(value) == 1:
            ((key, item),) = value.items()
            if key in _TAGS:
                return _decode_tag(key, item)
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key[:1] == "$":
                if key[:2] != "$$":
                    raise ValueError(f"unknown tag {key[:20]!r}")
                key = key[1:]
            # Scalars are the common case: skip the call for them (verification hot path).
            item_kind = type(item)
            if (
                item_kind is str
                or item_kind is bool
                or item is None
                or (item_kind is int and -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER)
            ):
                out[key] = item
            else:
                out[key] = decode_value(item, depth)
        return out
    if kind is list:
        items: list[Any] = []
        append = items.append
        for item in value:
            item_kind = type(item)
            if (
                item_kind is str
                or item_kind is bool
                or item is None
                or (item_kind is int and -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER)
            ):
                append(item)
            else:
                append(decode_value(item, depth))
        return items
    if kind is float:
        # Canonical entries never carry bare floats; refuse rather than guess.
        raise ValueError("bare JSON float (floats must be tagged)")
    raise ValueError(f"unexpected JSON value of type {kind.__name__}")


# A number in canonical text (no whitespace) starts right after ``":`` (a member
# value) or after ``[`` or ``,`` (an array element).  An integer outside the safe
# range there is 16 digits or more, and a float shows a ``.`` or an exponent
# after at most 21 digits.  Both are looked for in a copy of the text with every
# digit mapped to ``0``, ``:`` to 0x01, ``[`` and ``,`` to 0x02 and ``"`` to
# 0x03, where two regular expressions with a literal first byte run several
# times faster than one on the text itself (a ``:`` inside a string, as in a
# time, is not preceded by a quote).  Text inside strings may match too, which
# only costs the full walk.
_NUMBER_SCAN = bytes.maketrans(b'0123456789:,["', b"0000000000\x01\x02\x02\x03")
_LONG_OR_FLOAT_MEMBER = re.compile(rb"\x03\x01-?0(?:0{15}|0{0,20}[.eE])")
_LONG_OR_FLOAT_ELEMENT = re.compile(rb"\x02-?0(?:0{15}|0{0,20}[.eE])")


def decode_canonical(value: Any, spelled: bytes) -> Any:
    """`decode_value` of `value`, parsed from the JSON `spelled`, skipping the walk when it is idle.

    Precondition: `spelled` is in its RFC 8785 form (checked before), so a
    ``$`` is spelled literally and a number as described above.
    `decode_value` returns its input unchanged unless the value holds a mapping
    key starting with ``$`` (which needs ``"$`` in the text), an integer outside
    the safe range (16 digits or more after one of those), a float, or
    containers nested more than 64 deep (more than 64 ``{``/``[`` bytes); if
    the text could hold any of these the value goes through the full walk, so
    the outcome is `decode_value`'s, errors included.  (A number alone, with
    nothing before it, takes the walk too.)
    """
    if spelled[:1] not in (b"{", b"[") or spelled.count(b"{") + spelled.count(b"[") > _MAX_DEPTH or (
        _LONG_OR_FLOAT_MEMBER.search(scan := spelled.translate(_NUMBER_SCAN))
        or _LONG_OR_FLOAT_ELEMENT.search(scan)
    ):
        return decode_value(value)
    if b'"$' in spelled:
        return _undo_tags(value)
    return value


def _undo_tags(value: Any) -> Any:
    """`decode_value` of a value with no float, no unsafe integer and at most 64 containers.

    Only mappings and lists can change, so scalars are not visited; `value` is
    fresh from the parser and is decoded in place.
    """
    kind = type(value)
    if kind is dict:
        # Keys come in canonical order, so no key starts with ``$`` unless the
        # first sorts at or before it (a tag, an escaped key, or a rare key such
        # as one starting with a space): those mappings take the full walk.
        first = next(iter(value), None)
        if first is not None and first[:1] <= "$":
            if len(value) == 1 and first in _TAGS:
                return _decode_tag(first, value[first])
            return decode_value(value)
        for key, item in value.items():
            item_kind = type(item)
            if item_kind is dict or item_kind is list:
                decoded = _undo_tags(item)
                if decoded is not item:
                    value[key] = decoded  # the keys stay: allowed while iterating
    elif kind is list:
        for index, item in enumerate(value):
            item_kind = type(item)
            if item_kind is dict or item_kind is list:
                decoded = _undo_tags(item)
                if decoded is not item:
                    value[index] = decoded
    return value


def loads_canonical(spelled: bytes) -> Any:
    """The value `spelled` encodes, with its tags undone; raises ValueError unless it is exact.

    `spelled` must be exactly the RFC 8785 form of a value `encode_value` can
    write: JSON (UTF-8, no NaN or Infinity), no repeated key (the parsed object
    then has fewer members than the text, so its canonical form differs), no
    other spelling, no bare float, no malformed tag.  This is the entry
    parser's path, where verification spends its time: orjson parses and
    re-spells the text, which the comparison makes as exact as `rfc8785` itself
    (a spelling orjson got wrong could only be refused, never accepted).
    """
    try:
        value = orjson.loads(spelled)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({str(exc).split(':')[0]})") from None
    try:
        canonical = is_canonical_json(value, spelled)
    except RecursionError:  # the reference encoder, on deeply nested non-ASCII text
        raise ValueError("nested too deeply") from None
    if not canonical:
        raise ValueError("not in canonical form (RFC 8785)")
    return decode_canonical(value, spelled)


def _decode_tag(tag: str, item: Any) -> Any:
    if not isinstance(item, str):
        raise ValueError(f"{tag} tag must hold a string")
    if tag == _TAG_INT:
        if not _INT_RE.fullmatch(item):
            raise ValueError("malformed $int")
        number = int(item)
        if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
            raise ValueError("$int tag used for a safe integer")
        return number
    if tag == _TAG_FLOAT:
        if len(item) > 32:
            raise ValueError("malformed $float")
        if item.startswith("nan:"):
            bits = item[4:]
            if not re.fullmatch(r"[0-9a-f]{16}", bits) or bits == _CANONICAL_NAN:
                raise ValueError("malformed $float NaN")
            number_nan: float = struct.unpack(">d", bytes.fromhex(bits))[0]
            if not math.isnan(number_nan):
                raise ValueError("malformed $float NaN")
            return number_nan
        try:
            number_f = float(item)
        except ValueError:
            raise ValueError("malformed $float") from None
        if repr(number_f) != item:
            raise ValueError("non-canonical $float")
        return number_f
    return b64decode(item)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key in JSON object")
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_STRICT_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


def strict_loads(data: bytes | str) -> Any:
    """json.loads that refuses duplicate keys and NaN/Infinity, as RFC 8785 input must."""
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    value, end = _STRICT_DECODER.raw_decode(text)
    if text[end:].strip(" \t\n\r"):
        raise ValueError("extra data after the JSON value")
    if text[:1].isspace():
        raise ValueError("leading whitespace")
    return value


# For values with no floats, no integers beyond 64 bits and no mapping key
# beyond the Basic Multilingual Plane's lower half, orjson with sorted keys
# writes exactly the RFC 8785 bytes (minimal separators, the same string
# escapes, UTF-8) at a small fraction of the cost of the pure-Python reference.
# Anything else (a key whose UTF-16 order differs from its code-point order, a
# float whose ECMAScript form differs) goes through `rfc8785`.  The property
# tests in tests/test_encoding.py hold both to the same bytes.
_SORTED_KEYS = orjson.OPT_SORT_KEYS


def _fast_path_ok(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
    if depth > _MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return all(
            isinstance(k, str) and (k.isascii() or max(k) < "\ud800") and _fast_path_ok(v, depth + 1)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return all(_fast_path_ok(v, depth + 1) for v in value)
    return False


def is_canonical_json(value: Any, spelled: bytes) -> bool:
    """Whether `spelled` is exactly the RFC 8785 form of `value` (as parsed from it)."""
    if spelled.isascii():
        # ASCII text has no keys whose UTF-16 and code-point orders differ, and a
        # float orjson spells otherwise only makes the comparison fail: orjson
        # decides alone.
        try:
            return orjson.dumps(value, option=_SORTED_KEYS) == spelled
        except TypeError:
            return False
    try:
        return canonical_json(value) == spelled
    except (ValueError, TypeError):
        return False


def canonical_json_encoded(value: Any) -> bytes:
    """`canonical_json` of a value made by `encode_value` (no floats, no unsafe integers).

    Only a non-ASCII mapping key can make orjson's spelling differ from RFC
    8785's (UTF-16 versus code-point order), so ASCII output is exact.
    """
    try:
        text = orjson.dumps(value, option=_SORTED_KEYS)
    except TypeError:
        return canonical_json(value)
    return text if text.isascii() else canonical_json(value)


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical bytes of an already-encoded JSON value."""
    if _fast_path_ok(value):
        try:
            return orjson.dumps(value, option=_SORTED_KEYS)
        except TypeError:
            pass  # a lone surrogate: let rfc8785 report it
    return bytes(rfc8785.dumps(value))


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# Base64 characters whose 6 bits end in 4 (2) zero bits: the last character
# before ``==`` (``=``) in canonical base64.
_LAST_BEFORE_2_PADS = frozenset(b"AQgw")
_LAST_BEFORE_1_PAD = frozenset(b"AEIMQUYcgkosw048")


def b64decode(text: str) -> bytes:
    """Strict, canonical standard base64 (padding required, no stray characters)."""
    try:
        raw = text.encode("ascii")
        data = binascii.a2b_base64(raw, strict_mode=True)  # what b64decode(validate=True) runs
    except (binascii.Error, UnicodeEncodeError, ValueError, AttributeError):
        raise ValueError("malformed base64") from None
    # Unused trailing bits make several texts decode alike; only the canonical
    # one is accepted, so no byte of a journal can change without notice.  Strict
    # decoding admits only alphabet characters with padding at the end, so the
    # text is canonical exactly when it has the canonical length and its last
    # group leaves no unused bit set (checked without encoding `data` again;
    # equal to the re-encoding comparison on every text of up to 6 characters
    # over the alphabet, padding and stray characters, and 300,000 mutations).
    tail = len(data) % 3
    if len(raw) != (len(data) + 2) // 3 * 4 or (
        (raw[-3] not in _LAST_BEFORE_2_PADS or raw[-2:] != b"==")
        if tail == 1
        else (raw[-2] not in _LAST_BEFORE_1_PAD or raw[-1] != 61)
        if tail == 2
        else raw[-1:] == b"="
    ):
        raise ValueError("non-canonical base64")
    return data


_TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


def format_time(moment: _dt.datetime) -> str:
    """RFC 3339 UTC with microseconds, the one time form entries use."""
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    t = moment if moment.tzinfo is _dt.UTC else moment.astimezone(_dt.UTC)
    # Formatted by hand: strftime does not zero-pad years before 1000 everywhere.
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}Z"


def parse_time(text: str) -> _dt.datetime:
    if not isinstance(text, str) or not _TIME_RE.fullmatch(text):
        raise ValueError("malformed time (expected YYYY-MM-DDTHH:MM:SS.ffffffZ)")
    try:
        return _dt.datetime.fromisoformat(text)  # the regex above fixed the form; 40x faster than strptime
    except ValueError:
        raise ValueError("malformed time (not a real date or time)") from None
