"""The image commands of the CLI: attach, verify IMAGE, inspect, extract.

In-process through main() for the flows, in a real process for hostile files
(bounded time and address space), and through outside tools (pngcheck,
exiftool, djpeg, dwebp) for what we write.  Exit codes: 0 valid, 1 the
evidence does not hold, 2 usage or unreadable input; never a traceback.
"""

from __future__ import annotations

import io
import json
import os
import random
import resource
import shutil
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageCms, ImageDraw, ImageFilter, PngImagePlugin

from provenance import _formats, binding
from provenance._cli import main
from provenance._home import HOME_ENV
from provenance.keys import KeyStore, SigningKey
from provenance.recorder import Session
from provenance.store import Store
from provenance.verify import verify_lines

SRC = Path(__file__).resolve().parent.parent / "src"
A1111 = "a lighthouse\nNegative prompt: fog\nSteps: 20, Sampler: Euler a, Seed: 7"
XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="image/x"/>'
    "</rdf:RDF></x:xmpmeta>"
)


# -- images ---------------------------------------------------------------------------------


def photo(size: tuple[int, int] = (96, 64), seed: int = 1, alpha: bool = False) -> Image.Image:
    """A small photo-like image: a gradient, soft shapes and grain."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        draw.ellipse([x0, y0, x0 + rng.randrange(8, size[0]), y0 + rng.randrange(8, size[1])],
                     fill=tuple(rng.randrange(256) for _ in range(3)))
    image = image.filter(ImageFilter.GaussianBlur(3))
    image = Image.blend(image, Image.frombytes("L", size, rng.randbytes(size[0] * size[1])).convert("RGB"), 0.06)
    if alpha:
        image.putalpha(Image.linear_gradient("L").resize(size))
    return image


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010E] = "a lighthouse at night"
    return exif


def inputs() -> dict[str, bytes]:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111)
    info.add_itxt("XML:com.adobe.xmp", XMP)
    image = photo()
    return {
        "plain.png": encode(image, "PNG"),
        "plain.jpg": encode(image, "JPEG", quality=90),
        "plain.webp": encode(image, "WEBP", quality=80),
        "alpha.webp": encode(photo(alpha=True), "WEBP", lossless=True),
        "extended.png": encode(image, "PNG", pnginfo=info, icc_profile=_ICC, exif=_exif()),
        "extended.jpg": encode(image, "JPEG", exif=_exif(), icc_profile=_ICC, xmp=XMP.encode()),
        "extended.webp": encode(image, "WEBP", exif=_exif(), icc_profile=_ICC, xmp=XMP.encode()),
        "plain.gif": encode(image, "GIF"),
        "plain.bmp": encode(image, "BMP"),
    }


# -- running the CLI --------------------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str


class CLI:
    """main() in-process, with $PROVENANCE_HOME in a temporary directory."""

    def __init__(self, home: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.home = home
        self.capsys = capsys
        monkeypatch.setenv(HOME_ENV, str(home))

    def __call__(self, *args: str | Path) -> Result:
        self.capsys.readouterr()
        code = main([str(a) for a in args])
        captured = self.capsys.readouterr()
        result = Result(code, captured.out.decode("utf-8"), captured.err.decode("utf-8"))
        assert "Traceback" not in result.out + result.err
        return result

    def ok(self, *args: str | Path) -> str:
        result = self(*args)
        assert result.code == 0, (result.out, result.err)
        return result.out

    def fails(self, code: int, *args: str | Path) -> str:
        """Run a command expected to fail with `code`; returns its one line of output."""
        result = self(*args)
        assert result.code == code, (result.out, result.err)
        text = result.out + result.err
        assert text.count("\n") == 1 and text.endswith("\n"), text
        return text[:-1]


@pytest.fixture
def cli(tmp_path: Path, capsysbinary: Any, monkeypatch: pytest.MonkeyPatch) -> CLI:
    return CLI(tmp_path / "home", capsysbinary, monkeypatch)


@dataclass
class Recorded:
    journal: str
    files: dict[str, Path]
    pem: Path
    key: SigningKey


def record(cli: CLI, image: Image.Image, *, title: str = "lighthouse", extra: int = 0) -> str:
    """A journal recorded with the recording API, in the CLI's store."""
    with Store() as store:
        session = Session(store=store, key=KeyStore().load(), title=title)
        session.set_prompt("a lighthouse at night", "fog")
        session.set_parameters(seed=7, steps=20, guidance=7.5)
        generation = session.record_generation([image, photo(seed=50)], seeds=[7, 8])
        session.select(generation.candidates[0])
        for i in range(extra):
            session.note(f"note {i}")
        return session.journal


@pytest.fixture
def recorded(cli: CLI, tmp_path: Path) -> Recorded:
    cli.ok("keygen")
    journal = record(cli, photo())
    folder = tmp_path / "in"
    folder.mkdir()
    files = {}
    for name, data in inputs().items():
        files[name] = folder / name
        files[name].write_bytes(data)
    pem = tmp_path / "me.pem"
    pem.write_text(cli.ok("key", "show").split("\n", 1)[1])
    return Recorded(journal, files, pem, KeyStore().load())


def attach(cli: CLI, rec: Recorded, name: str, *options: str | Path) -> Path:
    out = cli.ok("attach", rec.files[name], "--journal", rec.journal[:10], *options)
    written = Path(out.splitlines()[0].split()[1])
    assert written.is_file()
    return written


# -- attach and verify ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["plain.png", "plain.jpg", "plain.webp", "alpha.webp", "extended.png",
                                  "extended.jpg", "extended.webp"])
def test_attach_then_verify(cli: CLI, recorded: Recorded, tmp_path: Path, name: str) -> None:
    out = cli.ok("attach", recorded.files[name], "--journal", recorded.journal[:10])
    source = recorded.files[name]
    default = source.with_name(f"{source.stem}.provenance{source.suffix}")
    fmt = {"jpg": "jpeg"}.get(source.suffix[1:], source.suffix[1:])
    lines = out.splitlines()
    assert lines[0] == f"wrote {default} ({fmt}, journal embedded)"
    assert lines[1].startswith("export entry ")
    seq = int(lines[1].split()[2].rstrip(":"))

    text = cli.ok("verify", default)
    assert text.startswith(f"VALID (signer not pinned; use --trust KEY.pem): journal {recorded.journal}, ")
    assert f"bound to export entry {seq}: this exact file (hard binding); journal embedded" in text
    assert cli.ok("verify", default, "--trust", recorded.pem).startswith(f"VALID: journal {recorded.journal}")
    verdict = json.loads(cli.ok("verify", default, "--json"))
    assert verdict["status"] == "untrusted" and verdict["code"] == "unpinned" and verdict["ok"] is True
    assert (verdict["binding"], verdict["carrier"], verdict["export_entry"]) == ("exact-file", "embedded", seq)
    # Another auditor's pinned key: valid signatures, untrusted signer, exit 1.
    stranger = tmp_path / "stranger.pem"
    stranger.write_text(SigningKey.generate().public.to_pem())
    result = cli("verify", default, "--trust", stranger)
    assert result.code == 1 and result.out.startswith("UNTRUSTED:")

    # -o names the output; the pixels are those of the input.
    named = tmp_path / f"named{source.suffix}"
    cli.ok("attach", source, "--journal", recorded.journal, "-o", named)
    assert _formats.pixel_hash(_formats.decode(named.read_bytes())) == _formats.pixel_hash(
        _formats.decode(source.read_bytes())
    )
    assert "this exact file" in cli.ok("verify", named)


def test_verify_says_why_in_one_line(cli: CLI, recorded: Recorded, tmp_path: Path) -> None:
    signed = attach(cli, recorded, "plain.png")
    data = signed.read_bytes()
    cases = tmp_path / "cases"
    cases.mkdir()

    stripped = cases / "stripped.png"
    stripped.write_bytes(_formats.strip(data))
    assert cli.fails(1, "verify", stripped) == (
        "NOT VALID: no provenance data in this image (stripped, or never attached)"
    )
    assert json.loads(cli("verify", stripped, "--json").out)["code"] == "no-provenance"
    assert cli.fails(1, "verify", recorded.files["plain.png"]).startswith("NOT VALID: no provenance data")

    payload = _formats.extract(data)
    assert payload is not None
    wrong = cases / "wrong.png"
    wrong.write_bytes(_formats.embed(encode(photo(seed=77), "PNG"), payload))
    assert cli.fails(1, "verify", wrong).startswith("NOT VALID: this image is not the one")

    start, end = _formats._container(data).excluded_ranges(data)[0]
    broken = bytearray(data)
    broken[(start + end) // 2] ^= 0x01
    corrupted = cases / "corrupted.png"
    corrupted.write_bytes(bytes(broken))
    assert cli.fails(1, "verify", corrupted) == "NOT VALID: PNG provenance chunk has a bad CRC"

    idat = next(c for c in _formats.describe(data) if c["type"] == "IDAT")
    changed = bytearray(data)
    changed[int(idat["offset"]) + 20] ^= 0x01  # type: ignore[call-overload]
    pixel = cases / "pixel.png"
    pixel.write_bytes(bytes(changed))
    assert cli.fails(1, "verify", pixel).startswith("NOT VALID: this image is not the one")

    # Usage problems are exit 2, one line on stderr.
    error = cli.fails(2, "verify", signed, "--trust", tmp_path / "missing.pem")
    assert error.startswith("provenance: error: cannot read")
    assert cli.fails(2, "verify", signed, "--bogus").startswith("provenance: error: unrecognized arguments")


def test_same_pixels_other_metadata(cli: CLI, recorded: Recorded, tmp_path: Path) -> None:
    signed = attach(cli, recorded, "extended.png")
    data = signed.read_bytes()
    iend = data.rindex(b"IEND") - 4
    text = b"Comment\x00re-tagged"
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text))
    edited = tmp_path / "edited.png"
    edited.write_bytes(data[:iend] + chunk + data[iend:])
    out = cli.ok("verify", edited)
    assert "the same pixels, not the same file (metadata changed or re-saved; colour profile" in out


# -- inspect and extract ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "ours"), [("extended.png", "iTXt"), ("extended.jpg", "APP11"),
                                            ("extended.webp", "PRVN")])
def test_inspect(cli: CLI, recorded: Recorded, name: str, ours: str) -> None:
    signed = attach(cli, recorded, name)
    out = cli.ok("inspect", signed)
    lines = out.splitlines()
    assert lines[0].endswith(": PNG" if name.endswith("png") else ": JPEG" if name.endswith("jpg") else ": WEBP")
    marked = [line for line in lines if line.endswith("<- provenance")]
    assert marked and all(line.split()[0] == ours for line in marked)
    with Store() as store:
        size = store.info(recorded.journal).size
    assert lines[-1].startswith(f"provenance: journal {recorded.journal} (embedded, {size} entries, ")
    report = json.loads(cli.ok("inspect", signed, "--json"))
    assert report["provenance"]["entries"] == size and report["provenance"]["carrier"] == "embedded"
    assert sum(1 for c in report["chunks"] if c["provenance"]) == len(marked)
    # Foreign metadata is listed next to ours.
    kinds = {c["type"] for c in report["chunks"]}
    assert kinds & {"iCCP", "APP2", "ICCP"} and kinds & {"eXIf", "APP1", "EXIF"}
    assert cli.ok("inspect", recorded.files[name]).splitlines()[-1] == "no provenance data"


def test_extract_writes_a_journal_that_verifies(cli: CLI, recorded: Recorded, tmp_path: Path) -> None:
    for name in ("plain.png", "plain.jpg", "plain.webp"):
        signed = attach(cli, recorded, name)
        target = tmp_path / f"{name}.jsonl"
        assert cli.ok("extract", signed, "-o", target) == f"wrote {target}\n"
        assert cli.ok("extract", signed, "-o", "-") == target.read_text()  # "-": standard output
        with Store() as store:
            assert target.read_bytes() == b"".join(store.export_lines(recorded.journal, blobs=False))
        out = cli.ok("verify", target)
        assert out.startswith(f"VALID (signer not pinned; use --trust KEY.pem): journal {recorded.journal}")
        assert cli.ok("verify", target, "--trust", recorded.pem).startswith("VALID: journal")
    missing = tmp_path / "none.jsonl"
    assert cli.fails(1, "extract", recorded.files["plain.png"], "-o", missing) == "no provenance data"
    assert not missing.exists()


# -- sidecars and compact attachments ----------------------------------------------------------------


def test_png_with_sidecar(cli: CLI, recorded: Recorded, tmp_path: Path) -> None:
    out_path = tmp_path / "side.png"
    out = cli.ok("attach", recorded.files["extended.png"], "--journal", recorded.journal, "--sidecar",
                 "-o", out_path)
    sidecar = binding.sidecar_path(out_path)
    assert out.splitlines()[:2] == [f"wrote {out_path}", f"wrote {sidecar}"]
    assert _formats.extract(out_path.read_bytes()) is None
    assert "this exact file (hard binding); journal sidecar" in cli.ok("verify", out_path)
    assert cli.ok("inspect", out_path).splitlines()[-1] == (
        f"no embedded provenance data; a sidecar journal is beside it: {sidecar}; "
        f"run `provenance verify {out_path}`"
    )
    assert json.loads(cli.ok("inspect", out_path, "--json"))["sidecar"] == str(sidecar)
    extracted = tmp_path / "side.jsonl"
    cli.ok("extract", out_path, "-o", extracted)
    assert extracted.read_bytes() == sidecar.read_bytes()
    sidecar.unlink()
    assert cli.fails(1, "verify", out_path).startswith("NOT VALID: no provenance data")


@pytest.mark.parametrize("name", ["plain.gif", "plain.bmp"])
def test_other_formats_get_a_sidecar(cli: CLI, recorded: Recorded, tmp_path: Path, name: str) -> None:
    out = cli.ok("attach", recorded.files[name], "--journal", recorded.journal)
    written = Path(out.splitlines()[0].split()[1])
    assert written.read_bytes() == recorded.files[name].read_bytes()  # the image is left as it is
    assert out.splitlines()[1] == f"wrote {binding.sidecar_path(written)}"
    assert "this exact file (hard binding); journal sidecar" in cli.ok("verify", written)
    lines = cli.ok("inspect", written).splitlines()
    assert lines[0] == f"{written}: not PNG, JPEG or WebP"
    assert lines[-1].startswith("no embedded provenance data; a sidecar journal is beside it: ")
    binding.sidecar_path(written).rename(tmp_path / "moved.jsonl")
    assert cli.ok("inspect", written).splitlines()[-1] == "no provenance data"
    (tmp_path / "moved.jsonl").rename(binding.sidecar_path(written))
    extracted = tmp_path / "x.jsonl"
    cli.ok("extract", written, "-o", extracted)
    assert verify_lines(extracted.read_bytes().splitlines(keepends=True)).valid
    error = cli.fails(2, "attach", recorded.files[name], "--journal", recorded.journal, "--compact")
    assert error.startswith("provenance: error:") and "sidecar" in error


def test_compact(cli: CLI, recorded: Recorded, tmp_path: Path) -> None:
    with Store() as store:
        session = Session(store=store, key=recorded.key, journal=recorded.journal)
        for i in range(80):
            session.set_parameters(steps=30 + i)
    signed = attach(cli, recorded, "plain.jpg", "--compact")
    out = cli.ok("verify", signed)
    assert "this exact file (hard binding); journal compact" in out
    # It says what was checked: one entry and the signed size, not the whole journal.
    assert "is included in journal" in out and "(compact attachment)" in out
    assert "check the other entries with --journal FILE" in out and "entry times" not in out
    assert json.loads(cli.ok("verify", signed, "--json"))["journal_checked"] is False
    # A key pinned that is not the signer's: untrusted, and said so (not "VALID").
    stranger = tmp_path / "stranger.pem"
    stranger.write_text(SigningKey.generate().public.to_pem())
    untrusted = cli("verify", signed, "--trust", stranger)
    assert untrusted.code == 1 and untrusted.out.startswith("UNTRUSTED: ") and "VALID" not in untrusted.out
    # What the auditor pins is checked on this path too.
    garbage = tmp_path / "root.pem"
    garbage.write_bytes(b"not a certificate")
    assert "cannot be parsed" in cli.fails(2, "verify", signed, "--tsa-root", garbage)
    assert "cannot be parsed" in cli.fails(2, "verify", recorded.files["plain.png"], "--tsa-root", garbage)
    assert "(compact, 1 entries" in cli.ok("inspect", signed)
    full = tmp_path / "full.jsonl"
    cli.ok("export", recorded.journal, "-o", full)
    with_full = cli.ok("verify", signed, "--journal", full)
    size = len(full.read_bytes().splitlines())
    assert "journal compact" in with_full and f"journal {recorded.journal}, " in with_full
    assert "--journal FILE" not in with_full
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")  # not "no journal given": the compact proof alone must not answer
    assert "the journal given is empty" in cli.fails(1, "verify", signed, "--journal", empty)
    assert json.loads(cli.ok("verify", signed, "--journal", full, "--json"))["journal_checked"] is True
    assert size > 80
    # A full journal that is not this one, and a tampered proof.
    other = record(cli, photo(seed=3), title="other")
    other_file = tmp_path / "other.jsonl"
    cli.ok("export", other, "-o", other_file)
    assert cli.fails(1, "verify", signed, "--journal", other_file).startswith("NOT VALID:")
    payload = _formats.extract(signed.read_bytes())
    assert payload is not None
    tampered = tmp_path / "tampered.jpg"
    tampered.write_bytes(_formats.embed(signed.read_bytes(), payload.replace(b'"seq":', b'"seq":1', 1)))
    assert cli.fails(1, "verify", tampered).startswith("NOT VALID: ")


def test_attach_errors_are_one_line(cli: CLI, recorded: Recorded, tmp_path: Path) -> None:
    image = recorded.files["plain.png"]
    assert cli.fails(2, "attach", image, "--journal", "ffff").startswith("provenance: error: no journal")
    assert cli.fails(2, "attach", tmp_path / "nope.png", "--journal", recorded.journal).startswith(
        "provenance: error: cannot read"
    )
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    assert cli.fails(2, "attach", text, "--journal", recorded.journal).startswith("provenance: error: cannot decode")
    assert cli.fails(2, "attach", image, "--journal", recorded.journal, "--sidecar", "--compact").startswith(
        "provenance: error:"
    )
    assert cli.fails(2, "inspect", tmp_path / "nope.png").startswith("provenance: error: cannot read")
    assert cli.fails(2, "extract", tmp_path / "nope.png", "-o", tmp_path / "x").startswith("provenance: error:")


# -- outside tools ------------------------------------------------------------------------------------


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(a) for a in args], capture_output=True, timeout=120, check=False)


@pytest.mark.slow
def test_pngcheck_accepts_attached_pngs(cli: CLI, recorded: Recorded) -> None:
    pngcheck = need("pngcheck")
    for name in ("plain.png", "extended.png"):
        signed = attach(cli, recorded, name)
        result = run(pngcheck, "-v", signed)
        assert result.returncode == 0, result.stdout
        assert b"iTXt" in result.stdout and b"No errors detected" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", ["extended.png", "extended.jpg", "extended.webp"])
def test_exiftool_lists_ours_and_theirs(cli: CLI, recorded: Recorded, name: str) -> None:
    exiftool = need("exiftool")
    signed = attach(cli, recorded, name)
    listing = run(exiftool, "-a", "-u", "-G1", "-s", signed).stdout.decode(errors="replace")
    # Theirs: still there after attaching.
    assert "a lighthouse at night" in listing  # EXIF ImageDescription
    assert "ProfileDescription" in listing  # ICC
    assert "image/x" in listing  # XMP dc:format
    # Ours: named by exiftool in each format.
    if name.endswith("png"):
        assert "Provenancejournal" in listing and recorded.journal in listing
        raw = run(exiftool, "-b", "-Provenancejournal", signed).stdout
        assert verify_lines(raw.splitlines(keepends=True)).valid
    elif name.endswith("jpg"):
        assert b"PROVNC" in run(exiftool, "-v3", signed).stdout
    else:
        assert "PRVN" in listing


@pytest.mark.slow
def test_exiftool_edit_keeps_the_pixel_binding(cli: CLI, recorded: Recorded) -> None:
    """A real metadata editor rewrites the file around our data: same pixels, not the same file."""
    exiftool = need("exiftool")
    for name in ("extended.png", "extended.jpg", "extended.webp"):
        signed = attach(cli, recorded, name)
        result = run(exiftool, "-q", "-overwrite_original", "-Comment=re-tagged", "-XMP-dc:Title=t", signed)
        assert result.returncode == 0, result.stderr
        out = cli.ok("verify", signed)
        assert "the same pixels, not the same file" in out, name


def _decoded_by(tool: list[str], path: Path, tmp_path: Path) -> bytes:
    target = tmp_path / f"{path.name}.decoded"
    result = run(*tool, path, "-o", target) if "dwebp" in tool[0] else run(*tool, "-outfile", target, path)
    assert result.returncode == 0, result.stderr
    return target.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "tool"), [("plain.jpg", "djpeg"), ("extended.jpg", "djpeg"),
                                            ("plain.webp", "dwebp"), ("alpha.webp", "dwebp"),
                                            ("extended.webp", "dwebp")])
def test_decoders_see_the_same_pixels(cli: CLI, recorded: Recorded, tmp_path: Path, name: str, tool: str) -> None:
    command = [need(tool), "-pam"] if tool == "dwebp" else [need(tool), "-ppm"]
    signed = attach(cli, recorded, name)
    assert _decoded_by(command, signed, tmp_path) == _decoded_by(command, recorded.files[name], tmp_path)


# -- hostile files in a real process --------------------------------------------------------------------

_LIMIT = 1 << 30  # address space of the child: a 2 GB inflate or a 30 GB raster would not fit


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_LIMIT, _LIMIT))


def zlib_bomb(total: int = 2 << 30, piece: int = 1 << 20) -> bytes:
    """A valid zlib stream of `total` zero bytes, about 2 MB: one flushed block of `piece` zeros repeated."""
    zeros = bytes(piece)
    compressor = zlib.compressobj(9)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert first[2:] == block  # a full flush resets the window, so every block is alike
    final_block = compressor.flush()[:-4]
    adler = ((total % 65521) << 16) | 1  # Adler-32 of n zero bytes: a = 1, b = n
    return first[:2] + block * (total // piece) + final_block + adler.to_bytes(4, "big")


def png_chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def png_with_ours(prepared: bytes, compressed: bytes) -> bytes:
    """Our iTXt chunk, built as docs/containers.md describes it, before the first IDAT."""
    at = prepared.index(b"IDAT") - 4
    chunk = png_chunk(b"iTXt", b"provenance:journal\x00\x01\x00\x00\x00" + compressed)
    return prepared[:at] + chunk + prepared[at:]


def app11_segments(compressed: bytes, slice_size: int = 65513) -> list[bytes]:
    slices = [compressed[i : i + slice_size] for i in range(0, len(compressed), slice_size)]
    segments = []
    for sequence, piece in enumerate(slices, start=1):
        head = b"PROVNC\x00" + struct.pack(">BII", 1, sequence, len(slices))
        body = head + struct.pack(">I", zlib.crc32(head + piece)) + piece
        segments.append(b"\xff\xeb" + struct.pack(">H", len(body) + 2) + body)
    return segments


def jpeg_with_segments(prepared: bytes, segments: list[bytes]) -> bytes:
    return prepared[:2] + b"".join(segments) + prepared[2:]


def webp_with_chunks(prepared: bytes, *chunks: bytes) -> bytes:
    body = prepared[12:] + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def prvn(compressed: bytes) -> bytes:
    data = b"\x01" + struct.pack("<I", zlib.crc32(compressed, zlib.crc32(b"\x01"))) + compressed
    return b"PRVN" + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) & 1 else b"")


@dataclass
class Hostile:
    data: bytes
    suffix: str
    # Expected exit codes: verify gives a verdict (1), inspect and extract refuse malformed input (2).
    verify: int = 1
    inspect: int = 2
    extract: int = 2


def hostile_files(tmp: Path) -> dict[str, Hostile]:
    store = Store(tmp / "store.db")
    key = SigningKey.generate()
    session = Session(store=store, key=key)
    # Random bytes in a note make the journal incompressible enough to span several APP11 segments.
    session.note(random.Random(5).randbytes(150_000).hex())
    image = photo((64, 48), seed=9)

    def attached(fmt: str) -> bytes:
        return binding.attach(encode(image, fmt), store=store, journal=session.journal, key=key).data

    png, jpeg, webp = attached("PNG"), attached("JPEG"), attached("WEBP")
    payload = _formats.extract(png)
    assert payload is not None
    bomb = zlib_bomb()
    png_base, jpeg_base, webp_base = (_formats.strip(x) for x in (png, jpeg, webp))
    webp_base = _formats.prepare(webp_base)
    store.close()

    ours_png = next(c for c in _formats.describe(png) if c["provenance"])
    png_ours_at = int(ours_png["offset"])  # type: ignore[call-overload]
    segments = app11_segments(zlib.compress(payload, 9))
    assert len(segments) >= 3

    def set_png_ihdr(data: bytes, width: int, height: int) -> bytes:
        ihdr = struct.pack(">II", width, height) + data[24:29]
        return data[:8] + png_chunk(b"IHDR", ihdr) + data[33:]

    def riff_size(data: bytes, size: int) -> bytes:
        return data[:4] + struct.pack("<I", size) + data[8:]

    long_chunk = bytearray(png)
    struct.pack_into(">I", long_chunk, png_ours_at, 0x7FFFFF00)
    bad_crc = bytearray(png)
    bad_crc[png_ours_at + int(ours_png["length"]) - 1] ^= 0xFF  # type: ignore[call-overload]
    # An APP11 segment whose length (65,535) runs past the end of this 3 kB file.
    segment_past_end = jpeg_base[:2] + b"\xff\xeb\xff\xff" + segments[0][4:200] + jpeg_base[2:]
    assert len(segment_past_end) < 0xFFFF
    sof = next(int(c["offset"]) for c in _formats.describe(jpeg) if c["type"] == "SOF0")  # type: ignore[call-overload]
    jpeg_bomb_header = jpeg[: sof + 5] + struct.pack(">HH", 65535, 65535) + jpeg[sof + 9 :]
    prvn_past_end = bytearray(webp)
    at = webp.index(b"PRVN")
    struct.pack_into("<I", prvn_past_end, at + 4, 0x7FFFFFF0)

    return {
        # PNG
        "png-truncated-in-ours": Hostile(png[: png_ours_at + 100], ".png"),
        "png-truncated-in-pixels": Hostile(png[:-40], ".png"),
        "png-bad-crc": Hostile(bytes(bad_crc), ".png"),
        "png-length-past-end": Hostile(bytes(long_chunk), ".png"),
        "png-zlib-bomb": Hostile(png_with_ours(png_base, bomb), ".png"),
        "png-two-provenance-chunks": Hostile(png_with_ours(png, zlib.compress(payload)), ".png"),
        "png-chunk-after-iend": Hostile(png_base + png_chunk(b"iTXt", b"provenance:journal\x00\x01\x00\x00\x00"
                                                              + zlib.compress(payload)), ".png"),
        "png-not-utf8": Hostile(png_with_ours(png_base, zlib.compress(b"\xff\xfe" + payload)), ".png"),
        "png-not-zlib": Hostile(png_with_ours(png_base, b"definitely not zlib"), ".png"),
        "png-not-a-journal": Hostile(png_with_ours(png_base, zlib.compress(b"hello\n")), ".png"),
        # A 100000 x 100000 header: 30 GB of pixels if anyone decoded it.  With no provenance data
        # it is a well-formed container (inspect lists it); with a journal, verify must decode and refuse.
        "png-bomb-header": Hostile(set_png_ihdr(png_base, 100_000, 100_000), ".png", inspect=0, extract=1),
        "png-bomb-header-with-journal": Hostile(set_png_ihdr(png, 100_000, 100_000), ".png", inspect=0, extract=0),
        "png-signature-only": Hostile(png[:8], ".png"),
        # JPEG
        "jpeg-truncated-in-ours": Hostile(jpeg[:5000], ".jpg"),
        "jpeg-app11-out-of-order": Hostile(
            jpeg_with_segments(jpeg_base, [segments[1], segments[0], *segments[2:]]), ".jpg"),
        "jpeg-app11-missing": Hostile(jpeg_with_segments(jpeg_base, [segments[0], *segments[2:]]), ".jpg"),
        "jpeg-app11-duplicated": Hostile(jpeg_with_segments(jpeg_base, [segments[0], *segments]), ".jpg"),
        "jpeg-segment-past-end": Hostile(segment_past_end, ".jpg"),
        "jpeg-zlib-bomb": Hostile(jpeg_with_segments(jpeg_base, app11_segments(bomb)), ".jpg"),
        "jpeg-bomb-header-with-journal": Hostile(jpeg_bomb_header, ".jpg", inspect=0, extract=0),
        # WebP
        "webp-riff-size-too-big": Hostile(riff_size(webp, len(webp) + 1000), ".webp"),
        "webp-riff-size-too-small": Hostile(riff_size(webp, len(webp) - 100), ".webp"),
        "webp-chunk-past-end": Hostile(bytes(prvn_past_end), ".webp"),
        "webp-zlib-bomb": Hostile(webp_with_chunks(webp_base, prvn(bomb)), ".webp"),
        "webp-two-provenance-chunks": Hostile(webp_with_chunks(webp, prvn(zlib.compress(payload))), ".webp"),
        "webp-truncated": Hostile(webp[: len(webp) // 2], ".webp"),
    }


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Hostile]]:
    folder = tmp_path_factory.mktemp("hostile")
    files = {}
    for name, case in hostile_files(folder).items():
        path = folder / f"{name}{case.suffix}"
        path.write_bytes(case.data)
        files[name] = (path, case)
    return files


def _spawn(home: Path, *args: str | Path) -> subprocess.Popen[str]:
    env = {**os.environ, HOME_ENV: str(home), "PYTHONPATH": str(SRC)}
    return subprocess.Popen(
        [sys.executable, "-m", "provenance", *(str(a) for a in args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env,
        preexec_fn=_limit_memory,
    )


def run_limited(home: Path, *commands: list[str | Path]) -> list[tuple[subprocess.CompletedProcess[str], float]]:
    """Run CLI commands side by side (started from this thread: preexec_fn is not thread-safe)."""
    started = time.monotonic()
    processes = [_spawn(home, *command) for command in commands]
    results = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        results.append((subprocess.CompletedProcess(process.args, process.returncode, out, err),
                        time.monotonic() - started))
    return results


_HOSTILE = [
    "png-truncated-in-ours", "png-truncated-in-pixels", "png-bad-crc", "png-length-past-end", "png-zlib-bomb",
    "png-two-provenance-chunks", "png-chunk-after-iend", "png-not-utf8", "png-not-zlib", "png-not-a-journal",
    "png-bomb-header", "png-bomb-header-with-journal", "png-signature-only", "jpeg-truncated-in-ours",
    "jpeg-app11-out-of-order", "jpeg-app11-missing", "jpeg-app11-duplicated", "jpeg-segment-past-end",
    "jpeg-zlib-bomb", "jpeg-bomb-header-with-journal", "webp-riff-size-too-big", "webp-riff-size-too-small",
    "webp-chunk-past-end", "webp-zlib-bomb", "webp-two-provenance-chunks", "webp-truncated",
]


@pytest.mark.slow
def test_hostile_list_is_complete(hostile: dict[str, tuple[Path, Hostile]]) -> None:
    assert sorted(hostile) == sorted(_HOSTILE)


@pytest.mark.slow
@pytest.mark.parametrize("name", _HOSTILE)
def test_hostile_file(hostile: dict[str, tuple[Path, Hostile]], tmp_path: Path, name: str) -> None:
    path, case = hostile[name]
    commands: list[tuple[str, int, list[str | Path]]] = [
        ("verify", case.verify, ["verify", path]),
        ("inspect", case.inspect, ["inspect", path]),
        ("extract", case.extract, ["extract", path, "-o", tmp_path / "out.jsonl"]),
    ]
    runs = run_limited(tmp_path / "home", *(c[2] for c in commands))
    for (command, expected, _), (result, elapsed) in zip(commands, runs, strict=True):
        output = result.stdout + result.stderr
        assert "Traceback" not in output and "internal error" not in output, (command, output)
        assert elapsed < 30, (command, elapsed)
        assert result.returncode == expected, (command, output)
        if expected == 0:
            continue
        assert output.count("\n") == 1, (command, output)  # one line, on one stream
        if command == "verify":
            assert result.stdout.startswith("NOT VALID: ") and not result.stderr, output
        elif expected == 2:
            assert result.stderr.startswith("provenance: error: ") and not result.stdout, output


@pytest.mark.slow
@pytest.mark.parametrize("name", ["png-bomb-header", "jpeg-bomb-header-with-journal", "png-truncated-in-pixels"])
def test_hostile_suspect_for_match(hostile: dict[str, tuple[Path, Hostile]], tmp_path: Path, name: str) -> None:
    """Matching decodes the suspect: a bomb or a broken file is refused, before any raster is allocated."""
    path, _ = hostile[name]
    reference = tmp_path / "ref.png"
    reference.write_bytes(encode(photo(), "PNG"))
    ((result, elapsed),) = run_limited(tmp_path / "home", ["match", path, reference])
    assert result.returncode == 2 and elapsed < 30
    assert result.stderr.startswith("provenance: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.slow
def test_the_memory_limit_is_real() -> None:
    """The child's address-space limit does stop a 2 GB allocation, so the tests above prove a bound."""
    result = subprocess.run(
        [sys.executable, "-c", "bytearray(2 << 30)"], capture_output=True, text=True, timeout=60,
        preexec_fn=_limit_memory, check=False,
    )
    assert result.returncode != 0 and "MemoryError" in result.stderr


def test_zlib_bomb_is_what_it_claims() -> None:
    """The bomb used above is a valid stream of 2 GiB of zeros (checked on a small one of the same make)."""
    small = zlib_bomb(total=8 << 20)
    assert len(small) < 16_000
    assert zlib.decompress(small) == bytes(8 << 20)
