"""Matching a stripped, re-encoded, resized or cropped copy back to its journal.

`provenance match SUSPECT IMAGE_OR_JOURNAL...` compares with the images a
journal (embedded or a file) records, or with an image itself;
`provenance find SUSPECT` asks the local store's perceptual-hash index.  Both
print the distance and the threshold and exit 0 on a match, 1 otherwise.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from provenance import _formats, binding, matching, phash
from provenance._cli import main
from provenance._home import HOME_ENV
from provenance.images import digest_loaded
from provenance.keys import KeyStore, SigningKey
from provenance.recorder import Session
from provenance.store import Store


def photo(size: tuple[int, int] = (320, 240), seed: int = 1) -> Image.Image:
    """A photo-like image whose coarse layout (what a perceptual hash sees) depends on the seed."""
    rng = random.Random(seed)
    width, height = size
    gradient = Image.linear_gradient("L").rotate(rng.uniform(0, 360), resample=Image.Resampling.BILINEAR)
    dark = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    light = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    image = ImageOps.colorize(gradient.resize(size), dark, light)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randrange(4, 9)):
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            x0, y0 = rng.randrange(-width // 4, width), rng.randrange(-height // 4, height)
            draw.ellipse([x0, y0, x0 + rng.randrange(width // 8, width // 2),
                          y0 + rng.randrange(height // 8, height // 2)], fill=colour)
        else:
            draw.polygon([(rng.randrange(width), rng.randrange(height)) for _ in range(3)], fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(width / 160))
    grain = Image.frombytes("L", size, rng.randbytes(width * height)).convert("RGB")
    return Image.blend(image, grain, 0.08)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def altered_copies(image: Image.Image) -> dict[str, bytes]:
    """What happens to an image reposted elsewhere, metadata gone."""
    width, height = image.size
    trim_x, trim_y = round(width * 0.05), round(height * 0.05)
    return {
        "jpeg-q50": encode(image, "JPEG", quality=50),
        "resized-25": encode(image.resize((width // 4, height // 4), Image.Resampling.LANCZOS), "PNG"),
        "webp": encode(image, "WEBP"),
        "cropped-5": encode(image.crop((trim_x, trim_y, width - trim_x, height - trim_y)), "PNG"),
        "cropped-resized-jpeg": encode(
            image.crop((trim_x, trim_y, width - trim_x, height - trim_y)).resize((width // 2, height // 2)),
            "JPEG", quality=70,
        ),
    }


ALTERATIONS = list(altered_copies(photo((32, 24))))
SEEDS = (0, 4, 11)  # the recorded images
UNRELATED = 7


# -- the library ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_altered_copies_match_and_unrelated_do_not(seed: int) -> None:
    image = photo(seed=seed)
    reference = matching.reference_for_image(encode(image, "PNG"), "original")
    assert reference.phash == digest_loaded(image, None).phash  # what a journal records
    for name, data in altered_copies(image).items():
        result = matching.best_match(matching.load_suspect(data), [reference])
        assert result.matched, (name, result.to_json())
        assert result.best is not None and result.best.distance <= result.threshold == phash.THRESHOLD
    unrelated = matching.load_suspect(encode(photo(seed=UNRELATED), "PNG"))
    miss = matching.best_match(unrelated, [reference])
    assert not miss.matched and miss.best is not None and miss.best.distance > miss.threshold
    assert miss.to_json() == {
        "matched": False, "threshold": phash.THRESHOLD, "compared": 1,
        "best": {"description": "original", "distance": miss.best.distance, "journal_status": None},
    }


def test_best_match_picks_the_closest_and_skips_malformed_hashes() -> None:
    references = [matching.Reference(f"seed {s}", digest_loaded(photo(seed=s), None).phash or "") for s in SEEDS]
    references.insert(1, matching.Reference("garbage", "ph1:not-a-hash"))
    suspect = matching.load_suspect(altered_copies(photo(seed=SEEDS[1]))["jpeg-q50"])
    result = matching.best_match(suspect, references)
    assert result.matched and result.best is not None and result.best.description == f"seed {SEEDS[1]}"
    assert result.compared == len(SEEDS)  # the malformed one is not compared
    empty = matching.best_match(suspect, [])
    assert empty.best is None and not empty.matched and empty.to_json()["best"] is None


def test_collect_phashes_finds_every_recorded_image() -> None:
    body = {
        "candidates": [{"index": 0, "phash": "a"}, {"index": 1, "phash": "b"}],
        "binding": {"phash": "c"},
        "source": {"phash": "d"},
        "text": "phash",
    }
    assert list(matching.collect_phashes(body)) == [
        (": candidates[0]", "a"), (": candidates[1]", "b"), (": binding", "c"), (": source", "d"),
    ]
    deep: dict[str, Any] = {"phash": "x"}
    for _ in range(20):
        deep = {"inner": deep}
    assert list(matching.collect_phashes(deep)) == []  # nesting beyond the limit is not searched


# -- the store's index --------------------------------------------------------------------------------


@dataclass
class Recorded:
    store: Store
    journals: dict[int, str]  # seed -> journal id


def record_sessions(store: Store, key: SigningKey, seeds: tuple[int, ...]) -> dict[int, str]:
    journals = {}
    for seed in seeds:
        session = Session(store=store, key=key, title=f"seed {seed}")
        session.set_prompt(f"picture {seed}")
        generation = session.record_generation([photo(seed=seed), photo(seed=seed + 100)], seeds=[seed, seed + 1])
        session.select(generation.candidates[0])
        journals[seed] = session.journal
    return journals


@pytest.fixture
def indexed(tmp_path: Path) -> Iterator[Recorded]:
    store = Store(tmp_path / "store.db")
    yield Recorded(store, record_sessions(store, SigningKey.generate(), SEEDS))
    store.close()


@pytest.mark.parametrize("alteration", ALTERATIONS)
def test_find_in_store(indexed: Recorded, alteration: str) -> None:
    seed = SEEDS[1]
    suspect = matching.load_suspect(altered_copies(photo(seed=seed))[alteration])
    result = matching.find_in_store(indexed.store, suspect)
    assert result.matched and result.best is not None
    assert result.best.description.startswith(f"journal {indexed.journals[seed]} entry ")


def test_find_does_not_match_an_unrelated_image(indexed: Recorded) -> None:
    result = matching.find_in_store(indexed.store, matching.load_suspect(encode(photo(seed=UNRELATED), "PNG")))
    assert not result.matched


def test_find_looks_up_only_the_probe_keys(indexed: Recorded) -> None:
    """The index is asked for the suspect's probe keys, one indexed lookup each, never a scan."""
    suspect = matching.load_suspect(altered_copies(photo(seed=SEEDS[2]))["webp"])
    asked: list[list[int]] = []
    statements: list[str] = []
    original = indexed.store.phash_candidates

    def spy(bands: Any) -> Any:
        asked.append(list(bands))
        return original(bands)

    indexed.store.phash_candidates = spy  # type: ignore[method-assign]
    indexed.store._db.set_trace_callback(statements.append)
    try:
        result = matching.find_in_store(indexed.store, suspect)
    finally:
        indexed.store._db.set_trace_callback(None)
    assert result.matched
    keys = phash.probe_keys(suspect)
    assert asked == [keys]
    lookups = [s for s in statements if "WHERE phash_bands.band = " in s]
    assert lookups and all(re.fullmatch(r"SELECT .* FROM phash_bands JOIN .* WHERE phash_bands.band = \d+", s)
                           for s in lookups)
    assert len(lookups) == len(set(keys))
    # And each lookup is a search on the primary keys, not a scan of a table.
    plan = indexed.store._db.execute(
        "EXPLAIN QUERY PLAN " + lookups[0].replace(lookups[0].rsplit("= ", 1)[1], "?"), (keys[0],)
    ).fetchall()
    assert all("SEARCH" in row[-1] for row in plan), plan
    # Fewer candidates come back than the index holds: the bands narrow the search.
    total = indexed.store._db.execute("SELECT COUNT(DISTINCT journal || seq || phash) FROM phashes").fetchone()[0]
    assert len(original(keys)) < total


# -- the CLI ---------------------------------------------------------------------------------------------


class CLI:
    def __init__(self, home: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.capsys = capsys
        monkeypatch.setenv(HOME_ENV, str(home))

    def __call__(self, *args: str | Path) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([str(a) for a in args])
        captured = self.capsys.readouterr()
        out, err = captured.out.decode(), captured.err.decode()
        assert "Traceback" not in out + err
        return code, out, err


@pytest.fixture
def cli(tmp_path: Path, capsysbinary: Any, monkeypatch: pytest.MonkeyPatch) -> CLI:
    return CLI(tmp_path / "home", capsysbinary, monkeypatch)


_MATCH = re.compile(r"MATCH: distance (\d+) \(threshold (\d+), (\d+) recorded images compared\)")
_NO_MATCH = re.compile(r"NO MATCH: distance (\d+) \(threshold (\d+), (\d+) recorded images compared\)")


@pytest.fixture
def files(cli: CLI, tmp_path: Path) -> dict[str, Path]:
    """A recorded session in the CLI's store, its image with the journal attached, the journal file."""
    KeyStore().generate("default")
    with Store() as store:
        key = KeyStore().load()
        journals = record_sessions(store, key, SEEDS)
        image = photo(seed=SEEDS[0])
        signed = binding.attach(encode(image, "PNG"), store=store, journal=journals[SEEDS[0]], key=key)
        journal_file = tmp_path / "journal.jsonl"
        journal_file.write_bytes(b"".join(store.export_lines(journals[SEEDS[0]])))
    paths = {"signed": tmp_path / "signed.png", "journal": journal_file, "plain": tmp_path / "plain.png"}
    paths["signed"].write_bytes(signed.data)
    paths["plain"].write_bytes(encode(image, "PNG"))
    for name, data in altered_copies(image).items():
        paths[name] = tmp_path / f"suspect-{name}"
        paths[name].write_bytes(data)
    paths["unrelated"] = tmp_path / "unrelated.png"
    paths["unrelated"].write_bytes(encode(photo(seed=UNRELATED), "PNG"))
    return paths


@pytest.mark.parametrize("alteration", ALTERATIONS)
@pytest.mark.parametrize("reference", ["signed", "journal", "plain"])
def test_cli_match(cli: CLI, files: dict[str, Path], alteration: str, reference: str) -> None:
    code, out, err = cli("match", files[alteration], files[reference])
    assert code == 0 and not err, out + err
    lines = out.splitlines()
    found = _MATCH.fullmatch(lines[0])
    assert found, lines[0]
    distance, threshold, compared = map(int, found.groups())
    assert distance <= threshold == phash.THRESHOLD
    if reference == "plain":
        assert compared == 1 and lines[1] == "  closest: plain.png (the image itself)"
    else:
        # The journal records the two candidates of the generation (and, attached, the export).
        assert compared >= 2
        assert "(generation: candidates[0])" in lines[1] or "(export: binding)" in lines[1]
        assert lines[2] == "  journal verdict: valid, signer not pinned"


@pytest.mark.parametrize("reference", ["signed", "journal", "plain"])
def test_cli_match_unrelated(cli: CLI, files: dict[str, Path], reference: str) -> None:
    code, out, _ = cli("match", files["unrelated"], files[reference])
    assert code == 1
    found = _NO_MATCH.fullmatch(out.splitlines()[0])
    assert found and int(found.group(1)) > int(found.group(2)) == phash.THRESHOLD, out


def test_cli_match_json_and_several_references(cli: CLI, files: dict[str, Path]) -> None:
    code, out, _ = cli("match", files["jpeg-q50"], files["unrelated"], files["journal"], "--json")
    assert code == 0
    report = json.loads(out)
    assert report["matched"] is True and report["threshold"] == phash.THRESHOLD
    assert report["best"]["description"].startswith("journal.jsonl entry ")
    assert report["best"]["journal_status"] == "untrusted"  # valid, no key pinned
    assert report["compared"] >= 3


def test_cli_match_says_when_the_journal_is_not_valid(cli: CLI, files: dict[str, Path], tmp_path: Path) -> None:
    lines = files["journal"].read_bytes().splitlines(keepends=True)
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_bytes(b"".join(lines[:-1]))  # the last checkpoint is gone: entries left uncovered
    code, out, _ = cli("match", files["jpeg-q50"], tampered)
    # Close enough to match, but a hash read from an invalid journal is evidence of nothing.
    lines = out.splitlines()
    assert code == 1 and lines[0].startswith("NO MATCH: distance ") and lines[-1] == "  journal verdict: NOT VALID"
    assert lines[1] == "  the closest recorded image is in a journal that is NOT VALID: it proves nothing"
    code, out, _ = cli("match", files["jpeg-q50"], tampered, "--json")
    report = json.loads(out)
    assert code == 1 and report["matched"] is False and report["best"]["journal_status"] == "invalid"
    assert report["best"]["distance"] <= report["threshold"]
    # The same image recorded in a sound journal as well: that match is the one reported.
    code, out, _ = cli("match", files["jpeg-q50"], tampered, files["journal"])
    assert code == 0 and out.splitlines()[-1] == "  journal verdict: valid, signer not pinned"


def test_best_match_prefers_sound_journals() -> None:
    value = phash.reference_hash(photo(seed=SEEDS[0]))
    suspect = phash.suspect_hash(photo(seed=SEEDS[0]))
    refs = [
        matching.Reference("broken", value.to_str(), "invalid"),
        matching.Reference("sound", value.to_str(), "valid"),
    ]
    assert matching.best_match(suspect, refs).best.description == "sound"  # type: ignore[union-attr]
    only_broken = matching.best_match(suspect, refs[:1])
    assert only_broken.close and not only_broken.matched
    # Among misses the nearest is reported, whatever its journal.
    far = phash.reference_hash(photo(seed=UNRELATED)).to_str()
    other = phash.reference_hash(photo(seed=SEEDS[1])).to_str()
    misses = [matching.Reference("sound", far, "valid"), matching.Reference("broken", other, "invalid")]
    scored = {r.description: phash.distance(suspect, phash.PerceptualHash.from_str(r.phash)) for r in misses}
    assert min(scored.values()) > phash.THRESHOLD
    nearest = min(scored, key=lambda d: scored[d])
    assert matching.best_match(suspect, misses).best.description == nearest  # type: ignore[union-attr]


def test_cli_match_errors(cli: CLI, files: dict[str, Path], tmp_path: Path) -> None:
    code, out, err = cli("match", files["jpeg-q50"], tmp_path / "missing.jsonl")
    assert code == 2 and not out and err.startswith("provenance: error: no such file") and err.count("\n") == 1
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    code, out, err = cli("match", garbage, files["plain"])
    assert code == 2 and not out and err.startswith("provenance: error: ") and err.count("\n") == 1
    # PostScript is never handed to Pillow (its EPS reader runs Ghostscript on the file).
    eps = tmp_path / "suspect.eps"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n0 0 moveto 8 8 lineto stroke\n%%EOF\n")
    code, out, err = cli("match", eps, files["plain"])
    assert code == 2 and not out and err.count("\n") == 1
    assert "not in a format read here" in err and "BytesIO" not in err


def test_cli_error_on_a_corrupt_tiff_is_one_line(files: dict[str, Path], tmp_path: Path) -> None:
    # libtiff prints its own diagnostics straight to file descriptor 2: the
    # command keeps them off the terminal and quotes the first in its one line.
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((64, 64)).convert("RGB").save(buffer, "TIFF", compression="tiff_lzw")
    corrupt = bytearray(buffer.getvalue())
    corrupt[8] ^= 0xFF  # inside the LZW strip
    suspect = tmp_path / "corrupt.tif"
    suspect.write_bytes(bytes(corrupt))
    done = subprocess.run(
        [sys.executable, "-m", "provenance", "match", str(suspect), str(files["plain"])],
        capture_output=True, timeout=120, check=False, env={**os.environ, HOME_ENV: str(tmp_path / "home")},
    )
    assert done.returncode == 2 and done.stdout == b""
    assert done.stderr.count(b"\n") == 1 and done.stderr.startswith(b"provenance: error: cannot decode image: ")
    assert b"not yet in table" in done.stderr  # libtiff's own words, in our line


def test_cli_says_nothing_of_pillow_warnings(files: dict[str, Path], tmp_path: Path) -> None:
    # A size past Pillow's own bomb threshold (here lowered), under ours: Pillow
    # warns, and the warning must not add lines to the command's output.
    big = tmp_path / "big.png"
    Image.new("L", (250, 250), 7).save(big)
    script = (
        "import sys; from PIL import Image; Image.MAX_IMAGE_PIXELS = 50_000; "
        "from provenance._cli import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "match", str(big), str(files["plain"])],
        capture_output=True, timeout=120, check=False, env={**os.environ, HOME_ENV: str(tmp_path / "home")},
    )
    assert done.returncode == 1 and done.stderr == b"", done.stderr
    assert done.stdout.startswith(b"NO MATCH")


@pytest.mark.parametrize("alteration", ALTERATIONS)
def test_cli_find(cli: CLI, files: dict[str, Path], alteration: str) -> None:
    with Store() as store:
        journals = {info.title: info.id for info in store.journals()}
    code, out, err = cli("find", files[alteration])
    assert code == 0 and not err, out
    lines = out.splitlines()
    assert _MATCH.fullmatch(lines[0]), lines[0]
    assert lines[1].startswith(f"  closest: journal {journals[f'seed {SEEDS[0]}']} entry ")


def test_cli_find_unrelated(cli: CLI, files: dict[str, Path]) -> None:
    code, out, _ = cli("find", files["unrelated"])
    assert code == 1
    first = out.splitlines()[0]
    # Either no indexed image shares a band with it, or the closest one is too far.
    assert first == f"NO MATCH: no recorded image to compare with (threshold {phash.THRESHOLD})" or (
        _NO_MATCH.fullmatch(first)
    ), first
    report = json.loads(cli("find", files["unrelated"], "--json")[1])
    assert report["matched"] is False


def test_cli_find_matches_a_stripped_copy_of_an_attached_image(cli: CLI, files: dict[str, Path]) -> None:
    stripped = files["signed"].with_name("stripped.png")
    stripped.write_bytes(_formats.strip(files["signed"].read_bytes()))
    code, out, _ = cli("verify", stripped)
    assert code == 1 and "no provenance data" in out
    code, out, _ = cli("find", stripped)
    assert code == 0 and _MATCH.fullmatch(out.splitlines()[0])
    assert int(_MATCH.fullmatch(out.splitlines()[0]).group(1)) == 0  # type: ignore[union-attr]
