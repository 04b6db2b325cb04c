"""How an image is identified in a journal: file hash, pixel hash, perceptual hash.

* ``file_sha256`` -- SHA-256 of the encoded file's bytes, when there is a file;
* ``pixel_sha256`` -- SHA-256 of the decoded pixels in a canonical form (mode,
  size, raw bytes; see `provenance._formats.pixel_hash`), the same whatever the
  container or metadata;
* ``phash`` -- a perceptual hash that survives re-encoding, resizing and small
  crops (see `provenance.phash`), for matching stripped copies found elsewhere.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import attrs
from PIL import Image

from . import _background, _formats, phash
from ._io import read_limited
from .errors import ImageFormatError

__all__ = [
    "THUMBNAIL_MAX_SIDE",
    "ImageDigest",
    "ImageSource",
    "digest_image",
    "digest_loaded",
    "load_image",
    "make_thumbnail",
]

THUMBNAIL_MAX_SIDE = 128
MAX_IMAGE_FILE = 512 * 2**20

ImageSource = Image.Image | bytes | str | os.PathLike[str]


@attrs.frozen
class ImageDigest:
    pixel_sha256: str
    width: int
    height: int
    mode: str
    phash: str | None = None
    file_sha256: str | None = None

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "pixel_sha256": self.pixel_sha256,
            "width": self.width,
            "height": self.height,
            "mode": self.mode,
        }
        if self.phash is not None:
            body["phash"] = self.phash
        if self.file_sha256 is not None:
            body["file_sha256"] = self.file_sha256
        return body


def read_image_file(path: str | os.PathLike[str]) -> bytes:
    return read_limited(path, MAX_IMAGE_FILE, ImageFormatError)


def load_image(source: ImageSource) -> tuple[Image.Image, bytes | None]:
    """A decoded image and, when the source was a file or bytes, its encoded bytes."""
    if isinstance(source, Image.Image):
        return source, None
    data = source if isinstance(source, bytes) else read_image_file(source)
    return _formats.decode(data), data


def digest_image(source: ImageSource, *, perceptual: bool = True) -> ImageDigest:
    image, data = load_image(source)
    return digest_loaded(image, data, perceptual=perceptual)


# From this many pixels up, the pixel hash runs on the background thread while
# the perceptual hash runs here (both mostly outside the GIL); below it the
# hand-over costs more than it saves.
_PARALLEL_HASH_PIXELS = 1 << 16


def digest_loaded(image: Image.Image, data: bytes | None, *, perceptual: bool = True) -> ImageDigest:
    """The digest of an image already decoded (`data`: its file bytes, if any)."""
    image.load()  # here, once: the two hashes below then only read the image
    if perceptual and image.width * image.height >= _PARALLEL_HASH_PIXELS:
        with _background.running(_formats.pixel_hash, image) as pixel:
            perceptual_hash: str | None = phash.reference_hash(image).to_str()
        pixel_hash = pixel.result()
    else:
        pixel_hash = _formats.pixel_hash(image)
        perceptual_hash = phash.reference_hash(image).to_str() if perceptual else None
    return ImageDigest(
        pixel_sha256=pixel_hash.hex(),
        width=image.width,
        height=image.height,
        mode=image.mode,
        phash=perceptual_hash,
        file_sha256=None if data is None else hashlib.sha256(data).hexdigest(),
    )


def make_thumbnail(image: Image.Image, max_side: int = THUMBNAIL_MAX_SIDE) -> bytes:
    """A small WebP preview (a few kB) for reports; optional in journals."""
    thumb = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    thumb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    thumb.save(out, format="WEBP", quality=70, method=4)
    return out.getvalue()


def image_file_name(path: str | os.PathLike[str]) -> str:
    return Path(path).name
