"""PNG container: the provenance payload is the text of one iTXt chunk.

Our chunk (all integers big-endian, as everywhere in PNG)::

    length   uint32   number of data bytes (23 + len(zlib stream))
    type     b"iTXt"
    data     b"provenance:journal"  keyword (18 bytes)
             0x00                    keyword terminator
             0x01                    compression flag: compressed
             0x00                    compression method: zlib
             0x00                    empty language tag, terminator
             0x00                    empty translated keyword, terminator
             zlib stream             of the UTF-8 payload
    crc      uint32   CRC-32 of type + data

``embed`` puts it immediately before the first IDAT chunk, which is after IHDR,
PLTE and every other chunk the PNG spec requires to precede the image data.
Readers accept it anywhere between IHDR and IEND.  An iTXt chunk with our
keyword in any other form, a second one, or a bad CRC is an error.

CRC policy: our chunk's CRC is checked by every function.  ``prepare``,
``embed``, ``strip``, ``describe`` and ``decode`` also check every other
chunk's CRC, so a corrupt file is never blessed or rewritten.  ``binding_hash``
and ``extract`` skip foreign CRCs to stay at one pass over the file: every
foreign byte is in the binding hash anyway, so corruption there still shows up
as a binding mismatch.

The binding hash leaves out exactly our chunk (length through CRC); embedding
rewrites no other field, so it equals SHA-256(strip(file)).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from provenance._formats._decode import DEFAULT_MAX_SIZE, inflate
from provenance.errors import ImageFormatError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
KEYWORD = b"provenance:journal"
# Everything in our iTXt data before the zlib stream; see the module docstring.
ITXT_PREFIX = KEYWORD + b"\x00\x01\x00\x00\x00"

_MAX_CHUNK_LENGTH = 2**31 - 1  # PNG spec: lengths and dimensions fit in 31 bits
_CRITICAL = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND"})
# Allowed bit depths per colour type (PNG spec, table 11.1).
_BIT_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


@dataclass(frozen=True, slots=True)
class _Chunk:
    ctype: bytes
    start: int  # offset of the length field
    length: int  # number of data bytes

    @property
    def data_start(self) -> int:
        return self.start + 8

    @property
    def data_end(self) -> int:
        return self.start + 8 + self.length

    @property
    def end(self) -> int:
        return self.start + 12 + self.length


@dataclass(slots=True)
class _Layout:
    width: int
    height: int
    first_idat: int  # offset of the first IDAT chunk
    ours: _Chunk | None


def _walk(data: bytes) -> Iterator[_Chunk]:
    """Yield every chunk from IHDR to IEND, checking only that each lies inside the file."""
    if not data.startswith(SIGNATURE):
        raise ImageFormatError("not a PNG file (bad signature)")
    size = len(data)
    pos = len(SIGNATURE)
    while True:
        if pos + 12 > size:
            raise ImageFormatError(f"PNG is truncated: no complete chunk at offset {pos}")
        length, ctype = struct.unpack_from(">I4s", data, pos)
        if length > _MAX_CHUNK_LENGTH:
            raise ImageFormatError(f"PNG chunk at offset {pos} has an invalid length {length}")
        if not ctype.isalpha():
            raise ImageFormatError(f"PNG chunk at offset {pos} has an invalid type {ctype!r}")
        chunk = _Chunk(ctype, pos, length)
        if chunk.end > size:
            raise ImageFormatError(
                f"PNG {ctype.decode('ascii')} chunk at offset {pos} runs past the end of the file"
            )
        yield chunk
        pos = chunk.end  # always advances by at least 12 bytes
        if ctype == b"IEND":
            break
    if pos != size:
        raise ImageFormatError(f"PNG has {size - pos} bytes after the IEND chunk")


def _crc_ok(data: bytes, chunk: _Chunk) -> bool:
    view = memoryview(data)
    stored: int = struct.unpack_from(">I", data, chunk.data_end)[0]
    return zlib.crc32(view[chunk.start + 4 : chunk.data_end]) == stored


def _is_ours(data: bytes, chunk: _Chunk) -> bool:
    if chunk.ctype != b"iTXt":
        return False
    start = chunk.data_start
    key = KEYWORD + b"\x00"
    return chunk.length >= len(key) and data[start : start + len(key)] == key


def _check_ours(data: bytes, chunk: _Chunk) -> None:
    if not _crc_ok(data, chunk):
        raise ImageFormatError("PNG provenance chunk has a bad CRC")
    start = chunk.data_start
    if chunk.length < len(ITXT_PREFIX) or data[start : start + len(ITXT_PREFIX)] != ITXT_PREFIX:
        raise ImageFormatError(
            "PNG provenance chunk must be zlib-compressed iTXt with no language tag"
        )


def _parse_ihdr(data: bytes, chunk: _Chunk) -> tuple[int, int, int]:
    if chunk.length != 13:
        raise ImageFormatError(f"PNG IHDR chunk has length {chunk.length}, not 13")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack_from(
        ">IIBBBBB", data, chunk.data_start
    )
    if not (1 <= width <= _MAX_CHUNK_LENGTH and 1 <= height <= _MAX_CHUNK_LENGTH):
        raise ImageFormatError(f"PNG has invalid dimensions {width}x{height}")
    if depth not in _BIT_DEPTHS.get(colour, ()):
        raise ImageFormatError(f"PNG has invalid colour type {colour} / bit depth {depth}")
    if compression != 0 or filtering != 0 or interlace not in (0, 1):
        raise ImageFormatError("PNG IHDR has an unknown compression, filter or interlace method")
    return width, height, colour


def _layout(data: bytes, *, check_crcs: bool) -> _Layout:
    """Walk and validate the whole chunk stream; see the module docstring for the CRC policy."""
    width = height = colour = -1
    first_idat: int | None = None
    idat_run_over = False
    has_plte = False
    ours: _Chunk | None = None
    for index, chunk in enumerate(_walk(data)):
        ctype = chunk.ctype
        if (index == 0) != (ctype == b"IHDR"):
            raise ImageFormatError("PNG must have exactly one IHDR chunk, first")
        if check_crcs and not _crc_ok(data, chunk):
            raise ImageFormatError(
                f"PNG {ctype.decode('ascii')} chunk at offset {chunk.start} has a bad CRC"
            )
        if ctype == b"IHDR":
            width, height, colour = _parse_ihdr(data, chunk)
        elif ctype == b"IDAT":
            if idat_run_over:
                raise ImageFormatError("PNG IDAT chunks are not consecutive")
            if first_idat is None:
                first_idat = chunk.start
        elif ctype == b"PLTE":
            if has_plte or first_idat is not None:
                raise ImageFormatError("PNG has a second PLTE chunk or one after IDAT")
            has_plte = True
        elif ctype == b"IEND":
            if chunk.length != 0:
                raise ImageFormatError("PNG IEND chunk is not empty")
        elif ctype[0] < 0x61 and ctype not in _CRITICAL:
            # An uppercase first letter marks a critical chunk: decoders must refuse
            # ones they do not know, so we must not bless such a file either.
            raise ImageFormatError(f"PNG has an unknown critical chunk {ctype!r}")
        elif _is_ours(data, chunk):
            if ours is not None:
                raise ImageFormatError("PNG has more than one provenance chunk")
            _check_ours(data, chunk)
            ours = chunk
        if first_idat is not None and ctype != b"IDAT":
            idat_run_over = True
    if first_idat is None:
        raise ImageFormatError("PNG has no IDAT chunk")
    if (colour == 3) != has_plte and colour not in (2, 6):
        raise ImageFormatError("PNG palette (PLTE) is missing or not allowed for its colour type")
    return _Layout(width, height, first_idat, ours)


def _stripped(data: bytes, layout: _Layout) -> tuple[bytes, int]:
    """Return the file without our chunk and the first IDAT offset in that file."""
    ours = layout.ours
    if ours is None:
        return data, layout.first_idat
    first_idat = layout.first_idat
    if ours.start < first_idat:
        first_idat -= ours.end - ours.start
    return data[: ours.start] + data[ours.end :], first_idat


def _make_chunk(ctype: bytes, body: bytes) -> bytes:
    if len(body) > _MAX_CHUNK_LENGTH:
        raise ImageFormatError("provenance payload is too large for a PNG chunk")
    crc = zlib.crc32(body, zlib.crc32(ctype))
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc)


def dimensions(data: bytes) -> tuple[int, int]:
    """Validate the file fully and return the width and height IHDR declares."""
    layout = _layout(data, check_crcs=True)
    return layout.width, layout.height


def strip(data: bytes) -> bytes:
    """Return the file without our chunk (the same object if there is none)."""
    return _stripped(data, _layout(data, check_crcs=True))[0]


def prepare(data: bytes) -> bytes:
    """PNG needs no normalisation: embedding only inserts a chunk."""
    return strip(data)


def embed(data: bytes, payload: bytes) -> bytes:
    """Insert our chunk, holding ``payload``, right before the first IDAT."""
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ImageFormatError("PNG provenance payload must be valid UTF-8 text") from None
    base, first_idat = _stripped(data, _layout(data, check_crcs=True))
    chunk = _make_chunk(b"iTXt", ITXT_PREFIX + zlib.compress(payload, 9))
    return base[:first_idat] + chunk + base[first_idat:]


def extract(data: bytes, max_size: int) -> bytes | None:
    """Return our chunk's inflated text, or None if the file has none."""
    ours = _layout(data, check_crcs=False).ours
    if ours is None:
        return None
    compressed = memoryview(data)[ours.data_start + len(ITXT_PREFIX) : ours.data_end]
    payload = inflate(compressed, max_size, "PNG provenance chunk")
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ImageFormatError("PNG provenance chunk text is not valid UTF-8") from None
    return payload


def excluded_ranges(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges the binding hash leaves out: our chunk, if any."""
    ours = _layout(data, check_crcs=False).ours
    return [] if ours is None else [(ours.start, ours.end)]


def describe(data: bytes) -> Iterator[dict[str, object]]:
    """Yield one entry per chunk: type, offset, length (whole chunk) and data_length."""
    layout = _layout(data, check_crcs=True)
    for chunk in _walk(data):
        entry: dict[str, object] = {
            "type": chunk.ctype.decode("ascii"),
            "offset": chunk.start,
            "length": chunk.end - chunk.start,
            "data_length": chunk.length,
            "provenance": False,
        }
        if chunk.ctype == b"IHDR":
            entry["width"], entry["height"] = layout.width, layout.height
        if layout.ours is not None and chunk.start == layout.ours.start:
            compressed = memoryview(data)[chunk.data_start + len(ITXT_PREFIX) : chunk.data_end]
            payload = inflate(compressed, DEFAULT_MAX_SIZE, "PNG provenance chunk")
            entry["provenance"] = True
            entry["keyword"] = KEYWORD.decode("ascii")
            entry["compressed_size"] = len(compressed)
            entry["payload_size"] = len(payload)
        yield entry
