"""WebP container: PRVN chunk, VP8X normalisation, binding hash, hostile input."""

from __future__ import annotations

import io
import random
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms

from provenance import _formats as F
from provenance.errors import ImageFormatError

PAYLOAD = b'{"journal": "test", "steps": [1, 2, 3]}'
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'


def random_image(mode: str, size: tuple[int, int], seed: int, *, opaque: bool = False) -> Image.Image:
    rng = random.Random(seed)
    nbytes = len(Image.new(mode, size).tobytes())
    image = Image.frombytes(mode, size, rng.randbytes(nbytes))
    if opaque and mode == "RGBA":
        image.putalpha(255)
    return image


def make_webp(
    mode: str = "RGB", size: tuple[int, int] = (13, 9), seed: int = 1, **save: object
) -> bytes:
    out = io.BytesIO()
    random_image(mode, size, seed).save(out, "WEBP", **save)
    return out.getvalue()


def make_animation() -> bytes:
    frames = [random_image("RGBA", (12, 10), seed) for seed in range(3)]
    out = io.BytesIO()
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:], duration=50, lossless=True)
    return out.getvalue()


def chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(fourcc, offset, total length with pad) of each top-level chunk, parsed independently."""
    out, pos = [], 12
    while pos < len(data):
        fourcc, size = struct.unpack_from("<4sI", data, pos)
        out.append((fourcc, pos, 8 + size + (size & 1)))
        pos += 8 + size + (size & 1)
    return out


def riff(body: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def raw_chunk(fourcc: bytes, body: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) & 1 else b"")


def our_chunk(compressed: bytes, *, version: int = 1, pad: bytes = b"\x00") -> bytes:
    crc = zlib.crc32(compressed, zlib.crc32(bytes((version,))))
    body = struct.pack("<BI", version, crc) + compressed
    return b"PRVN" + struct.pack("<I", len(body)) + body + (pad if len(body) & 1 else b"")


def append(data: bytes, extra: bytes) -> bytes:
    return riff(data[12:] + extra)


def pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    image = F.decode(data)
    return image.mode, image.size, image.tobytes()


def vp8x_of(data: bytes) -> tuple[int, int, int]:
    assert data[12:16] == b"VP8X"
    assert struct.unpack_from("<I", data, 16)[0] == 10
    flags = data[20]
    assert data[21:24] == b"\x00\x00\x00"
    width = int.from_bytes(data[24:27], "little") + 1
    height = int.from_bytes(data[27:30], "little") + 1
    return flags, width, height


ALL_FUNCTIONS: list[Callable[[bytes], object]] = [
    F.prepare,
    F.binding_hash,
    lambda d: F.embed(d, PAYLOAD),
    F.extract,
    F.strip,
    F.describe,
    F.decode,
]


def assert_all_refuse(data: bytes, match: str | None = None) -> None:
    for function in ALL_FUNCTIONS:
        with pytest.raises(ImageFormatError, match=match):
            function(data)


def _exif(description: str) -> bytes:
    exif = Image.Exif()
    exif[0x010E] = description
    return exif.tobytes()


CASES: dict[str, Callable[[], bytes]] = {
    "lossy": lambda: make_webp("RGB"),
    "lossless": lambda: make_webp("RGB", lossless=True),
    "lossless-alpha": lambda: make_webp("RGBA", lossless=True),
    "lossy-alpha": lambda: make_webp("RGBA"),  # extended: VP8X + ALPH + VP8
    "odd-size": lambda: make_webp("RGB", (1, 1), quality=1),
    "animated": make_animation,
    "metadata": lambda: make_webp(
        "RGB",
        exif=_exif("metadata case"),
        icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
        xmp=XMP,
    ),
}


# --- round trip ------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_keeps_pixels(case: str) -> None:
    original = CASES[case]()
    base = F.prepare(original)
    signed = F.embed(base, PAYLOAD)
    assert F.detect(signed) == "webp"
    assert F.extract(signed) == PAYLOAD
    assert F.binding_hash(signed) == F.binding_hash(base)
    assert F.strip(signed) == base
    assert pixels(signed) == pixels(base) == pixels(original)
    assert struct.unpack_from("<I", signed, 4)[0] == len(signed) - 8
    assert chunks(signed)[-1][0] == b"PRVN"  # appended at the end, where unknown chunks go


@pytest.mark.parametrize(
    ("case", "flags"),
    [("lossy", 0x00), ("lossless", 0x00), ("lossless-alpha", 0x10)],
)
def test_simple_file_becomes_vp8x(case: str, flags: int) -> None:
    original = CASES[case]()
    assert original[12:16] in (b"VP8 ", b"VP8L")
    base = F.prepare(original)
    assert vp8x_of(base) == (flags, 13, 9)
    # The bitstream chunk is carried over byte for byte.
    assert base[30:] == original[12:]
    assert struct.unpack_from("<I", base, 4)[0] == len(base) - 8
    assert F.prepare(base) == base  # idempotent
    assert pixels(base) == pixels(original)


def test_simple_file_with_trailing_metadata_gets_flags() -> None:
    original = make_webp("RGB")
    exif = raw_chunk(b"EXIF", _exif("trailing"))
    xmp = raw_chunk(b"XMP ", XMP)
    with_meta = append(original, exif + xmp)
    base = F.prepare(with_meta)
    assert vp8x_of(base)[0] == 0x08 | 0x04
    assert base.endswith(exif + xmp)


def test_extended_file_prepared_unchanged() -> None:
    for case in ("lossy-alpha", "animated", "metadata"):
        original = CASES[case]()
        assert original[12:16] == b"VP8X"
        assert F.prepare(original) == original
        assert F.strip(original) == original


def test_our_chunk_layout() -> None:
    signed = F.embed(make_webp(), PAYLOAD)
    fourcc, offset, length = chunks(signed)[-1]
    raw = signed[offset : offset + length]
    (size,) = struct.unpack_from("<I", raw, 4)
    version, crc = struct.unpack_from("<BI", raw, 8)
    compressed = raw[13 : 8 + size]
    assert (fourcc, version) == (b"PRVN", 1)
    assert crc == zlib.crc32(compressed, zlib.crc32(b"\x01"))
    assert zlib.decompress(compressed) == PAYLOAD
    assert length == 8 + size + (size & 1)
    assert signed[:4] + signed[8:offset] == F.prepare(make_webp())[:4] + F.prepare(make_webp())[8:]


def test_padding_for_both_parities() -> None:
    parities = set()
    for n in range(40):
        payload = random.Random(n).randbytes(n)
        signed = F.embed(make_webp(), payload)
        _, offset, length = chunks(signed)[-1]
        (size,) = struct.unpack_from("<I", signed, offset + 4)
        parities.add(size & 1)
        if size & 1:
            assert signed[-1] == 0 and length == size + 9
        assert len(signed) % 2 == 0
        assert F.extract(signed) == payload
    assert parities == {0, 1}


def test_embed_replaces_existing_payload() -> None:
    first = F.embed(make_webp(), PAYLOAD)
    second = F.embed(first, b"\x00" * 10)
    assert F.extract(second) == b"\x00" * 10
    assert [c[0] for c in chunks(second)].count(b"PRVN") == 1
    assert F.binding_hash(second) == F.binding_hash(first)


def test_our_chunk_found_anywhere_after_vp8x() -> None:
    base = F.prepare(make_webp())
    moved = riff(base[12:30] + our_chunk(zlib.compress(PAYLOAD)) + base[30:])
    assert F.extract(moved) == PAYLOAD
    assert F.strip(moved) == base
    assert F.binding_hash(moved) == F.binding_hash(base)


def test_strip_gives_no_payload() -> None:
    assert F.extract(F.strip(F.embed(make_webp(), PAYLOAD))) is None
    assert F.extract(make_webp()) is None


def test_foreign_metadata_kept() -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010E] = "a description"
    original = make_webp("RGBA", exif=exif.tobytes(), icc_profile=icc, xmp=XMP)
    signed = F.embed(original, PAYLOAD)
    assert F.strip(signed) == original
    image = F.decode(signed)
    assert image.info["icc_profile"] == icc
    assert image.info["xmp"] == XMP
    assert image.getexif()[0x010E] == "a description"
    assert vp8x_of(signed)[0] == vp8x_of(original)[0]


def test_animation_kept() -> None:
    original = make_animation()
    signed = F.embed(original, PAYLOAD)
    with Image.open(io.BytesIO(signed)) as image, Image.open(io.BytesIO(original)) as before:
        assert getattr(image, "n_frames", 1) == getattr(before, "n_frames", 1) == 3
        for frame in range(3):
            image.seek(frame)
            before.seek(frame)
            assert image.tobytes() == before.tobytes()


def test_describe() -> None:
    entries = F.describe(F.embed(make_webp("RGBA", lossless=True), PAYLOAD))
    assert [e["type"] for e in entries] == ["RIFF", "VP8X", "VP8L", "PRVN"]
    vp8x = entries[1]
    assert (vp8x["width"], vp8x["height"]) == (13, 9)
    assert vp8x["flags"] == {"icc": False, "alpha": True, "exif": False, "xmp": False, "animation": False}
    assert entries[-1]["provenance"] is True
    assert entries[-1]["payload_size"] == len(PAYLOAD)


# --- tamper evidence ---------------------------------------------------------------------


def _detected(mutated: bytes, payload: bytes, digest: bytes) -> bool:
    try:
        return F.extract(mutated) != payload or F.binding_hash(mutated) != digest
    except ImageFormatError:
        return True


@pytest.mark.parametrize("case", ["lossy", "lossless-alpha", "odd-size"])
@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_flipped_byte_anywhere_is_detected(case: str, mask: int) -> None:
    signed = F.embed(CASES[case](), PAYLOAD)
    digest = F.binding_hash(signed)
    for pos in range(len(signed)):
        mutated = bytearray(signed)
        mutated[pos] ^= mask
        assert _detected(bytes(mutated), PAYLOAD, digest), pos


# --- hostile input -------------------------------------------------------------------


def test_every_truncation_is_refused() -> None:
    signed = F.embed(make_webp("RGBA", (5, 4), lossless=True), PAYLOAD)
    for cut in range(len(signed)):
        for function in ALL_FUNCTIONS:
            with pytest.raises(ImageFormatError):
                function(signed[:cut])


def test_riff_size_that_lies() -> None:
    signed = F.embed(make_webp(), PAYLOAD)
    for delta in (-2, -1, 1, 2, 1 << 20):
        bad = bytearray(signed)
        struct.pack_into("<I", bad, 4, len(signed) - 8 + delta)
        assert_all_refuse(bytes(bad), "RIFF size")
    assert_all_refuse(signed + b"\x00\x00", "RIFF size")


def test_chunk_size_past_end() -> None:
    base = make_webp()
    bad = bytearray(base)
    struct.pack_into("<I", bad, 16, 2**32 - 1)
    assert_all_refuse(bytes(bad), "past the end")
    assert_all_refuse(append(base, b"EXIF\x00\x00"), "truncated")


def test_two_provenance_chunks() -> None:
    signed = F.embed(make_webp(), PAYLOAD)
    assert_all_refuse(append(signed, our_chunk(zlib.compress(b"{}"))), "more than one provenance")


def test_our_chunk_errors() -> None:
    base = F.prepare(make_webp())
    compressed = zlib.compress(b"xy")  # 10 bytes: with the 5-byte header the size is odd
    assert_all_refuse(append(base, our_chunk(compressed, version=2)), "version")
    assert_all_refuse(append(base, our_chunk(compressed, pad=b"\x01")), "pad byte")
    bad_crc = bytearray(our_chunk(compressed))
    bad_crc[9] ^= 1
    assert_all_refuse(append(base, bytes(bad_crc)), "CRC")
    assert_all_refuse(append(base, b"PRVN\x02\x00\x00\x00\x01\x00"), "too short")


@pytest.mark.parametrize(
    ("compressed", "match"),
    [
        (zlib.compress(PAYLOAD)[:-3], "truncated"),
        (zlib.compress(PAYLOAD) + b"junk", "after the end"),
        (b"not zlib at all", "corrupt"),
    ],
)
def test_bad_zlib(compressed: bytes, match: str) -> None:
    with pytest.raises(ImageFormatError, match=match):
        F.extract(append(F.prepare(make_webp()), our_chunk(compressed)))


def test_structure_errors() -> None:
    lossy = make_webp()
    extended = F.prepare(lossy)
    vp8 = lossy[12:]
    assert_all_refuse(b"RIFF\x04\x00\x00\x00WEBP", "must start with")
    assert_all_refuse(riff(raw_chunk(b"EXIF", b"12") + vp8), "must start with")
    assert_all_refuse(riff(vp8 + vp8), "unexpected")  # two bitstreams in a simple file
    assert_all_refuse(riff(vp8 + raw_chunk(b"ICCP", b"ab")), "unexpected")
    assert_all_refuse(riff(extended[12:30]), "no image data")
    assert_all_refuse(riff(extended[12:30] + extended[12:]), "more than one VP8X")
    assert_all_refuse(riff(extended[12:] + vp8), "more than one still image")
    assert_all_refuse(riff(raw_chunk(b"VP8X", extended[20:30] + b"\x00\x00") + vp8), "size 12")
    bad_keyframe = bytearray(lossy)
    bad_keyframe[23] ^= 0xFF  # the 0x9d 0x01 0x2a start code
    assert_all_refuse(bytes(bad_keyframe), "key frame")
    bad_signature = bytearray(make_webp(lossless=True))
    bad_signature[20] = 0x2E
    assert_all_refuse(bytes(bad_signature), "signature")
    bad_version = bytearray(make_webp(lossless=True))
    bad_version[24] |= 0x20
    assert_all_refuse(bytes(bad_version), "version")


def _with_canvas(data: bytes, width: int, height: int) -> bytes:
    out = bytearray(data)
    out[24:27] = (width - 1).to_bytes(3, "little")
    out[27:30] = (height - 1).to_bytes(3, "little")
    return bytes(out)


def test_canvas_checks() -> None:
    extended = F.prepare(make_webp())
    assert_all_refuse(_with_canvas(extended, 1 << 24, 1 << 24), "larger than the format allows")
    assert_all_refuse(_with_canvas(extended, 14, 9), "differs from the VP8X canvas")
    animated = make_animation()
    assert_all_refuse(_with_canvas(animated, 11, 10), "outside the canvas")


def _lossless_header_only(width: int, height: int) -> bytes:
    """A simple lossless file whose header claims width x height, with almost no data."""
    bits = (width - 1) | (height - 1) << 14
    return riff(raw_chunk(b"VP8L", b"\x2f" + struct.pack("<I", bits) + b"\x00" * 10))


def test_absurd_dimensions_refused_before_decoding() -> None:
    prepared = F.prepare(_lossless_header_only(16384, 16384))
    assert vp8x_of(prepared) == (0, 16384, 16384)
    tracemalloc.start()
    try:
        with pytest.raises(ImageFormatError, match="over the limit"):
            F.decode(prepared)  # 268 M pixels > the default 128 Mi
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20
    # Raising our limit does not lift Pillow's own (global, untouched) one.
    with pytest.raises(ImageFormatError, match="decompression-bomb limit"):
        F.decode(prepared, max_pixels=2**30)


def test_header_within_limit_but_no_data() -> None:
    with pytest.raises(ImageFormatError, match="cannot decode"):
        F.decode(_lossless_header_only(2000, 2000))


def test_max_size() -> None:
    signed = F.embed(make_webp(), PAYLOAD)
    assert F.extract(signed, max_size=len(PAYLOAD)) == PAYLOAD
    with pytest.raises(ImageFormatError, match="past the limit"):
        F.extract(signed, max_size=len(PAYLOAD) - 1)


@cache
def zlib_bomb() -> bytes:
    """A valid zlib stream of 2 GiB of zeros, about 2 MB long, built in a fraction of a second."""
    block, blocks = 1 << 24, 128
    compressor = zlib.compressobj(9)
    first = compressor.compress(bytes(block)) + compressor.flush(zlib.Z_FULL_FLUSH)
    # After a full flush the compressor forgets its history, so every later block
    # of zeros compresses to the same bytes.
    repeat = compressor.compress(bytes(block)) + compressor.flush(zlib.Z_FULL_FLUSH)
    adler = ((block * blocks) % 65521) << 16 | 1  # adler32 of n zero bytes
    return first + repeat * (blocks - 1) + b"\x03\x00" + struct.pack(">I", adler)


def test_inflate_bomb_is_refused_with_bounded_memory() -> None:
    base = F.prepare(make_webp())
    bomb = append(base, our_chunk(zlib_bomb()))
    tracemalloc.start()
    try:
        with pytest.raises(ImageFormatError, match="past the limit"):
            F.extract(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * F.DEFAULT_MAX_SIZE
    assert F.strip(bomb) == base


# --- properties ------------------------------------------------------------------------


@st.composite
def webp_files(draw: st.DrawFn) -> bytes:
    mode = draw(st.sampled_from(["RGB", "RGBA"]))
    size = (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    seed = draw(st.integers(0, 2**32 - 1))
    options: dict[str, object] = {"lossless": draw(st.booleans())}
    options["quality"] = draw(st.integers(0, 100))
    if draw(st.booleans()):
        options["exif"] = _exif(draw(st.text(max_size=20)))
    if draw(st.booleans()):
        options["xmp"] = XMP
    out = io.BytesIO()
    random_image(mode, size, seed, opaque=draw(st.booleans())).save(out, "WEBP", **options)
    return out.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(original=webp_files(), payloads=st.lists(st.binary(max_size=3000), min_size=1, max_size=3))
def test_property_round_trip_and_invariance(original: bytes, payloads: list[bytes]) -> None:
    base = F.prepare(original)
    digest = F.binding_hash(base)
    expected = pixels(original)
    signed = base
    for payload in payloads:
        signed = F.embed(signed, payload)
        assert F.extract(signed) == payload
        assert F.binding_hash(signed) == digest
        assert F.strip(signed) == base
    assert pixels(signed) == expected
