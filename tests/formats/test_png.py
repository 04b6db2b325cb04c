"""PNG container: iTXt provenance chunk, binding hash, hostile input."""

from __future__ import annotations

import hashlib
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
from PIL import Image, ImageCms, PngImagePlugin

from provenance import _formats as F
from provenance._formats import _png
from provenance.errors import ImageFormatError

PAYLOAD = b'{"journal": "test", "steps": [1, 2, 3]}'
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
A1111 = "a cat, masterpiece\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1"


def make_png(
    mode: str = "RGB", size: tuple[int, int] = (13, 7), seed: int = 1, **save: object
) -> bytes:
    """A PNG of random pixels, written by Pillow."""
    rng = random.Random(seed)
    nbytes = len(Image.new(mode, size).tobytes())
    image = Image.frombytes(mode, size, rng.randbytes(nbytes))
    if mode in ("P", "PA"):
        image.putpalette(rng.randbytes(768))
    out = io.BytesIO()
    image.save(out, "PNG", **save)
    return out.getvalue()


def chunk(ctype: bytes, body: bytes, crc: int | None = None) -> bytes:
    if crc is None:
        crc = zlib.crc32(body, zlib.crc32(ctype))
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc)


def chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset, total length) of each chunk, parsed independently of the library."""
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        out.append((data[pos + 4 : pos + 8], pos, length + 12))
        pos += length + 12
    return out


def our_chunk(compressed: bytes) -> bytes:
    return chunk(b"iTXt", _png.ITXT_PREFIX + compressed)


def insert_before_idat(data: bytes, extra: bytes) -> bytes:
    at = next(off for ctype, off, _ in chunks(data) if ctype == b"IDAT")
    return data[:at] + extra + data[at:]


def pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    image = F.decode(data)
    return image.mode, image.size, image.tobytes()


def metadata_png() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111)  # AUTOMATIC1111's tEXt chunk
    info.add_text("Comment", "zipped " * 50, zip=True)  # zTXt
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())  # XMP as iTXt
    exif = Image.Exif()
    exif[0x010E] = "a description"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return make_png("RGB", pnginfo=info, exif=exif.tobytes(), icc_profile=icc)


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


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"])
def test_round_trip_keeps_pixels(mode: str) -> None:
    original = make_png(mode)
    base = F.prepare(original)
    signed = F.embed(base, PAYLOAD)
    assert F.detect(signed) == "png"
    assert F.extract(signed) == PAYLOAD
    assert F.binding_hash(signed) == F.binding_hash(base)
    assert pixels(signed) == pixels(original)
    assert F.strip(signed) == base == original  # PNG needs no normalisation


def test_chunk_layout_and_placement() -> None:
    original = make_png("P", transparency=3)  # IHDR, PLTE, tRNS, IDAT, IEND
    signed = F.embed(original, PAYLOAD)
    types = [c[0] for c in chunks(signed)]
    assert types == [b"IHDR", b"PLTE", b"tRNS", b"iTXt", b"IDAT", b"IEND"]
    _, offset, length = chunks(signed)[3]
    raw = signed[offset : offset + length]
    body = raw[8:-4]
    assert raw[4:8] == b"iTXt"
    assert struct.unpack(">I", raw[:4])[0] == len(body)
    assert body.startswith(b"provenance:journal\x00\x01\x00\x00\x00")
    assert zlib.decompress(body[23:]) == PAYLOAD
    assert struct.unpack(">I", raw[-4:])[0] == zlib.crc32(raw[4:-4])
    # Nothing else moved: the file is the original with one chunk inserted.
    assert signed[:offset] + signed[offset + length :] == original


def test_binding_hash_is_sha256_of_stripped_file() -> None:
    signed = F.embed(make_png(), PAYLOAD)
    assert F.binding_hash(signed) == hashlib.sha256(F.strip(signed)).digest()
    assert len(F.binding_hash(signed)) == 32


def test_embed_replaces_existing_payload() -> None:
    first = F.embed(make_png(), PAYLOAD)
    second = F.embed(first, b'{"other": true}')
    assert F.extract(second) == b'{"other": true}'
    assert [c[0] for c in chunks(second)].count(b"iTXt") == 1
    assert F.binding_hash(second) == F.binding_hash(first)


def test_our_chunk_is_found_anywhere_before_iend() -> None:
    base = make_png()
    compressed = zlib.compress(PAYLOAD)
    iend = chunks(base)[-1][1]
    moved = base[:iend] + our_chunk(compressed) + base[iend:]
    assert F.extract(moved) == PAYLOAD
    assert F.strip(moved) == base
    assert F.binding_hash(moved) == F.binding_hash(base)


def test_strip_gives_no_payload() -> None:
    signed = F.embed(make_png(), PAYLOAD)
    assert F.extract(F.strip(signed)) is None
    assert F.extract(make_png()) is None


def test_foreign_metadata_kept() -> None:
    original = metadata_png()
    types = [c[0] for c in chunks(original)]
    assert {b"tEXt", b"zTXt", b"iTXt", b"iCCP", b"eXIf"} <= set(types)
    signed = F.embed(original, PAYLOAD)
    # Every foreign chunk is byte-for-byte intact and in order: removing ours gives the original.
    assert F.strip(signed) == original
    assert len(chunks(signed)) == len(types) + 1
    image = F.decode(signed)
    assert image.info["parameters"] == A1111
    assert image.info["Comment"] == "zipped " * 50
    assert image.info["xmp"] == XMP
    assert image.info["icc_profile"] == ImageCms.ImageCmsProfile(
        ImageCms.createProfile("sRGB")
    ).tobytes()
    assert image.getexif()[0x010E] == "a description"
    assert pixels(signed) == pixels(original)


def test_pillow_text_chunks_other_than_ours_are_not_ours() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("provenance:journal", "plain tEXt, not ours")
    info.add_itxt("provenance:journalx", "other keyword")
    original = make_png(pnginfo=info)
    assert F.extract(original) is None
    signed = F.embed(original, PAYLOAD)
    assert F.extract(signed) == PAYLOAD
    assert F.strip(signed) == original


def test_payload_must_be_utf8() -> None:
    with pytest.raises(ImageFormatError, match="UTF-8"):
        F.embed(make_png(), b"\xff\xfe not text")
    bad = insert_before_idat(make_png(), our_chunk(zlib.compress(b"\xff\xfe")))
    with pytest.raises(ImageFormatError, match="UTF-8"):
        F.extract(bad)


def test_describe() -> None:
    signed = F.embed(make_png(), PAYLOAD)
    entries = F.describe(signed)
    assert [e["type"] for e in entries] == ["IHDR", "iTXt", "IDAT", "IEND"]
    assert entries[0] == {
        "type": "IHDR", "offset": 8, "length": 25, "data_length": 13,
        "provenance": False, "width": 13, "height": 7,
    }  # fmt: skip
    ours = entries[1]
    assert ours["provenance"] is True
    assert ours["payload_size"] == len(PAYLOAD)
    assert ours["keyword"] == "provenance:journal"
    assert sum(int(str(e["length"])) for e in entries) + 8 == len(signed)


# --- tamper evidence ---------------------------------------------------------------------


def _detected(mutated: bytes, payload: bytes, digest: bytes) -> bool:
    try:
        return F.extract(mutated) != payload or F.binding_hash(mutated) != digest
    except ImageFormatError:
        return True


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_flipped_byte_anywhere_is_detected(mask: int) -> None:
    signed = F.embed(make_png("RGBA", (6, 5)), PAYLOAD)
    digest = F.binding_hash(signed)
    for pos in range(len(signed)):
        mutated = bytearray(signed)
        mutated[pos] ^= mask
        assert _detected(bytes(mutated), PAYLOAD, digest), pos


def test_flipped_pixel_byte_changes_binding_hash_and_is_refused_by_prepare() -> None:
    base = make_png("RGB", (6, 5))
    _, offset, length = next(c for c in chunks(base) if c[0] == b"IDAT")
    for pos in range(offset + 8, offset + length - 4):
        mutated = bytearray(base)
        mutated[pos] ^= 0x10
        # The fast path skips foreign CRCs but hashes the byte...
        assert F.binding_hash(bytes(mutated)) != F.binding_hash(base)
        # ...and the paths that write files refuse the bad CRC.
        with pytest.raises(ImageFormatError, match="bad CRC"):
            F.prepare(bytes(mutated))


# --- hostile input -------------------------------------------------------------------


def test_every_truncation_is_refused() -> None:
    signed = F.embed(make_png("RGB", (4, 3)), PAYLOAD)
    for cut in range(len(signed)):
        for function in ALL_FUNCTIONS:
            with pytest.raises(ImageFormatError):
                function(signed[:cut])


def test_bad_crc_in_our_chunk_refused_everywhere() -> None:
    bad = insert_before_idat(make_png(), chunk(b"iTXt", _png.ITXT_PREFIX + zlib.compress(PAYLOAD), 0))
    assert_all_refuse(bad, "CRC")


def test_bad_crc_in_critical_chunk_refused_when_writing() -> None:
    base = make_png()
    _, offset, length = chunks(base)[0]  # IHDR
    bad = bytearray(base)
    bad[offset + length - 1] ^= 1
    for function in (F.prepare, F.strip, lambda d: F.embed(d, PAYLOAD), F.describe, F.decode):
        with pytest.raises(ImageFormatError, match="bad CRC"):
            function(bytes(bad))


def test_two_provenance_chunks() -> None:
    signed = F.embed(make_png(), PAYLOAD)
    twice = insert_before_idat(signed, our_chunk(zlib.compress(b"{}")))
    assert_all_refuse(twice, "more than one provenance chunk")


def test_chunk_after_iend() -> None:
    signed = F.embed(make_png(), PAYLOAD)
    assert_all_refuse(signed + chunk(b"tEXt", b"a\x00b"), "after the IEND")
    assert_all_refuse(signed + b"\x00", "after the IEND")


def test_length_past_end() -> None:
    base = make_png()
    _, offset, _ = next(c for c in chunks(base) if c[0] == b"IDAT")
    bad = bytearray(base)
    bad[offset : offset + 4] = struct.pack(">I", 2**31 - 1)
    assert_all_refuse(bytes(bad), "past the end")
    bad[offset : offset + 4] = struct.pack(">I", 2**32 - 1)
    assert_all_refuse(bytes(bad), "invalid length")


@pytest.mark.parametrize(
    ("ihdr", "match"),
    [
        (struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0), "dimensions"),
        (struct.pack(">IIBBBBB", 5, 2**31, 8, 2, 0, 0, 0), "dimensions"),
        (struct.pack(">IIBBBBB", 5, 5, 3, 2, 0, 0, 0), "bit depth"),
        (struct.pack(">IIBBBBB", 5, 5, 8, 2, 1, 0, 0), "compression"),
        (struct.pack(">IIBBBBB", 5, 5, 8, 2, 0, 0, 0) + b"x", "length"),
    ],
)
def test_bad_ihdr(ihdr: bytes, match: str) -> None:
    base = make_png()
    data = base[:8] + chunk(b"IHDR", ihdr) + base[8 + 25 :]
    assert_all_refuse(data, match)


def test_structure_errors() -> None:
    base = make_png()
    items = chunks(base)
    ihdr = base[8:33]
    idat = next(base[o : o + n] for t, o, n in items if t == b"IDAT")
    iend = chunk(b"IEND", b"")
    assert_all_refuse(b"\x89PNG\r\n\x1a\n" + idat + ihdr + iend, "IHDR")
    assert_all_refuse(b"\x89PNG\r\n\x1a\n" + ihdr + iend, "no IDAT")
    assert_all_refuse(b"\x89PNG\r\n\x1a\n" + ihdr + idat + chunk(b"tEXt", b"a\x00b") + idat + iend,
                      "not consecutive")  # fmt: skip
    assert_all_refuse(b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"XXXX", b"") + idat + iend, "critical")
    assert_all_refuse(b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"ab1d", b"") + idat + iend, "type")
    assert_all_refuse(b"\x89PNG\r\n\x1a\n" + ihdr + idat + chunk(b"IEND", b"x"), "IEND")
    plte = chunk(b"PLTE", b"\0" * 3)
    assert_all_refuse(b"\x89PNG\r\n\x1a\n" + ihdr + idat + plte + iend, "PLTE")
    grey = make_png("L")
    assert_all_refuse(grey[:33] + plte + grey[33:], "PLTE")  # not allowed for greyscale
    palette = make_png("P")
    no_plte = b"".join(palette[o : o + n] for t, o, n in chunks(palette) if t != b"PLTE")
    assert_all_refuse(b"\x89PNG\r\n\x1a\n" + no_plte, "PLTE")


def test_our_chunk_in_another_form_is_refused() -> None:
    uncompressed = chunk(b"iTXt", b"provenance:journal\x00\x00\x00\x00\x00" + PAYLOAD)
    assert_all_refuse(insert_before_idat(make_png(), uncompressed), "zlib-compressed")
    with_language = chunk(b"iTXt", b"provenance:journal\x00\x01\x00en\x00\x00" + zlib.compress(PAYLOAD))
    assert_all_refuse(insert_before_idat(make_png(), with_language), "zlib-compressed")


@pytest.mark.parametrize(
    ("compressed", "match"),
    [
        (zlib.compress(PAYLOAD)[:-3], "truncated"),
        (zlib.compress(PAYLOAD) + b"junk", "after the end"),
        (b"not zlib at all", "corrupt"),
        (b"", "truncated"),
    ],
)
def test_bad_zlib_in_our_chunk(compressed: bytes, match: str) -> None:
    bad = insert_before_idat(make_png(), our_chunk(compressed))
    with pytest.raises(ImageFormatError, match=match):
        F.extract(bad)


def test_max_size() -> None:
    signed = F.embed(make_png(), PAYLOAD)
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
    bomb = insert_before_idat(make_png(), our_chunk(zlib_bomb()))
    tracemalloc.start()
    try:
        with pytest.raises(ImageFormatError, match="past the limit"):
            F.extract(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * F.DEFAULT_MAX_SIZE
    with pytest.raises(ImageFormatError, match="past the limit"):
        F.extract(bomb, max_size=1000)
    # The payload never has to be inflated to prepare, hash or strip the file.
    assert F.strip(bomb) == make_png()


# --- properties ------------------------------------------------------------------------


@st.composite
def png_files(draw: st.DrawFn) -> bytes:
    mode = draw(st.sampled_from(["1", "L", "LA", "P", "RGB", "RGBA", "I;16"]))
    size = (draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    options: dict[str, object] = {}
    if draw(st.booleans()):
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", draw(st.text(max_size=40)))
        options["pnginfo"] = info
    if draw(st.booleans()):
        options["compress_level"] = draw(st.integers(0, 9))
    return make_png(mode, size, draw(st.integers(0, 2**32 - 1)), **options)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(original=png_files(), texts=st.lists(st.text(max_size=300), min_size=1, max_size=3))
def test_property_round_trip_and_invariance(original: bytes, texts: list[str]) -> None:
    base = F.prepare(original)
    digest = F.binding_hash(base)
    expected = pixels(original)
    signed = base
    for text in texts:
        payload = text.encode("utf-8")
        signed = F.embed(signed, payload)
        assert F.extract(signed) == payload
        assert F.binding_hash(signed) == digest
        assert F.strip(signed) == base
    assert pixels(signed) == expected
