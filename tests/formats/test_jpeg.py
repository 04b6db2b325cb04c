"""JPEG container: APP11 provenance segments, binding hash, hostile input."""

from __future__ import annotations

import hashlib
import io
import itertools
import random
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms

from provenance import _formats as F
from provenance._formats import _jpeg
from provenance.errors import ImageFormatError

PAYLOAD = b'{"journal": "test", "steps": [1, 2, 3]}'
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
# A foreign APP11 segment in the C2PA/JUMBF shape (common identifier b"JP").
JUMBF = b"\xff\xeb" + struct.pack(">H", 2 + 20) + b"JP\x00\x01" + b"\x00" * 4 + b"jumbc2pa" + b"\x00" * 4


def make_jpeg(
    mode: str = "RGB", size: tuple[int, int] = (19, 11), seed: int = 1, **save: object
) -> bytes:
    rng = random.Random(seed)
    nbytes = len(Image.new(mode, size).tobytes())
    image = Image.frombytes(mode, size, rng.randbytes(nbytes))
    out = io.BytesIO()
    image.save(out, "JPEG", **save)
    return out.getvalue()


def segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, offset, total length) of the header segments up to SOS, parsed independently."""
    out, pos = [], 2
    while data[pos + 1] != 0xDA:
        (length,) = struct.unpack_from(">H", data, pos + 2)
        out.append((data[pos + 1], pos, length + 2))
        pos += length + 2
    return out


def our_segment(sequence: int, count: int, piece: bytes, *, version: int = 1) -> bytes:
    head = b"PROVNC\x00" + struct.pack(">BII", version, sequence, count)
    crc = zlib.crc32(piece, zlib.crc32(head))
    return (
        b"\xff\xeb" + struct.pack(">H", 2 + 20 + len(piece)) + head + struct.pack(">I", crc) + piece
    )


def after_soi(data: bytes, extra: bytes) -> bytes:
    return data[:2] + extra + data[2:]


def pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    image = F.decode(data)
    return image.mode, image.size, image.tobytes()


def ours_of(data: bytes) -> list[tuple[int, int]]:
    return [(o["offset"], o["length"]) for o in F.describe(data) if o["provenance"]]  # type: ignore[misc]


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


# --- round trip ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "options"),
    [
        ("L", {}),
        ("RGB", {}),
        ("RGB", {"progressive": True}),
        ("RGB", {"optimize": True, "subsampling": 0}),
        ("RGB", {"restart_marker_blocks": 1}),
        ("CMYK", {}),
    ],
)
def test_round_trip_keeps_pixels(mode: str, options: dict[str, Any]) -> None:
    original = make_jpeg(mode, **options)
    base = F.prepare(original)
    signed = F.embed(base, PAYLOAD)
    assert F.detect(signed) == "jpeg"
    assert F.extract(signed) == PAYLOAD
    assert F.binding_hash(signed) == F.binding_hash(base) == hashlib.sha256(base).digest()
    assert pixels(signed) == pixels(original)
    assert F.strip(signed) == base == original


def test_segment_layout_and_placement() -> None:
    exif = Image.Exif()
    exif[0x010E] = "desc"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    original = make_jpeg(exif=exif.tobytes(), xmp=XMP, icc_profile=icc)
    signed = F.embed(original, PAYLOAD)
    markers = [m for m, _, _ in segments(signed)]
    # SOI, JFIF APP0, Exif APP1, XMP APP1, then ours, then ICC APP2 and the rest.
    assert markers[:5] == [0xE0, 0xE1, 0xE1, 0xEB, 0xE2]
    _, offset, length = segments(signed)[3]
    raw = signed[offset : offset + length]
    assert raw[:2] == b"\xff\xeb"
    assert struct.unpack(">H", raw[2:4])[0] == length - 2
    assert raw[4:11] == b"PROVNC\x00"
    version, sequence, count, crc = struct.unpack(">BIII", raw[11:24])
    assert (version, sequence, count) == (1, 1, 1)
    assert crc == zlib.crc32(raw[24:], zlib.crc32(raw[4:20]))
    assert zlib.decompress(raw[24:]) == PAYLOAD
    assert signed[:offset] + signed[offset + length :] == original


def test_large_payload_spans_segments() -> None:
    payload = random.Random(5).randbytes(300_000)  # incompressible: 5 segments
    signed = F.embed(make_jpeg(), payload)
    ours = [s for s in segments(signed) if s[0] == 0xEB]
    assert len(ours) == 5
    assert all(length <= 0xFFFF + 2 for _, _, length in ours)
    assert ours[0][2] == 2 + 0xFFFF  # full segments are as large as JPEG allows
    for index, (_, offset, _) in enumerate(ours, start=1):
        assert struct.unpack(">II", signed[offset + 12 : offset + 20]) == (index, 5)
    # The run is contiguous.
    assert all(a[1] + a[2] == b[1] for a, b in itertools.pairwise(ours))
    assert F.extract(signed) == payload
    assert F.binding_hash(signed) == F.binding_hash(make_jpeg())
    assert F.strip(signed) == make_jpeg()


def test_binary_payload_and_replacement() -> None:
    first = F.embed(make_jpeg(), bytes(range(256)))
    second = F.embed(first, b"\x00\xff" * 40_000)
    assert F.extract(first) == bytes(range(256))
    assert F.extract(second) == b"\x00\xff" * 40_000
    assert F.strip(second) == make_jpeg()


def test_foreign_metadata_and_jumbf_kept() -> None:
    exif = Image.Exif()
    exif[0x010E] = "a description"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    plain = make_jpeg(exif=exif.tobytes(), xmp=XMP, icc_profile=icc, comment=b"a comment")
    original = plain[:2] + JUMBF + plain[2:]
    assert F.extract(original) is None  # C2PA's APP11 is not ours
    signed = F.embed(original, PAYLOAD)
    assert F.strip(signed) == original  # every foreign segment intact, in order
    assert JUMBF in signed
    image = F.decode(signed)
    assert image.getexif()[0x010E] == "a description"
    assert image.info["xmp"] == XMP
    assert image.info["icc_profile"] == icc
    assert image.info["comment"] == b"a comment"
    # The foreign APP11 counts towards the binding hash.
    assert F.binding_hash(signed) != F.binding_hash(F.embed(plain, PAYLOAD))


def test_our_segments_found_after_other_segments() -> None:
    base = make_jpeg()
    dqt = next(offset for marker, offset, _ in segments(base) if marker == 0xDB)
    moved = base[:dqt] + our_segment(1, 1, zlib.compress(PAYLOAD)) + base[dqt:]
    assert F.extract(moved) == PAYLOAD
    assert F.strip(moved) == base
    assert F.binding_hash(moved) == F.binding_hash(base)
    assert F.extract(F.embed(moved, b"{}")) == b"{}"


def test_our_identifier_after_the_first_scan() -> None:
    base = make_jpeg(progressive=True)
    second_scan = base.index(b"\xff\xda", base.index(b"\xff\xda") + 2)
    late = base[:second_scan] + our_segment(1, 1, zlib.compress(PAYLOAD)) + base[second_scan:]
    # Files we write or bless must not carry one there...
    for function in (F.prepare, F.strip, lambda d: F.embed(d, PAYLOAD), F.describe, F.decode):
        with pytest.raises(ImageFormatError, match="after the first scan"):
            function(late)
    # ...and the header-only readers never take it for ours: it is hashed like any byte.
    assert F.extract(late) is None
    assert F.binding_hash(late) == hashlib.sha256(late).digest()


def test_header_only_readers_still_notice_a_missing_eoi() -> None:
    signed = F.embed(make_jpeg(), PAYLOAD)
    scan = signed.index(b"\xff\xda") + 14  # inside the entropy-coded data
    for cut in (len(signed) - 1, len(signed) - 2, (scan + len(signed)) // 2, scan):
        for function in (F.extract, F.binding_hash):
            with pytest.raises(ImageFormatError, match="EOI"):
                function(signed[:cut])


def test_trailer_after_eoi_kept_and_hashed() -> None:
    base = make_jpeg() + b"trailing data, e.g. a second image"
    signed = F.embed(base, PAYLOAD)
    assert signed.endswith(b"trailing data, e.g. a second image")
    assert F.extract(signed) == PAYLOAD
    assert F.binding_hash(signed) == F.binding_hash(base) != F.binding_hash(make_jpeg())
    assert F.describe(signed)[-1]["type"] == "trailer"


def test_strip_gives_no_payload() -> None:
    assert F.extract(F.strip(F.embed(make_jpeg(), PAYLOAD))) is None


def test_fill_bytes_before_markers() -> None:
    base = make_jpeg()
    padded = base[:2] + b"\xff\xff" + base[2:]
    signed = F.embed(padded, PAYLOAD)
    assert F.extract(signed) == PAYLOAD
    assert F.strip(signed) == padded
    assert pixels(signed) == pixels(base)


def test_describe() -> None:
    payload = random.Random(3).randbytes(100_000)
    entries = F.describe(F.embed(make_jpeg(), payload))
    assert entries[0] == {"type": "SOI", "offset": 0, "length": 2, "provenance": False, "marker": "0xFFD8"}
    ours = [e for e in entries if e["provenance"]]
    assert [(e["sequence"], e["count"]) for e in ours] == [(1, 2), (2, 2)]
    assert all(e["type"] == "APP11" and e["payload_size"] == len(payload) for e in ours)
    assert ours[0]["slice_size"] == _jpeg.MAX_SLICE
    types = [e["type"] for e in entries]
    assert "SOF0" in types and "scan data" in types and types[-1] == "EOI"
    sof = next(e for e in entries if e["type"] == "SOF0")
    assert (sof["width"], sof["height"]) == (19, 11)


# --- tamper evidence ---------------------------------------------------------------------


def _detected(mutated: bytes, payload: bytes, digest: bytes) -> bool:
    try:
        return F.extract(mutated) != payload or F.binding_hash(mutated) != digest
    except ImageFormatError:
        return True


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_flipped_byte_anywhere_is_detected(mask: int) -> None:
    signed = F.embed(make_jpeg("L", (8, 8)), PAYLOAD)
    digest = F.binding_hash(signed)
    for pos in range(len(signed)):
        mutated = bytearray(signed)
        mutated[pos] ^= mask
        assert _detected(bytes(mutated), PAYLOAD, digest), pos


def test_every_byte_of_a_multi_segment_payload_is_covered() -> None:
    payload = random.Random(4).randbytes(70_000)
    signed = F.embed(make_jpeg(), payload)
    digest = F.binding_hash(signed)
    rng = random.Random(0)
    for offset, length in ours_of(signed):
        for pos in [*range(offset, offset + 40), *rng.sample(range(offset, offset + length), 40)]:
            mutated = bytearray(signed)
            mutated[pos] ^= 1 << rng.randrange(8)
            assert _detected(bytes(mutated), payload, digest), pos


# --- hostile input -------------------------------------------------------------------


def test_every_truncation_is_refused() -> None:
    signed = F.embed(make_jpeg("L", (8, 8)), PAYLOAD)
    for cut in range(len(signed)):
        for function in ALL_FUNCTIONS:
            with pytest.raises(ImageFormatError):
                function(signed[:cut])


def _multi(order: list[int], counts: list[int] | None = None) -> bytes:
    compressed = zlib.compress(random.Random(1).randbytes(3000))
    pieces = [compressed[i : i + 1000] for i in range(0, len(compressed), 1000)]
    counts = counts or [len(pieces)] * len(pieces)
    return after_soi(
        make_jpeg(), b"".join(our_segment(i + 1, counts[i], pieces[i]) for i in order)
    )


def test_sequence_errors() -> None:
    assert F.extract(_multi([0, 1, 2, 3])) == random.Random(1).randbytes(3000)
    assert_all_refuse(_multi([0, 2, 1, 3]), "out of order")
    assert_all_refuse(_multi([0, 1, 3]), "missing")
    assert_all_refuse(_multi([0, 1, 1, 2, 3]), "duplicated")
    assert_all_refuse(_multi([0, 1, 2, 3], [4, 4, 5, 4]), "disagree")
    assert_all_refuse(_multi([0, 1, 2, 3], [3, 3, 3, 3]), "sequence number 4 of 3")
    assert_all_refuse(after_soi(make_jpeg(), our_segment(0, 1, b"x")), "sequence number")
    assert_all_refuse(after_soi(make_jpeg(), our_segment(1, 0, b"x")), "sequence number")


def test_our_segment_header_errors() -> None:
    compressed = zlib.compress(PAYLOAD)
    assert_all_refuse(after_soi(make_jpeg(), our_segment(1, 1, compressed, version=2)), "version")
    bad_crc = bytearray(our_segment(1, 1, compressed))
    bad_crc[20] ^= 1
    assert_all_refuse(after_soi(make_jpeg(), bytes(bad_crc)), "CRC")
    short = b"\xff\xeb\x00\x0cPROVNC\x00\x01\x00\x00"
    assert_all_refuse(after_soi(make_jpeg(), short), "too short")


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
        F.extract(after_soi(make_jpeg(), our_segment(1, 1, compressed)))


def test_structure_errors() -> None:
    base = make_jpeg()
    sos = base.index(b"\xff\xda")
    sof = base.index(b"\xff\xc0")
    assert_all_refuse(base[:-2], "EOI")  # no EOI
    assert_all_refuse(base[:sos] + b"\xff\xd9", "no image data")  # no scan
    assert_all_refuse(base[:2] + base[sos:], "before its frame header")  # SOS without SOF
    at = 2 + segments(base)[0][2]  # after the APP0 segment
    assert_all_refuse(base[:at] + b"\x00" + base[at:], "no marker")
    assert_all_refuse(base[:at] + b"\xff\x00" + base[at:], "invalid marker")
    assert_all_refuse(base[:at] + b"\xff\xd8" + base[at:], "invalid marker")
    assert_all_refuse(base[:at] + b"\xff\xfe\x00\x01" + base[at:], "past the end")  # length < 2
    assert_all_refuse(base[:at] + b"\xff\xfe\xff\xff" + base[at:], "past the end")
    zero_width = bytearray(base)
    zero_width[sof + 7 : sof + 9] = b"\x00\x00"
    assert_all_refuse(bytes(zero_width), "dimensions")
    zero_height = bytearray(base)
    zero_height[sof + 5 : sof + 7] = b"\x00\x00"
    assert_all_refuse(bytes(zero_height), "dimensions")


def test_absurd_dimensions_refused_before_decoding() -> None:
    base = bytearray(make_jpeg())
    sof = base.index(b"\xff\xc0")
    base[sof + 5 : sof + 9] = b"\xff\xff\xff\xff"  # 65535 x 65535
    huge = bytes(base)
    assert F.extract(F.embed(huge, PAYLOAD)) == PAYLOAD  # the container is fine...
    tracemalloc.start()
    try:
        with pytest.raises(ImageFormatError, match="over the limit"):
            F.decode(huge)  # ...but its pixels are never allocated
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


def test_a_decoding_time_bomb_of_scans_is_refused_before_decoding() -> None:
    # A progressive JPEG whose last scan repeats: each repeat is one more pass
    # over every block (2,000 of them took 35 s to decode at 4096 x 4096).
    data = make_jpeg(size=(64, 64), progressive=True)
    last = data.rfind(b"\xff\xda")
    scans = data.count(b"\xff\xda")  # 0xFF 0xDA never occurs inside entropy-coded data
    assert data.endswith(b"\xff\xd9") and 1 < scans < _jpeg.MAX_SCANS

    def with_scans(total: int) -> bytes:
        return data[:-2] + data[last:-2] * (total - scans) + data[-2:]

    assert _jpeg.dimensions(with_scans(_jpeg.MAX_SCANS)) == (64, 64)  # unusual, still accepted
    for call in (F.decode, F.prepare, _jpeg.dimensions):
        with pytest.raises(ImageFormatError, match=rf"^JPEG has more than {_jpeg.MAX_SCANS} scans"):
            call(with_scans(_jpeg.MAX_SCANS + 1))


def test_max_size() -> None:
    signed = F.embed(make_jpeg(), PAYLOAD)
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
    bomb_stream = zlib_bomb()
    step = _jpeg.MAX_SLICE
    pieces = [bomb_stream[i : i + step] for i in range(0, len(bomb_stream), step)]
    bomb = after_soi(
        make_jpeg(), b"".join(our_segment(i + 1, len(pieces), p) for i, p in enumerate(pieces))
    )
    tracemalloc.start()
    try:
        with pytest.raises(ImageFormatError, match="past the limit"):
            F.extract(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * F.DEFAULT_MAX_SIZE
    assert F.strip(bomb) == make_jpeg()


# --- properties ------------------------------------------------------------------------


@st.composite
def jpeg_files(draw: st.DrawFn) -> bytes:
    mode = draw(st.sampled_from(["L", "RGB", "CMYK"]))
    size = (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    options: dict[str, object] = {"quality": draw(st.integers(1, 100))}
    if draw(st.booleans()):
        options["progressive"] = True
    if mode == "RGB":
        options["subsampling"] = draw(st.sampled_from([0, 1, 2]))
    if draw(st.booleans()):
        exif = Image.Exif()
        exif[0x010E] = draw(st.text(max_size=30))
        options["exif"] = exif.tobytes()
    return make_jpeg(mode, size, draw(st.integers(0, 2**32 - 1)), **options)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    original=jpeg_files(),
    payloads=st.lists(
        st.binary(max_size=2000) | st.integers(0, 200_000).map(lambda n: random.Random(n).randbytes(n)),
        min_size=1,
        max_size=3,
    ),
)
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
