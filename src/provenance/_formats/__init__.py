"""Byte-level image containers: where the provenance payload lives in PNG, JPEG and WebP files.

This layer moves opaque payload bytes in and out of image files without ever
re-encoding pixels, and computes the *binding hash* that ties a journal to the
exact file it travels in.  The usual flow is::

    base = prepare(original)            # no payload, normalised container
    digest = binding_hash(base)         # the journal signs this
    signed = embed(base, journal_bytes) # binding_hash(signed) == digest

Every function treats its input as hostile: a malformed, truncated or
unsupported file raises :class:`~provenance.errors.ImageFormatError` with a
one-line message, never another exception type, and work and memory are
bounded by the size of the input (and ``max_size`` / ``max_pixels``).  Bad
arguments (non-bytes data or payload, negative limits) raise
:class:`~provenance.errors.UsageError` instead.  The byte
layouts are documented in the ``_png``, ``_jpeg`` and ``_webp`` modules.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from provenance._formats import _jpeg, _png, _webp
from provenance._formats._decode import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SIZE,
    check_limit,
    open_image,
)
from provenance._formats._decode import pixel_hash as _pixel_hash
from provenance.errors import ImageFormatError, UsageError

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SIZE",
    "MAX_DESCRIBE_ENTRIES",
    "binding_hash",
    "decode",
    "describe",
    "detect",
    "embed",
    "extract",
    "pixel_hash",
    "prepare",
    "strip",
]

# describe() builds one dict per chunk; a hostile file of empty chunks could
# otherwise turn a few megabytes into gigabytes of dicts.
MAX_DESCRIBE_ENTRIES = 100_000


class _Container(Protocol):
    """What each format module provides; see the modules for the byte layouts."""

    def dimensions(self, data: bytes) -> tuple[int, int]: ...
    def strip(self, data: bytes) -> bytes: ...
    def prepare(self, data: bytes) -> bytes: ...
    def embed(self, data: bytes, payload: bytes) -> bytes: ...
    def extract(self, data: bytes, max_size: int) -> bytes | None: ...
    def excluded_ranges(self, data: bytes) -> list[tuple[int, int]]: ...
    def describe(self, data: bytes) -> Iterator[dict[str, object]]: ...


_CONTAINERS: dict[str, _Container] = {"png": _png, "jpeg": _jpeg, "webp": _webp}


def detect(data: bytes) -> str:
    """Return ``"png"``, ``"jpeg"`` or ``"webp"`` from the file's magic bytes.

    Only the signature is looked at; the other functions check the rest.
    Raises ImageFormatError for anything else.
    """
    if not isinstance(data, bytes):
        raise UsageError(f"image data must be bytes, not {type(data).__name__}")
    if data.startswith(_png.SIGNATURE):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 12 and data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "webp"
    raise ImageFormatError("not a PNG, JPEG or WebP file")


def _container(data: bytes) -> _Container:
    return _CONTAINERS[detect(data)]


def prepare(data: bytes) -> bytes:
    """Return the file without provenance data, normalised for embedding.

    After this, ``embed`` changes only bytes that ``binding_hash`` leaves out.
    PNG and JPEG need nothing beyond removing our data; a simple WebP (lossy
    ``VP8`` or lossless ``VP8L``) becomes the extended ``VP8X`` form with the
    bitstream untouched.  A file that is already prepared comes back unchanged.
    """
    return _container(data).prepare(data)


def binding_hash(data: bytes) -> bytes:
    """Return the 32-byte SHA-256 of the file with the provenance data left out.

    Left out are our chunk or segments and the length fields that embedding
    rewrites (for WebP the RIFF size, which is checked against the file length
    instead); every other byte is hashed, in file order.  For PNG and JPEG the
    result equals ``sha256(strip(data))``.  ``binding_hash(embed(prepare(x), p))
    == binding_hash(prepare(x))`` for every payload ``p``.
    """
    ranges = _container(data).excluded_ranges(data)
    view = memoryview(data)
    digest = hashlib.sha256()
    pos = 0
    for start, end in ranges:  # sorted and disjoint by construction
        digest.update(view[pos:start])
        pos = end
    digest.update(view[pos:])
    return digest.digest()


def embed(data: bytes, payload: bytes) -> bytes:
    """Return a new, prepared file carrying ``payload``, replacing any payload already there.

    For PNG the payload must be UTF-8 text (it becomes iTXt text).
    """
    if not isinstance(payload, bytes):
        raise UsageError(f"payload must be bytes, not {type(payload).__name__}")
    return _container(data).embed(data, payload)


def extract(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> bytes | None:
    """Return the embedded payload, or None when the file has no provenance data.

    A payload that would inflate to more than ``max_size`` bytes is refused
    without inflating more than ``max_size + 1`` bytes of it.
    """
    check_limit(max_size, "max_size")
    return _container(data).extract(data, max_size)


def strip(data: bytes) -> bytes:
    """Return the file without provenance data (unchanged if it has none).

    Unlike ``prepare`` this does not normalise: a simple WebP stays simple.
    """
    return _container(data).strip(data)


def describe(data: bytes) -> list[dict[str, object]]:
    """List the container's chunks or segments in file order, for an ``inspect`` command.

    Each entry has ``type`` (chunk type, FourCC or marker name), ``offset`` and
    ``length`` (bytes the whole chunk or segment occupies, headers and padding
    included) and ``provenance`` (True for ours).  Ours also carry
    ``payload_size`` (inflated) and ``compressed_size``; JPEG ones add
    ``sequence``, ``count`` and ``slice_size``.  Format-specific extras: PNG
    ``data_length``, IHDR ``width``/``height``; JPEG ``marker`` and frame header
    ``width``/``height`` (scan data and any bytes after EOI appear as
    ``"scan data"`` and ``"trailer"``); WebP a leading ``"RIFF"`` header entry,
    ``data_length``, VP8X ``width``/``height``/``flags``.
    """
    entries: list[dict[str, object]] = []
    for entry in _container(data).describe(data):
        if len(entries) >= MAX_DESCRIBE_ENTRIES:
            raise ImageFormatError(
                f"image has more than {MAX_DESCRIBE_ENTRIES} chunks; refusing to list them"
            )
        entries.append(entry)
    return entries


def decode(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Return the fully loaded image, refusing more than ``max_pixels`` pixels.

    The container is validated and the declared size checked against
    ``max_pixels`` before Pillow sees the file, so the raster of a
    decompression bomb is never allocated.  Pillow decodes the file without
    the provenance data.  Pillow's own global limit is left as it is and still
    applies (the stricter of the two wins).  Animated images give their first
    frame.
    """
    check_limit(max_pixels, "max_pixels")
    fmt = detect(data)
    container = _CONTAINERS[fmt]
    width, height = container.dimensions(data)
    if width * height > max_pixels:
        raise ImageFormatError(
            f"{fmt} image is {width}x{height} pixels, over the limit of {max_pixels} pixels"
        )
    return open_image(container.strip(data), fmt, max_pixels)


def pixel_hash(image: Image.Image) -> bytes:
    """Return the SHA-256 of a canonical form of the decoded image.

    The hashed bytes are, in order::

        mode                ASCII mode name (e.g. b"RGB", b"I;16"), then one 0x00 byte
        width, height       each an unsigned 32-bit big-endian integer
        palette length      unsigned 32-bit big-endian byte count of the palette block
        palette block       only for modes "P" and "PA": the palette's raw mode
                            (b"RGB", or b"RGBA" when the palette has alpha), 0x00, then
                            image.getpalette(raw mode) as one byte per value;
                            empty for every other mode
        transparency length unsigned 32-bit big-endian byte count of the next block
        transparency block  from image.info["transparency"] if present: b"i" + uint32 BE
                            (palette index / grey level), b"t" + uint32 BE per value
                            (colour key), b"b" + bytes (per-index alpha), or b"r" +
                            ASCII repr() for any other value; empty otherwise
        raw pixels          image.tobytes(): Pillow's "raw" encoding in the image's own
                            mode, rows top to bottom, each row packed and padded to a
                            whole byte as that raw mode defines

    Pass an image from :func:`decode`; the hash is of the pixels as Pillow
    decodes them (for animations, the first frame).  It does not depend on the
    container, so the same pixels in PNG and lossless WebP hash alike.
    """
    return _pixel_hash(image)
