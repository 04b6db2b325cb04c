"""The auditor's report (`provenance.report`, `provenance report`, batch mode).

Journals are made with the recording API (`provenance.recorder.Session`) into a
temporary store with a fresh key.  Every report a test builds goes through
`check`: its JSON validates against ``docs/report-schema.json``, its text keeps
to 80 columns and shows no control characters, and its HTML is one
self-contained page with no script and no network reference.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import io
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from provenance import _formats
from provenance._report_text import cell_width
from provenance.binding import SIDECAR_SUFFIX
from provenance.importers import ImportedStep, ImportResult
from provenance.keys import SigningKey
from provenance.recorder import Session
from provenance.report import (
    Report,
    build_report,
    build_report_from_lines,
    render_html,
    render_json,
    render_text,
    word_diff,
)
from provenance.store import NewEntry, Store

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "docs" / "report-schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
HOSTILE = "</style><script>alert(1)</script><img src=x onerror=alert(2)>\"' \x1b[31mRED\u202eevil"


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVENANCE_HOME", str(tmp_path / "home"))


def check(report: Report) -> tuple[str, dict[str, Any], str]:
    """Render all three formats and check what every report must satisfy."""
    text = render_text(report)
    for line in text.splitlines():
        assert cell_width(line) <= 80 and len(line) <= 80, line
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]", line), line
    assert text.startswith(f"VERDICT: {report.verdict.label}\n")
    data = render_json(report)
    VALIDATOR.validate(json.loads(json.dumps(data)))
    page = render_html(report)
    lowered = page.lower()
    assert "<script" not in lowered and "<img src=x" not in lowered
    assert "http://" not in lowered and "https://" not in lowered
    assert _only_local_links(page)
    verdict_at = page.index('id="verdict"')
    for section in ('id="contribution"', 'id="summary"', 'id="lineage"', 'id="timeline"'):
        assert section not in page or verdict_at < page.index(section)
    return text, data, page


def _only_local_links(page: str) -> bool:
    for match in re.finditer(r"\b(?:src|href)=\"([^\"]*)\"", page):
        if not re.match(r"data:image/(png|webp);base64,[A-Za-z0-9+/=]*$", match.group(1)):
            return False
    return True


def picture(seed: int, size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A small deterministic picture: a gradient and a few shapes."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        r = rng.randrange(4, 20)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    return image


def new_session(tmp_path: Path, name: str = "store", **options: Any) -> Session:
    store = Store(tmp_path / f"{name}.sqlite")
    options.setdefault("thumbnails", True)
    options.setdefault("perceptual_hashes", False)
    return Session(title="Harbour at dusk", store=store, key=SigningKey.generate(), **options)


def export_journal(session: Session, path: Path) -> Path:
    session.store.export(session.journal, path)
    return path


def rect_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=255)
    return mask


class Made:
    """A full session: three rounds, a region edit, a manual edit, an export, a seal."""

    def __init__(self, tmp_path: Path) -> None:
        self.session = session = new_session(tmp_path, perceptual_hashes=True)
        session.load_model("painter-v1", sha256="ab" * 32)
        session.note("Intent: a quiet harbour, one boat")
        rounds: list[tuple[str, str | None, dict[str, Any]]] = [
            ("a harbour at dusk", None, {"seed": 1000, "steps": 20, "guidance": 7.0}),
            ("a harbour at dusk, oil painting", "blurry", {"guidance": 8.5}),
            ("a quiet harbour at dusk, oil painting, one boat", "blurry, text", {"steps": 30, "seed": 2000}),
        ]
        chosen = None
        for number, (prompt, negative, params) in enumerate(rounds):
            session.set_prompt(prompt, negative)
            session.set_parameters(**params)
            images = [picture(number * 10 + i) for i in range(4)]
            generation = session.record_generation(images, seeds=[number * 10 + i for i in range(4)])
            session.select(generation.candidates[1], reason=f"round {number} pick")
            chosen = images[1]
        assert chosen is not None
        self.base = chosen
        mask = rect_mask(chosen.size, (48, 0, 96, 32))  # a quarter of the image
        self.inpainted = Image.composite(picture(99), chosen, mask)
        session.region_edit(chosen, mask, self.inpainted, prompt="a pale moon", strength=0.8, seed=77)
        self.final = self.inpainted.copy()
        ImageDraw.Draw(self.final).line([(5, 50), (40, 45)], fill=(250, 235, 200), width=2)
        session.manual_edit(self.inpainted, self.final, tool="brush", description="a reflection", area_fraction=0.01)
        self.png = session.export(self.final, tmp_path / "harbour.png")
        session.seal("done")
        self.journal = export_journal(session, tmp_path / "journal.jsonl")


@pytest.fixture
def made(tmp_path: Path) -> Iterator[Made]:
    result = Made(tmp_path)
    yield result
    result.session.store.close()


# -- 1. verdict --------------------------------------------------------------------------------


def test_verdict_valid_with_pinned_key_comes_first(made: Made) -> None:
    report = build_report(made.journal, trusted=[made.session.key.public])
    text, data, page = check(report)
    assert report.verdict.label == "VALID" and report.verdict.ok
    assert text.splitlines()[0] == "VERDICT: VALID"
    assert next(iter(data)) == "format" and data["verdict"]["status"] == "valid"
    assert data["verdict"]["signers"] == [{"keyid": made.session.key.keyid, "pinned": True}]
    assert page.index('id="verdict"') < page.index('id="counts"') < page.index('id="lineage"')
    assert "every time is the signer's claim" in page
    assert report.content == "verified" and report.verdict.sealed


def test_no_key_pinned_is_valid_but_untrusted_signer(made: Made) -> None:
    report = build_report(made.journal)
    text, _, _ = check(report)
    assert report.verdict.label == "VALID BUT UNTRUSTED SIGNER" and report.verdict.ok
    assert "no key was pinned" in text
    other = build_report(made.journal, trusted=[SigningKey.generate().public])
    check(other)
    assert other.verdict.label == "VALID BUT UNTRUSTED SIGNER" and not other.verdict.ok
    assert any("not among the keys you pinned" in r for r in other.verdict.reasons)


def test_image_report_says_which_binding_held(made: Made) -> None:
    report = build_report(made.png, trusted=[made.session.key.public])
    text, data, page = check(report)
    assert report.verdict.label == "VALID"
    binding = data["verdict"]["binding"]
    assert binding["held"] == "exact-file" and binding["carrier"] == "embedded"
    assert "EXACT FILE" in text
    assert report.preview is not None and "the image you gave" in page
    # The embedded copy carries no thumbnails; the lineage still names every image.
    assert [s.kind for s in report.lineage.steps] == ["generation", "region-edit", "manual-edit", "export"]


def test_same_pixels_binding(made: Made, tmp_path: Path) -> None:
    stripped = _formats.strip(made.png.read_bytes())
    resaved = io.BytesIO()
    Image.open(io.BytesIO(stripped)).save(resaved, format="PNG", compress_level=9)
    copy = tmp_path / "copy.png"
    copy.write_bytes(resaved.getvalue())
    copy.with_name(copy.name + SIDECAR_SUFFIX).write_bytes(made.journal.read_bytes())
    report = build_report(copy)
    text, data, _ = check(report)
    assert data["verdict"]["binding"]["held"] == "same-pixels" and report.verdict.ok
    assert "SAME PIXELS" in text
    # The sidecar is the full journal: thumbnails are available.
    assert all(s.image.thumbnail_available for s in report.lineage.steps if s.kind != "export")


def test_image_with_its_journal_file_has_thumbnails(made: Made) -> None:
    report = build_report(made.png, journal_file=made.journal)
    _, data, page = check(report)
    assert data["verdict"]["binding"]["carrier"] == "given"
    assert data["subject"]["journal_file"] == str(made.journal)
    assert page.count("data:image/") >= 12 + 3  # candidates, chain, mask overlay, preview


def test_tampered_journal_verdict_first_and_clear(made: Made, tmp_path: Path) -> None:
    lines = made.journal.read_bytes().splitlines(keepends=True)
    for index, line in enumerate(lines):
        record = json.loads(line)
        if record.get("type") != "entry":
            continue
        payload = base64.b64decode(record["payload"])
        if b'"kind":"prompt.set"' in payload:
            record["payload"] = base64.b64encode(payload.replace(b"a harbour at dusk", b"a castle at dawn!")).decode()
            lines[index] = json.dumps(record, separators=(",", ":"), sort_keys=True).encode() + b"\n"
            break
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_bytes(b"".join(lines))
    report = build_report(tampered, trusted=[made.session.key.public])
    text, data, page = check(report)
    assert report.verdict.label == "NOT VALID" and not report.verdict.ok
    assert text.splitlines()[0] == "VERDICT: NOT VALID"
    assert text.index("UNVERIFIED") < text.index("THE CONTRIBUTION")
    assert "THE CONTRIBUTION  (UNVERIFIED)" in text
    assert data["content"]["status"] == "unverified" and data["verdict"]["failed_at_entry"] is not None
    assert page.index('class="verdict invalid"') < page.index('id="notice"') < page.index('id="contribution"')
    # What was read is still listed (marked): the forged prompt shows.
    assert any(p.prompt == "a castle at dawn!" for p in report.prompts)


def test_tampered_image_is_not_valid(made: Made, tmp_path: Path) -> None:
    image = Image.open(made.png)
    image.load()
    changed = image.copy()
    changed.putpixel((0, 0), (0, 0, 0))
    out = io.BytesIO()
    changed.save(out, format="PNG")
    forged = tmp_path / "forged.png"
    forged.write_bytes(out.getvalue())
    forged.with_name(forged.name + SIDECAR_SUFFIX).write_bytes(made.journal.read_bytes())
    report = build_report(forged)
    text, data, page = check(report)
    assert text.startswith("VERDICT: NOT VALID")
    assert data["verdict"]["binding"]["held"] == "none" and data["content"]["status"] == "unbound"
    assert "NOT BOUND TO THIS IMAGE" in page


def test_stripped_image_has_no_provenance(tmp_path: Path) -> None:
    bare = tmp_path / "bare.png"
    picture(1).save(bare)
    report = build_report(bare)
    text, data, _ = check(report)
    assert report.verdict.label == "NOT VALID" and data["content"]["status"] == "absent"
    assert "no provenance data" in text


def test_compact_attachment_needs_the_journal(tmp_path: Path) -> None:
    session = new_session(tmp_path)
    session.set_prompt("a lighthouse")
    generation = session.record_generation([picture(1), picture(2)])
    session.select(generation.candidates[0])
    png = session.export(picture(1), tmp_path / "compact.png", mode="compact")
    journal = export_journal(session, tmp_path / "journal.jsonl")
    alone = build_report(png)
    check(alone)
    assert alone.content == "absent" and alone.verdict.ok
    assert alone.verdict.binding is not None and alone.verdict.binding.carrier == "compact"
    full = build_report(png, journal_file=journal)
    check(full)
    assert full.content == "verified" and full.counts.generations == 1


def test_trusted_timestamp_times(tmp_path: Path, local_tsa: Any) -> None:
    from provenance.timestamp import request_timestamp

    session = new_session(tmp_path)
    session.set_prompt("before the stamp")
    store = session.store
    checkpoint = store.checkpoint(session.journal)
    store.add_timestamp(session.journal, checkpoint.size, request_timestamp(checkpoint.note().encode(), local_tsa.url))
    session.set_prompt("after the stamp")
    journal = export_journal(session, tmp_path / "stamped.jsonl")
    report = build_report(journal, tsa_roots=[local_tsa.root_pem])
    text, data, _ = check(report)
    assert data["verdict"]["time"]["trusted_entries"] == checkpoint.size
    bases = {t["seq"]: t["time_basis"] for t in data["timeline"]}
    assert bases[checkpoint.size - 1] == "trusted-timestamp" and bases[checkpoint.size] == "signer-claim"
    assert "existed no later than" in text and "rest on the signer's claim alone" in text
    unpinned = build_report(journal)
    check(unpinned)
    assert unpinned.verdict.trusted_entries == 0
    assert any("unverified claim" in r for r in unpinned.verdict.reasons)


# -- 2. the contribution --------------------------------------------------------------------------


def test_counts(made: Made) -> None:
    report = build_report(made.journal)
    text, data, page = check(report)
    counts = data["counts"]
    assert counts["prompt_revisions"] == 3
    assert counts["parameter_changes"] == 3 + 1 + 2 and counts["parameter_entries"] == 3
    assert counts["generations"] == 3 and counts["candidates"] == 12
    assert counts["selections"] == 3 and counts["rejected_candidates"] == 9
    assert counts["region_edits"] == 1 and counts["manual_edits"] == 1
    assert counts["imported_steps"] == 0 and counts["exports"] == 1 and counts["notes"] == 1
    assert re.search(r"Prompt revisions\s+3", text) and re.search(r"Region edits\s+1", text)
    assert '<span class="n">12</span><span class="l">candidates</span>' in page


def test_time_spent_leaves_out_idle_gaps(tmp_path: Path) -> None:
    key = SigningKey.generate()
    with Store(tmp_path / "s.sqlite") as store:
        journal = store.create_journal(key, title="times")
        t0 = next(store.entries(journal)).entry.time
        offsets = [60, 120, 120 + 3600, 120 + 3600 + 30]  # one idle hour in the middle
        store.append_many(journal, [
            NewEntry("prompt.set", {"revision": n + 1, "prompt": f"p{n}", "negative_prompt": None, "changed": []},
                     "human", t0 + _dt.timedelta(seconds=s))
            for n, s in enumerate(offsets)
        ], key=key)
        report = build_report_from_lines(store.export_lines(journal))
    check(report)
    assert report.time.first == t0 and report.time.last == t0 + _dt.timedelta(seconds=offsets[-1])
    assert report.time.span_seconds == pytest.approx(offsets[-1])
    assert report.time.gaps_excluded == 1
    assert report.time.active_seconds == pytest.approx(60 + 60 + 30)
    text = render_text(report)
    assert "active 2 min 30 s" in text and "1 gap(s) over 10 minutes" in text


def test_time_going_backwards_is_noted(tmp_path: Path) -> None:
    key = SigningKey.generate()
    with Store(tmp_path / "s.sqlite") as store:
        journal = store.create_journal(key, title="times")
        t0 = next(store.entries(journal)).entry.time
        store.append(journal, "note", {"text": "earlier?"}, key=key, actor="human",
                     time=t0 - _dt.timedelta(hours=1))
        report = build_report_from_lines(store.export_lines(journal))
    check(report)
    assert any("earlier than the entry before it" in note for note in report.notes)


def test_prompt_revisions_are_diffs(made: Made) -> None:
    report = build_report(made.journal)
    text, data, page = check(report)
    second = data["prompts"][1]
    assert {"op": "insert", "text": ", oil painting"} in second["prompt_diff"]
    assert second["negative_diff"] == [{"op": "insert", "text": "blurry"}]
    third = data["prompts"][2]
    assert {"op": "insert", "text": "quiet "} in third["prompt_diff"] or any(
        d["op"] == "insert" and "quiet" in d["text"] for d in third["prompt_diff"])
    assert "{+, oil painting+}" in text
    assert "<ins>, oil painting</ins>" in page


def test_word_diff_reconstructs_both_sides() -> None:
    old, new = "a red boat, at dawn", "a blue boat at dusk, oil"
    ops = word_diff(old, new)
    assert "".join(o.text for o in ops if o.op != "insert") == old
    assert "".join(o.text for o in ops if o.op != "delete") == new
    long = " ".join(["word"] * 3000)
    assert [o.op for o in word_diff(long, long + " more")] == ["delete", "insert"]


def test_parameter_table(made: Made) -> None:
    report = build_report(made.journal)
    text, data, page = check(report)
    rows = [(p["name"], p["from"], p["to"]) for p in data["parameters"]]
    assert ("guidance", 7.0, 8.5) in rows and ("seed", 1000, 2000) in rows and ("steps", None, 20) in rows
    assert re.search(r"guidance\s+7\.0\s+8\.5", text)
    assert 'id="parameters"' in page


def test_lineage_from_candidates_to_export(made: Made) -> None:
    report = build_report(made.png, journal_file=made.journal)
    text, data, page = check(report)
    steps = data["lineage"]["steps"]
    assert [s["kind"] for s in steps] == ["generation", "region-edit", "manual-edit", "export"]
    generation, region, manual, export = steps
    assert generation["generation"] == 3 and generation["rejected"] == 3 and generation["selection_seq"] is not None
    assert region["base"]["pixel_sha256"] == generation["image"]["pixel_sha256"]
    assert region["mask"]["bbox"] == [48, 0, 96, 32] and region["mask"]["blob_sha256"]
    assert manual["base"]["pixel_sha256"] == region["image"]["pixel_sha256"]
    assert export["image"]["pixel_sha256"] == _formats.pixel_hash(made.final).hex()
    assert data["lineage"]["complete"] and data["lineage"]["final_source"] == "export"
    rounds = data["lineage"]["rounds"]
    assert [[c["status"] for c in r["candidates"]] for r in rounds] == [["rejected", "chosen", "rejected",
                                                                         "rejected"]] * 3
    assert [c["in_lineage"] for c in rounds[-1]["candidates"]] == [False, True, False, False]
    assert all(s["image"]["thumbnail_available"] for s in steps[:3])
    assert page.count('class="cand chosen"') == 3 and page.count('class="cand rejected"') == 9
    assert "<svg" in page and "mask over the base image" in page
    assert "Region edit" in text and "kept by a person" in text


def test_area_share_from_masks_and_declared_manual_edits(made: Made) -> None:
    report = build_report(made.journal)
    _, data, _ = check(report)
    area = data["area"]
    # A quarter of the image by the mask (from its thumbnail blob), plus 1% declared by hand.
    assert area["fraction"] == pytest.approx(0.26, abs=0.02)
    assert area["estimate"] is True
    assert [p["method"] for p in area["parts"]] == ["mask", "declared"]
    assert "declared" in area["method"]


def test_area_share_from_bbox_only(tmp_path: Path) -> None:
    session = new_session(tmp_path, thumbnails=False)
    base = picture(5)
    generation = session.record_generation([base])
    session.select(generation.candidates[0])
    mask = rect_mask(base.size, (0, 0, 48, 64))  # half
    session.region_edit(base, mask, Image.composite(picture(6), base, mask))
    report = build_report_from_lines(session.store.export_lines(session.journal))
    _, data, page = check(report)
    assert data["area"]["fraction"] == pytest.approx(0.5, abs=0.02)
    assert [p["method"] for p in data["area"]["parts"]] == ["bbox"]
    assert "bounding boxes" in data["area"]["method"]
    assert "stroke-dasharray" in page  # the box is drawn over the (missing) base


def test_inpaint_generation_with_mask_is_a_region_edit(tmp_path: Path) -> None:
    session = new_session(tmp_path)
    base = picture(8)
    first = session.record_generation([base])
    session.select(first.candidates[0])
    mask = rect_mask(base.size, (0, 0, 96, 16))
    png = io.BytesIO()
    mask.save(png, format="PNG")
    blob = session.store.put_blob(session.journal, png.getvalue(), "image/png")
    area = 16 / 64
    inputs = {"mask": {"pixel_sha256": _formats.pixel_hash(mask).hex(), "width": 96, "height": 64, "mode": "L",
                       "bbox": [0, 0, 96, 16], "area_fraction": area, "blob_sha256": blob}}
    result = Image.composite(picture(9), base, mask)
    second = session.record_generation([result], mode="inpaint", inputs=inputs, source=base)
    session.select(second.candidates[0])
    session.export(result, tmp_path / "inpainted.png")
    report = build_report_from_lines(session.store.export_lines(session.journal))
    _, data, page = check(report)
    assert data["counts"]["region_edits"] == 1
    assert [s["kind"] for s in data["lineage"]["steps"]] == ["generation", "region-edit", "export"]
    assert data["area"]["fraction"] == pytest.approx(area, abs=0.01)
    assert data["area"]["parts"][0]["method"] == "mask"
    modification = next(f for f in data["summary"]["factors"] if f["key"] == "modification")
    assert modification["level"] == "substantial"
    assert "inpaint mask" in page


# -- 3. the examiners' terms ----------------------------------------------------------------------


def test_summary_in_examiners_terms(made: Made) -> None:
    report = build_report(made.journal)
    text, data, page = check(report)
    factors = {f["key"]: f for f in data["summary"]["factors"]}
    assert list(factors) == ["expressive_inputs", "selection", "coordination_arrangement", "modification"]
    assert factors["expressive_inputs"]["level"] == "limited"
    assert factors["selection"]["level"] == "substantial" and len(factors["selection"]["entries"]) == 3
    assert factors["coordination_arrangement"]["level"] == "substantial"
    assert factors["modification"]["level"] == "substantial"
    region_seq = next(t["seq"] for t in data["timeline"] if t["kind"] == "edit.region")
    assert region_seq in factors["modification"]["entries"]
    assert data["summary"]["warning"] is None
    assert "WARNING" not in text and 'id="warning"' not in page
    assert "not a legal opinion" in text


def test_prompts_only_journal_warns(tmp_path: Path) -> None:
    session = new_session(tmp_path)
    for n in range(3):
        session.set_prompt(f"a harbour at dusk, take {n}")
        session.set_parameters(seed=n)
        generation = session.record_generation([picture(n * 4 + i) for i in range(4)])
        session.select(generation.candidates[n % 4])
    session.export(picture(2 * 4 + 2), tmp_path / "rerolled.png")
    report = build_report(tmp_path / "rerolled.png")
    text, data, page = check(report)
    warning = data["summary"]["warning"]
    assert warning and "prompts and re-rolls" in warning and "Copyright Office" in warning
    assert "WARNING: The record shows little more than prompts and re-rolls" in " ".join(text.split())
    assert 'id="warning"' in page
    # The warning comes before the details, right after the counts.
    assert page.index('id="warning"') < page.index('id="lineage"')
    assert {f["key"]: f["level"] for f in data["summary"]["factors"]}["modification"] == "none"


def test_imported_steps_are_marked(tmp_path: Path) -> None:
    session = new_session(tmp_path)
    sketch = picture(40)
    session.import_image(sketch, made_by_person=True, source="my-sketch.png")
    step = ImportedStep("automatic1111", "a castle", "blurry", {"seed": 5, "steps": 20}, {})
    session.import_metadata(ImportResult((step,), ("hires fix",), "old.png"))
    generation = session.record_generation([picture(41), picture(42)], mode="img2img", source=sketch)
    session.select(generation.candidates[0])
    report = build_report_from_lines(session.store.export_lines(session.journal))
    text, data, page = check(report)
    imported = data["summary"]["imported"]
    assert [i["kind"] for i in imported] == ["import.image", "import.metadata"]
    assert data["counts"]["imported_steps"] == 2
    assert all(t["imported"] == t["kind"].startswith("import.") for t in data["timeline"])
    assert "!import.metadata" in text and "not witnessed" in text
    assert page.count('<span class="badge">imported</span>') >= 4
    steps = data["lineage"]["steps"]
    assert [s["kind"] for s in steps] == ["import", "generation"] and steps[0]["imported"]
    assert {f["key"]: f["level"] for f in data["summary"]["factors"]}["expressive_inputs"] == "substantial"
    assert data["summary"]["warning"] is None


def test_stored_journal_by_id(tmp_path: Path) -> None:
    session = new_session(tmp_path)
    session.set_prompt("stored")
    report = build_report(session.journal[:8], store=session.store)
    _, data, _ = check(report)
    assert data["subject"] == {"kind": "stored-journal", "name": session.journal, "journal_file": None}


# -- hostile content ------------------------------------------------------------------------------


def test_hostile_strings_are_escaped(tmp_path: Path) -> None:
    session = new_session(tmp_path)
    session.set_prompt(HOSTILE, negative=HOSTILE)
    session.set_parameters(**{"sampler": HOSTILE})
    session.note(HOSTILE)
    generation = session.record_generation([picture(1), picture(2)])
    session.select(generation.candidates[0], reason=HOSTILE)
    session.manual_edit(picture(1), picture(3), tool=HOSTILE, description=HOSTILE, area_fraction=0.5)
    report = build_report_from_lines(session.store.export_lines(session.journal))
    text, _, page = check(report)
    assert "&lt;/style&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "\x1b" not in page and "\u202e" not in page
    assert "\\u001b[31mRED\\u202eevil" in text and "\x1b" not in text


def test_hostile_blobs_and_bodies_do_not_break_the_report(tmp_path: Path) -> None:
    key = SigningKey.generate()
    with Store(tmp_path / "s.sqlite") as store:
        journal = store.create_journal(key, title=HOSTILE)
        garbage = store.put_blob(journal, b"\x89PNG\r\n\x1a\nnot really", "image/png")
        bomb = io.BytesIO()
        Image.new("L", (1, 1)).save(bomb, format="PNG")
        header = bytearray(bomb.getvalue())
        header[16:24] = (60000).to_bytes(4, "big") * 2  # IHDR claims 60000x60000 (CRC now wrong)
        bomb_blob = store.put_blob(journal, bytes(header), "image/png")
        candidates = [{"index": 0, "pixel_sha256": "1" * 64, "width": 10, "height": 10, "thumbnail_sha256": garbage},
                      {"index": "x", "pixel_sha256": "2" * 64, "thumbnail_sha256": bomb_blob},
                      "not a candidate", {"pixel_sha256": 12}]
        store.append_many(journal, [
            NewEntry("generation", {"generation": 1, "mode": "inpaint", "candidates": candidates,
                                    "inputs": {"mask": {"bbox": [5, 5, 1, 1], "blob_sha256": bomb_blob}},
                                    "source": {"pixel_sha256": "3" * 64}}),
            NewEntry("selection", {"generation": "1", "chosen": ["1" * 64, None], "rejected": "everything"}),
            NewEntry("prompt.set", {"prompt": ["not", "text"], "revision": "one"}),
            NewEntry("params.set", {"changes": {"a": 5, "b": {"from": float("nan"), "to": 2**70}}}),
            NewEntry("edit.region", {"mask": {"bbox": [0, 0, 10**9, 10**9], "area_fraction": 7.5},
                                     "base": {"pixel_sha256": "1" * 64}, "result": {"pixel_sha256": "4" * 64}}),
            NewEntry("edit.manual", {"area_fraction": -3, "before": "?", "result": {"pixel_sha256": "4" * 64}}),
            NewEntry("export", {"binding": {"pixel_sha256": "4" * 64, "width": -1}, "source": "4" * 64}),
            NewEntry("weird.kind", {"$x": HOSTILE}),
        ], key=key)
        report = build_report_from_lines(store.export_lines(journal))
    _, data, page = check(report)
    assert report.verdict.ok
    assert data["area"]["fraction"] is not None and 0 <= data["area"]["fraction"] <= 1
    assert "thumbnail not shown" in page  # garbage and bomb blobs were refused, not embedded


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["prompt", "params", "generate", "select", "region", "manual", "note", "import"]),
                max_size=12),
       st.booleans(), st.booleans())
def test_random_sessions_always_give_valid_reports(tmp_path_factory: pytest.TempPathFactory, actions: list[str],
                                                   thumbnails: bool, export: bool) -> None:
    tmp = tmp_path_factory.mktemp("random")
    session = new_session(tmp, thumbnails=thumbnails)
    last: Image.Image | None = None
    for seed, action in enumerate(actions, start=1):
        if action == "prompt":
            session.set_prompt(f"prompt {seed} " * (seed % 3), None if seed % 2 else "neg")
        elif action == "params":
            session.set_parameters(seed=seed, steps=seed % 5)
        elif action == "generate":
            images = [picture(seed * 10 + i, (32, 24)) for i in range(1 + seed % 3)]
            session.record_generation(images)
            last = images[0]
        elif action == "select" and last is not None:
            session.select(0)
        elif action in ("region", "manual") and last is not None:
            after = picture(seed, (32, 24))
            if action == "region":
                session.region_edit(last, rect_mask((32, 24), (0, 0, 16, 12)), after)
            else:
                session.manual_edit(last, after, tool="brush", description="d")
            last = after
        elif action == "note":
            session.note(f"note {seed}")
        elif action == "import":
            last = picture(seed, (32, 24))
            session.import_image(last, made_by_person=bool(seed % 2))
    if export and last is not None:
        session.export(last, tmp / "out.png")
    report = build_report_from_lines(session.store.export_lines(session.journal))
    check(report)
    assert report.verdict.ok
    assert report.counts.entries == report.verdict.entries
    session.store.close()


def test_text_respects_other_widths(made: Made) -> None:
    report = build_report(made.png, journal_file=made.journal)
    for width in (40, 60, 100):
        for line in render_text(report, width).splitlines():
            assert cell_width(line) <= width, line


# -- 4. the command line and batch mode -----------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from provenance import _cli, _cli_report

    parser = argparse.ArgumentParser(prog="provenance")
    commands = parser.add_subparsers(dest="command")

    def command(name: str, handler: _cli.Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(handler=handler)
        return sub

    _cli_report.register(command)
    return parser


def run(*argv: str) -> int:
    args = _parser().parse_args(list(argv))
    result: int = args.handler(args)
    return result


def test_report_command_formats(made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("report", str(made.png)) == 0
    out = capsys.readouterr().out
    assert out.startswith("VERDICT: VALID BUT UNTRUSTED SIGNER")
    target = tmp_path / "r.json"
    assert run("report", str(made.journal), "--format", "json", "-o", str(target)) == 0
    VALIDATOR.validate(json.loads(target.read_text()))
    html_file = tmp_path / "r.html"
    pem = tmp_path / "key.pem"
    pem.write_text(made.session.key.public.to_pem())
    assert run("report", str(made.png), "--journal", str(made.journal), "--format", "html", "-o", str(html_file),
               "--trust", str(pem)) == 0
    assert "VALID: wrote" in capsys.readouterr().out
    assert '<h1 id="verdict-label">VALID</h1>' in html_file.read_text()
    other = tmp_path / "other.pem"
    other.write_text(SigningKey.generate().public.to_pem())
    assert run("report", str(made.png), "--trust", str(other)) == 1


def _batch_folder(made: Made, tmp_path: Path) -> Path:
    folder = tmp_path / "batch"
    sub = folder / "sub"
    sub.mkdir(parents=True)
    (folder / "harbour.png").write_bytes(made.png.read_bytes())
    (folder / "journal.jsonl").write_bytes(made.journal.read_bytes())
    (folder / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a corrupt container
    (folder / "fake.jpg").write_text("not an image at all")
    (folder / "broken.jsonl").write_bytes(made.journal.read_bytes()[:500])
    (folder / "notes.txt").write_text("not a target")
    (folder / "evil\x1b[2J<b>name.jsonl").write_bytes(b'{"type":"journal"}\n')
    (sub / "deep.png").write_bytes(made.png.read_bytes())
    return folder


def _namespace(target: Path, **extra: Any) -> argparse.Namespace:
    values = {"target": str(target), "trust": [], "checkpoint": [], "tsa_root": [], "thorough": False,
              "json": False, "recursive": False}
    values.update(extra)
    return argparse.Namespace(**values)


def test_verify_directory(made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from provenance._cli_report import verify_directory

    folder = _batch_folder(made, tmp_path)
    assert verify_directory(_namespace(folder)) == 1
    captured = capsys.readouterr()
    assert captured.err == ""  # no progress bar when standard error is not a terminal
    table = captured.out
    assert "harbour.png" in table and "exact-file" in table and "deep.png" not in table
    assert re.search(r"fake\.jpg\s+ERROR", table) and re.search(r"broken\.jsonl\s+NOT VALID", table)
    assert re.search(r"garbage\.png\s+(NOT VALID|ERROR)", table)
    assert "\x1b" not in table
    assert "6 file(s), 2 ok: 0 valid, 2 valid with no key pinned" in table
    assert verify_directory(_namespace(folder, recursive=True, json=True)) == 1
    listing = json.loads(capsys.readouterr().out)
    assert {row["file"]: row["ok"] for row in listing["files"]}[str(Path("sub") / "deep.png")] is True
    good = tmp_path / "good"
    good.mkdir()
    (good / "harbour.png").write_bytes(made.png.read_bytes())
    assert verify_directory(_namespace(good)) == 0


def test_report_directory(made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _batch_folder(made, tmp_path)
    out = tmp_path / "reports"
    assert run("report", str(folder), "--format", "html", "-o", str(out), "--recursive") == 1
    table = capsys.readouterr().out
    assert "index: index.html" in table
    index = (out / "index.html").read_text()
    assert "<script" not in index and "\x1b" not in index and "&lt;b&gt;" in index
    names = sorted(p.name for p in out.iterdir())
    assert "harbour.png.report.html" in names and "sub__deep.png.report.html" in names
    assert "fake.jpg.report.html" not in names  # an error row, not a report
    assert "broken.jsonl.report.html" in names  # not valid is still a report: it says so first
    assert '<h1 id="verdict-label">NOT VALID</h1>' in (out / "broken.jsonl.report.html").read_text()
    assert run("report", str(folder), "--format", "json", "-o", str(tmp_path / "json")) == 1
    capsys.readouterr()
    for report_file in (tmp_path / "json").glob("*.report.json"):
        VALIDATOR.validate(json.loads(report_file.read_text()))
    assert json.loads((tmp_path / "json" / "index.json").read_text())["ok"] is False


def test_progress_bar_only_on_a_terminal() -> None:
    from provenance._cli_report import _Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = _Progress(2, stream)
    progress.update(1, "a.png")
    progress.update(2, "b.png")
    progress.close()
    assert "[" in stream.getvalue() and "2/2 b.png" in stream.getvalue()
    quiet = io.StringIO()
    _Progress(2, quiet).update(2, "x")
    assert quiet.getvalue() == ""
