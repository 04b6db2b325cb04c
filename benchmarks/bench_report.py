"""Benchmark: how long does the auditor's report take on a 1,000-entry journal?

A realistic session is recorded with the recording API (`provenance.recorder.
Session`) into a temporary store: rounds of a prompt revision, a parameter
change, a generation of four candidates with small thumbnails and a selection,
with a note, a region edit (with its mask) and a manual edit every few rounds,
until the journal holds ``--entries`` entries (default 1,000); then the final
image is exported and the journal sealed and written as a portable file.

Each format is timed end to end, as `provenance report FILE --format F` does
it: one streaming verification that builds the model (`build_report`), then
rendering.  Next to each figure is the time of plain verification
(`verify_file`) of the same file in the same run, which is the floor a report
cannot go under.  Every figure is the median of ``--repeat`` runs (default 5).

Target (reported, never asserted): under one second per format.

Run it as ``python benchmarks/bench_report.py [--entries N] [--repeat N]``.
The last line printed is one JSON object with the headline numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import provenance
except ImportError:  # not installed: use the source tree next to this file
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import provenance

from PIL import Image, ImageDraw

from provenance.keys import SigningKey
from provenance.recorder import Session
from provenance.report import build_report, render_html, render_json, render_text
from provenance.store import Store
from provenance.verify import verify_file

TARGET_MS = 1000.0
IMAGE_SIZE = (128, 96)


def _picture(rng: random.Random) -> Image.Image:
    image = Image.new("RGB", IMAGE_SIZE, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    draw = ImageDraw.Draw(image)
    for _ in range(5):
        x, y, r = rng.randrange(IMAGE_SIZE[0]), rng.randrange(IMAGE_SIZE[1]), rng.randrange(4, 30)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    return image


def record_session(directory: Path, entries: int) -> tuple[Path, int]:
    """Record a session of about `entries` entries; returns the journal file and its length."""
    rng = random.Random(1234)
    with Store(directory / "store.sqlite") as store:
        session = Session(title="benchmark session", store=store, key=SigningKey.generate(), thumbnails=True)
        session.load_model("bench-model", sha256="ab" * 32)
        words = ["harbour", "dusk", "oil painting", "warm light", "boat", "fog", "moon", "reflections", "quiet"]
        prompt = "a harbour at dusk"
        current: Image.Image | None = None
        number = 0
        # Leave room for the closing export (and its checkpoint) and the seal.
        while store.info(session.journal).size < entries - 6:
            number += 1
            if number % 3 == 1:
                session.note(f"round {number}: trying {rng.choice(words)}")
            prompt = ", ".join(dict.fromkeys([*prompt.split(", ")[-5:], rng.choice(words)]))
            session.set_prompt(prompt, "blurry, text" if number % 2 else "blurry")
            session.set_parameters(seed=rng.randrange(2**32), guidance=round(rng.uniform(5, 10), 1),
                                   steps=rng.choice([20, 25, 30]))
            images = [_picture(rng) for _ in range(4)]
            generation = session.record_generation(images, seeds=[rng.randrange(2**32) for _ in images])
            pick = rng.randrange(4)
            session.select(generation.candidates[pick], reason=f"best {rng.choice(words)}")
            current = images[pick]
            if number % 4 == 0:
                mask = Image.new("L", IMAGE_SIZE, 0)
                x, y = rng.randrange(80), rng.randrange(50)
                ImageDraw.Draw(mask).ellipse([x, y, x + 40, y + 40], fill=255)
                result = Image.composite(_picture(rng), current, mask)
                session.region_edit(current, mask, result, prompt=f"a {rng.choice(words)}", strength=0.7, seed=7)
                current = result
            if number % 5 == 0:
                painted = current.copy()
                ImageDraw.Draw(painted).line([(5, 80), (60, 70)], fill=(250, 240, 200), width=2)
                session.manual_edit(current, painted, tool="brush", description="a highlight", area_fraction=0.01)
                current = painted
        while store.info(session.journal).size < entries - 2:
            session.note("padding to the target length")
        assert current is not None
        session.export(current, directory / "final.png")
        session.seal("benchmark finished")
        journal = directory / "journal.jsonl"
        store.export(session.journal, journal)
        size = store.info(session.journal).size
    return journal, size


def _median_ms(action: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall-clock and CPU milliseconds of `repeat` runs (CPU time: a busy machine distorts it less)."""
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        action()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1000, help="journal length (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; the median is kept")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        directory = Path(tmp)
        os.environ["PROVENANCE_HOME"] = str(directory / "home")
        started = time.perf_counter()
        journal, size = record_session(directory, args.entries)
        record_s = time.perf_counter() - started
        file_kb = journal.stat().st_size / 1024

        verify_ms, verify_cpu = _median_ms(lambda: verify_file(journal), args.repeat)
        build_ms, build_cpu = _median_ms(lambda: build_report(journal), args.repeat)
        report = build_report(journal)
        renderers: dict[str, Callable[[], object]] = {
            "text": lambda: render_text(build_report(journal)),
            "json": lambda: json.dumps(render_json(build_report(journal))),
            "html": lambda: render_html(build_report(journal)),
        }
        timings = {name: _median_ms(run, args.repeat) for name, run in renderers.items()}
        sizes = {
            "text": len(render_text(report).encode()),
            "json": len(json.dumps(render_json(report)).encode()),
            "html": len(render_html(report).encode()),
        }

    print(f"provenance {provenance.__version__} report benchmark: {size} entries "
          f"({report.counts.generations} generations, {report.counts.candidates} candidates, "
          f"{report.counts.region_edits} region edits, {report.counts.manual_edits} manual edits), "
          f"journal file {file_kb:.0f} kB, recorded in {record_s:.1f} s; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"median of {args.repeat} runs; each report = verify + build the model + render, from the file")
    print(f"{'':<8}{'report ms':>11}{'verify ms':>11}{'x':>6}{'report cpu':>12}{'verify cpu':>12}{'x':>6}"
          f"{'out kB':>9}  target < 1 s")

    def row(name: str, ms: float, cpu: float, kb: str, verdict: str) -> None:
        print(f"{name:<8}{ms:>11.1f}{verify_ms:>11.1f}{ms / verify_ms:>6.2f}{cpu:>12.1f}{verify_cpu:>12.1f}"
              f"{cpu / verify_cpu:>6.2f}{kb:>9}  {verdict}")

    row("(model)", build_ms, build_cpu, "", "")
    for name, (ms, cpu) in timings.items():
        row(name, ms, cpu, f"{sizes[name] / 1024:.0f}", "met" if ms < TARGET_MS else "MISSED")
    results: dict[str, Any] = {
        "entries": size,
        "verify_ms": round(verify_ms, 1),
        "verify_cpu_ms": round(verify_cpu, 1),
        "build_ms": round(build_ms, 1),
        "report_text_ms": round(timings["text"][0], 1),
        "report_json_ms": round(timings["json"][0], 1),
        "report_html_ms": round(timings["html"][0], 1),
        "report_text_cpu_ms": round(timings["text"][1], 1),
        "report_json_cpu_ms": round(timings["json"][1], 1),
        "report_html_cpu_ms": round(timings["html"][1], 1),
        "html_kb": round(sizes["html"] / 1024, 1),
        "target_ms": TARGET_MS,
        "targets_met": all(ms < TARGET_MS for ms, _ in timings.values()),
    }
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
