"""Independent tools accept our outputs: pngcheck, exiftool, djpeg, dwebp, webpinfo, webpmux.

Each test skips, naming the missing tool, only when that tool is not installed
(Debian: pngcheck, libimage-exiftool-perl, libjpeg-turbo-progs, webp).
"""

from __future__ import annotations

import io
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageCms, PngImagePlugin

from provenance import _formats as F

pytestmark = pytest.mark.slow  # spawns a few dozen processes, exiftool being Perl

PAYLOAD = b'{"journal": "made with provenance", "steps": 3}'
BIG_PAYLOAD = b'{"blob": "' + random.Random(7).randbytes(150_000).hex().encode() + b'"}'
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>'
)


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(a) for a in args], capture_output=True, timeout=120, check=False)


def random_image(mode: str, size: tuple[int, int], seed: int = 1) -> Image.Image:
    rng = random.Random(seed)
    image = Image.frombytes(mode, size, rng.randbytes(len(Image.new(mode, size).tobytes())))
    if mode == "P":
        image.putpalette(rng.randbytes(768))
    return image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def png_inputs() -> dict[str, bytes]:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nSteps: 20, Sampler: Euler a")
    frames = [random_image("RGBA", (16, 12), seed) for seed in range(3)]
    return {
        "grey1": encode(random_image("1", (21, 9)), "PNG"),
        "palette": encode(random_image("P", (21, 9)), "PNG", transparency=5),
        "rgba": encode(random_image("RGBA", (21, 9)), "PNG"),
        "grey16": encode(random_image("I;16", (21, 9)), "PNG"),
        "metadata": encode(random_image("RGB", (21, 9)), "PNG", pnginfo=info, icc_profile=_icc()),
        "apng": encode(frames[0], "PNG", save_all=True, append_images=frames[1:]),
    }


def jpeg_inputs() -> dict[str, bytes]:
    exif = Image.Exif()
    exif[0x010E] = "description"
    rgb = random_image("RGB", (35, 21))
    return {
        "grey": encode(random_image("L", (35, 21)), "JPEG"),
        "baseline": encode(rgb, "JPEG"),
        "progressive": encode(rgb, "JPEG", progressive=True),
        "restart": encode(rgb, "JPEG", restart_marker_blocks=2),
        "metadata": encode(rgb, "JPEG", exif=exif.tobytes(), icc_profile=_icc(), xmp=XMP),
    }


def webp_inputs() -> dict[str, bytes]:
    exif = Image.Exif()
    exif[0x010E] = "description"
    return {
        "lossy": encode(random_image("RGB", (35, 21)), "WEBP"),
        "lossless": encode(random_image("RGB", (35, 21)), "WEBP", lossless=True),
        "lossless-alpha": encode(random_image("RGBA", (35, 21)), "WEBP", lossless=True),
        "lossy-alpha": encode(random_image("RGBA", (35, 21)), "WEBP"),
        "metadata": encode(
            random_image("RGB", (35, 21)), "WEBP", exif=exif.tobytes(), icc_profile=_icc(), xmp=XMP
        ),
    }


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def validation(exiftool: str, path: Path) -> str:
    """exiftool's verdict: "OK" or its warnings, one per line."""
    lines = run(exiftool, "-validate", "-warning", "-a", "-s3", path).stdout.decode().splitlines()
    return "\n".join(lines)


# --- PNG --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(png_inputs()))
@pytest.mark.parametrize("payload", [PAYLOAD, BIG_PAYLOAD], ids=["small", "big"])
def test_pngcheck_passes(tmp_path: Path, name: str, payload: bytes) -> None:
    pngcheck = need("pngcheck")
    signed = write(tmp_path, "signed.png", F.embed(png_inputs()[name], payload))
    result = run(pngcheck, "-v", signed)
    assert result.returncode == 0, result.stdout.decode(errors="replace")[-2000:]
    assert b"keyword: provenance:journal" in result.stdout
    assert b"No errors detected" in result.stdout


def test_exiftool_lists_png_keyword(tmp_path: Path) -> None:
    exiftool = need("exiftool")
    signed = write(tmp_path, "signed.png", F.embed(png_inputs()["metadata"], PAYLOAD))
    listing = run(exiftool, "-a", "-G1", "-s", signed).stdout.decode()
    line = next(row for row in listing.splitlines() if "Provenancejournal" in row)
    assert line.startswith("[PNG]")
    assert PAYLOAD.decode() in line
    assert "a cat" in listing  # the foreign parameters chunk is still seen
    verbose = run(exiftool, "-v3", signed).stdout
    assert b"provenance:journal" in verbose
    assert validation(exiftool, signed) == "OK"


# --- JPEG -------------------------------------------------------------------------------


def test_exiftool_shows_app11(tmp_path: Path) -> None:
    exiftool = need("exiftool")
    signed = write(tmp_path, "signed.jpg", F.embed(jpeg_inputs()["metadata"], BIG_PAYLOAD))
    verbose = run(exiftool, "-v3", signed).stdout.decode(errors="replace")
    assert verbose.count("JPEG APP11") == len(
        [e for e in F.describe(signed.read_bytes()) if e["provenance"]]
    ) > 1
    assert "PROVNC" in verbose
    # exiftool still reads the foreign metadata next to ours.
    listing = run(exiftool, "-a", "-G1", "-s", signed).stdout.decode()
    assert "description" in listing and "ProfileDescription" in listing
    # Its only new remark is that it does not know our segment.
    original = write(tmp_path, "original.jpg", jpeg_inputs()["metadata"])
    added = set(validation(exiftool, signed).splitlines()[1:]) - set(
        validation(exiftool, original).splitlines()[1:]
    )
    assert added == {"[minor] Unknown APP11 'PROVNC' segment"}


@pytest.mark.parametrize("name", sorted(jpeg_inputs()))
def test_djpeg_decodes_identically(tmp_path: Path, name: str) -> None:
    djpeg = need("djpeg")
    original = jpeg_inputs()[name]
    before = run(djpeg, write(tmp_path, "original.jpg", original))
    after = run(djpeg, write(tmp_path, "signed.jpg", F.embed(original, BIG_PAYLOAD)))
    assert before.returncode == after.returncode == 0, after.stderr
    assert after.stderr == b""  # not even a warning
    assert after.stdout == before.stdout


# --- WebP -------------------------------------------------------------------------------


def test_exiftool_shows_prvn(tmp_path: Path) -> None:
    exiftool = need("exiftool")
    signed = write(tmp_path, "signed.webp", F.embed(webp_inputs()["metadata"], PAYLOAD))
    verbose = run(exiftool, "-v3", signed).stdout.decode(errors="replace")
    assert "RIFF 'PRVN' chunk" in verbose
    assert validation(exiftool, signed) == "OK"


@pytest.mark.parametrize("name", sorted(webp_inputs()))
@pytest.mark.parametrize("payload", [PAYLOAD, b"odd" * 3, BIG_PAYLOAD], ids=["small", "odd", "big"])
def test_dwebp_decodes_identically(tmp_path: Path, name: str, payload: bytes) -> None:
    dwebp = need("dwebp")
    original = webp_inputs()[name]
    signed = write(tmp_path, "signed.webp", F.embed(original, payload))
    before = run(dwebp, write(tmp_path, "original.webp", original), "-pam", "-o", tmp_path / "a.pam")
    after = run(dwebp, signed, "-pam", "-o", tmp_path / "b.pam")
    assert before.returncode == after.returncode == 0, after.stderr
    assert (tmp_path / "a.pam").read_bytes() == (tmp_path / "b.pam").read_bytes()


@pytest.mark.parametrize("name", sorted(webp_inputs()))
def test_webpinfo_and_webpmux_accept(tmp_path: Path, name: str) -> None:
    webpinfo, webpmux = need("webpinfo"), need("webpmux")
    original = webp_inputs()[name]
    signed = write(tmp_path, "signed.webp", F.embed(original, PAYLOAD))
    info = run(webpinfo, signed)
    assert info.returncode == 0
    assert b"No error detected" in info.stdout
    assert b"Chunk VP8X" in info.stdout
    mux = run(webpmux, "-info", signed)
    assert mux.returncode == 0, mux.stderr
    assert b"Canvas size: 35 x 21" in mux.stdout
    if "alpha" in name:
        assert b"transparency" in mux.stdout  # VP8X alpha flag set


def test_webpmux_accepts_animation(tmp_path: Path) -> None:
    webpmux = need("webpmux")
    frames = [random_image("RGBA", (16, 12), seed) for seed in range(3)]
    animation = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    signed = write(tmp_path, "signed.webp", F.embed(animation, PAYLOAD))
    mux = run(webpmux, "-info", signed)
    assert mux.returncode == 0, mux.stderr
    assert b"Number of frames: 3" in mux.stdout
