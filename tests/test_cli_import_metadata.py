"""`provenance import-metadata`: another tool's metadata becomes unwitnessed, signed history."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from provenance import verify_file
from provenance._cli import main
from provenance.journal import SignedEntry

A1111 = (
    "a lighthouse at dawn, <lora:add_detail:0.6>\n"
    "Negative prompt: blurry, text\n"
    'Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3541990123, '
    'Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned, Lora hashes: "add_detail: 7c6bad76eb54"'
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROVENANCE_HOME", str(tmp_path / "home"))
    assert main(["keygen"]) == 0
    return tmp_path


def _journal(capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["new", "--title", "imported"]) == 0
    return capsys.readouterr().out.strip()


def test_a1111_png_is_imported_as_unwitnessed(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111)
    image = home / "a1111.png"
    Image.new("RGB", (16, 24), (90, 120, 200)).save(image, pnginfo=info)
    journal = _journal(capsys)
    assert main(["import-metadata", str(image), "--journal", journal]) == 0
    assert "imported 1 step(s)" in capsys.readouterr().out
    out = home / "j.jsonl"
    assert main(["export", journal, "-o", str(out)]) == 0
    seen: list[SignedEntry] = []
    verdict = verify_file(out, visitor=seen.append)
    assert verdict.valid
    (step,) = [s.entry for s in seen if s.entry.kind == "import.metadata"]
    assert step.actor.value == "automation"
    assert step.body["witnessed"] is False and step.body["tool"] == "automatic1111"
    assert step.body["parameters"]["seed"] == 3541990123
    assert step.body["parameters"]["cfg_scale"] == 6.5


def test_image_without_metadata_is_a_clean_error(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = home / "plain.png"
    Image.new("RGB", (8, 8)).save(image)
    journal = _journal(capsys)
    assert main(["import-metadata", str(image), "--journal", journal]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
