"""The HTML report of the demo session, rendered by a real browser (headless Chromium).

The demo runs with its procedural engine (offline, seconds); the report of the
exported PNG (with the demo's journal file, which keeps the thumbnails the
embedded copy leaves out) is written to a file and opened by Chromium twice:
``--dump-dom`` shows what the browser built, ``--screenshot`` what it painted.
The screenshot and the page are kept under ``artifacts/`` at the repository
root.  Skipped only when no Chromium is installed.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from provenance.keys import load_public_key
from provenance.report import build_report, render_html

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).is_file()), None)
WINDOW = (1200, 3000)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian package `chromium`)"),
]


def _chromium(profile: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--mute-audio",
        f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}", *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def _distinct_colours(image: Image.Image) -> int:
    colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    return 0 if colours is None else len(colours)


def test_demo_report_renders_in_chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from provenance.demo import run_demo

    monkeypatch.setenv("PROVENANCE_HOME", str(tmp_path / "home"))  # run_demo sets it; restored afterwards
    demo = run_demo(tmp_path / "demo", use_diffusers=False, say=lambda _: None)
    png, directory = Path(demo["png"]), Path(demo["directory"])
    key = load_public_key((directory / "demo-key.pem").read_bytes())
    report = build_report(png, journal_file=directory / "journal.jsonl", trusted=[key])
    assert report.verdict.label == "VALID"
    page = tmp_path / "report.html"
    page.write_text(render_html(report), encoding="utf-8")

    dumped = _chromium(tmp_path / "profile-dom", "--dump-dom", page.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    # The verdict, first.
    assert re.search(r'<h1 id="verdict-label">VALID</h1>', dom)
    assert dom.index('id="verdict"') < dom.index('id="counts"') < dom.index('id="lineage"')
    # The counts, as the report computed them.
    counts = report.counts
    for key_name, number in (("generations", counts.generations), ("candidates", counts.candidates),
                             ("prompt-revisions", counts.prompt_revisions), ("region-edits", counts.region_edits),
                             ("manual-edits", counts.manual_edits)):
        assert re.search(rf'id="count-{key_name}"><span class="n">{number}</span>', dom), key_name
    assert counts.generations >= 3 and counts.region_edits >= 1 and counts.manual_edits >= 1
    # The timeline: one mark per entry, and the table.
    chart = dom[dom.index('id="timeline-chart"'):dom.index('id="timeline-table"')]
    assert chart.count("<circle") == counts.entries
    # The lineage: its images are in the page, and they decoded (the browser kept them as <img>).
    chain = dom[dom.index('id="lineage-chain"'):dom.index('id="rounds"')]
    assert len(re.findall(r'<img [^>]*src="data:image/(?:png|webp);base64,', chain)) >= 3
    assert "<svg" in chain  # the mask overlay of the region edit
    assert html.escape(report.title or "") in dom
    assert "<script" not in dom.lower()

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-demo.png"
    shot.unlink(missing_ok=True)
    painted = _chromium(tmp_path / "profile-shot", f"--screenshot={shot}", page.as_uri())
    assert painted.returncode == 0 and shot.is_file(), painted.stderr[-2000:]
    (ARTIFACTS / "report-demo.html").write_text(page.read_text(encoding="utf-8"), encoding="utf-8")

    # Printable on A4: Chromium's print engine lays it out on A4 pages (595 x 842 points).
    pdf = ARTIFACTS / "report-demo.pdf"
    pdf.unlink(missing_ok=True)
    printed = _chromium(tmp_path / "profile-pdf", f"--print-to-pdf={pdf}", "--no-pdf-header-footer",
                        page.as_uri())
    assert printed.returncode == 0 and pdf.is_file(), printed.stderr[-2000:]
    boxes = re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([0-9.]+)\s+([0-9.]+)\s*\]", pdf.read_bytes())
    assert boxes and all(abs(float(w) - 595.3) < 2 and abs(float(h) - 841.9) < 2 for w, h in boxes), boxes[:3]

    with Image.open(shot) as image:
        screenshot = image.convert("RGB")
    assert screenshot.size == WINDOW
    # The verdict banner: painted in the "valid" green near the top.
    banner = screenshot.crop((0, 0, WINDOW[0], 160))
    green = (0x16, 0x65, 0x34)
    greens = sum(count for count, colour in banner.getcolors(1 << 20) or [] if colour == green)
    assert greens > 20_000
    # The page is not blank, and somewhere below the banner there are pictures: bands
    # with hundreds of colours (text and flat boxes have a few dozen).
    assert _distinct_colours(screenshot) > 2_000
    bands = [_distinct_colours(screenshot.crop((0, y, WINDOW[0], y + 200))) for y in range(200, WINDOW[1], 200)]
    assert sum(1 for n in bands if n > 500) >= 2, bands
