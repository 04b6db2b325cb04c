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
2.  The luma is box-reduced to at most 128 x 128 (a working copy; its aspect
    ratio is not kept, the hash works in relative coordinates) and raised to
    the power 1/3, which compresses highlights: without it a small bright
    object (a moon, a lamp) outweighs the layout of everything darker and
    unrelated dark scenes collide.  A power law keeps the hash blind to the
    scale of the values.
3.  A region of it (the whole image, or a crop given as fractions of each
    side) is box-resampled to 16 x 16 and the 64 lowest-frequency DCT-II
    coefficients other than DC are computed: those with ``u*u + v*v <= 72``.
    Only they are computed, from precomputed cosine tables, one pass over the
    rows and one over the columns.  Bit *i* of the 64-bit hash is 1 when
    coefficient *i* is positive.  Dropping DC makes the hash blind to
    brightness; using signs makes it blind to contrast.
4.  A recorded image (`reference_hash`) is hashed for 16 regions: every
    combination of four horizontal and four vertical (near side, far side)
    trims, ``(0, 0)``, ``(1 %, 3.875 %)``, ``(3.875 %, 1 %)`` and
    ``(3.25 %, 3.25 %)``.  Any trim of 0..5 % per side is then within about
    1 % of one stored region, instead of up to 5 % away from the untrimmed
    hash (a 5 % crop moves a plain whole-image hash ~22 bits, as far as
    unrelated images are).  The trims minimise the worst RMS misalignment
    over the square of (near, far) trims of 0..5 %; a shift costs about
    sqrt(3) times a zoom (measured: 1.7-1.9 times), which is why this beats
    the plain 0 / 2.5 / 5 % grid with fewer hashes.  The first stored hash is
    the untrimmed one.
5.  A copy under test (`suspect_hash`) is hashed once, whole, and its
    weakest coefficients are masked out: at least the 8 of smallest
    magnitude, plus any under a fifth of the median magnitude, at most 24.
    Those are the bits that re-encoding or a crop between two stored regions
    flip; a near-symmetric picture (a centred subject) has a whole class of
    near-zero coefficients, whose signs any sideways shift decides.  Masking
    cut the worst true distance from 10 to 5 on the benchmark without
    symmetric scenes, and is what makes those scenes match at all.  The
    result is a `SuspectHash`: an int (the 64 bits) carrying the mask.
6.  `distance` is the smallest Hamming distance, over the suspect's 40-56
    compared bits, to any of the 16 stored hashes; `THRESHOLD` (4) is the
    largest that counts as a match.

Measured by ``benchmarks/bench_matching.py`` (280 procedural 512 x 512
images in 14 scene families of look-alike compositions, 12 alterations
each: JPEG q50 / q75, resize to 25 % / 50 %, WebP, crops of 2.5 % and 5 %
on every side, 5 % on one side, random 0..5 % per side, and chains with
JPEG q50, WebP and resizing), at ``THRESHOLD = 4``: 99.5 % of altered copies
match their own image (worst distance 8), and 30 of the 937,440 pairs of an
altered copy and another image's reference match (3.2e-5), all from three
pairs of images with the same layout (two rooms in the same one-point
perspective; a symmetric room and a room; a moonlit landscape and a night
sky with moon and horizon in the same places).  ``THRESHOLD = 3`` keeps
98.5 % and 10 false matches, 5 gives 99.85 % and 48.

What it does not match: rotations, flips, mirror images, crops of more than
about 5 % per side, heavy edits (text overlays, grading that changes the
luma layout), and images composited into larger ones.  A 64-bit
low-frequency hash sees the coarse layout of light and dark: two different
pictures with the same layout can come within a few bits of each other, as
above.  A match is a lead for a person or for the journal's own evidence,
not proof.

Indexing
--------
`index_keys` splits each stored hash into four 16-bit bands (the
coefficients of each (u, v) parity class dealt out in turn, so each band
mixes frequencies and gets its share of the bits a symmetric picture masks)
and returns ``band << 16 | value`` for each: at most 64 small integers per
recorded image (about 30 distinct in practice), to be stored in an indexed
SQLite column.  `probe_keys` gives the keys to look up for a suspect.  If
``distance(s, ph) <= t`` then the closest stored hash differs from the
suspect in at most ``t`` compared bits, so in at most ``t // 4`` compared
bits of some band (pigeonhole); `probe_keys` lists, for every band, each
value within that many compared bits of the suspect's, with every
combination of the band's masked-out bits.  So no match within ``t`` is
missed (the benchmark checks this for every pair).  At ``THRESHOLD`` that is
about 330 keys for a typical suspect, 3,500 at the 99th percentile and
about 5,000 at most; on the benchmark they bring up 4 % of the recorded
images as candidates::

    CREATE TABLE phash_key (key INTEGER NOT NULL, output INTEGER NOT NULL,
                            PRIMARY KEY (key, output)) WITHOUT ROWID;
    -- on record:  one row per key in index_keys(ph)
    -- on search:  SELECT DISTINCT output FROM phash_key WHERE key = ?
    --             for each of probe_keys(suspect_hash(img)),
    --             then keep the candidates with distance(...) <= THRESHOLD.

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
from PIL import Image, ImageMath

__all__ = [
    "HASH_BITS",
    "THRESHOLD",
    "Match",
    "PerceptualHash",
    "SuspectHash",
    "compare",
    "distance",
    "index_keys",
    "probe_keys",
    "reference_hash",
    "suspect_hash",
]

HASH_BITS = 64
"""Bits in one hash (the suspect's, or each stored one)."""

THRESHOLD: int = 4
"""Largest `distance` of a `SuspectHash` that counts as a match.

The smallest threshold at which the benchmark's altered copies match their
own image at least 99 % of the time (99.5 %); see the module docstring for
what it costs in false matches.  It is meant for `suspect_hash` results; a
plain int is compared on all 64 bits and would need a larger one.
"""

_PREFIX = "ph1:"
_WORK = 128  # side of the working copy: small enough to crop cheaply, big enough to crop finely
_GAMMA = 1 / 3  # exponent applied to the reduced luma; see _working_copy
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

# A suspect's weakest coefficients are left out of the distance: at least
# _WEAK_MIN, plus any under _WEAK_RATIO of the median magnitude, at most _WEAK_MAX.
_WEAK_MIN = 8
_WEAK_MAX = 24
_WEAK_RATIO = 0.2
_FULL = (1 << HASH_BITS) - 1
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
    """Luma as ``F``, box-reduced to at most `_WORK` on each side, to the power `_GAMMA`."""
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
    # Compress the highlights (cube root, after the reduction so that it does
    # not amplify pixel noise): a small bright object such as a moon or a lamp
    # otherwise outweighs the layout of everything darker, and unrelated dark
    # scenes collide.  A power law keeps the hash blind to the scale of the
    # values, so 8- and 16-bit versions of an image still agree.
    work = ImageMath.lambda_eval(
        lambda env: env["max"](env["x"], 0.0) ** _GAMMA, x=luma.convert("F")
    )
    if not isinstance(work, Image.Image):  # for the type checker: ImageMath returns Any
        raise TypeError("ImageMath did not return an image")
    return work


def _region_coefficients(work: Image.Image, region: tuple[float, float, float, float]) -> list[float]:
    """The 64 DCT coefficients of one region (fractions trimmed off each side) of `work`.

    Coefficients within rounding noise of zero (flat or mirror-symmetric
    images) are returned as exactly zero, so that such images hash the same
    on every platform.
    """
    width, height = work.size
    left, top, right, bottom = region
    box = (left * width, top * height, (1 - right) * width, (1 - bottom) * height)
    cell = work.resize((_N, _N), Image.Resampling.BOX, box=box)
    pixels = array("f", cell.tobytes())  # mode F is stored as native float32
    rows = [pixels[i : i + _N] for i in range(0, _N * _N, _N)]
    # Horizontal pass, only for the frequencies used: across[u][y].
    across = [[sum(map(mul, row, basis)) for row in rows] for basis in _COS]
    eps = 1e-9 * sum(map(abs, pixels))
    out = []
    for u, v in _COEFFS:
        c = sum(map(mul, across[u], _COS[v]))
        out.append(c if abs(c) > eps else 0.0)
    return out


def _bits(coefficients: list[float]) -> int:
    """The hash: bit i (from the most significant) is 1 where coefficient i is positive."""
    value = 0
    for c in coefficients:
        value = (value << 1) | (c > 0)
    return value


class SuspectHash(int):
    """The hash of a copy under test: an int, carrying the bits worth comparing.

    Its integer value is the 64-bit hash of the whole image, the same as
    ``reference_hash(image).hashes[0]``, so it can be used wherever a hash is
    (it compares equal to that int).  `mask` has a 1 for each bit that
    `distance` and `probe_keys` compare: all but the suspect's 8 to 24
    weakest coefficients (see the module docstring), which re-encoding or a
    slightly different crop flip.  Arithmetic on it gives a plain int, and a
    plain int is compared on all 64 bits: keep the `SuspectHash` itself,
    `THRESHOLD` is chosen for it.
    """

    _mask: int

    def __new__(cls, bits: int, mask: int = (1 << 64) - 1) -> SuspectHash:
        """A suspect hash from its 64 bits and the mask of bits to compare."""
        self = super().__new__(cls, _check_hash(bits, "bits"))
        self._mask = _check_hash(mask, "mask")
        return self

    @property
    def bits(self) -> int:
        """The 64-bit hash as a plain int."""
        return int(self)

    @property
    def mask(self) -> int:
        """1 for each bit that `distance` compares."""
        return self._mask

    def __getnewargs__(self) -> tuple[int, int]:  # type: ignore[override]
        # Keeps the mask through pickle and copy.
        return (int(self), self._mask)

    def __repr__(self) -> str:
        return f"SuspectHash(0x{int(self):016x}, mask=0x{self._mask:016x})"


def reference_hash(image: Image.Image) -> PerceptualHash:
    """Hash a recorded image (an output or a candidate) for later matching.

    Any mode and any size from 1 x 1 works; an empty image raises ValueError.
    """
    work = _working_copy(image)
    return PerceptualHash(tuple(_bits(_region_coefficients(work, r)) for r in _REGIONS))


def suspect_hash(image: Image.Image) -> SuspectHash:
    """Hash a copy being checked: the whole image's 64-bit hash and its reliable bits.

    Any mode and any size from 1 x 1 works; an empty image raises ValueError.
    """
    coefficients = _region_coefficients(_working_copy(image), _REGIONS[0])
    magnitudes = [abs(c) for c in coefficients]
    # Weakest first, ties broken by position so that the choice is stable.
    order = sorted(range(HASH_BITS), key=lambda i: (magnitudes[i], i))
    small = _WEAK_RATIO * magnitudes[order[HASH_BITS // 2]]
    count = sum(1 for m in magnitudes if m < small)
    mask = _FULL
    for i in order[: max(_WEAK_MIN, min(_WEAK_MAX, count))]:
        mask &= ~(1 << (HASH_BITS - 1 - i))
    return SuspectHash(_bits(coefficients), mask)


def _suspect_parts(suspect: int) -> tuple[int, int]:
    """(bits, mask) of a suspect: a `SuspectHash`, or a plain hash whose bits all count."""
    if isinstance(suspect, SuspectHash):
        return int(suspect), suspect.mask
    return _check_hash(suspect, "suspect"), _FULL


def distance(suspect: int, reference: PerceptualHash) -> int:
    """The smallest Hamming distance between `suspect` and the reference's hashes.

    For a `SuspectHash` only the bits of its mask count (40 to 56); a bare
    int is compared on all 64 bits, which makes the distance symmetric.
    """
    bits, mask = _suspect_parts(suspect)
    return min(((bits ^ h) & mask).bit_count() for h in reference.hashes)


def compare(
    suspect: Image.Image, reference: PerceptualHash, *, threshold: int = THRESHOLD
) -> Match:
    """Hash `suspect` and tell whether it is within `threshold` of `reference`."""
    _check_count(threshold, "threshold")
    d = distance(suspect_hash(suspect), reference)
    return Match(distance=d, threshold=threshold, matched=d <= threshold)


def _band_layout() -> tuple[tuple[int, int], ...]:
    """(band, bit within band) of each hash bit, counted from the least significant.

    Coefficients are dealt to the bands in turn within each class of (u, v)
    parity, so every band gets a quarter of each class.  A near-symmetric
    image has the coefficients of one class near zero, masked out in its
    `SuspectHash`; spread evenly, they do not pile into one band, where each
    masked bit doubles the keys `probe_keys` must list.
    """
    by_class = sorted(range(HASH_BITS), key=lambda i: (_COEFFS[i][0] % 2, _COEFFS[i][1] % 2, i))
    band_of = {i: rank % _BANDS for rank, i in enumerate(by_class)}
    filled = [0] * _BANDS
    layout = []
    for bit in range(HASH_BITS):
        band = band_of[HASH_BITS - 1 - bit]  # bit 0 is the last coefficient
        layout.append((band, filled[band]))
        filled[band] += 1
    assert filled == [_BAND_BITS] * _BANDS
    return tuple(layout)


_LAYOUT = _band_layout()


def _bands(value: int) -> list[int]:
    """The four 16-bit bands of a hash (see `_band_layout`)."""
    out = [0] * _BANDS
    for bit, (band, pos) in enumerate(_LAYOUT):
        out[band] |= ((value >> bit) & 1) << pos
    return out


def index_keys(ph: PerceptualHash) -> list[int]:
    """Sorted distinct ``band << 16 | band value`` keys of every stored hash.

    Store them in an indexed column next to the record; find candidates with
    `probe_keys` (see the module docstring for why no match is missed).
    """
    return sorted({band << _BAND_BITS | v for h in ph.hashes for band, v in enumerate(_bands(h))})


@functools.lru_cache(maxsize=64)
def _flips(positions: tuple[int, ...], radius: int) -> tuple[int, ...]:
    """Every mask over `positions` (bit numbers) with at most `radius` bits set."""
    return tuple(
        sum(1 << b for b in bits)
        for r in range(min(radius, len(positions)) + 1)
        for bits in itertools.combinations(positions, r)
    )


def probe_keys(suspect: int, threshold: int = THRESHOLD) -> list[int]:
    """Sorted keys to look up so that no reference within `threshold` is missed.

    Every reference with ``distance(suspect, ref) <= threshold`` has at least
    one of these among its `index_keys`: its closest hash differs from the
    suspect in at most ``threshold`` compared bits, so in at most
    ``threshold // 4`` compared bits of some band (pigeonhole); the keys cover
    every value of that band within that many compared bits and with any
    value in the bits the suspect's mask leaves out.  The converse does not
    hold, so check each candidate with `distance`.  For `THRESHOLD` this is
    about 330 keys for a typical suspect and about 5,000 at most (each
    masked-out bit doubles the keys of its band).
    """
    bits, mask = _suspect_parts(suspect)
    _check_count(threshold, "threshold")
    radius = threshold // _BANDS
    keys: set[int] = set()
    for band, (value, kept) in enumerate(zip(_bands(bits), _bands(mask), strict=True)):
        free = tuple(b for b in range(_BAND_BITS) if not kept >> b & 1)
        compared = tuple(b for b in range(_BAND_BITS) if kept >> b & 1)
        base = band << _BAND_BITS
        for f in _flips(free, len(free)):
            for e in _flips(compared, radius):
                keys.add(base | (value ^ f ^ e))
    return sorted(keys)
