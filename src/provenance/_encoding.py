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


# An integer of sixteen digits or more where a JSON value starts (after ``:``,
# ``[`` or ``,``; canonical text has no whitespace) is the only spelling an
# integer outside the safe range has.  It is looked for in a copy of the text
# with those three bytes mapped to 0x01 and every digit to ``0``, where plain
# substring search is several times cheaper than a regular expression: every
# such integer shows as 0x01, an optional ``-`` and sixteen ``0``.  Other text
# may match too (digits in strings), which only costs the full walk.
_INT_START_SCAN = bytes.maketrans(b"0123456789:,[", b"0000000000\x01\x01\x01")
_LONG_INTEGER = b"\x01" + b"0" * 16
_LONG_NEGATIVE_INTEGER = b"\x01-" + b"0" * 16


def decode_canonical(value: Any, spelled: bytes) -> Any:
    """`decode_value` of `value`, a part of the JSON `spelled`, skipping the walk when it is idle.

    Preconditions (the entry parser's): `value` was parsed from `spelled` by
    `strict_loads(..., floats=False)`, so it holds no float, and `spelled` is
    in its RFC 8785 form (checked before), so a ``$`` is spelled literally and
    an integer as plain decimal digits right after ``:``, ``[`` or ``,``.
    `decode_value` returns its input unchanged unless the value holds a
    mapping key starting with ``$`` (which needs ``"$`` in the text), an
    integer outside the safe range (16 digits or more after one of those), a
    float (refused at parsing), or containers nested more than 64 deep (more
    than 64 ``{``/``[`` bytes); if the text could hold any of these the value
    goes through the full walk, so the outcome is `decode_value`'s, errors
    included.
    """
    if (
        b'"$' in spelled
        or spelled.count(b"{") + spelled.count(b"[") > _MAX_DEPTH
        or _LONG_INTEGER in (scan := spelled.translate(_INT_START_SCAN))
        or _LONG_NEGATIVE_INTEGER in scan
    ):
        return decode_value(value)
    return value


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


# Without the duplicate-key hook (which costs a Python call per object): only for
# text that is then checked with `is_canonical_json`, which a duplicate key
# cannot pass (the parsed object has fewer members than the text).
_CANONICAL_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def _no_floats(_text: str) -> Any:
    raise ValueError("bare JSON float (floats must be tagged)")


# The same, refusing every JSON number with a fraction or an exponent (entries
# carry floats only as `$float` tags), at no cost for the numbers it accepts.
_CANONICAL_NO_FLOATS_DECODER = json.JSONDecoder(parse_constant=_no_constants, parse_float=_no_floats)


def strict_loads(data: bytes | str, *, canonical_check_follows: bool = False, floats: bool = True) -> Any:
    """json.loads that refuses duplicate keys and NaN/Infinity, as RFC 8785 input must.

    With `floats=False` (only together with `canonical_check_follows`) any
    number with a fraction or exponent is refused as well.
    """
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    if canonical_check_follows:
        decoder = _CANONICAL_DECODER if floats else _CANONICAL_NO_FLOATS_DECODER
    else:
        if not floats:
            raise ValueError("floats=False needs canonical_check_follows=True")
        decoder = _STRICT_DECODER
    value, end = decoder.raw_decode(text)
    if text[end:].strip(" \t\n\r"):
        raise ValueError("extra data after the JSON value")
    if text[:1].isspace():
        raise ValueError("leading whitespace")
    return value


# For values with no floats, no unsafe integers and no mapping key beyond the
# Basic Multilingual Plane's lower half, the standard library produces exactly
# the RFC 8785 bytes (sorted keys, minimal separators, the same string escapes)
# at a fraction of the cost of the pure-Python implementation.  Anything else
# (a key whose UTF-16 order differs from its code-point order, a float whose
# ECMAScript form differs from repr) goes through `rfc8785`.
_FAST_ENCODER = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False, check_circular=False
)


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
        # ASCII text has no keys whose UTF-16 and code-point orders differ, and
        # a bare float (which the standard library spells otherwise) is refused
        # by `decode_value` anyway: the fast encoder decides alone.
        try:
            return _FAST_ENCODER.encode(value).encode("ascii") == spelled
        except (ValueError, UnicodeEncodeError):
            return False
    return canonical_json(value) == spelled


def canonical_json_encoded(value: Any) -> bytes:
    """`canonical_json` of a value made by `encode_value` (no bare floats, no unsafe integers).

    Only a non-ASCII mapping key can make the standard library's spelling differ
    from RFC 8785's (UTF-16 versus code-point order), so ASCII output is exact.
    """
    try:
        text = _FAST_ENCODER.encode(value)
    except ValueError:
        return canonical_json(value)
    return text.encode("ascii") if text.isascii() else canonical_json(value)


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical bytes of an already-encoded JSON value."""
    if _fast_path_ok(value):
        try:
            return _FAST_ENCODER.encode(value).encode("utf-8")
        except UnicodeEncodeError:
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
