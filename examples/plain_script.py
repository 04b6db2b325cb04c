"""Record a session around your own image generator, then export and verify the result.

The "generator" here draws with Pillow (a stand-in for any model you call from
Python); what matters is the few recording calls around it:

    python examples/plain_script.py [OUTPUT_DIR]

Keys and the journal store live in $PROVENANCE_HOME (default: your user data
directory); a signing key named "default" is created on first use.
"""

from __future__ import annotations

import hashlib
import inspect
import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

try:
    import provenance  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from provenance.binding import verify_image
from provenance.recorder import Session


def draw(prompt: str, seed: int, steps: int, size: int = 192) -> Image.Image:
    """A deterministic toy generator: prompt and seed in, picture out."""
    rng = random.Random(f"{prompt}|{seed}")
    hue = hashlib.sha256(prompt.encode()).digest()
    image = Image.new("RGB", (size, size), (hue[0] // 2, hue[1] // 2, 96 + hue[2] // 3))
    pen = ImageDraw.Draw(image)
    for _ in range(4 + steps // 5):
        x, y, r = rng.randrange(size), rng.randrange(size), rng.randrange(6, size // 4)
        pen.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.randrange(256) for _ in range(3)))
    return image.filter(ImageFilter.GaussianBlur(max(0.5, 4 - steps / 10)))


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "plain-script-output")
    out.mkdir(parents=True, exist_ok=True)

    with Session(title="Lighthouse study", thumbnails=True) as session:
        # The "model" is the drawing function: identify it by a hash of its code.
        session.load_model("pillow-circles", sha256=hashlib.sha256(inspect.getsource(draw).encode()).hexdigest())
        session.note("Intent: a lighthouse on a dark coast, one bright beam.")

        rounds = [
            ("a lighthouse", {"seed": 100, "steps": 10}),
            ("a lighthouse on a dark coast, one bright beam", {"steps": 25}),
        ]
        chosen: Image.Image | None = None
        for number, (prompt, parameters) in enumerate(rounds, start=1):
            # Decisions first (recorded as the person's), then the tool's output.
            session.set_prompt(prompt, negative="text, watermark")
            session.set_parameters(**parameters)
            p = session.parameters
            seeds = [p["seed"] + i for i in range(4)]
            images = [draw(prompt, s, p["steps"]) for s in seeds]
            generation = session.record_generation(images, seeds=seeds)
            pick = number % 4
            session.select(generation.candidates[pick], reason=f"round {number}: the clearest beam")
            chosen = images[pick]
        assert chosen is not None

        # A hand edit: a person painted a highlight.
        touched = chosen.copy()
        ImageDraw.Draw(touched).line([(20, 30), (170, 60)], fill=(255, 250, 210), width=3)
        session.manual_edit(chosen, touched, tool="brush", description="brightened the beam", area_fraction=0.02)

        png = session.export(touched, out / "lighthouse.png")
        jpeg = session.export(touched, out / "lighthouse.jpg", quality=90)
        # Done: a seal closes the journal for good; then write the portable journal file.
        session.seal("finished")
        session.store.export(session.journal, out / "lighthouse.provenance.jsonl")
        journal = session.journal

    for path in (png, jpeg):
        verdict = verify_image(path.read_bytes())
        print(f"{path.name}: {verdict.status} ({verdict.binding}) — {verdict.reason}")
        if not verdict.ok():
            return 1
    print(f"journal {journal}: {out / 'lighthouse.provenance.jsonl'}")
    print(f"check it yourself: provenance verify {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
