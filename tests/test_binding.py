"""Binding journals to images (issue 3), at the level of `provenance.binding`.

Container-level properties (byte layouts, CRCs, limits) are tested in
tests/formats/.  Here a journal made with the recording API is attached to
PNG, JPEG and WebP files and the claims an auditor relies on are checked:
the exact file verifies, pixels and foreign metadata survive attaching, any
changed pixel byte or provenance byte is caught, a stripped file says so, a
re-saved file binds by its pixels, and the wrong image binds to nothing.
"""

from __future__ import annotations

import functools
import io
import random
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageDraw, ImageFilter, PngImagePlugin

from provenance import _formats, binding
from provenance.errors import ImageFormatError, UsageError
from provenance.images import digest_loaded
from provenance.journal import BlobRecord, Checkpoint, KeyRecord, parse_line
from provenance.keys import SigningKey
from provenance.recorder import Session
from provenance.store import Store
from provenance.verify import verify_lines

XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="image/x"/>'
    "</rdf:RDF></x:xmpmeta>"
)
A1111 = "a harbour at dusk, oil painting\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, Seed: 1234"


# -- images ----------------------------------------------------------------------------


def photo(size: tuple[int, int] = (64, 48), seed: int = 1, mode: str = "RGB") -> Image.Image:
    """A small photo-like image: smooth gradients, soft shapes and grain, as lossy codecs expect."""
    rng = random.Random(seed)
    width, height = size
    top, bottom = (tuple(rng.randrange(256) for _ in range(3)) for _ in range(2))
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / max(height - 1, 1)
        draw.line([(0, y), (width, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    for _ in range(6):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randrange(1, width + 1), y0 + rng.randrange(1, height + 1)
        draw.ellipse([x0, y0, x1, y1], fill=tuple(rng.randrange(256) for _ in range(3)))
    image = image.filter(ImageFilter.GaussianBlur(max(1, min(size) // 32)))
    noise = Image.frombytes("L", size, rng.randbytes(width * height)).convert("RGB")
    image = Image.blend(image, noise, 0.08)
    if mode == "RGBA":
        alpha = Image.linear_gradient("L").resize(size)
        image.putalpha(alpha)
    elif mode != "RGB":
        image = image.convert(mode)
    return image


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


@functools.cache
def _icc() -> bytes:
    # Cached: the profile carries its creation time, so two calls differ.
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010E] = "a harbour at dusk"  # ImageDescription
    exif[0x0131] = "SomeTool 1.0"  # Software
    return exif


def _png_extended() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111)  # what AUTOMATIC1111 writes
    info.add_itxt("XML:com.adobe.xmp", XMP)
    return encode(photo(seed=5), "PNG", pnginfo=info, icc_profile=_icc(), exif=_exif())


def _palette() -> bytes:
    image = photo(seed=3).quantize(64)
    return encode(image, "PNG", transparency=3)


CASES: dict[str, Callable[[], bytes]] = {
    "png-rgb": lambda: encode(photo(seed=1), "PNG"),
    "png-rgba": lambda: encode(photo(seed=2, mode="RGBA"), "PNG"),
    "png-palette": _palette,
    # Stored (level 0) deflate blocks: a flipped byte is a changed pixel byte, not broken compression.
    "png-stored": lambda: encode(photo(seed=15), "PNG", compress_level=0),
    "png-grey16": lambda: encode(photo(seed=4, mode="L").convert("I;16"), "PNG"),
    "png-extended": _png_extended,
    "jpeg-baseline": lambda: encode(photo(seed=6), "JPEG", quality=90),
    "jpeg-progressive": lambda: encode(photo(seed=7), "JPEG", quality=80, progressive=True),
    "jpeg-grey": lambda: encode(photo(seed=8, mode="L"), "JPEG"),
    "jpeg-extended": lambda: encode(
        photo(seed=9), "JPEG", exif=_exif(), icc_profile=_icc(), xmp=XMP.encode(), comment=b"a comment"
    ),
    "webp-lossy": lambda: encode(photo(seed=10), "WEBP", quality=80),
    "webp-lossless": lambda: encode(photo(seed=11), "WEBP", lossless=True),
    "webp-lossless-alpha": lambda: encode(photo(seed=12, mode="RGBA"), "WEBP", lossless=True),
    "webp-lossy-alpha": lambda: encode(photo(seed=13, mode="RGBA"), "WEBP", quality=70),
    "webp-extended": lambda: encode(photo(seed=14), "WEBP", icc_profile=_icc(), exif=_exif(), xmp=XMP.encode()),
}
EXTENDED = ("png-extended", "jpeg-extended", "webp-extended")
_CACHE: dict[str, bytes] = {}


def original(case: str) -> bytes:
    if case not in _CACHE:
        _CACHE[case] = CASES[case]()
    return _CACHE[case]


def pixels(data: bytes) -> bytes | None:
    """The canonical pixel hash of a file as our decoder sees it; None if it cannot be decoded."""
    try:
        return _formats.pixel_hash(_formats.decode(data))
    except ImageFormatError:
        return None


def metadata(data: bytes) -> dict[str, Any]:
    """The foreign metadata Pillow reads from a file: ICC, EXIF, XMP, PNG text."""
    with Image.open(io.BytesIO(data)) as image:
        found: dict[str, Any] = {k: image.info[k] for k in ("icc_profile", "xmp", "parameters") if k in image.info}
        exif = image.getexif()
        found["exif"] = dict(exif) if len(exif) else None
        if hasattr(image, "text"):  # PNG text chunks other than ours (Pillow lists ours too)
            found["text"] = {k: v for k, v in image.text.items() if k != "provenance:journal"}
    return found


def pixel_ranges(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the compressed pixel data: IDAT data, JPEG scans, WebP bitstreams and alpha."""
    ranges = []
    for chunk in _formats.describe(data):
        kind, offset = chunk["type"], int(chunk["offset"])  # type: ignore[call-overload]
        if kind in ("IDAT", "VP8 ", "VP8L", "ALPH"):
            ranges.append((offset + 8, offset + 8 + int(chunk["data_length"])))  # type: ignore[call-overload]
        elif kind == "scan data":
            ranges.append((offset, offset + int(chunk["length"])))  # type: ignore[call-overload]
    assert ranges
    return ranges


def sample_positions(ranges: list[tuple[int, int]], count: int, seed: int) -> list[int]:
    """`count` positions spread over the ranges: their first and last bytes and random ones between."""
    everything = [i for start, end in ranges for i in range(start, end)]
    ends = [i for start, end in ranges for i in (start, end - 1)]
    rng = random.Random(seed)
    return sorted(set(ends) | set(rng.sample(everything, min(count, len(everything)))))


def fix_png_crcs(data: bytearray) -> None:
    """Recompute every PNG chunk CRC, so a flipped byte is judged by its content, not its CRC."""
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        end = pos + 8 + length
        struct.pack_into(">I", data, end, zlib.crc32(data[pos + 4 : end]))
        pos = end + 4


def fix_stored_adler(data: bytearray) -> None:
    """Recompute the Adler-32 of a PNG whose single IDAT holds stored (uncompressed) deflate blocks.

    zlib checks it, so without this a flipped pixel byte fails to decode instead of changing a pixel.
    """
    pos = 8
    while data[pos + 4 : pos + 8] != b"IDAT":  # walk by hand: describe() would refuse the bad CRC
        pos += 12 + struct.unpack_from(">I", data, pos)[0]
    start, end = pos + 8, pos + 8 + struct.unpack_from(">I", data, pos)[0]
    raw, pos = bytearray(), start + 2  # after the zlib header
    while pos + 5 <= end - 4:
        final = data[pos] & 1
        (length,) = struct.unpack_from("<H", data, pos + 1)
        raw += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if final:
            break
    struct.pack_into(">I", data, end - 4, zlib.adler32(raw))


def insert_foreign_metadata(data: bytes) -> bytes:
    """The same file with one more metadata block, the way a metadata editor adds one."""
    fmt = _formats.detect(data)
    chunks = _formats.describe(data)
    if fmt == "png":
        iend = next(int(c["offset"]) for c in chunks if c["type"] == "IEND")  # type: ignore[call-overload]
        text = b"Comment\x00edited by someone else"
        chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text))
        return data[:iend] + chunk + data[iend:]
    if fmt == "jpeg":
        first = next(int(c["offset"]) for c in chunks if c["type"] in ("DQT", "SOF0", "SOF2"))  # type: ignore[call-overload]
        comment = b"edited by someone else"
        return data[:first] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + data[first:]
    # WebP: an unknown chunk, which readers must skip, before the last one; the RIFF size grows with it.
    last = int(chunks[-1]["offset"])  # type: ignore[call-overload]
    extra = b"NOTE" + struct.pack("<I", 6) + b"edited"
    body = data[:last] + extra + data[last:]
    return body[:4] + struct.pack("<I", len(body) - 8) + body[8:]


def reembed(data: bytes, payload: bytes) -> bytes:
    """`data` carrying `payload` instead of its own provenance data, written the documented way."""
    return _formats.embed(_formats.prepare(data), payload)


# -- journals --------------------------------------------------------------------------


class Recording:
    """A store, a key and a journal recorded through the recording API."""

    def __init__(self, directory: Path, image: Image.Image | None = None) -> None:
        self.store = Store(directory / "store.db")
        self.key = SigningKey.generate()
        self.session = Session(store=self.store, key=self.key, title="harbour")
        self.session.load_model("tiny-sd", sha256="ab" * 32)
        self.session.set_prompt("a harbour at dusk, oil painting", "blurry")
        self.session.set_parameters(seed=18446744073709551557, steps=20, guidance=7.5, sampler="euler_a")
        self.image = image if image is not None else photo(seed=1)
        generation = self.session.record_generation([self.image, photo(seed=99)], seeds=[1, 2])
        self.candidate = generation.candidates[0]
        self.session.select(self.candidate, reason="the light on the water")
        self.session.note("kept the first one")

    @property
    def journal(self) -> str:
        return self.session.journal

    def attach(self, data: bytes, **options: Any) -> binding.AttachResult:
        return binding.attach(data, store=self.store, journal=self.journal, key=self.key, **options)

    def attached(self, case: str, **options: Any) -> tuple[bytes, bytes]:
        """The test image `case` with this journal attached, and the provenance payload it carries."""
        data = self.attach(original(case), **options).data
        payload = _formats.extract(data)
        assert payload is not None
        return data, payload

    def lines(self) -> list[bytes]:
        return list(self.store.export_lines(self.journal))


@pytest.fixture
def rec(tmp_path: Path) -> Iterator[Recording]:
    recording = Recording(tmp_path)
    yield recording
    recording.store.close()


def assert_exact(verdict: binding.ImageVerdict, carrier: str = "embedded") -> None:
    assert verdict.binding == "exact-file", verdict.reason
    assert verdict.status == "untrusted" and verdict.journal.code == "unpinned"  # valid, no key pinned
    assert verdict.ok() and verdict.carrier == carrier


def assert_not_bound(verdict: binding.ImageVerdict) -> None:
    assert verdict.binding == "none" and verdict.status == "invalid" and not verdict.ok()


# -- attach and verify, per format --------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_attach_binds_the_exact_file(rec: Recording, case: str) -> None:
    data = original(case)
    result = rec.attach(data, file_name=f"{case}.img")
    assert result.sidecar is None and result.format == _formats.detect(data)
    verdict = binding.verify_image(result.data)
    assert_exact(verdict)
    assert verdict.export_seq == result.entry.entry.seq
    assert verdict.export is not None and verdict.export["file"] == f"{case}.img"
    # Pinning the signer turns "valid, not pinned" into "valid"; another key makes it untrusted.
    assert binding.verify_image(result.data, trusted=[rec.key.public]).status == "valid"
    other = binding.verify_image(result.data, trusted=[SigningKey.generate().public])
    assert other.status == "untrusted" and not other.ok()
    # The hard binding is the one the export entry signed, and attaching did not change it.
    body = result.entry.entry.body
    assert body["binding"]["file_sha256"] == _formats.binding_hash(result.data).hex()
    assert _formats.binding_hash(result.data) == _formats.binding_hash(_formats.prepare(data))
    assert body["attach"] == "embed" and body["binding"]["excludes"] == "provenance data"


@pytest.mark.parametrize("case", CASES)
def test_attaching_keeps_pixels_and_every_other_byte(rec: Recording, case: str) -> None:
    data = original(case)
    out = rec.attach(data).data
    assert pixels(out) == pixels(data) is not None
    # Independently of our decoder: plain Pillow sees the same image.
    with Image.open(io.BytesIO(out)) as after, Image.open(io.BytesIO(data)) as before:
        assert (after.mode, after.size, after.tobytes()) == (before.mode, before.size, before.tobytes())
    # Removing our data gives back the prepared input byte for byte: nothing else was touched.
    assert _formats.strip(out) == _formats.prepare(data)
    simple_webp = case.startswith("webp") and _formats.describe(data)[1]["type"] != "VP8X"
    # Only a simple WebP is rewritten, and only to gain the VP8X header unknown chunks need.
    assert (_formats.prepare(data) == data) != simple_webp
    assert metadata(out) == metadata(data)


@pytest.mark.parametrize("case", EXTENDED)
def test_foreign_metadata_is_kept(rec: Recording, case: str) -> None:
    data = original(case)
    meta = metadata(rec.attach(data).data)
    assert meta["icc_profile"] == _icc()
    assert meta["exif"][0x010E] == "a harbour at dusk"
    assert "dc:format" in (meta["xmp"].decode() if isinstance(meta["xmp"], bytes) else meta["xmp"])
    if case == "png-extended":
        assert meta["text"]["parameters"] == A1111  # AUTOMATIC1111's parameters tEXt


@pytest.mark.parametrize("case", CASES)
def test_a_changed_pixel_byte_never_binds_the_exact_file(rec: Recording, case: str) -> None:
    data = rec.attach(original(case)).data
    expected = pixels(data)
    positions = sample_positions(pixel_ranges(data), 60, seed=len(case))
    for crc_fixed in (False, True) if case.startswith("png") else (False,):
        for position in positions:
            mutated = bytearray(data)
            mutated[position] ^= 0x10
            if crc_fixed:
                if case == "png-stored":
                    fix_stored_adler(mutated)
                fix_png_crcs(mutated)
                if mutated == data:
                    continue  # the flip hit the Adler-32 or a CRC and the repair undid it
            verdict = binding.verify_image(bytes(mutated))
            assert verdict.binding != "exact-file", position
            if pixels(bytes(mutated)) == expected:
                # The codec ignored the change (e.g. padding bits): same pixels, honestly said so.
                assert verdict.binding == "same-pixels" and verdict.ok(), position
            else:
                assert_not_bound(verdict)


@pytest.mark.parametrize("case", CASES)
def test_a_changed_provenance_byte_is_invalid(rec: Recording, case: str) -> None:
    data = rec.attach(original(case)).data
    ranges = _formats._container(data).excluded_ranges(data)
    for start, end in ranges:
        for position in range(start, end):
            mutated = bytearray(data)
            mutated[position] ^= 0x01
            verdict = binding.verify_image(bytes(mutated))  # a verdict, never an exception
            assert verdict.status == "invalid" and not verdict.ok(), position


@pytest.mark.parametrize("fmt", ["png-rgb", "jpeg-baseline", "webp-lossless"])
def test_a_tampered_journal_with_a_valid_container_is_invalid(rec: Recording, fmt: str) -> None:
    """Changed journal bytes re-embedded with correct CRCs: only the signatures and chain can tell."""
    data, payload = rec.attached(fmt)
    rng = random.Random(3)
    positions = [i for i in rng.sample(range(len(payload)), 250) if payload[i] < 0x80]
    for position in [0, len(payload) - 1, *positions]:
        tampered = bytearray(payload)
        tampered[position] ^= 0x01
        verdict = binding.verify_image(reembed(data, bytes(tampered)))
        assert verdict.status == "invalid" and verdict.binding == "none", position


def test_corrupted_payload_is_a_verdict_not_an_exception(rec: Recording) -> None:
    data = rec.attach(original("png-rgb")).data
    _start, end = _formats._container(data).excluded_ranges(data)[0]
    mutated = bytearray(data)
    mutated[end - 10] ^= 0xFF
    verdict = binding.verify_image(bytes(mutated))
    assert verdict.status == "invalid" and verdict.journal.code == "malformed"
    assert "CRC" in verdict.reason and "\n" not in verdict.reason
    assert verdict.to_json()["ok"] is False


@pytest.mark.parametrize("case", CASES)
def test_stripped_image_has_no_provenance(rec: Recording, case: str) -> None:
    stripped = _formats.strip(rec.attach(original(case)).data)
    verdict = binding.verify_image(stripped)
    assert verdict.status == "invalid" and verdict.journal.code == "no-provenance"
    assert "no provenance data" in verdict.reason
    assert verdict.carrier == "none" and verdict.to_json()["code"] == "no-provenance"
    assert binding.inspect_image(stripped)["provenance"] is None


@pytest.mark.parametrize("case", CASES)
def test_same_pixels_other_metadata(rec: Recording, case: str) -> None:
    out = rec.attach(original(case)).data
    edited = insert_foreign_metadata(out)
    assert pixels(edited) == pixels(out)
    verdict = binding.verify_image(edited)
    assert verdict.binding == "same-pixels" and verdict.ok()
    assert verdict.status == "untrusted"  # the journal's own verdict: valid, not pinned
    assert "same pixels" in verdict.reason


@pytest.mark.parametrize("target", ["PNG", "WEBP"])
def test_animation_whose_first_frame_has_the_pixels_binds_to_nothing(rec: Recording, target: str) -> None:
    """Viewers show the animation, and the pixel hash covers one frame: only the exact file binds."""
    out, payload = rec.attached("png-rgb")
    with Image.open(io.BytesIO(out)) as image:
        image.load()
        other = photo(seed=4321).resize(image.size)
        options: dict[str, Any] = {"lossless": True} if target == "WEBP" else {"default_image": True}
        # PNG: the bound picture as the APNG default image, outside the animation of another picture.
        animated = encode(image, target, save_all=True, append_images=[other], **options)
    with Image.open(io.BytesIO(animated)) as check:
        assert check.n_frames == 2 and pixels(animated) == pixels(out)  # the first frame alone would match
    verdict = binding.verify_image(reembed(animated, payload))
    assert_not_bound(verdict)
    assert "several frames" in verdict.reason and verdict.code == "not-bound"


@pytest.mark.parametrize("target", ["PNG", "WEBP"])
def test_lossless_resave_binds_by_pixels(rec: Recording, target: str) -> None:
    """Re-encoding losslessly, even into another container, keeps the pixel binding."""
    out, payload = rec.attached("png-rgb")
    with Image.open(io.BytesIO(out)) as image:
        options = {"lossless": True} if target == "WEBP" else {"compress_level": 1}
        resaved = encode(image, target, **options)
    verdict = binding.verify_image(reembed(resaved, payload))
    assert verdict.binding == "same-pixels" and verdict.ok()


def test_lossy_resave_binds_to_nothing(rec: Recording) -> None:
    out, payload = rec.attached("jpeg-baseline")
    with Image.open(io.BytesIO(out)) as image:
        resaved = encode(image, "JPEG", quality=50)
    assert_not_bound(binding.verify_image(reembed(resaved, payload)))


@pytest.mark.parametrize("case", ["png-rgb", "jpeg-baseline", "webp-lossy"])
def test_wrong_image_with_a_valid_journal(rec: Recording, case: str) -> None:
    out, payload = rec.attached(case)
    other = encode(photo(seed=1234), _formats.detect(out).upper())
    verdict = binding.verify_image(reembed(other, payload))
    assert_not_bound(verdict)
    assert verdict.journal.valid  # the journal itself is sound; it just binds another image
    assert "not the one" in verdict.reason
    # Machine-readable too: the code says why, not the journal's "unpinned".
    assert verdict.code == "not-bound"
    assert verdict.to_json()["code"] == "not-bound"
    # The same through a sidecar.
    assert_not_bound(binding.verify_image(other, sidecar=payload))


def test_data_added_to_an_embedded_journal_is_refused(rec: Recording) -> None:
    """The binding hash leaves the provenance data out, so nothing unchecked may ride inside it."""
    out, payload = rec.attached("png-rgb")
    extra = BlobRecord("application/octet-stream", b"anything at all").to_line() + b"\n"
    verdict = binding.verify_image(reembed(out, payload + extra))
    assert verdict.status == "invalid" and verdict.code == "malformed"
    assert "carries a blob" in verdict.reason
    # A journal file beside the image may carry optional blobs (thumbnails, masks).
    assert binding.verify_image(_formats.strip(out), sidecar=payload + extra).binding == "exact-file"


def test_journal_without_export_binds_nothing(rec: Recording) -> None:
    data = reembed(original("png-rgb"), b"".join(rec.store.export_lines(rec.journal, blobs=False)))
    verdict = binding.verify_image(data)
    assert_not_bound(verdict)
    assert "no export entry" in verdict.reason
    assert verdict.to_json()["code"] == "not-bound"


def test_a_later_journal_still_binds_an_earlier_export(rec: Recording) -> None:
    first = rec.attach(original("png-rgb")).data
    second = rec.attach(original("jpeg-baseline")).data
    later_payload = _formats.extract(second)
    assert later_payload is not None
    verdict = binding.verify_image(reembed(first, later_payload))
    assert verdict.binding == "exact-file" and verdict.ok()
    assert verdict.export is not None and verdict.export["format"] == "png"
    assert verdict.export_seq is not None and verdict.export_seq < rec.store.info(rec.journal).size - 1


def test_reattaching_replaces_the_earlier_provenance(rec: Recording) -> None:
    once = rec.attach(original("webp-lossy")).data
    twice = rec.attach(once).data
    assert _formats.strip(twice) == _formats.strip(once)
    verdict = binding.verify_image(twice)
    assert_exact(verdict)
    assert verdict.journal.entries == rec.store.info(rec.journal).size


# -- the recording API's own export --------------------------------------------------------


@pytest.mark.parametrize("suffix", ["png", "jpg", "webp"])
def test_session_export(rec: Recording, tmp_path: Path, suffix: str) -> None:
    path = rec.session.export(rec.image, tmp_path / f"final.{suffix}")
    data = path.read_bytes()
    verdict = binding.verify_image(data)
    assert_exact(verdict)
    assert verdict.export is not None
    assert verdict.export["file"] == f"final.{suffix}"
    assert verdict.export["source"] == rec.candidate.digest.pixel_sha256  # which recorded candidate this is
    assert verdict.export["binding"]["pixel_sha256"] == pixels(data).hex()  # type: ignore[union-attr]
    if suffix == "png":  # lossless: the file holds exactly the recorded candidate's pixels
        assert verdict.export["binding"]["pixel_sha256"] == rec.candidate.digest.pixel_sha256


def test_known_digest_gives_the_same_binding(rec: Recording) -> None:
    data = original("png-rgb")
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        digest = digest_loaded(image, None)
    decoded = rec.attach(data).entry.entry.body["binding"]
    known = rec.attach(data, digest=digest).entry.entry.body["binding"]
    assert known == decoded


def test_attach_refuses_what_it_cannot_do(rec: Recording) -> None:
    with pytest.raises(UsageError, match="mode"):
        rec.attach(original("png-rgb"), mode="inline")
    with pytest.raises(UsageError, match="sidecar"):
        rec.attach(encode(photo(), "GIF"))
    with pytest.raises(ImageFormatError):
        rec.attach(original("png-rgb")[:100])


# -- sidecars ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_sidecar_for_other_formats(rec: Recording, fmt: str) -> None:
    data = encode(photo(seed=21), fmt)
    result = rec.attach(data, mode="sidecar", file_name=f"x.{fmt.lower()}")
    assert result.data == data and result.format == "other" and result.sidecar is not None
    assert result.entry.entry.body["binding"]["excludes"] == "nothing"
    verdict = binding.verify_image(data, sidecar=result.sidecar)
    assert_exact(verdict, carrier="sidecar")
    assert binding.verify_image(data).journal.code == "no-provenance"  # without its sidecar
    # A changed byte anywhere in the file: not the exact file, and bound by pixels only if they agree.
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        expected = _formats.pixel_hash(image)
    for position in sample_positions([(len(data) // 2, len(data))], 25, seed=7):
        mutated = bytearray(data)
        mutated[position] ^= 0x10
        verdict = binding.verify_image(bytes(mutated), sidecar=result.sidecar)
        assert verdict.binding != "exact-file"
        try:
            with Image.open(io.BytesIO(bytes(mutated))) as image:
                image.load()
                same = _formats.pixel_hash(image) == expected
        except Exception:
            same = False
        assert verdict.binding == ("same-pixels" if same else "none"), position


def test_png_with_sidecar(rec: Recording) -> None:
    data = original("png-extended")
    result = rec.attach(data, mode="sidecar")
    assert result.sidecar is not None and _formats.extract(result.data) is None
    assert result.data == _formats.prepare(data)
    assert_exact(binding.verify_image(result.data, sidecar=result.sidecar), carrier="sidecar")
    # The sidecar carries the whole journal, blobs included, and verifies on its own.
    assert verify_lines(result.sidecar.splitlines(keepends=True)).valid
    assert_not_bound(binding.verify_image(original("png-rgb"), sidecar=result.sidecar))
    tampered = result.sidecar.replace(b'"type":"entry"', b'"type":"entry" ', 1)
    assert binding.verify_image(result.data, sidecar=tampered).status == "invalid"


# -- compact attachments ---------------------------------------------------------------------


def long_recording(rec: Recording, extra: int = 60) -> None:
    for i in range(extra):
        rec.session.set_parameters(steps=20 + i)


@pytest.mark.parametrize("case", ["png-rgb", "jpeg-extended", "webp-lossy"])
def test_compact_attachment(rec: Recording, case: str) -> None:
    long_recording(rec)
    result = rec.attach(original(case), mode="compact")
    payload = _formats.extract(result.data)
    assert payload is not None
    lines = payload.splitlines()
    assert b'"type":"journal-proof"' in lines[0] and b'"type":"inclusion"' in lines[-1]
    assert len(lines) == 5  # header, key, export entry, checkpoint, proof
    full = rec.lines()
    assert len(payload) < len(b"".join(full)) / 5
    verdict = binding.verify_image(result.data)
    assert_exact(verdict, carrier="compact")
    assert verdict.journal.entries == result.entry.entry.seq + 1
    assert binding.verify_image(result.data, trusted=[rec.key.public]).status == "valid"
    assert binding.inspect_image(result.data)["provenance"]["carrier"] == "compact"
    # The full journal, even continued after the export, is checked against the embedded checkpoint.
    rec.session.note("after the export")
    with_full = binding.verify_image(result.data, journal_lines=rec.lines())
    assert with_full.binding == "exact-file" and with_full.ok() and with_full.carrier == "compact"
    assert with_full.journal.entries == rec.store.info(rec.journal).size
    assert with_full.export_seq == result.entry.entry.seq


def test_compact_proof_tampering_is_invalid(rec: Recording) -> None:
    long_recording(rec, 20)
    data, payload = rec.attached("png-rgb", mode="compact")
    for position in range(len(payload)):
        if payload[position] >= 0x80:
            continue  # keep the payload UTF-8, as PNG text must be
        tampered = bytearray(payload)
        tampered[position] ^= 0x01
        verdict = binding.verify_image(reembed(data, bytes(tampered)))
        assert verdict.status == "invalid" and not verdict.ok(), position
    # Same meaning, other bytes: lines dropped, repeated or swapped, an extra key, JSON respelled.
    header, key, entry, checkpoint, proof = payload.splitlines(keepends=True)
    stranger = KeyRecord(SigningKey.generate().public).to_line() + b"\n"
    variants = {
        "no proof": [header, key, entry, checkpoint],
        "no key": [header, entry, checkpoint, proof],
        "entry twice": [header, key, entry, checkpoint, proof, entry],
        "key twice": [header, key, key, entry, checkpoint, proof],
        "swapped": [header, key, checkpoint, entry, proof],
        "proof first": [header, proof, key, entry, checkpoint],
        "unused key": [header, key, stranger, entry, checkpoint, proof],
        "respelled proof": [header, key, entry, checkpoint, proof.replace(b'","', b'", "', 1)],
        "respelled header": [header.replace(b'{"format"', b'{ "format"'), key, entry, checkpoint, proof],
        "CRLF": [line.replace(b"\n", b"\r\n") for line in (header, key, entry, checkpoint, proof)],
        "no final newline": [header, key, entry, checkpoint, proof.rstrip(b"\n")],
    }
    for name, lines in variants.items():
        verdict = binding.verify_image(reembed(data, b"".join(lines)))
        assert verdict.status == "invalid" and verdict.journal.code == "malformed", name


def test_compact_proof_checkpoint_must_be_signed_by_the_entry_signer(rec: Recording) -> None:
    """Someone else's checkpoint could claim a journal of any size around the export entry."""
    long_recording(rec, 10)
    data, payload = rec.attached("png-rgb", mode="compact")
    header, key, entry, checkpoint_line, proof = payload.splitlines(keepends=True)
    mine = parse_line(checkpoint_line.rstrip(b"\n"))
    assert isinstance(mine, Checkpoint)
    other = SigningKey.generate()
    theirs = Checkpoint(mine.origin, mine.size, mine.root, mine.time).sign(other)
    keys = sorted([key, KeyRecord(other.public).to_line() + b"\n"])
    forged = b"".join([header, *keys, entry, theirs.to_line() + b"\n", proof])
    verdict = binding.verify_image(reembed(data, forged))
    assert verdict.status == "invalid" and verdict.journal.code == "bad-signature"
    assert "not signed by the entry's signer" in verdict.reason
    # Co-signed by the entry's signer as well, it holds (and names both signers).
    both = mine.sign(other)
    cosigned = b"".join([header, *keys, entry, both.to_line() + b"\n", proof])
    verdict = binding.verify_image(reembed(data, cosigned))
    assert verdict.binding == "exact-file" and set(verdict.journal.signers) == {rec.key.keyid, other.keyid}


def test_compact_with_the_wrong_full_journal(rec: Recording, tmp_path: Path) -> None:
    long_recording(rec, 10)
    before = rec.lines()
    data = rec.attach(original("png-rgb"), mode="compact").data
    # Cut short: the full journal ends before the export entry the image proves.
    cut = binding.verify_image(data, journal_lines=before)
    assert cut.status == "invalid"
    (tmp_path / "other").mkdir()
    other = Recording(tmp_path / "other")
    try:
        assert binding.verify_image(data, journal_lines=other.lines()).status == "invalid"
    finally:
        other.store.close()


# -- random images and journals --------------------------------------------------------------

_MODES = {
    "png": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "jpeg": ["L", "RGB", "CMYK"],
    "webp": ["RGB", "RGBA"],
    "webp-lossless": ["RGB", "RGBA"],
}


@st.composite
def random_images(draw: st.DrawFn) -> bytes:
    fmt = draw(st.sampled_from(sorted(_MODES)))
    mode = draw(st.sampled_from(_MODES[fmt]))
    size = (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    if draw(st.booleans()):
        image = photo(size, seed, "RGBA" if "A" in mode else "RGB").convert(mode)
    else:
        image = Image.frombytes(mode, size, rng.randbytes(len(Image.new(mode, size).tobytes())))
    if mode == "P":
        image.putpalette(rng.randbytes(768))
    options: dict[str, Any] = {"lossless": True} if fmt == "webp-lossless" else {}
    if fmt == "jpeg":
        options["quality"] = draw(st.integers(5, 100))
    return encode(image, "WEBP" if fmt.startswith("webp") else fmt.upper(), **options)


_text = st.text(st.characters(codec="utf-8"), max_size=30)
_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**39), 10**39)
    | st.floats(allow_nan=True)
    | _text
    | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)
_kinds = st.from_regex(r"[a-z][a-z0-9_]{0,10}(\.[a-z][a-z0-9_]{0,10}){0,2}", fullmatch=True).filter(
    lambda k: k not in ("journal.create", "seal")
)
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("prompt"), _text, st.none() | _text),
        st.tuples(st.just("params"), st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), _values,
                                                     min_size=1, max_size=3)),
        st.tuples(st.just("note"), _text),
        st.tuples(st.just("append"), _kinds, st.dictionaries(_text, _values, max_size=5),
                  st.sampled_from(["human", "tool", "automation"])),
    ),
    max_size=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=random_images(), steps=_steps, mode=st.sampled_from(["embed", "compact", "sidecar"]))
def test_attach_extract_verify_random(data: bytes, steps: list[tuple[Any, ...]], mode: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        store = Store(Path(directory) / "store.db")
        try:
            key = SigningKey.generate()
            session = Session(store=store, key=key)
            for step in steps:
                if step[0] == "prompt":
                    session.set_prompt(step[1], step[2])
                elif step[0] == "params":
                    session.set_parameters(**step[1])
                elif step[0] == "note":
                    session.note(step[1])
                else:
                    store.append(session.journal, step[1], step[2], key=key, actor=step[3])
            result = binding.attach(data, store=store, journal=session.journal, key=key, mode=mode)
            if mode == "sidecar":
                verdict = binding.verify_image(result.data, sidecar=result.sidecar)
                assert verdict.carrier == "sidecar"
            else:
                carried = binding.journal_lines_from_image(result.data)
                assert carried is not None
                lines, carrier = carried
                assert carrier == ("compact" if mode == "compact" else "embedded")
                if mode == "embed":
                    assert lines == list(store.export_lines(session.journal, blobs=False))
                    assert verify_lines(lines, trusted=[key.public]).status == "valid"
                verdict = binding.verify_image(result.data)
            assert verdict.binding == "exact-file" and verdict.ok(), verdict.reason
            assert binding.verify_image(result.data, sidecar=result.sidecar, trusted=[key.public]).status == "valid"
            assert pixels(result.data) == pixels(data)
        finally:
            store.close()


_MUTATED_SOURCES: dict[str, bytes] = {}


def _mutation_source(case: str) -> tuple[bytes, bytes]:
    """An attached file (cached across examples) and its binding hash, for mutation tests."""
    if case not in _MUTATED_SOURCES:
        with tempfile.TemporaryDirectory() as directory:
            recording = Recording(Path(directory))
            try:
                _MUTATED_SOURCES[case] = recording.attach(original(case)).data
            finally:
                recording.store.close()
    return _MUTATED_SOURCES[case], _formats.binding_hash(_MUTATED_SOURCES[case])


_edits = st.lists(
    st.tuples(st.sampled_from(["flip", "insert", "delete", "truncate"]), st.floats(0, 1), st.integers(0, 255)),
    min_size=1, max_size=4,
)


@settings(max_examples=150, deadline=None)
@given(case=st.sampled_from(["png-rgb", "jpeg-extended", "webp-lossy", "webp-lossless"]), edits=_edits)
def test_mangled_files_give_a_verdict_never_an_exception(case: str, edits: list[tuple[str, float, int]]) -> None:
    data, bound = _mutation_source(case)
    mutated = bytearray(data)
    for action, where, value in edits:
        at = min(int(where * len(mutated)), max(len(mutated) - 1, 0))
        if action == "flip" and mutated:
            mutated[at] ^= value or 1
        elif action == "insert":
            mutated[at:at] = bytes([value])
        elif action == "delete" and mutated:
            del mutated[at]
        else:
            del mutated[at:]
    verdict = binding.verify_image(bytes(mutated))  # whatever the bytes: a verdict
    assert verdict.status in ("valid", "untrusted", "invalid") and "\n" not in verdict.reason
    if verdict.binding == "exact-file":
        # Only possible if every byte the export entry binds is unchanged.
        assert _formats.binding_hash(bytes(mutated)) == bound
    for call in (binding.inspect_image, binding.journal_lines_from_image):
        try:
            call(bytes(mutated))
        except ImageFormatError as exc:
            assert "\n" not in str(exc)
