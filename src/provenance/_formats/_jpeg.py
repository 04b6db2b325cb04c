"""JPEG container: the provenance payload is spread over APP11 segments of our own.

The payload is zlib-compressed and the stream is cut into slices of at most
65,513 bytes, one per segment.  Each segment (integers big-endian, as in JPEG)::

    0xFF 0xEB     APP11 marker
    length        uint16   2 + 20 + len(slice), as JPEG defines segment lengths
    identifier    b"PROVNC\\x00" (7 bytes)
    version       uint8    1
    sequence      uint32   1 for the first slice, up to count
    count         uint32   number of segments carrying this payload (>= 1)
    crc           uint32   CRC-32 (zlib.crc32) of identifier..count followed by the slice
    slice         the next len(slice) bytes of the zlib stream

The CRC makes every byte of our segments tamper-evident; without it a few bits
of a zlib stream (block padding, the header's level hint) can change without
changing what it inflates to.

``embed`` writes the segments as one run right after SOI and any APP0/APP1
segments (JFIF, Exif, XMP) that directly follow it.  Readers accept our
segments anywhere in the header (between SOI and the first SOS), in sequence
order; a gap, repeat, reordering or disagreeing count is an error.  APP11
segments with any other identifier (such as C2PA's JUMBF, which starts with
b"JP") are foreign and left alone.  Bytes after EOI (e.g. a second image of an
MPO file) are kept as they are and covered by the binding hash, but not searched.

Validation policy: ``prepare``, ``embed``, ``strip``, ``describe`` and
``decode`` walk every marker through EOI, scans included, and refuse our
identifier after the first scan, and a file of more than ``MAX_SCANS`` scans
(each is a decoding pass over the whole image).  ``binding_hash`` and ``extract`` parse only
the header and check that an EOI marker follows it.  Finding where entropy-coded
data ends takes a byte-by-byte regex scan that costs more than the SHA-256 pass
itself, and every byte after the header is in the binding hash anyway.

The binding hash leaves out exactly our segments (marker through slice);
embedding rewrites no other field, so it equals SHA-256(strip(file)).
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from provenance._formats._decode import DEFAULT_MAX_SIZE, inflate
from provenance.errors import ImageFormatError

IDENTIFIER = b"PROVNC\x00"
VERSION = 1
# identifier, version, sequence, count, crc
_HEADER = struct.Struct(">7sBIII")
_MAX_SEGMENT_DATA = 0xFFFF - 2  # the 16-bit length counts itself
MAX_SLICE = _MAX_SEGMENT_DATA - _HEADER.size  # 65,513

_SOI, _EOI, _SOS, _APP0, _APP1, _APP11 = 0xD8, 0xD9, 0xDA, 0xE0, 0xE1, 0xEB
# Encoders write 1 scan (baseline) to about 20 (progressive scripts; libjpeg's
# default is 10 for colour): this leaves room for unusual scripts only.
MAX_SCANS = 100
# Markers that stand alone, without a length field: TEM and RST0..RST7.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_SOF = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0)})
# Entropy-coded data ends at the first 0xFF not followed by a stuffed 0x00 or an RSTn.
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")
_NAMES = {
    0x01: "TEM", 0xC4: "DHT", 0xC8: "JPG", 0xCC: "DAC", 0xD8: "SOI", 0xD9: "EOI",
    0xDA: "SOS", 0xDB: "DQT", 0xDC: "DNL", 0xDD: "DRI", 0xDE: "DHP", 0xDF: "EXP",
    0xFE: "COM",
}  # fmt: skip

# Kinds of part the walk yields besides marker segments.
_SCAN_DATA = -1
_TRAILER = -2


@dataclass(frozen=True, slots=True)
class _Part:
    marker: int  # marker code, or _SCAN_DATA / _TRAILER
    start: int  # offset of the 0xFF that introduces the marker (fill bytes are not part of it)
    end: int
    data_start: int  # first byte after the length field (== end for standalone markers)


@dataclass(frozen=True, slots=True)
class _Ours:
    part: _Part
    sequence: int
    count: int


@dataclass(slots=True)
class _Layout:
    width: int
    height: int
    sof_at: int  # offset of the first frame header, whose dimensions these are
    ours: list[_Ours]
    insert_at: int  # where embed puts our segments, as an offset in the stripped file


def _walk(data: bytes, *, header_only: bool = False) -> Iterator[_Part]:
    """Yield SOI, each marker segment, each run of scan data, EOI and any trailer.

    With ``header_only`` the walk stops after the first SOS segment.
    """
    if not data.startswith(b"\xff\xd8"):
        raise ImageFormatError("not a JPEG file (no SOI marker)")
    size = len(data)
    yield _Part(_SOI, 0, 2, 2)
    pos = 2
    while True:
        if pos >= size:
            raise ImageFormatError("JPEG is truncated: it ends before the EOI marker")
        if data[pos] != 0xFF:
            raise ImageFormatError(f"JPEG has no marker where one must be, at offset {pos}")
        code_at = pos + 1
        while code_at < size and data[code_at] == 0xFF:  # fill bytes
            code_at += 1
        if code_at >= size:
            raise ImageFormatError("JPEG is truncated: it ends before the EOI marker")
        code = data[code_at]
        start = code_at - 1
        if code == _EOI:
            yield _Part(code, start, code_at + 1, code_at + 1)
            if code_at + 1 < size:
                yield _Part(_TRAILER, code_at + 1, size, code_at + 1)
            return
        if code in (0x00, _SOI):
            raise ImageFormatError(f"JPEG has an invalid marker 0xFF{code:02X} at offset {start}")
        if code in _STANDALONE:
            yield _Part(code, start, code_at + 1, code_at + 1)
            pos = code_at + 1
            continue
        if code_at + 3 > size:
            raise ImageFormatError("JPEG is truncated inside a segment header")
        length = (data[code_at + 1] << 8) | data[code_at + 2]
        end = code_at + 1 + length
        if length < 2 or end > size:
            raise ImageFormatError(
                f"JPEG {_name(code)} segment at offset {start} has a length that runs "
                "past the end of the file"
            )
        yield _Part(code, start, end, code_at + 3)
        pos = end  # always advances: length >= 2 and at least the marker byte
        if code == _SOS:
            if header_only:
                return
            match = _SCAN_END.search(data, pos)
            if match is None:
                raise ImageFormatError("JPEG is truncated: scan data runs to the end of the file, no EOI")
            if match.start() > pos:
                yield _Part(_SCAN_DATA, pos, match.start(), pos)
            pos = match.start()


def _name(code: int) -> str:
    if code == _SCAN_DATA:
        return "scan data"
    if code == _TRAILER:
        return "trailer"
    if 0xE0 <= code <= 0xEF:
        return f"APP{code - 0xE0}"
    if 0xD0 <= code <= 0xD7:
        return f"RST{code - 0xD0}"
    if code in _SOF:
        return f"SOF{code - 0xC0}"
    if 0xF0 <= code <= 0xFD:
        return f"JPG{code - 0xF0}"
    return _NAMES.get(code, f"0xFF{code:02X}")


def _is_ours(data: bytes, part: _Part) -> bool:
    if part.marker != _APP11:
        return False
    return data[part.data_start : part.data_start + len(IDENTIFIER)] == IDENTIFIER


def _parse_ours(data: bytes, part: _Part) -> _Ours:
    if part.end - part.data_start < _HEADER.size:
        raise ImageFormatError(f"JPEG provenance segment at offset {part.start} is too short")
    _, version, sequence, count, crc = _HEADER.unpack_from(data, part.data_start)
    if version != VERSION:
        raise ImageFormatError(f"JPEG provenance segment has unsupported version {version}")
    view = memoryview(data)
    crc_at = part.data_start + _HEADER.size - 4
    actual = zlib.crc32(view[crc_at + 4 : part.end], zlib.crc32(view[part.data_start : crc_at]))
    if actual != crc:
        raise ImageFormatError(f"JPEG provenance segment at offset {part.start} has a bad CRC")
    if count < 1 or not 1 <= sequence <= count:
        raise ImageFormatError(
            f"JPEG provenance segment has sequence number {sequence} of {count}"
        )
    return _Ours(part, sequence, count)


def _check_sequence(ours: list[_Ours]) -> None:
    """Our segments must be exactly 1..count, once each, in file order."""
    if not ours:
        return
    counts = {o.count for o in ours}
    if len(counts) > 1:
        raise ImageFormatError(
            f"JPEG provenance segments disagree on their count: {sorted(counts)}"
        )
    sequences = [o.sequence for o in ours]
    if len(set(sequences)) != len(sequences):
        raise ImageFormatError("JPEG provenance segments are duplicated")
    count = ours[0].count
    if len(sequences) != count:
        raise ImageFormatError(
            f"JPEG provenance segments are missing: {len(sequences)} of {count} present"
        )
    if sequences != list(range(1, count + 1)):
        raise ImageFormatError("JPEG provenance segments are out of order")


def _check_sof(data: bytes, part: _Part) -> tuple[int, int]:
    if part.end - part.data_start < 6:
        raise ImageFormatError(f"JPEG {_name(part.marker)} segment is too short")
    height, width = struct.unpack_from(">HH", data, part.data_start + 1)
    if width == 0 or height == 0:
        # Height 0 defers it to a DNL marker, which Pillow does not support.
        raise ImageFormatError(f"JPEG has unsupported dimensions {width}x{height}")
    return width, height


def _layout(data: bytes, *, full: bool = True) -> _Layout:
    """Validate the file (only its header unless ``full``; see the module docstring)."""
    dims: tuple[int, int] | None = None
    sof_at = -1
    seen_scan = False
    scans = 0
    scan_at = 0
    ours: list[_Ours] = []
    removed = 0  # bytes of our segments seen so far, to map offsets into the stripped file
    insert_at = 2
    leading = True  # still inside the APP0/APP1 run that directly follows SOI
    for part in _walk(data, header_only=not full):
        if part.marker == _SOI:
            continue
        if _is_ours(data, part):
            if seen_scan:
                raise ImageFormatError("JPEG has a provenance segment after the first scan")
            ours.append(_parse_ours(data, part))
            removed += part.end - part.start
            continue
        if leading and part.marker in (_APP0, _APP1) and part.start - removed == insert_at:
            insert_at = part.end - removed
        else:
            leading = False
        if part.marker in _SOF and dims is None:
            dims = _check_sof(data, part)
            sof_at = part.start
        elif part.marker == _SOS:
            if dims is None:
                raise ImageFormatError("JPEG has a scan (SOS) before its frame header (SOF)")
            if not seen_scan:
                scan_at = part.end
            seen_scan = True
            scans += 1
            if scans > MAX_SCANS:
                # Each scan of a progressive JPEG is a pass over every block:
                # thousands of them make a small file decode for minutes.
                raise ImageFormatError(f"JPEG has more than {MAX_SCANS} scans (a decoding-time bomb)")
        elif part.marker == _EOI and not seen_scan:
            raise ImageFormatError("JPEG has no image data (no SOS before EOI)")
    # A valid scan never holds 0xFF 0xD9 (0xFF is always followed by 0x00 or
    # RSTn there), so with none after the header the EOI is missing.  rfind
    # usually answers at once: most files end with EOI.
    if not full and data.rfind(b"\xff\xd9", scan_at) < 0:
        raise ImageFormatError("JPEG is truncated: no EOI marker after the header")
    _check_sequence(ours)
    if dims is None:  # unreachable: EOI needs a scan first, and a scan a frame header
        raise ImageFormatError("JPEG has no frame header (SOF)")
    return _Layout(dims[0], dims[1], sof_at, ours, insert_at)


def _stripped(data: bytes, layout: _Layout) -> bytes:
    if not layout.ours:
        return data
    view = memoryview(data)
    pieces: list[memoryview] = []
    pos = 0
    for o in layout.ours:
        pieces.append(view[pos : o.part.start])
        pos = o.part.end
    pieces.append(view[pos:])
    return b"".join(pieces)


def _segments(payload: bytes) -> bytes:
    compressed = zlib.compress(payload, 9)
    slices = [compressed[i : i + MAX_SLICE] for i in range(0, len(compressed), MAX_SLICE)]
    count = len(slices)
    if count > 0xFFFFFFFF:
        raise ImageFormatError("provenance payload is too large for JPEG")
    out = bytearray()
    for sequence, piece in enumerate(slices, start=1):
        head = _HEADER.pack(IDENTIFIER, VERSION, sequence, count, 0)[:-4]
        crc = zlib.crc32(piece, zlib.crc32(head))
        out += struct.pack(">BBH", 0xFF, _APP11, 2 + _HEADER.size + len(piece))
        out += head + struct.pack(">I", crc) + piece
    return bytes(out)


def dimensions(data: bytes) -> tuple[int, int]:
    """Validate the file and return the width and height of its first frame header."""
    layout = _layout(data)
    return layout.width, layout.height


def strip(data: bytes) -> bytes:
    """Return the file without our segments (the same object if there are none)."""
    return _stripped(data, _layout(data))


def prepare(data: bytes) -> bytes:
    """JPEG needs no normalisation: embedding only inserts segments."""
    return strip(data)


def embed(data: bytes, payload: bytes) -> bytes:
    """Insert our segments, holding ``payload``, after SOI and the leading APP0/APP1 run."""
    layout = _layout(data)
    base = _stripped(data, layout)
    at = layout.insert_at
    return base[:at] + _segments(payload) + base[at:]


def _inflate_ours(data: bytes, ours: list[_Ours], max_size: int) -> tuple[int, bytes]:
    view = memoryview(data)
    compressed = b"".join(view[o.part.data_start + _HEADER.size : o.part.end] for o in ours)
    return len(compressed), inflate(compressed, max_size, "JPEG provenance segments")


def extract(data: bytes, max_size: int) -> bytes | None:
    """Return the inflated payload of our segments, or None if the file has none."""
    ours = _layout(data, full=False).ours
    if not ours:
        return None
    return _inflate_ours(data, ours, max_size)[1]


def excluded_ranges(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges the binding hash leaves out: our segments."""
    return [(o.part.start, o.part.end) for o in _layout(data, full=False).ours]


def describe(data: bytes) -> Iterator[dict[str, object]]:
    """Yield one entry per marker segment, run of scan data and trailer."""
    layout = _layout(data)
    ours = {o.part.start: o for o in layout.ours}
    payload_size = compressed_size = 0
    if ours:
        compressed_size, payload = _inflate_ours(data, layout.ours, DEFAULT_MAX_SIZE)
        payload_size = len(payload)
    for part in _walk(data):
        entry: dict[str, object] = {
            "type": _name(part.marker),
            "offset": part.start,
            "length": part.end - part.start,
            "provenance": False,
        }
        if part.marker >= 0:
            entry["marker"] = f"0xFF{part.marker:02X}"
        if part.start == layout.sof_at:
            entry["width"], entry["height"] = layout.width, layout.height
        mine = ours.get(part.start)
        if mine is not None:
            entry["provenance"] = True
            entry["sequence"] = mine.sequence
            entry["count"] = mine.count
            entry["slice_size"] = part.end - part.data_start - _HEADER.size
            entry["compressed_size"] = compressed_size
            entry["payload_size"] = payload_size
        yield entry
