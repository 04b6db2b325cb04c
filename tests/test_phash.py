"""Tests of `provenance.phash`: known answers, the string form, matching, odd inputs."""

from __future__ import annotations

import io
import itertools
import pickle
import random
import re
from array import array

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFilter

from provenance import phash
from provenance.phash import (
    THRESHOLD,
    Match,
    PerceptualHash,
    SuspectHash,
    compare,
    distance,
    index_keys,
    probe_keys,
    reference_hash,
    suspect_hash,
)

COUNT = 16  # stored hashes per reference
FULL = (1 << 64) - 1
hashes64 = st.integers(min_value=0, max_value=FULL)


# --- generated test images ------------------------------------------------------------


def _sky(size: int, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    ramp = Image.linear_gradient("L").resize((size, size))
    return Image.composite(Image.new("RGB", (size, size), bottom), Image.new("RGB", (size, size), top), ramp)


def hills(size: int = 256) -> Image.Image:
    """A sky, a sun and two ridges."""
    img = _sky(size, (40, 90, 170), (230, 210, 180))
    d = ImageDraw.Draw(img)
    s = size / 256
    d.ellipse((170 * s, 30 * s, 210 * s, 70 * s), fill=(255, 240, 200))
    d.polygon([(0, 150 * s), (60 * s, 110 * s), (130 * s, 160 * s), (200 * s, 120 * s),
               (size, 150 * s), (size, size), (0, size)], fill=(70, 90, 60))
    d.polygon([(0, 200 * s), (90 * s, 170 * s), (size, 210 * s), (size, size), (0, size)],
              fill=(40, 50, 30))
    return img.filter(ImageFilter.GaussianBlur(1))


def room(size: int = 256) -> Image.Image:
    """A room in one-point perspective with a bright window."""
    img = Image.new("RGB", (size, size), (200, 190, 170))
    d = ImageDraw.Draw(img)
    s = size / 256
    d.polygon([(0, size), (size, size), (170 * s, 170 * s), (80 * s, 170 * s)], fill=(120, 85, 55))
    d.polygon([(0, 0), (80 * s, 80 * s), (80 * s, 170 * s), (0, size)], fill=(150, 140, 120))
    d.rectangle((100 * s, 95 * s, 130 * s, 140 * s), fill=(250, 250, 240))
    d.rectangle((20 * s, 180 * s, 90 * s, 230 * s), fill=(60, 40, 80))
    return img.filter(ImageFilter.GaussianBlur(1))


def blobs(size: int = 256) -> Image.Image:
    """Overlapping coloured discs on a diagonal gradient."""
    img = _sky(size, (20, 120, 110), (200, 60, 150)).rotate(45, fillcolor=(110, 90, 130))
    d = ImageDraw.Draw(img)
    s = size / 256
    for i, (x, y, r) in enumerate([(60, 70, 40), (180, 90, 55), (110, 190, 45), (40, 210, 25)]):
        d.ellipse(((x - r) * s, (y - r) * s, (x + r) * s, (y + r) * s),
                  fill=((70 * i) % 256, 200 - 40 * i, 60 + 50 * i))
    return img.filter(ImageFilter.GaussianBlur(2))


def portrait(size: int = 256) -> Image.Image:
    """A head and shoulders against a dark backdrop."""
    img = _sky(size, (30, 30, 40), (90, 80, 70))
    d = ImageDraw.Draw(img)
    s = size / 256
    d.ellipse((40 * s, 180 * s, 220 * s, 330 * s), fill=(40, 60, 120))
    d.ellipse((90 * s, 60 * s, 170 * s, 170 * s), fill=(220, 180, 150))
    d.chord((85 * s, 50 * s, 175 * s, 120 * s), 180, 360, fill=(60, 40, 20))
    return img.filter(ImageFilter.GaussianBlur(1))


SCENES = {"hills": hills, "room": room, "blobs": blobs, "portrait": portrait}


def _reencode(image: Image.Image, fmt: str, **options: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out


def _trim(image: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    w, h = image.size
    return image.crop((round(left * w), round(top * h), w - round(right * w), h - round(bottom * h)))


ALTERATIONS = {
    "jpeg q50": lambda im: _reencode(im, "JPEG", quality=50),
    "jpeg q75": lambda im: _reencode(im, "JPEG", quality=75),
    "resize 25%": lambda im: im.resize((im.width // 4, im.height // 4), Image.Resampling.LANCZOS),
    "resize 50%": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.BICUBIC),
    "webp": lambda im: _reencode(im, "WEBP"),
    "crop 5% each side": lambda im: _trim(im, 0.05, 0.05, 0.05, 0.05),
    "crop 5% left": lambda im: _trim(im, 0.05, 0, 0, 0),
    "crop 5% bottom": lambda im: _trim(im, 0, 0, 0, 0.05),
    "crop 2.5% each side": lambda im: _trim(im, 0.025, 0.025, 0.025, 0.025),
    "crop uneven": lambda im: _trim(im, 0.04, 0.01, 0.02, 0.035),
    "crop + jpeg q50": lambda im: _reencode(_trim(im, 0.05, 0.05, 0.05, 0.05), "JPEG", quality=50),
    "crop + resize + webp": lambda im: _reencode(
        _trim(im, 0.03, 0.05, 0.0, 0.02).resize((100, 100), Image.Resampling.LANCZOS), "WEBP"
    ),
}


# --- known answers ----------------------------------------------------------------------

# Written from this implementation (Pillow's BOX resampling is stable across
# versions); a change here is a change of the ph2 format and needs a new prefix.
# (ref string, luma bits, luma mask, chroma bits, chroma mask)
KNOWN = {
    "hills": (
        "ph2:iVuh_HoIi76JW6H8cgiLvolfofx6CIq-iVuh_HoIi76JW6H8KgiLvolTofwiCIuuiVuh_CoIir6JW6H8KgiLroVfgfx6"
        "CIu-gVeh_HIJi76BX6H8egiCvoFfofx6CIO-iVuh_CoIi76JU6H8IgmLvolbofwqCIq-iVuh_CoIi777gbMJATpI9vuBs4kB"
        "Okj2-5GjiwE6SHb7gbOLATpI9vqBswkBukj2-oGzCQG6SPb6kaOLAbpIdvqBs4sBukj2-4GzCQE6SPb7gbMJATpI9vuRo4sB"
        "Okh2-4GjiwE6SPb6gbMJAbpI9vuBswkBukj2-pGjiwG6SHb7gbOLAbpI9g",
        0x895BA1FC7A088BBE, 0xFBFBDFFFEBBF7DFF, 0xFB81B309013A48F6, 0xFA6BE771F869A220,
    ),
    "room": (
        "ph2:pYuok-6kOKali6iX7oS456WLqJPupDimpYuol-6EuOalj4KT7qQ4pqWPipbuhDjmpYuAk-6kOKali4iS7oQ45qWfqpHu"
        "pKgmoZuol-6EqGeli6iR7qQopqWbqJXuhKhnpY-ike6kOqalj6qX7oSo56WPopHupDimpYuole6EOOZm3CM6mSNYxSbMMzqZ"
        "MkjFZtwjOpkiWMUm3CM6mTJIxWbcIzqZI1zFJswjOpkyXMVm3CM6mTJYxSbcIzqZMlzFZtwjOpkjSMUmzDM6mTIJxWbcIzqZ"
        "IkjFJtwzOpkySMVm3CM6mSJcxSbMMzqZMkzFZtwjOpkiWMUm3CM6mTJMxQ",
        0xA58BA893EEA438A6, 0xF7FBF7FFFFF72FFE, 0x66DC233A992358C5, 0xBF69EA73CD400800,
    ),
    "blobs": (
        "ph2:B3AfVRN7xCwHUB9FE3vUCAdwF1cTe8QsB3AfVRN7xCwHMB9VE3vAJwcwH0UTe1QrBzAXVxN7wCUHMB9VE3vEJQdwH18H"
        "e8QsB1AfXQN71CgHcB9XA3vALAdwH10De8QoB3AfXxN7wCUHUB9dE3vUIQdwH1cTe8AlB3AfXRN7xCWMX-J4D-fieYxb4ngP"
        "5-J8jFvieA9n8nyMW-J4D-fifIz_4ngP7-J8jP_ieA_v4nyM_-J4D-_ifIz_4ngP7-J8jFf6eQ9H8n2O1_p5D8fyfYxX-nkP"
        "R_J9jFf6eQ_H8n2M1-p5D-fifYzX6nkP5-J9jNfyeA_n8n2M1-p5D-fifQ",
        0x07701F55137BC42C, 0xFFFFFFF5FDEFEEDC, 0x8C5FE2780FE7E279, 0xFC53E7FAFF47EDB8,
    ),
}


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_known_answers(name: str) -> None:
    image = SCENES[name]()
    expected_ref, *expected_suspect = KNOWN[name]
    assert reference_hash(image).to_str() == expected_ref
    s = suspect_hash(image)
    assert [int(s), s.mask, s.chroma, s.chroma_mask] == expected_suspect


def test_known_answer_of_flat_image_is_zero() -> None:
    # No structure: every coefficient is zero, so every bit is 0 on every platform.
    for mode, color in [("L", 77), ("RGB", (10, 200, 30)), ("F", 3.5), ("I;16", 40000)]:
        ref = reference_hash(Image.new(mode, (40, 30), color))
        assert ref.hashes == ref.chroma == (0,) * COUNT
        assert ref.to_str() == "ph2:" + "A" * 342
        s = suspect_hash(Image.new(mode, (40, 30), color))
        # Only the mean colour of the green image counts (Cb and Cr below neutral: 0 bits).
        dc_bits = (1 << 63 | 1 << 31) if mode == "RGB" else 0
        assert (int(s), s.chroma, s.chroma_mask) == (0, 0, dc_bits)


def test_suspect_hash_is_the_untrimmed_reference_hash() -> None:
    for make in SCENES.values():
        image = make()
        s = suspect_hash(image)
        assert isinstance(s, int)
        ref = reference_hash(image)
        assert s == ref.hashes[0]
        assert s.chroma == ref.chroma[0]
        assert s.chroma_mask.bit_count() > 0  # the scenes are coloured
        assert s.bits == int(s)
        assert 40 <= s.mask.bit_count() <= 56
        assert distance(s, reference_hash(image)) == 0


# --- the string form ----------------------------------------------------------------------


@given(st.lists(hashes64, min_size=COUNT, max_size=COUNT), st.lists(hashes64, min_size=COUNT, max_size=COUNT))
def test_str_round_trip(values: list[int], chroma: list[int]) -> None:
    ph = PerceptualHash(tuple(values), tuple(chroma))
    text = ph.to_str()
    assert re.fullmatch(r"ph2:[A-Za-z0-9_-]{342}", text)
    assert PerceptualHash.from_str(text) == ph


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ph2:",
        "ph2",
        "ph1:" + "A" * 171,  # the old luma-only format is refused
        "ph1:" + "A" * 342,
        "ph3:" + "A" * 342,
        "PH2:" + "A" * 342,
        "ph2:" + "A" * 341,
        "ph2:" + "A" * 343,
        "ph2:" + "A" * 341 + "=",
        "ph2:" + "A" * 340 + "==",
        "ph2:" + "A" * 341 + "+",
        "ph2:" + "A" * 341 + "/",
        "ph2:" + "A" * 341 + " ",
        "ph2:" + "A" * 341 + "\n",
        " ph2:" + "A" * 341,
        "ph2:" + "A" * 341 + "\u00c4",
        "ph2:" + "A" * 341 + "\u0661",  # an Arabic-Indic digit: not ASCII
        "ph2:" + "A" * 341 + "B",  # non-zero unused low bits: not the canonical encoding
        "ph2:" + "A" * 341 + "P",
        "ph2:" + "A" * 10_000_000,
        "ph2:" + "!" * 342,
    ],
)
def test_from_str_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        PerceptualHash.from_str(text)


@pytest.mark.parametrize("value", [None, 5, b"ph2:" + b"A" * 342, ["ph2:"]])
def test_from_str_rejects_non_strings(value: object) -> None:
    with pytest.raises(ValueError):
        PerceptualHash.from_str(value)  # type: ignore[arg-type]


@settings(max_examples=300)
@given(st.text(max_size=200) | st.text(alphabet="ph2:AQgw_-=+/", min_size=340, max_size=350))
def test_from_str_raises_only_value_error(text: str) -> None:
    try:
        ph = PerceptualHash.from_str(text)
    except ValueError:
        return
    assert ph.to_str() == text  # whatever parses is canonical


@pytest.mark.parametrize(
    ("hashes", "error"),
    [
        ((0,) * (COUNT - 1), ValueError),
        ((0,) * (COUNT + 1), ValueError),
        ((), ValueError),
        ((-1,) + (0,) * (COUNT - 1), ValueError),
        ((1 << 64,) + (0,) * (COUNT - 1), ValueError),
        ((True,) + (0,) * (COUNT - 1), TypeError),
        ((1.0,) + (0,) * (COUNT - 1), TypeError),
        ([0] * COUNT, TypeError),
    ],
)
def test_perceptual_hash_validates(hashes: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        PerceptualHash(hashes)  # type: ignore[arg-type]
    with pytest.raises(error):
        PerceptualHash((0,) * COUNT, hashes)  # type: ignore[arg-type]


def test_perceptual_hash_is_frozen() -> None:
    ph = PerceptualHash((0,) * COUNT)
    with pytest.raises(AttributeError):
        ph.hashes = (1,) * COUNT  # type: ignore[misc]


# --- distance -------------------------------------------------------------------------------


@given(hashes64, hashes64)
def test_distance_of_plain_hashes_is_symmetric_hamming(a: int, b: int) -> None:
    d = distance(a, PerceptualHash((b,) * COUNT))
    assert d == distance(b, PerceptualHash((a,) * COUNT)) == (a ^ b).bit_count()
    assert distance(a, PerceptualHash((a,) * COUNT)) == 0


@given(hashes64, hashes64, hashes64, st.lists(hashes64, min_size=COUNT - 1, max_size=COUNT - 1))
def test_distance_is_the_masked_minimum(bits: int, mask: int, near: int, rest: list[int]) -> None:
    ref = PerceptualHash((near, *rest))
    expected = min(((bits ^ h) & mask).bit_count() for h in ref.hashes)
    assert distance(SuspectHash(bits, mask), ref) == expected
    assert distance(SuspectHash(bits, mask), ref) <= distance(bits, ref)


@given(
    hashes64, hashes64, hashes64, hashes64,
    st.lists(hashes64, min_size=COUNT, max_size=COUNT),
    st.lists(hashes64, min_size=COUNT, max_size=COUNT),
)
def test_distance_adds_colour_per_region(
    bits: int, mask: int, chroma: int, chroma_mask: int, luma: list[int], colour: list[int]
) -> None:
    ref = PerceptualHash(tuple(luma), tuple(colour))
    s = SuspectHash(bits, mask, chroma, chroma_mask)
    expected = min(
        ((bits ^ h) & mask).bit_count() + ((chroma ^ c) & chroma_mask).bit_count()
        for h, c in zip(luma, colour, strict=True)
    )
    assert distance(s, ref) == expected
    # Never below the luma distance alone: what the index relies on.
    assert distance(s, ref) >= distance(SuspectHash(bits, mask), ref)


@pytest.mark.parametrize("bad", [-1, 1 << 64, True, 1.5, "0"])
def test_distance_rejects_bad_suspects(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        distance(bad, PerceptualHash((0,) * COUNT))  # type: ignore[arg-type]


def test_suspect_hash_keeps_its_mask_through_pickle() -> None:
    s = suspect_hash(hills())
    again = pickle.loads(pickle.dumps(s))
    assert isinstance(again, SuspectHash)
    assert (int(again), again.mask, again.chroma, again.chroma_mask) == (
        int(s), s.mask, s.chroma, s.chroma_mask)
    assert "chroma_mask=" in repr(s)


# --- matching -------------------------------------------------------------------------------

REFERENCES = {name: reference_hash(make()) for name, make in SCENES.items()}


@pytest.mark.parametrize(("scene", "alteration"), list(itertools.product(sorted(SCENES), sorted(ALTERATIONS))))
def test_altered_copies_match(scene: str, alteration: str) -> None:
    copy = ALTERATIONS[alteration](SCENES[scene]())
    result = compare(copy, REFERENCES[scene])
    assert result.matched, result
    assert result.threshold == THRESHOLD


@pytest.mark.parametrize(("scene", "other"), list(itertools.permutations(sorted(SCENES), 2)))
def test_unrelated_images_do_not_match(scene: str, other: str) -> None:
    for alteration in ("jpeg q50", "crop 5% each side", "crop uneven"):
        copy = ALTERATIONS[alteration](SCENES[scene]())
        result = compare(copy, REFERENCES[other])
        assert not result.matched, (alteration, result)
        assert result.distance > THRESHOLD + 2  # with some margin, not by luck


def test_large_source_matches_small_copy() -> None:
    big = hills(1024)
    small = _reencode(big.resize((200, 200), Image.Resampling.BILINEAR), "JPEG", quality=60)
    assert compare(small, reference_hash(big)).matched


def test_compare_threshold_and_match_validation() -> None:
    copy = ALTERATIONS["crop 5% each side"](hills())
    result = compare(copy, REFERENCES["hills"], threshold=64)
    assert result == Match(distance=result.distance, threshold=64, matched=True)
    assert not compare(copy, REFERENCES["room"], threshold=0).matched
    with pytest.raises(ValueError):
        Match(distance=5, threshold=4, matched=True)
    with pytest.raises(ValueError):
        compare(copy, REFERENCES["hills"], threshold=129)
    with pytest.raises(TypeError):
        Match(distance=1, threshold=4, matched=1)  # type: ignore[arg-type]


# --- modes and sizes ------------------------------------------------------------------------

MODES = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB",
         "HSV", "I", "I;16", "I;16B", "I;16L", "F"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [(1, 1), (1, 7), (7, 1), (2, 3), (16, 16), (300, 5)])
def test_any_mode_and_tiny_sizes(mode: str, size: tuple[int, int]) -> None:
    image = Image.new(mode, size)
    ref = reference_hash(image)
    s = suspect_hash(image)
    assert s == ref.hashes[0]
    assert PerceptualHash.from_str(ref.to_str()) == ref
    assert compare(image, ref).distance == 0


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "CMYK", "YCbCr", "I", "I;16", "F", "LA"])
def test_modes_of_one_picture_agree(mode: str) -> None:
    gray = room(128).convert("L")
    expected = suspect_hash(gray)
    if mode in ("I", "F"):
        image = gray.convert(mode)
    elif mode == "I;16":
        image = gray.convert("I").point(lambda v: v * 257).convert("I;16")  # full 16-bit range
    else:
        image = gray.convert(mode)
    got = suspect_hash(image)
    assert ((got ^ expected) & expected.mask).bit_count() <= 1, mode


def test_transparency_is_flattened_onto_white() -> None:
    scene = blobs(128)
    rgba = scene.convert("RGBA")
    alpha = Image.new("L", scene.size, 255)
    ImageDraw.Draw(alpha).rectangle((0, 0, 63, 127), fill=0)
    rgba.putalpha(alpha)
    flattened = Image.new("RGB", scene.size, (255, 255, 255))
    flattened.paste(scene, mask=alpha)
    assert suspect_hash(rgba) == suspect_hash(flattened)


def test_wide_16_bit_values_are_not_clipped() -> None:
    # In I;16, values above 255 would all become white through an "L" conversion.
    gray = hills(128).convert("L")
    wide = gray.convert("I").point(lambda v: v * 200 + 1000).convert("I;16")
    assert distance(suspect_hash(wide), reference_hash(gray)) <= 1


def test_exif_orientation_is_not_applied() -> None:
    image = hills(128)
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(buf, "JPEG", quality=95, exif=exif)
    loaded = Image.open(io.BytesIO(buf.getvalue()))
    assert distance(suspect_hash(loaded), REFERENCES["hills"]) <= THRESHOLD


def test_empty_and_non_images_are_refused() -> None:
    for size in [(0, 0), (0, 5), (5, 0)]:
        with pytest.raises(ValueError):
            reference_hash(Image.new("RGB", size))
        with pytest.raises(ValueError):
            suspect_hash(Image.new("L", size))
    with pytest.raises(TypeError):
        suspect_hash(b"not an image")  # type: ignore[arg-type]


# --- index --------------------------------------------------------------------------------


def test_index_keys_are_small_and_banded() -> None:
    keys = index_keys(REFERENCES["hills"])
    assert keys == sorted(set(keys))
    assert 4 <= len(keys) <= 4 * COUNT
    assert all(0 <= k < 4 << 16 for k in keys)
    assert {k >> 16 for k in keys} == {0, 1, 2, 3}
    assert len(probe_keys(0, THRESHOLD)) == 4 * (1 + 16 * (THRESHOLD >= 4))


def _flip(value: int, positions: list[int]) -> int:
    for p in positions:
        value ^= 1 << p
    return value


@settings(max_examples=300)
@given(
    hashes64,
    st.lists(st.integers(0, 63), unique=True, max_size=8),
    st.lists(st.integers(0, 63), unique=True, max_size=THRESHOLD),
    st.integers(0, COUNT - 1),
    st.lists(hashes64, min_size=COUNT, max_size=COUNT),
)
def test_index_never_misses_a_match(
    bits: int, masked: list[int], flips: list[int], slot: int, others: list[int]
) -> None:
    mask = _flip(FULL, masked)
    suspect = SuspectHash(bits, mask)
    # A stored hash within THRESHOLD compared bits, whatever the masked-out bits hold.
    near = _flip(bits, [p for p in flips if p not in masked] + masked[: len(masked) // 2])
    stored = list(others)
    stored[slot] = near
    ref = PerceptualHash(tuple(stored))
    assert distance(suspect, ref) <= THRESHOLD
    assert set(probe_keys(suspect)) & set(index_keys(ref))


def test_index_finds_altered_copies() -> None:
    for name, make in SCENES.items():
        keys = set(index_keys(REFERENCES[name]))
        for alteration in ALTERATIONS.values():
            assert set(probe_keys(suspect_hash(alteration(make())))) & keys


def test_probe_keys_validate() -> None:
    with pytest.raises(ValueError):
        probe_keys(1 << 64)
    with pytest.raises(ValueError):
        probe_keys(0, -1)
    assert len(probe_keys(0, 64)) == 4 << 16  # every key of every band


def test_public_names() -> None:
    assert set(phash.__all__) <= set(dir(phash))
    assert THRESHOLD == phash.THRESHOLD


# --- colour and the DCT ---------------------------------------------------------------------


def test_colour_separates_pictures_of_the_same_luma_layout() -> None:
    # Swapping Cb and Cr keeps the luma (the layout of light and dark) and changes the colours.
    scene = hills()
    y, cb, cr = scene.convert("YCbCr").split()
    swapped = Image.merge("YCbCr", (y, cr, cb)).convert("RGB")
    s = suspect_hash(swapped)
    luma_only = SuspectHash(int(s), s.mask)
    assert distance(luma_only, REFERENCES["hills"]) <= THRESHOLD  # luma alone would match
    assert distance(s, REFERENCES["hills"]) > THRESHOLD + 2


def test_grey_copy_of_a_colour_image_still_matches() -> None:
    # A grey suspect has no colour bits to compare: it is matched on luma alone.
    s = suspect_hash(hills().convert("L"))
    assert s.chroma_mask == 0
    assert distance(s, REFERENCES["hills"]) <= THRESHOLD


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.integers(0, 2**32 - 1))
@example(16, 16, 1)
@example(64, 64, 2)
@example(1024, 1024, 3)
@example(40, 300, 4)  # a tall region: Pillow 13 alone would resize it vertically first
def test_samples_are_a_horizontal_then_a_vertical_box_pass(width: int, height: int, seed: int) -> None:
    """The sampling is defined pass by pass, so it cannot follow Pillow's choice of order.

    Pillow 13's resize runs the vertical pass first when a region is much
    taller than wide; each single pass is the same in every Pillow version.
    For regions it resizes horizontally first (all the square ones), the
    result is exactly Pillow's one-call resize, so those hashes did not move.
    """
    rng = random.Random(seed)
    noise = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    planes = phash._planes(noise)
    w, h = planes[0].size
    strip = phash._samples(planes, phash._REGIONS).tobytes()
    cell = 16 * 16 * 4
    for index, ((left, top, right, bottom), plane) in enumerate(itertools.product(phash._REGIONS, planes)):
        x0, x1, y0, y1 = left * w, (1 - right) * w, top * h, (1 - bottom) * h
        passes = plane.resize((16, h), Image.Resampling.BOX, (x0, 0, x1, h))
        passes = passes.resize((16, 16), Image.Resampling.BOX, (0, y0, 16, y1))
        assert strip[index * cell : (index + 1) * cell] == passes.tobytes()
        if w == h:
            one_call = plane.resize((16, 16), Image.Resampling.BOX, (x0, y0, x1, y1))
            assert passes.tobytes() == one_call.tobytes()


@pytest.mark.parametrize("size", [(700, 1000), (1000, 700), (129, 200), (300, 300)])
def test_working_copy_is_resized_horizontal_pass_first(size: tuple[int, int]) -> None:
    # Pillow 13's resize takes 129 x 200 -> 128 x 128 vertically first (and rounds in between).
    width, height = size
    image = Image.frombytes("RGB", size, random.Random(width).randbytes(width * height * 3))
    small = image.reduce((max(1, width // 128), max(1, height // 128)))
    small = small.resize((128, small.height), Image.Resampling.BOX).resize((128, 128), Image.Resampling.BOX)
    assert small.size == (128, 128)
    work = phash._planes(image)
    assert work[1].tobytes() == small.convert("YCbCr").getchannel("Cb").convert("F").tobytes()


@pytest.mark.parametrize("mode", ["RGBA", "LA", "La", "PA", "P-transparent", "I;16", "CMYK", "1", "LAB", "RGB"])
@pytest.mark.parametrize("size", [(700, 333), (300, 1100), (256, 256)])
def test_large_images_are_converted_in_strips_with_the_same_result(
    mode: str, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Strips of whole reduction blocks give the whole image's pixels, in bounded memory."""
    width, height = size
    rgba = Image.frombytes("RGBA", size, random.Random(width + height).randbytes(width * height * 4))
    if mode == "P-transparent":
        image = rgba.convert("RGB").quantize(64)
        image.info["transparency"] = 5
    elif mode == "PA":
        image = rgba.convert("PA")
    else:
        image = rgba.convert(mode) if mode not in ("I;16", "LAB") else rgba.convert("L").convert(mode)
    whole = [plane.tobytes() for plane in phash._planes(image)]
    monkeypatch.setattr(phash, "_STRIP_PIXELS", 10_000)  # a few rows a strip
    assert [plane.tobytes() for plane in phash._planes(image)] == whole


def test_fast_dct_equals_plain_dct() -> None:
    # The batched Pillow DCT against a plain Python DCT of the same 16 x 16 samples.
    import math

    planes = phash._planes(hills(300))
    width, height = planes[0].size
    got = phash._coefficients(planes, phash._REGIONS)
    cos = [[math.cos(math.pi * (2 * x + 1) * k / 32) for x in range(16)] for k in range(9)]
    for (left, top, right, bottom), (luma, chroma) in zip(phash._REGIONS, got, strict=True):
        box = (left * width, top * height, (1 - right) * width, (1 - bottom) * height)
        expected = []
        for p, plane in enumerate(planes):
            cell = plane.resize((16, 16), Image.Resampling.BOX, box=box)
            px = list(array("f", cell.tobytes()))
            coeffs = phash._COEFFS if p == 0 else phash._CHROMA_COEFFS
            values = [
                sum(px[y * 16 + x] * cos[u][x] * cos[v][y] for y in range(16) for x in range(16)) / 256
                for u, v in coeffs
            ]
            if p:
                values[0] -= 128
            expected.append(values)
        # float32 rounding in Pillow: errors scale with the cell's mean, not the coefficient.
        mean = float(sum(array("f", planes[0].resize((16, 16), Image.Resampling.BOX, box=box).tobytes()))) / 256
        assert max(abs(a - b) for a, b in zip(luma, expected[0], strict=True)) < 1e-3 * mean
        assert max(abs(a - b) for a, b in zip(chroma, expected[1] + expected[2], strict=True)) < 0.05


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "F", "I;16", "P"])
def test_reference_hash_equals_bits_of_coefficients(mode: str) -> None:
    # reference_hash skips the coefficient lists (bit = coefficient > eps): same bits.
    for make in SCENES.values():
        for image in (make(), make().resize((64, 64)), make().resize((16, 16)), make().resize((7, 300))):
            image = image.convert(mode)
            regions = phash._coefficients(phash._planes(image), phash._REGIONS)
            expected = PerceptualHash(
                tuple(phash._bits(luma) for luma, _ in regions), tuple(phash._bits(c) for _, c in regions)
            )
            assert reference_hash(image) == expected


@given(hashes64)
def test_bands_follow_the_layout(value: int) -> None:
    expected = [0] * 4
    for bit, (band, pos) in enumerate(phash._LAYOUT):
        expected[band] |= ((value >> bit) & 1) << pos
    assert phash._bands(value) == expected
