"""WebP container: the provenance payload is one top-level RIFF chunk ``PRVN``.

Our chunk (integers little-endian, as everywhere in RIFF)::

    fourcc    b"PRVN"
    size      uint32   5 + len(zlib stream)
    version   uint8    1
    crc       uint32   CRC-32 (zlib.crc32) of the version byte followed by the zlib stream
    zlib      the zlib-compressed payload
    pad       one 0x00 byte when size is odd, as RIFF requires (must be zero)

The CRC makes every byte of the chunk tamper-evident; without it a few bits of
a zlib stream (block padding, the header's level hint) can change without
changing what it inflates to.

``prepare`` turns a simple lossy (``VP8 ``) or lossless (``VP8L``) file into the
extended form by putting a ``VP8X`` chunk in front of the untouched bitstream:
canvas size from the bitstream header, alpha flag from the VP8L header's
alpha_is_used bit, EXIF/XMP flags for any such chunks after the bitstream.
``embed`` then appends our chunk at the end of the file, where the WebP spec
puts unknown chunks, and rewrites the RIFF size.  Readers accept our chunk
anywhere at the top level after VP8X; a second one is an error.

The binding hash leaves out the RIFF size field (bytes 4..7, which embedding
rewrites and which must equal the file length minus 8) and our whole chunk
(fourcc through pad).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from provenance._formats._decode import DEFAULT_MAX_SIZE, inflate
from provenance.errors import ImageFormatError

FOURCC = b"PRVN"
VERSION = 1
_OUR_HEADER = struct.Struct("<BI")  # version, crc
_MAX_RIFF_SIZE = 0xFFFFFFFE  # the RIFF size is a uint32 and must be even

# VP8X flag bits (WebP container spec).
_ICC, _ALPHA, _EXIF, _XMP, _ANIMATION = 0x20, 0x10, 0x08, 0x04, 0x02
# Chunks that may only appear in an extended file, before or as the image data.
_IMAGE_CHUNKS = frozenset({b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP"})
_MAX_CANVAS_PIXELS = 2**32 - 1  # WebP spec: width * height must fit in 32 bits


@dataclass(frozen=True, slots=True)
class _Chunk:
    fourcc: bytes
    start: int  # offset of the fourcc
    size: int  # the chunk's size field: data bytes, not counting the pad byte

    @property
    def data_start(self) -> int:
        return self.start + 8

    @property
    def data_end(self) -> int:
        return self.start + 8 + self.size

    @property
    def end(self) -> int:
        return self.start + 8 + self.size + (self.size & 1)


@dataclass(slots=True)
class _Layout:
    width: int  # canvas size
    height: int
    extended: bool  # the file starts with VP8X
    flags: int  # VP8X flags: read from the file, or what prepare() would write
    ours: _Chunk | None


def _walk(data: bytes) -> Iterator[_Chunk]:
    """Yield every top-level chunk, checking the RIFF header and that each lies inside the file."""
    size = len(data)
    if size < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ImageFormatError("not a WebP file (no RIFF/WEBP header)")
    riff_size = struct.unpack_from("<I", data, 4)[0]
    if riff_size != size - 8:
        raise ImageFormatError(
            f"WebP RIFF size field says {riff_size} bytes but the file holds {size - 8}"
        )
    pos = 12
    while pos < size:
        if pos + 8 > size:
            raise ImageFormatError(f"WebP is truncated: incomplete chunk header at offset {pos}")
        fourcc, chunk_size = struct.unpack_from("<4sI", data, pos)
        chunk = _Chunk(fourcc, pos, chunk_size)
        if chunk.end > size:
            raise ImageFormatError(
                f"WebP {fourcc!r} chunk at offset {pos} runs past the end of the file"
            )
        yield chunk
        pos = chunk.end  # always advances by at least 8 bytes


def _uint24(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 3], "little")


def _vp8_size(data: bytes, chunk: _Chunk) -> tuple[int, int]:
    """Width and height from a lossy key frame header (RFC 6386, section 9.1)."""
    at = chunk.data_start
    if chunk.size < 10 or data[at] & 1 or data[at + 3 : at + 6] != b"\x9d\x01\x2a":
        raise ImageFormatError("WebP VP8 chunk does not start with a valid key frame header")
    width, height = struct.unpack_from("<HH", data, at + 6)
    width, height = width & 0x3FFF, height & 0x3FFF
    if width == 0 or height == 0:
        raise ImageFormatError("WebP VP8 bitstream has a zero width or height")
    return width, height


def _vp8l_size(data: bytes, chunk: _Chunk) -> tuple[int, int, bool]:
    """Width, height and alpha_is_used from a lossless header (RFC 9649, section 3.2)."""
    at = chunk.data_start
    if chunk.size < 5 or data[at] != 0x2F:
        raise ImageFormatError("WebP VP8L chunk does not start with a valid signature")
    bits = struct.unpack_from("<I", data, at + 1)[0]
    if bits >> 29:
        raise ImageFormatError("WebP VP8L bitstream has an unknown version")
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool(bits >> 28 & 1)


def _bitstream_size(data: bytes, chunk: _Chunk) -> tuple[int, int, bool]:
    if chunk.fourcc == b"VP8 ":
        return (*_vp8_size(data, chunk), False)
    return _vp8l_size(data, chunk)


def _check_ours(data: bytes, chunk: _Chunk) -> None:
    if chunk.size < _OUR_HEADER.size:
        raise ImageFormatError("WebP provenance chunk is too short")
    version, crc = _OUR_HEADER.unpack_from(data, chunk.data_start)
    if version != VERSION:
        raise ImageFormatError(f"WebP provenance chunk has unsupported version {version}")
    view = memoryview(data)
    body = view[chunk.data_start + _OUR_HEADER.size : chunk.data_end]
    if zlib.crc32(body, zlib.crc32(view[chunk.data_start : chunk.data_start + 1])) != crc:
        raise ImageFormatError("WebP provenance chunk has a bad CRC")
    if chunk.end != chunk.data_end and data[chunk.data_end] != 0:
        raise ImageFormatError("WebP provenance chunk has a non-zero pad byte")


def _check_frame(data: bytes, chunk: _Chunk, width: int, height: int) -> None:
    if chunk.size < 16:
        raise ImageFormatError("WebP ANMF chunk is too short")
    at = chunk.data_start
    x, y = 2 * _uint24(data, at), 2 * _uint24(data, at + 3)
    w, h = _uint24(data, at + 6) + 1, _uint24(data, at + 9) + 1
    if x + w > width or y + h > height:
        raise ImageFormatError("WebP animation frame lies outside the canvas")


def _layout(data: bytes) -> _Layout:
    """Walk and validate the whole file."""
    chunks = _walk(data)
    first = next(chunks, None)
    if first is None or first.fourcc not in (b"VP8X", b"VP8 ", b"VP8L"):
        raise ImageFormatError("WebP must start with a VP8X, VP8 or VP8L chunk")
    if first.fourcc == b"VP8X":
        return _layout_extended(data, first, chunks)
    return _layout_simple(data, first, chunks)


def _layout_simple(data: bytes, first: _Chunk, rest: Iterator[_Chunk]) -> _Layout:
    width, height, alpha = _bitstream_size(data, first)
    flags = _ALPHA if alpha else 0
    ours: _Chunk | None = None
    for chunk in rest:
        if chunk.fourcc in _IMAGE_CHUNKS:
            raise ImageFormatError(f"simple WebP has an unexpected {chunk.fourcc!r} chunk")
        if chunk.fourcc == FOURCC:
            ours = _note_ours(data, chunk, ours)
        elif chunk.fourcc == b"EXIF":
            flags |= _EXIF
        elif chunk.fourcc == b"XMP ":
            flags |= _XMP
    return _Layout(width, height, False, flags, ours)


def _layout_extended(data: bytes, vp8x: _Chunk, rest: Iterator[_Chunk]) -> _Layout:
    if vp8x.size != 10:
        raise ImageFormatError(f"WebP VP8X chunk has size {vp8x.size}, not 10")
    flags = data[vp8x.data_start]
    width = _uint24(data, vp8x.data_start + 4) + 1
    height = _uint24(data, vp8x.data_start + 7) + 1
    if width * height > _MAX_CANVAS_PIXELS:
        raise ImageFormatError(f"WebP canvas {width}x{height} is larger than the format allows")
    ours: _Chunk | None = None
    has_image = False
    for chunk in rest:
        if chunk.fourcc == b"VP8X":
            raise ImageFormatError("WebP has more than one VP8X chunk")
        if chunk.fourcc == FOURCC:
            ours = _note_ours(data, chunk, ours)
        elif chunk.fourcc == b"ANMF":
            _check_frame(data, chunk, width, height)
            has_image = True
        elif chunk.fourcc in (b"VP8 ", b"VP8L"):
            if has_image:
                raise ImageFormatError("WebP has more than one still image bitstream")
            # libwebp refuses a still image whose size differs from the canvas;
            # refusing it here too keeps the declared size the one decoded.
            if _bitstream_size(data, chunk)[:2] != (width, height):
                raise ImageFormatError("WebP bitstream size differs from the VP8X canvas size")
            has_image = True
    if not has_image:
        raise ImageFormatError("WebP has no image data")
    return _Layout(width, height, True, flags, ours)


def _note_ours(data: bytes, chunk: _Chunk, seen: _Chunk | None) -> _Chunk:
    if seen is not None:
        raise ImageFormatError("WebP has more than one provenance chunk")
    _check_ours(data, chunk)
    return chunk


def _riff(body: bytes | bytearray) -> bytes:
    riff_size = len(body) + 4
    if riff_size > _MAX_RIFF_SIZE:
        raise ImageFormatError("WebP file would exceed the 4 GB RIFF size limit")
    return b"RIFF" + struct.pack("<I", riff_size) + b"WEBP" + body


def _body_without_ours(data: bytes, layout: _Layout) -> bytes:
    ours = layout.ours
    if ours is None:
        return data[12:]
    return data[12 : ours.start] + data[ours.end :]


def _vp8x_chunk(layout: _Layout) -> bytes:
    return (
        b"VP8X"
        + struct.pack("<I", 10)
        + bytes((layout.flags, 0, 0, 0))
        + (layout.width - 1).to_bytes(3, "little")
        + (layout.height - 1).to_bytes(3, "little")
    )


def _prepared(data: bytes, layout: _Layout) -> bytes:
    if layout.extended and layout.ours is None:
        return data
    body = _body_without_ours(data, layout)
    if not layout.extended:
        body = _vp8x_chunk(layout) + body
    return _riff(body)


def dimensions(data: bytes) -> tuple[int, int]:
    """Validate the file and return its canvas width and height."""
    layout = _layout(data)
    return layout.width, layout.height


def strip(data: bytes) -> bytes:
    """Return the file without our chunk, RIFF size fixed (the same object if there is none)."""
    layout = _layout(data)
    if layout.ours is None:
        return data
    return _riff(_body_without_ours(data, layout))


def prepare(data: bytes) -> bytes:
    """Return the extended (VP8X) form of the file without our chunk; pixels are untouched."""
    return _prepared(data, _layout(data))


def embed(data: bytes, payload: bytes) -> bytes:
    """Append our chunk, holding ``payload``, to the prepared file."""
    base = _prepared(data, _layout(data))
    compressed = zlib.compress(payload, 9)
    crc = zlib.crc32(compressed, zlib.crc32(bytes((VERSION,))))
    size = _OUR_HEADER.size + len(compressed)
    if size > _MAX_RIFF_SIZE:
        raise ImageFormatError("provenance payload is too large for WebP")
    chunk = FOURCC + struct.pack("<I", size) + _OUR_HEADER.pack(VERSION, crc) + compressed
    if size & 1:
        chunk += b"\x00"
    return _riff(base[12:] + chunk)


def _compressed(data: bytes, chunk: _Chunk) -> memoryview:
    return memoryview(data)[chunk.data_start + _OUR_HEADER.size : chunk.data_end]


def extract(data: bytes, max_size: int) -> bytes | None:
    """Return our chunk's inflated payload, or None if the file has none."""
    ours = _layout(data).ours
    if ours is None:
        return None
    return inflate(_compressed(data, ours), max_size, "WebP provenance chunk")


def excluded_ranges(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges the binding hash leaves out: the RIFF size field and our chunk."""
    ours = _layout(data).ours
    return [(4, 8)] if ours is None else [(4, 8), (ours.start, ours.end)]


def describe(data: bytes) -> Iterator[dict[str, object]]:
    """Yield the RIFF header, then one entry per top-level chunk."""
    layout = _layout(data)
    yield {
        "type": "RIFF",
        "offset": 0,
        "length": 12,
        "riff_size": len(data) - 8,
        "form": "WEBP",
        "provenance": False,
    }
    for chunk in _walk(data):
        entry: dict[str, object] = {
            "type": chunk.fourcc.decode("latin-1"),
            "offset": chunk.start,
            "length": chunk.end - chunk.start,
            "data_length": chunk.size,
            "provenance": False,
        }
        if chunk.fourcc == b"VP8X":
            entry["width"], entry["height"] = layout.width, layout.height
            entry["flags"] = {
                "icc": bool(layout.flags & _ICC),
                "alpha": bool(layout.flags & _ALPHA),
                "exif": bool(layout.flags & _EXIF),
                "xmp": bool(layout.flags & _XMP),
                "animation": bool(layout.flags & _ANIMATION),
            }
        if layout.ours is not None and chunk.start == layout.ours.start:
            compressed = _compressed(data, chunk)
            entry["provenance"] = True
            entry["compressed_size"] = len(compressed)
            entry["payload_size"] = len(inflate(compressed, DEFAULT_MAX_SIZE, "WebP provenance chunk"))
        yield entry
