"""Safe decoding: bounded zlib inflation of payloads and bomb-safe pixel decoding.

Everything here treats its input as hostile.  Inflation never produces more
than the caller's limit plus one byte, and pixel decoding refuses an image
whose declared size is over the caller's pixel limit *before* Pillow allocates
the raster.  Pillow's process-wide settings (``Image.MAX_IMAGE_PIXELS``,
``ImageFile.LOAD_TRUNCATED_IMAGES``) are only read, never written, so the
limit is truly per call and other threads are unaffected.
"""

from __future__ import annotations

import hashlib
import io
import struct
import sys
import zlib

from PIL import Image

from provenance.errors import ImageFormatError, UsageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SIZE",
    "check_limit",
    "inflate",
    "open_image",
    "pixel_hash",
]

DEFAULT_MAX_SIZE = 64 * 2**20  # largest payload extract() inflates unless told otherwise
DEFAULT_MAX_PIXELS = 128 * 2**20  # largest image decode() accepts unless told otherwise

# Pillow's format names for the three containers we support; passing only the
# expected one to Image.open stops Pillow from guessing another format.
_PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}

# Chunks of the raw encoder streamed into the pixel hash: big enough to amortise
# the call, small enough to stay in cache (4 MiB chunks were twice as slow).
_ENCODE_CHUNK = 1 << 18


def check_limit(value: int, name: str) -> None:
    """Reject a nonsensical size limit passed by the caller (a usage error, not bad data)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"{name} must be a non-negative integer, not {value!r}")


def inflate(compressed: bytes | memoryview, max_size: int, what: str) -> bytes:
    """Inflate one complete zlib stream, refusing more than ``max_size`` bytes of output.

    ``max_length`` makes zlib stop after ``max_size + 1`` bytes, so a stream that
    would inflate to gigabytes costs at most that much memory and time.  The
    stream must end exactly where the stored bytes end: trailing bytes would be
    unsigned data riding along with the journal.
    """
    decompressor = zlib.decompressobj()
    try:
        # zlib needs the bound to fit a C ssize_t; no output can be larger anyway.
        output = decompressor.decompress(compressed, min(max_size + 1, sys.maxsize))
    except zlib.error as exc:
        raise ImageFormatError(f"{what}: corrupt zlib data ({exc})") from None
    if len(output) > max_size:
        raise ImageFormatError(f"{what}: payload inflates past the limit of {max_size} bytes")
    if not decompressor.eof:
        raise ImageFormatError(f"{what}: zlib data is truncated")
    if decompressor.unused_data:
        raise ImageFormatError(f"{what}: unexpected bytes after the end of the zlib data")
    return output


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def open_image(data: bytes, fmt: str, max_pixels: int) -> Image.Image:
    """Decode ``data`` (already checked to be a well-formed ``fmt`` container) fully.

    Pillow signals corrupt input with a zoo of exception types (OSError,
    SyntaxError, ValueError, struct.error, EOFError, DecompressionBombError,
    warnings turned into errors, ...), so every exception it raises becomes an
    ImageFormatError here.
    """
    try:
        image = Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[fmt]])
    except Image.DecompressionBombError as exc:
        raise ImageFormatError(
            f"{fmt} image refused by Pillow's decompression-bomb limit: {_one_line(exc)}"
        ) from None
    except Exception as exc:
        raise ImageFormatError(f"cannot decode {fmt} image: {_one_line(exc)}") from None
    width, height = image.size
    # The container layer already checked the declared size; this re-checks the
    # size Pillow itself will allocate in case its reading of the header differs.
    if width * height > max_pixels:
        image.close()
        raise ImageFormatError(
            f"{fmt} image is {width}x{height} pixels, over the limit of {max_pixels} pixels"
        )
    try:
        image.load()
    except Exception as exc:
        image.close()
        raise ImageFormatError(f"cannot decode {fmt} image: {_one_line(exc)}") from None
    return image


def _palette_block(image: Image.Image) -> bytes:
    if image.mode not in ("P", "PA") or image.palette is None:
        return b""
    rawmode = "RGBA" if image.palette.mode == "RGBA" else "RGB"
    values = image.getpalette(rawmode) or []
    return rawmode.encode("ascii") + b"\x00" + bytes(values)


def _transparency_block(image: Image.Image) -> bytes:
    value: object = image.info.get("transparency")
    if value is None:
        return b""
    # A one-letter tag keeps the shapes Pillow uses apart.
    if isinstance(value, int):
        return b"i" + struct.pack(">I", value & 0xFFFFFFFF)
    if isinstance(value, tuple):
        return b"t" + b"".join(struct.pack(">I", int(v) & 0xFFFFFFFF) for v in value)
    if isinstance(value, bytes):
        return b"b" + value
    # Not produced by Pillow's PNG/JPEG/WebP readers; hashed by its repr so it
    # still counts rather than being silently ignored.
    return b"r" + repr(value).encode("ascii", "backslashreplace")


def pixel_hash(image: Image.Image) -> bytes:
    """Return the SHA-256 of the image's canonical form.

    The exact byte form is documented on :func:`provenance._formats.pixel_hash`.
    """
    width, height = image.size
    digest = hashlib.sha256()
    digest.update(image.mode.encode("ascii") + b"\x00")
    digest.update(struct.pack(">II", width, height))
    for block in (_palette_block(image), _transparency_block(image)):
        digest.update(struct.pack(">I", len(block)))
        digest.update(block)
    if width and height:
        # Pillow's raw encoder, streamed into the hash chunk by chunk: exactly
        # the bytes of image.tobytes(), without a second full copy of the image
        # (which, for a 1024x1024 output, cost more in page faults than the hash).
        image.load()
        encoder = Image._getencoder(image.mode, "raw", image.mode)
        encoder.setimage(image.im, (0, 0, width, height))
        # At least a few whole rows per call (as Image.tobytes does), so every
        # call makes progress whatever the mode's bytes per pixel.
        chunk_size = max(_ENCODE_CHUNK, width * 16)
        while True:
            _, status, chunk = encoder.encode(chunk_size)
            digest.update(chunk)
            if status:
                break
        if status < 0:
            raise ImageFormatError(f"cannot read the pixels of a {image.mode} image")
    return digest.digest()
