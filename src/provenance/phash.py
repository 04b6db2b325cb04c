"""Perceptual hashes: find the recorded image behind a stripped, re-encoded copy.

A copy of an image found online has usually lost its metadata and been
re-encoded (JPEG, WebP), scaled down and often trimmed a little.  A
cryptographic hash no longer matches it; this module's perceptual hash does,
for those alterations, while keeping unrelated images apart.

Algorithm (``ph2``; see also docs/matching.md)
-----------------------------------------------
1.  The image is reduced first and converted after: big images are shrunk
    with `Image.reduce` (integer box averaging) in their own mode, then
    box-resized to at most 128 x 128 (a horizontal pass, then a vertical
    one, as in step 3), and only then converted to luma
    (ITU-R 601, Pillow's ``L``) and to Cb / Cr (Pillow's ``YCbCr``).  16-
    and 32-bit modes go through ``F`` (an ``L`` conversion would clip them
    at 255) and have no colour, nor do ``L``, ``1`` and ``LAB`` (its L*
    band is the luma).  Transparent images are first flattened onto white,
    as most converters to JPEG do.  EXIF orientation is **not** applied:
    the pixels are hashed as stored.  Call `PIL.ImageOps.exif_transpose`
    first if the displayed orientation is wanted, and do so on both sides.
2.  The luma working copy (its aspect ratio is not kept, the hash works in
    relative coordinates) is raised to
    the power 1/3, which compresses highlights: without it a small bright
    object (a moon, a lamp) outweighs the layout of everything darker and
    unrelated dark scenes collide.  A power law keeps the hash blind to the
    scale of the values.
3.  A region of it (the whole image, or a crop given as fractions of each
    side) is box-resampled to 16 x 16 (Pillow's BOX filter, one horizontal
    pass and then one vertical pass, each a float32 image: Pillow 13's own
    resize may run the vertical pass first, which rounds differently, so
    the passes are made one by one here and in step 1, and the hash does
    not depend on Pillow's version) and the 64 lowest-frequency DCT-II
    coefficients other than DC are computed: those with ``u*u + v*v <= 72``.
    The DCT of all regions and planes runs in Pillow: the samples are
    stacked, multiplied by a cosine canvas and box-reduced, once per axis
    (`_dct_means`).  Bit *i* of the 64-bit luma hash is 1 when coefficient
    *i* is positive.  Dropping DC makes the hash blind to brightness; using
    signs makes it blind to contrast.  The colour hash of the same region
    is 64 more bits: the signs of Cb's and then Cr's DC (relative to
    neutral grey) and 31 lowest-frequency coefficients.
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
    symmetric scenes, and is what makes those scenes match at all.  Its
    colour bits are compared only where the coefficient's mean amplitude is
    at least 0.375 Cb/Cr levels (none for a grey image).  The result is a
    `SuspectHash`: an int (the 64 luma bits) carrying the masks and colour.
6.  `distance` is, over the 16 stored regions, the smallest sum of the
    luma Hamming distance (40-56 compared bits) and the colour Hamming
    distance (the compared colour bits) to that region's two hashes;
    `THRESHOLD` (4) is the largest that counts as a match.  Colour is a
    second, independent signal: two pictures with the same layout of light
    and dark but different colours are kept apart.  A plain int suspect is
    compared on its 64 luma bits only.

Measured by ``benchmarks/bench_matching.py`` (280 procedural 512 x 512
images in 14 scene families of look-alike compositions, 12 alterations
each: JPEG q50 / q75, resize to 25 % / 50 %, WebP, crops of 2.5 % and 5 %
on every side, 5 % on one side, random 0..5 % per side, and chains with
JPEG q50, WebP and resizing), at ``THRESHOLD = 4``: 99.46 % of altered
copies match their own image (worst distance 8), and none of the 937,440
pairs of an altered copy and another image's reference match (closest 5).
Luma alone (``ph1``) gave 99.49 % and 30 false matches, from three pairs of
images with the same layout; colour removes them.  ``THRESHOLD = 5``
gives 99.79 % and 1 false match, 3 gives 98.45 % and none.

What it does not match: rotations, flips, mirror images, crops of more than
about 5 % per side, heavy edits (text overlays, grading that changes the
luma layout), recolouring, and images composited into larger ones.  A
low-frequency hash sees the coarse layout of light, dark and colour: two
different pictures with the same layout and palette can come within a few
bits of each other; grey images have only the luma hash.  A match is a
lead for a person or for the journal's own evidence,
not proof.

Indexing
--------
The index uses the luma hashes only: `distance` is never less than the
luma distance, so the guarantee below holds for the combined distance too.
`index_keys` splits each stored luma hash into four 16-bit bands (the
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
import operator
import re
from array import array
from collections.abc import Callable
from typing import Any

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
own image at least 99 % of the time (99.46 %), with no false match over
the benchmark's 937,440 unrelated pairs (the closest is at 5).  It is meant for `suspect_hash` results; a
plain int is compared on all 64 bits and would need a larger one.
"""

_PREFIX = "ph2:"
_WORK = 128  # side of the working copy: small enough to crop cheaply, big enough to crop finely
_GAMMA = 1 / 3  # exponent applied to the reduced luma; see _planes
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
# Chroma: DC (the mean colour, relative to neutral) and the 31 lowest frequencies, of Cb and of Cr.
_CHROMA_COEFFS: tuple[tuple[int, int], ...] = ((0, 0), *_COEFFS[: HASH_BITS // 2 - 1])
_MAX_DISTANCE = 2 * HASH_BITS
# Float32 rounding noise, relative to the cell's mean, below which a coefficient counts as zero.
_EPS = 1e-4
# A suspect's chroma coefficients under this (a mean amplitude, in 8-bit Cb/Cr levels)
# are left out of the distance: their sign is noise (grey or near-grey areas).
_CHROMA_MIN = 0.375
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
_STR_LEN = len(_PREFIX) + math.ceil(2 * _COUNT * 8 * 4 / 3)  # unpadded base64, 16 bytes a region
_STR_RE = re.compile(r"ph2:[A-Za-z0-9_-]+", re.ASCII)


def _check_hash(value: object, what: str) -> int:
    """`value` as a 64-bit hash, or TypeError / ValueError naming `what`."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value < 1 << HASH_BITS:
        raise ValueError(f"{what} must be an unsigned {HASH_BITS}-bit integer")
    return value


def _validate_hashes(
    _instance: object, attribute: attrs.Attribute[tuple[int, ...]], value: object
) -> None:
    name = attribute.name
    if not isinstance(value, tuple):
        raise TypeError(f"{name} must be a tuple, not {type(value).__name__}")
    if len(value) != _COUNT:
        raise ValueError(f"{name} must hold {_COUNT} hashes, not {len(value)}")
    for i, h in enumerate(value):
        _check_hash(h, f"{name}[{i}]")


def _no_chroma() -> tuple[int, ...]:
    return (0,) * _COUNT


@attrs.frozen
class PerceptualHash:
    """The stored perceptual hash of a recorded image: two 64-bit hashes per region.

    ``hashes[i]`` is the luma hash of the i-th trimmed region of the image
    (see the module docstring), ``chroma[i]`` its colour hash (all zero for
    an image without colour); ``hashes[0]`` and ``chroma[0]`` are the
    untrimmed region's.  Build it with `reference_hash`; store it with
    `to_str` and read it back with `from_str`.
    """

    hashes: tuple[int, ...] = attrs.field(validator=_validate_hashes)
    chroma: tuple[int, ...] = attrs.field(factory=_no_chroma, validator=_validate_hashes)

    def to_str(self) -> str:
        """The compact ASCII form, ``"ph2:"`` then unpadded base64url of the hashes.

        The 256 bytes are the 16 luma hashes then the 16 chroma hashes, each
        8 bytes big-endian: 342 characters after the prefix.
        """
        raw = b"".join(h.to_bytes(8, "big") for h in (*self.hashes, *self.chroma))
        return _PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    @classmethod
    def from_str(cls, text: str) -> PerceptualHash:
        """Parse the form `to_str` writes; anything else raises ValueError.

        Parsing is strict: exact length (checked before anything else, so
        hostile input costs nothing), the ``ph2:`` prefix, the base64url
        alphabet without padding, and the canonical encoding only.  The
        ``ph1:`` form (luma only, no colour) is refused: its distances are not
        comparable with `THRESHOLD`; re-hash the image.
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
        values = tuple(int.from_bytes(raw[i : i + 8], "big") for i in range(0, len(raw), 8))
        return cls(values[:_COUNT], values[_COUNT:])


def _check_distance(
    _instance: object, attribute: attrs.Attribute[int], value: object
) -> None:
    _check_count(value, attribute.name)


def _check_count(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value <= _MAX_DISTANCE:
        raise ValueError(f"{what} must be between 0 and {_MAX_DISTANCE}")
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


def _flattened(image: Image.Image) -> Image.Image:
    """Onto white, as most converters to JPEG do: RGB."""
    if image.mode == "La":  # premultiplied; Pillow converts it only to LA
        image = image.convert("LA")
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


# Converted a strip of at most this many pixels at a time: flattening a large
# transparent image whole took four full-size copies (2.4 GB for 121 Mpx).
_STRIP_PIXELS = 1 << 22


def _reduced(image: Image.Image, factor: tuple[int, int]) -> Image.Image:
    return image if factor == (1, 1) else image.reduce(factor)


def _convert_reduced(
    image: Image.Image, convert: Callable[[Image.Image], Image.Image], factor: tuple[int, int]
) -> Image.Image:
    """``convert(image).reduce(factor)`` (no reduction for (1, 1)), in bounded memory.

    Both are pixel by pixel and block by block, so strips whose height is a
    multiple of the vertical factor give exactly the same result as the
    whole image (the last strip ends with the same partial blocks).
    """
    width, height = image.size
    across, down = factor
    if width * height <= _STRIP_PIXELS:
        return _reduced(convert(image), factor)
    rows = down * max(1, _STRIP_PIXELS // (width * down))
    out: Image.Image | None = None
    for top in range(0, height, rows):
        strip = _reduced(convert(image.crop((0, top, width, min(top + rows, height)))), factor)
        if out is None:
            out = Image.new(strip.mode, (-(-width // across), -(-height // down)))
        out.paste(strip, (0, top // down))
    assert out is not None  # height >= 1
    return out


def _planes(image: Image.Image) -> list[Image.Image]:
    """The working copy: [luma] or [luma, Cb, Cr], each ``F``, at most `_WORK` a side.

    Big images are first shrunk with `Image.reduce` (integer box averaging,
    the cheapest pass over every pixel) in their own mode, then box-resized
    to at most `_WORK` x `_WORK`; colour is converted only after that.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL.Image.Image, not {type(image).__name__}")
    width, height = image.size
    if width < 1 or height < 1:
        raise ValueError(f"cannot hash an empty image ({width}x{height})")
    mode = image.mode
    color = True
    convert: Callable[[Image.Image], Image.Image] | None = None
    if mode in ("I", "F") or mode.startswith("I;16"):
        # convert("L") clips these at 255; "F" keeps the range (only signs matter later).
        convert, color = operator.methodcaller("convert", "F"), False
    elif mode == "LAB":
        # Pillow's LAB -> RGB is not colorimetric
        convert, color = operator.methodcaller("getchannel", "L"), False
    elif image.has_transparency_data:
        convert = _flattened
    elif mode in ("L", "1"):
        convert, color = operator.methodcaller("convert", "L"), False
    elif mode != "RGB":
        convert = operator.methodcaller("convert", "RGB")
    factor = (max(1, width // _WORK), max(1, height // _WORK))
    image = _reduced(image, factor) if convert is None else _convert_reduced(image, convert, factor)
    size = (min(width, _WORK), min(height, _WORK))
    # Two passes, horizontal first, as in `_samples`: Pillow 13 alone may go
    # vertical first, and the rounding between the passes would differ.
    if image.width != size[0]:
        image = image.resize((size[0], image.height), Image.Resampling.BOX)
    if image.height != size[1]:
        image = image.resize(size, Image.Resampling.BOX)
    luma = image.convert("L") if image.mode == "RGB" else image
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
    if not color:
        return [work]
    _, cb, cr = image.convert("YCbCr").split()
    return [work, cb.convert("F"), cr.convert("F")]


@functools.lru_cache(maxsize=8)
def _cos_canvases(cells: int) -> tuple[Image.Image, Image.Image]:
    """The cosine factors of `_dct_means` for a stack of `cells` cells."""
    side = _MAX_U + 1
    first = array("f")
    for _ in range(_N * cells):
        for u in range(side):
            first.extend(_COS[u])
    second = array("f")
    for v in range(side):
        row = array("f", _COS[v]) * cells
        for _ in range(side):
            second.extend(row)
    return (
        Image.frombytes("F", (_N * side, _N * cells), first.tobytes()),
        Image.frombytes("F", (_N * cells, side * side), second.tobytes()),
    )


def _multiply(a: Image.Image, b: Image.Image) -> Image.Image:
    out = ImageMath.lambda_eval(lambda env: env["a"] * env["b"], a=a, b=b)
    if not isinstance(out, Image.Image):  # for the type checker: ImageMath returns Any
        raise TypeError("ImageMath did not return an image")
    return out


def _dct_means(stack: Image.Image) -> array[float]:
    """Low-frequency 2-D DCT-II of every 16 x 16 cell of a vertical stack, in Pillow.

    `stack` is ``F``, 16 wide and 16 * k tall.  Returns float32 values,
    ``out[cell * 81 + v * 9 + u]`` = the mean over the cell of
    ``pixel * cos_u(x) * cos_v(y)``, for u, v in 0..8.  Both passes are an
    elementwise product with a cosine canvas followed by a box reduction
    (a mean) in Pillow's C code: a handful of calls for all cells at once,
    instead of hundreds of Python-level dot products per cell.  The calls go
    to Pillow's core objects directly (the same operations, without the
    per-call checks of the `Image` methods: a fixed cost that dominated the
    hash of a small image).
    """
    side = _MAX_U + 1
    cells = stack.height // _N
    first, second = _cos_canvases(cells)
    tall = _N * cells
    tiled = Image.new("F", first.size)
    core = stack.im
    for u in range(side):
        tiled.im.paste(core, (_N * u, 0, _N * (u + 1), tall))
    across = _multiply(tiled, first).im.resize((side, tall), Image.Resampling.BOX)
    flipped = across.transpose(Image.Transpose.TRANSPOSE)  # (16 * cells) x 9
    tiled = Image.new("F", second.size)
    for v in range(side):
        tiled.im.paste(flipped, (0, side * v, tall, side * (v + 1)))
    both = _multiply(tiled, second).resize((cells, side * side), Image.Resampling.BOX)
    # Cell-major: one row of 81 coefficients per cell.
    return array("f", both.transpose(Image.Transpose.TRANSPOSE).tobytes())


def _samples(planes: list[Image.Image], regions: tuple[tuple[float, float, float, float], ...]) -> Image.Image:
    """The 16 x 16 BOX samples of each region of each plane, stacked: ``F``, 16 wide.

    Cell ``region * len(planes) + plane``: the region's columns box-resampled
    to 16 (a horizontal-only ``resize`` of the whole height, made once for
    all the regions that share those columns), then its rows to 16 (a
    vertical-only ``resize``).  That is what Pillow's two-pass resize of the
    box computes when it goes horizontal first, as it always did up to
    Pillow 12; Pillow 13 may go vertical first for tall regions, which rounds
    differently, so the order is fixed here.
    """
    width, height = planes[0].size
    cores = []
    for plane in planes:
        plane.load()
        cores.append(plane.im)
    strip = Image.new("F", (_N, _N * len(regions) * len(planes)))
    paste = strip.im.paste
    box_filter = Image.Resampling.BOX
    columns: dict[tuple[float, float], list[Any]] = {}
    top = 0
    for left, upper, right, lower in regions:
        across = (left * width, (1 - right) * width)
        resampled = columns.get(across)
        if resampled is None:
            wide = (across[0], 0, across[1], height)
            resampled = columns[across] = [core.resize((_N, height), box_filter, wide) for core in cores]
        tall = (0, upper * height, _N, (1 - lower) * height)
        for core in resampled:
            paste(core.resize((_N, _N), box_filter, tall), (0, top, _N, top + _N))
            top += _N
    return strip


_CELL = (_MAX_U + 1) ** 2  # coefficients per cell in `_dct_means`
_LUMA_AT = operator.itemgetter(*((_MAX_U + 1) * v + u for u, v in _COEFFS))
_CHROMA_AT = operator.itemgetter(*((_MAX_U + 1) * v + u for u, v in _CHROMA_COEFFS))


def _cells(planes: list[Image.Image], regions: tuple[tuple[float, float, float, float], ...]) -> list[float]:
    """`_dct_means` of the `_samples`, as Python floats (cell-major, `_CELL` per cell)."""
    return _dct_means(_samples(planes, regions)).tolist()


def _coefficients(
    planes: list[Image.Image], regions: tuple[tuple[float, float, float, float], ...]
) -> list[tuple[list[float], list[float]]]:
    """(64 luma, 64 chroma) DCT coefficients of each region of the working copy.

    Coefficients are means over the 16 x 16 sample grid (the sum / 256).
    The chroma ones are `_CHROMA_COEFFS` of Cb then of Cr, the DC term
    taken relative to neutral (128); all zero without colour.  Values
    within float32 rounding noise of zero (flat or mirror-symmetric images)
    are returned as exactly zero, so that such images hash the same on
    every platform.
    """
    means = _cells(planes, regions)
    out = []
    step = _CELL * len(planes)
    for first in range(0, step * len(regions), step):
        cell = means[first : first + _CELL]
        eps = _EPS * abs(cell[0])
        luma = [c if abs(c) > eps else 0.0 for c in _LUMA_AT(cell)]
        chroma = [0.0] * HASH_BITS
        if len(planes) == 3:
            chroma = []
            for p in (first + _CELL, first + 2 * _CELL):
                cell = means[p : p + _CELL]
                eps = _EPS * abs(cell[0])
                values = list(_CHROMA_AT(cell))
                values[0] -= 128.0
                chroma += [c if abs(c) > eps else 0.0 for c in values]
        out.append((luma, chroma))
    return out


def _above(values: tuple[float, ...], eps: float) -> str:
    """The bits of `values` with those within `eps` of zero zeroed, as "0"/"1" text:
    1 where value > eps (eps >= 0).  Text and one ``int(..., 2)`` beat shifting in a loop."""
    return "".join(["1" if c > eps else "0" for c in values])


def _region_hashes(
    planes: list[Image.Image], regions: tuple[tuple[float, float, float, float], ...]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``_bits`` of each region's luma and chroma `_coefficients`, without building the lists.

    A coefficient's bit is 1 where it is positive after `_coefficients` zeroes
    those with ``abs(c) <= eps``: exactly where ``c > eps``, as eps is never
    negative (and a NaN compares false either way).
    """
    means = _cells(planes, regions)
    luma: list[int] = []
    chroma: list[int] = []
    step = _CELL * len(planes)
    colour = len(planes) == 3
    for first in range(0, step * len(regions), step):
        cell = means[first : first + _CELL]
        luma.append(int(_above(_LUMA_AT(cell), _EPS * abs(cell[0])), 2))
        if not colour:
            chroma.append(0)
            continue
        text = []
        for p in (first + _CELL, first + 2 * _CELL):
            values = _CHROMA_AT(means[p : p + _CELL])
            eps = _EPS * abs(values[0])
            text.append("1" if values[0] - 128.0 > eps else "0")
            text.append(_above(values[1:], eps))
        chroma.append(int("".join(text), 2))
    return tuple(luma), tuple(chroma)


def _bits(coefficients: list[float]) -> int:
    """The hash: bit i (from the most significant) is 1 where coefficient i is positive."""
    value = 0
    for c in coefficients:
        value = (value << 1) | (c > 0)
    return value


class SuspectHash(int):
    """The hash of a copy under test: an int, carrying the bits worth comparing.

    Its integer value is the 64-bit luma hash of the whole image, the same as
    ``reference_hash(image).hashes[0]``, so it can be used wherever a hash is
    (it compares equal to that int).  `mask` has a 1 for each luma bit that
    `distance` and `probe_keys` compare: all but the suspect's 8 to 24
    weakest coefficients (see the module docstring), which re-encoding or a
    slightly different crop flip.  `chroma` is the whole image's colour hash
    and `chroma_mask` its bits strong enough to compare (none for a grey
    image).  Arithmetic on it gives a plain int, and a plain int is compared
    on all 64 luma bits and no colour: keep the `SuspectHash` itself,
    `THRESHOLD` is chosen for it.
    """

    _mask: int
    _chroma: int
    _chroma_mask: int

    def __new__(
        cls, bits: int, mask: int = (1 << 64) - 1, chroma: int = 0, chroma_mask: int = 0
    ) -> SuspectHash:
        """A suspect hash from its luma bits and mask, and its chroma bits and mask."""
        self = super().__new__(cls, _check_hash(bits, "bits"))
        self._mask = _check_hash(mask, "mask")
        self._chroma = _check_hash(chroma, "chroma")
        self._chroma_mask = _check_hash(chroma_mask, "chroma_mask")
        return self

    @property
    def bits(self) -> int:
        """The 64-bit luma hash as a plain int."""
        return int(self)

    @property
    def mask(self) -> int:
        """1 for each luma bit that `distance` compares."""
        return self._mask

    @property
    def chroma(self) -> int:
        """The 64-bit colour hash of the whole image (Cb then Cr)."""
        return self._chroma

    @property
    def chroma_mask(self) -> int:
        """1 for each colour bit that `distance` compares."""
        return self._chroma_mask

    def __getnewargs__(self) -> tuple[int, int, int, int]:  # type: ignore[override]
        # Keeps the masks and colour through pickle and copy.
        return (int(self), self._mask, self._chroma, self._chroma_mask)

    def __repr__(self) -> str:
        return (
            f"SuspectHash(0x{int(self):016x}, mask=0x{self._mask:016x}, "
            f"chroma=0x{self._chroma:016x}, chroma_mask=0x{self._chroma_mask:016x})"
        )


def reference_hash(image: Image.Image) -> PerceptualHash:
    """Hash a recorded image (an output or a candidate) for later matching.

    Any mode and any size from 1 x 1 works; an empty image raises ValueError.
    """
    return PerceptualHash(*_region_hashes(_planes(image), _REGIONS))


def suspect_hash(image: Image.Image) -> SuspectHash:
    """Hash a copy being checked: the whole image's hashes and their reliable bits.

    Any mode and any size from 1 x 1 works; an empty image raises ValueError.
    """
    [(coefficients, chroma)] = _coefficients(_planes(image), _REGIONS[:1])
    magnitudes = [abs(c) for c in coefficients]
    # Weakest first, ties broken by position so that the choice is stable.
    order = sorted(range(HASH_BITS), key=lambda i: (magnitudes[i], i))
    small = _WEAK_RATIO * magnitudes[order[HASH_BITS // 2]]
    count = sum(1 for m in magnitudes if m < small)
    mask = _FULL
    for i in order[: max(_WEAK_MIN, min(_WEAK_MAX, count))]:
        mask &= ~(1 << (HASH_BITS - 1 - i))
    chroma_mask = 0
    for c in chroma:
        chroma_mask = (chroma_mask << 1) | (abs(c) >= _CHROMA_MIN)
    return SuspectHash(_bits(coefficients), mask, _bits(chroma), chroma_mask)


def _suspect_parts(suspect: int) -> tuple[int, int]:
    """(bits, mask) of a suspect: a `SuspectHash`, or a plain hash whose bits all count."""
    if isinstance(suspect, SuspectHash):
        return int(suspect), suspect.mask
    return _check_hash(suspect, "suspect"), _FULL


def distance(suspect: int, reference: PerceptualHash) -> int:
    """The smallest, over the reference's regions, of luma plus colour Hamming distance.

    For a `SuspectHash` only the bits of its masks count (40 to 56 luma bits,
    0 to 64 colour bits), and the result is 0 to 120; a bare int is compared
    on its 64 luma bits and no colour, which makes the distance symmetric.
    The distance is never less than the luma distance alone, which is what
    `probe_keys` relies on.
    """
    bits, mask = _suspect_parts(suspect)
    if isinstance(suspect, SuspectHash) and suspect.chroma_mask:
        chroma, chroma_mask = suspect.chroma, suspect.chroma_mask
        return min(
            ((bits ^ h) & mask).bit_count() + ((chroma ^ c) & chroma_mask).bit_count()
            for h, c in zip(reference.hashes, reference.chroma, strict=True)
        )
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


def _band_table() -> tuple[tuple[int, ...], ...]:
    """``[byte][b]``: byte `byte` (from the least significant) of a hash being `b`,
    dealt to the bands by `_LAYOUT`, as the four bands packed 16 bits each."""
    table = []
    for byte in range(HASH_BITS // 8):
        row = []
        for b in range(256):
            packed = 0
            for i in range(8):
                if b >> i & 1:
                    band, pos = _LAYOUT[byte * 8 + i]
                    packed |= 1 << (band * _BAND_BITS + pos)
            row.append(packed)
        table.append(tuple(row))
    return tuple(table)


_BAND_TABLE = _band_table()
_BAND_MASK = (1 << _BAND_BITS) - 1


def _bands(value: int) -> list[int]:
    """The four 16-bit bands of a hash (see `_band_layout`), a table lookup per byte."""
    packed = 0
    for row in _BAND_TABLE:
        packed |= row[value & 0xFF]
        value >>= 8
    return [packed >> (band * _BAND_BITS) & _BAND_MASK for band in range(_BANDS)]


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
