"""Perceptual hashes: find the recorded image behind a stripped, re-encoded copy.

A copy of an image found online has usually lost its metadata and been
re-encoded (JPEG, WebP), scaled down and often trimmed a little.  A
cryptographic hash no longer matches it; this module's perceptual hash does,
for those alterations, while keeping unrelated images apart.

Algorithm (``ph1``)
-------------------
1.  The image is reduced to luma: 8-bit modes through Pillow's ``L``
    conversion (ITU-R 601 weights), 16- and 32-bit modes through ``F`` (an
    ``L`` conversion would clip them at 255; the hash does not depend on the
    scale of the values), ``LAB`` through its L* band.  Transparent images are
    first flattened onto white, as most converters to JPEG do.  EXIF
    orientation is **not** applied: the pixels are hashed as stored.  Call
    `PIL.ImageOps.exif_transpose` first if the displayed orientation is
    wanted, and do so on both sides.
2.  The luma image is box-reduced to at most 128 x 128 (a working copy; its
    aspect ratio is not kept, the hash works in relative coordinates).
3.  A region of it (the whole image, or a crop given as fractions of each
    side) is box-resampled to 16 x 16 and the 64 lowest-frequency DCT-II
    coefficients other than DC are computed: those with ``u*u + v*v <= 72``.
    Only they are computed, from precomputed cosine tables, one pass over the
    rows and one over the columns.  Bit *i* of the 64-bit hash is 1 when
    coefficient *i* is positive.  Dropping DC makes the hash blind to
    brightness; using signs makes it blind to contrast.
4.  A copy under test (`suspect_hash`) is hashed once, whole.  A recorded
    image (`reference_hash`) is hashed for 16 regions: every combination of
    four horizontal and four vertical (near side, far side) trims,
    ``(0, 0)``, ``(1 %, 3.875 %)``, ``(3.875 %, 1 %)`` and
    ``(3.25 %, 3.25 %)``.  Any trim of 0..5 % per side is then within about
    1 % of one stored region, instead of up to 5 % away from the uncropped
    hash (a 5 % crop moves a plain whole-image hash ~22 bits, as far as
    unrelated images).  The four trims were chosen by minimising the worst
    RMS misalignment over the square of (near, far) trims; a shift costs more
    than a zoom, which is why the grid is not the plain 0 / 2.5 / 5 % one.
    The first stored hash is the untrimmed one, equal to `suspect_hash` of
    the same image.
5.  `distance` is the smallest Hamming distance between the suspect hash and
    the 16 stored hashes; `THRESHOLD` is the largest that counts as a match.

What it does not match: rotations, flips, mirror images, crops of more than
about 5 % per side, heavy edits (text overlays, colour grading that changes
luma structure), and images composited into larger ones.  A 64-bit
low-frequency hash sees the coarse layout of light and dark: two different
pictures with the same layout (a dark horizon under a night sky, a room in
one-point perspective) can come within ~8-10 bits of each other.  A match is
a lead for a person or for the journal's own evidence, not proof.

Indexing
--------
`index_keys` splits each stored hash into four 16-bit bands (bit ``i`` goes
to band ``i % 4``, so every band mixes low and high frequencies and its
values spread) and returns ``band << 16 | value`` for each: at most 64 small
integers per recorded image, to be stored in an indexed SQLite column.
`probe_keys` gives the keys to look up for a suspect.  If ``distance(s, ph)
<= t`` then for the closest stored hash the four bands differ in at most
``t`` bits in all, so one band differs in at most ``t // 4`` bits
(pigeonhole); `probe_keys` lists every key within that many bits of the
suspect's bands (68 keys for ``t <= 7``, 548 for ``t <= 11``).  So no match
within ``t`` is missed::

    CREATE TABLE phash_key (key INTEGER NOT NULL, output INTEGER NOT NULL,
                            PRIMARY KEY (key, output)) WITHOUT ROWID;
    -- on record:  one row per key in index_keys(ph)
    -- on search:  SELECT DISTINCT output FROM phash_key WHERE key IN (...)
    --             with probe_keys(suspect_hash(img)), then keep the
    --             candidates whose distance(suspect, ph) <= THRESHOLD.

The candidates must still be checked with `distance`: a shared band is
necessary for a match, not sufficient.
"""

from __future__ import annotations

import base64
import functools
import itertools
import math
import re
from array import array
from operator import mul

import attrs
from PIL import Image

__all__ = [
    "HASH_BITS",
    "THRESHOLD",
    "Match",
    "PerceptualHash",
    "compare",
    "distance",
    "index_keys",
    "probe_keys",
    "reference_hash",
    "suspect_hash",
]

HASH_BITS = 64
"""Bits in one hash (the suspect's, or each stored one)."""

THRESHOLD: int = 7
"""Largest `distance` that counts as a match.

Chosen from ``benchmarks/bench_matching.py``: see the module docstring of
that benchmark and the project notes for the numbers behind it.
"""

_PREFIX = "ph1:"
_WORK = 128  # side of the working copy: small enough to crop cheaply, big enough to crop finely
_N = 16  # side of each region's sample grid, the DCT's input
_MAX_FREQ2 = 72  # u*u + v*v bound: exactly 64 coefficients, symmetric in u and v

# (u, v) = (horizontal, vertical) frequency of each bit, most significant bit first.
_COEFFS: tuple[tuple[int, int], ...] = tuple(
    (u, v)
    for _, u, v in sorted(
        (u * u + v * v, u, v)
        for u in range(_N)
        for v in range(_N)
        if 0 < u * u + v * v <= _MAX_FREQ2
    )
)
assert len(_COEFFS) == HASH_BITS

_MAX_U = max(max(u, v) for u, v in _COEFFS)
# _COS[k][x]: DCT-II basis of frequency k at sample x (unnormalised: only signs matter).
_COS: tuple[tuple[float, ...], ...] = tuple(
    tuple(math.cos(math.pi * (2 * x + 1) * k / (2 * _N)) for x in range(_N))
    for k in range(_MAX_U + 1)
)

# Trims of one axis as (near side, far side) fractions; see the module docstring.
_AXIS_TRIMS: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (0.01, 0.03875),
    (0.03875, 0.01),
    (0.0325, 0.0325),
)
# (left, top, right, bottom) of each stored region; the untrimmed one first.
_REGIONS: tuple[tuple[float, float, float, float], ...] = tuple(
    (left, top, right, bottom)
    for (left, right), (top, bottom) in itertools.product(_AXIS_TRIMS, _AXIS_TRIMS)
)
_COUNT = len(_REGIONS)

_BANDS = 4
_BAND_BITS = HASH_BITS // _BANDS
_STR_LEN = len(_PREFIX) + math.ceil(_COUNT * 8 * 4 / 3)  # unpadded base64 of 8 bytes a hash
_STR_RE = re.compile(r"ph1:[A-Za-z0-9_-]+", re.ASCII)


def _check_hash(value: object, what: str) -> int:
    """`value` as a 64-bit hash, or TypeError / ValueError naming `what`."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value < 1 << HASH_BITS:
        raise ValueError(f"{what} must be an unsigned {HASH_BITS}-bit integer")
    return value


def _validate_hashes(
    _instance: object, _attribute: attrs.Attribute[tuple[int, ...]], value: object
) -> None:
    if not isinstance(value, tuple):
        raise TypeError(f"hashes must be a tuple, not {type(value).__name__}")
    if len(value) != _COUNT:
        raise ValueError(f"hashes must hold {_COUNT} hashes, not {len(value)}")
    for i, h in enumerate(value):
        _check_hash(h, f"hashes[{i}]")


@attrs.frozen
class PerceptualHash:
    """The stored perceptual hash of a recorded image: one 64-bit hash per region.

    ``hashes[i]`` is the hash of the i-th trimmed region of the image (see the
    module docstring); ``hashes[0]`` is the untrimmed one.  Build it with
    `reference_hash`; store it with `to_str` and read it back with `from_str`.
    """

    hashes: tuple[int, ...] = attrs.field(validator=_validate_hashes)

    def to_str(self) -> str:
        """The compact ASCII form, ``"ph1:"`` then unpadded base64url of the hashes."""
        raw = b"".join(h.to_bytes(8, "big") for h in self.hashes)
        return _PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    @classmethod
    def from_str(cls, text: str) -> PerceptualHash:
        """Parse the form `to_str` writes; anything else raises ValueError.

        Parsing is strict: exact length (checked before anything else, so
        hostile input costs nothing), the ``ph1:`` prefix, the base64url
        alphabet without padding, and the canonical encoding only.
        """
        if not isinstance(text, str):
            raise ValueError(f"a perceptual hash must be a str, not {type(text).__name__}")
        if len(text) != _STR_LEN:
            raise ValueError(f"a perceptual hash has {_STR_LEN} characters, not {len(text)}")
        if not text.startswith(_PREFIX):
            raise ValueError(f"a perceptual hash starts with {_PREFIX!r}")
        if _STR_RE.fullmatch(text) is None:
            raise ValueError("a perceptual hash is base64url without padding after its prefix")
        body = text[len(_PREFIX) :]
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        # Unused low bits of the last character must be zero: one string per value.
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != body:
            raise ValueError("a perceptual hash must use the canonical base64url encoding")
        return cls(tuple(int.from_bytes(raw[i : i + 8], "big") for i in range(0, len(raw), 8)))


def _check_distance(
    _instance: object, attribute: attrs.Attribute[int], value: object
) -> None:
    _check_count(value, attribute.name)


def _check_count(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value <= HASH_BITS:
        raise ValueError(f"{what} must be between 0 and {HASH_BITS}")
    return value


@attrs.frozen
class Match:
    """The outcome of `compare`: the distance, the threshold used, and the verdict."""

    distance: int = attrs.field(validator=_check_distance)
    threshold: int = attrs.field(validator=_check_distance)
    matched: bool = attrs.field(validator=attrs.validators.instance_of(bool))

    def __attrs_post_init__(self) -> None:
        if self.matched != (self.distance <= self.threshold):
            raise ValueError("matched must be distance <= threshold")


def _luma(image: Image.Image) -> Image.Image:
    """The image as one band of luma, ``L`` or ``F``, at its own size."""
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        # convert("L") clips these at 255; "F" keeps the range (only signs matter later).
        return image.convert("F")
    if mode == "LAB":
        return image.getchannel("L")  # Pillow's LAB -> RGB is not colorimetric
    if image.has_transparency_data:
        if mode == "La":  # premultiplied; Pillow converts it only to LA
            image = image.convert("LA")
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("L")
    return image.convert("L")


def _working_copy(image: Image.Image) -> Image.Image:
    """Luma as ``F``, box-reduced to at most `_WORK` on each side."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL.Image.Image, not {type(image).__name__}")
    width, height = image.size
    if width < 1 or height < 1:
        raise ValueError(f"cannot hash an empty image ({width}x{height})")
    luma = _luma(image)
    size = (min(width, _WORK), min(height, _WORK))
    if size != luma.size:
        # Reduce before going to float: 1 byte a pixel instead of 4 for the big pass.
        luma = luma.resize(size, Image.Resampling.BOX)
    return luma.convert("F")


def _region_hash(work: Image.Image, region: tuple[float, float, float, float]) -> int:
    """The 64-bit hash of one region (fractions trimmed off each side) of `work`."""
    width, height = work.size
    left, top, right, bottom = region
    box = (left * width, top * height, (1 - right) * width, (1 - bottom) * height)
    cell = work.resize((_N, _N), Image.Resampling.BOX, box=box)
    pixels = array("f", cell.tobytes())  # mode F is stored as native float32
    rows = [pixels[i : i + _N] for i in range(0, _N * _N, _N)]
    # Horizontal pass, only for the frequencies used: across[u][y].
    across = [[sum(map(mul, row, basis)) for row in rows] for basis in _COS]
    # Coefficients within rounding noise of zero (flat or mirror-symmetric
    # images) count as zero, so that such images hash the same everywhere.
    eps = 1e-9 * sum(map(abs, pixels))
    value = 0
    for u, v in _COEFFS:
        value = (value << 1) | (sum(map(mul, across[u], _COS[v])) > eps)
    return value


def reference_hash(image: Image.Image) -> PerceptualHash:
    """Hash a recorded image (an output or a candidate) for later matching.

    Any mode and any size from 1 x 1 works; an empty image raises ValueError.
    """
    work = _working_copy(image)
    return PerceptualHash(tuple(_region_hash(work, region) for region in _REGIONS))


def suspect_hash(image: Image.Image) -> int:
    """Hash a copy being checked: one 64-bit hash of the whole image.

    Equal to ``reference_hash(image).hashes[0]``, so an unaltered copy is at
    distance 0 from its reference.
    """
    return _region_hash(_working_copy(image), _REGIONS[0])


def distance(suspect: int, reference: PerceptualHash) -> int:
    """The smallest Hamming distance between `suspect` and the reference's hashes."""
    _check_hash(suspect, "suspect")
    return min((suspect ^ h).bit_count() for h in reference.hashes)


def compare(
    suspect: Image.Image, reference: PerceptualHash, *, threshold: int = THRESHOLD
) -> Match:
    """Hash `suspect` and tell whether it is within `threshold` of `reference`."""
    _check_count(threshold, "threshold")
    d = distance(suspect_hash(suspect), reference)
    return Match(distance=d, threshold=threshold, matched=d <= threshold)


def _bands(value: int) -> list[int]:
    """The four interleaved 16-bit bands of a hash: band k holds bits k, k+4, ..."""
    out = [0] * _BANDS
    for i in range(HASH_BITS):
        out[i % _BANDS] |= ((value >> i) & 1) << (i // _BANDS)
    return out


def index_keys(ph: PerceptualHash) -> list[int]:
    """Sorted distinct ``band << 16 | band value`` keys of every stored hash.

    Store them in an indexed column next to the record; find candidates with
    `probe_keys` (see the module docstring for why no match is missed).
    """
    return sorted({band << _BAND_BITS | v for h in ph.hashes for band, v in enumerate(_bands(h))})


@functools.lru_cache(maxsize=8)
def _masks(radius: int) -> tuple[int, ...]:
    """Every 16-bit mask with at most `radius` bits set."""
    return tuple(
        sum(1 << b for b in bits)
        for r in range(min(radius, _BAND_BITS) + 1)
        for bits in itertools.combinations(range(_BAND_BITS), r)
    )


def probe_keys(suspect: int, threshold: int = THRESHOLD) -> list[int]:
    """Sorted keys to look up so that no reference within `threshold` is missed.

    Every reference with ``distance(suspect, ref) <= threshold`` has at least
    one of these among its `index_keys` (pigeonhole over the four bands); the
    converse does not hold, so check each candidate with `distance`.
    """
    _check_hash(suspect, "suspect")
    _check_count(threshold, "threshold")
    masks = _masks(threshold // _BANDS)
    return sorted(
        band << _BAND_BITS | (v ^ m) for band, v in enumerate(_bands(suspect)) for m in masks
    )
