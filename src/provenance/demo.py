"""`provenance demo`: a complete, realistic recorded session, offline, in seconds.

The session is the one the deciders looked at: a model is loaded, the prompt is
revised over several rounds, parameters change, batches of four candidates are
generated, the author selects, inpaints a region, paints by hand, and exports
the final image as PNG and JPEG with the journal inside; then both are verified.

With the ``diffusers`` extra installed the images come from a tiny random-weight
Stable Diffusion pipeline (wrapped by `provenance.integrations.diffusers`, so
every call is recorded by the integration); without it, from a deterministic
procedural painter.  Either way the demo needs no model download and no network.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFilter

from . import _home
from .binding import verify_image
from .images import read_image_file
from .keys import KeyStore
from .recorder import Session
from .store import Store

__all__ = ["ProceduralPainter", "run_demo"]

DEMO_KEY = "demo"


class ProceduralPainter:
    """A deterministic stand-in for a diffusion model: prompt and seed in, picture out."""

    name = "procedural-painter-v1"

    def __init__(self, size: int = 256) -> None:
        self.size = size

    @classmethod
    def weights_sha256(cls) -> str:
        # The "weights" of this model are its own source code.
        return hashlib.sha256(inspect.getsource(cls).encode()).hexdigest()

    def generate(self, prompt: str, seed: int, steps: int, guidance: float) -> Image.Image:
        rng = random.Random(f"{prompt}|{seed}|{steps}|{guidance}")
        hue = int(hashlib.sha256(prompt.encode()).hexdigest()[:2], 16)
        top = _colour(hue, 0.35 + guidance / 40)
        bottom = _colour((hue + 90) % 256, 0.8)
        image = Image.new("RGB", (self.size, self.size))
        draw = ImageDraw.Draw(image)
        for y in range(self.size):
            t = y / (self.size - 1)
            colour = tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
            draw.line([(0, y), (self.size, y)], fill=colour)
        horizon = int(self.size * rng.uniform(0.45, 0.7))
        draw.rectangle([0, horizon, self.size, self.size], fill=_colour((hue + 150) % 256, 0.45))
        for _ in range(3 + steps // 10):
            x, y, r = rng.randrange(self.size), rng.randrange(horizon), rng.randrange(8, self.size // 5)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=_colour(rng.randrange(256), rng.uniform(0.5, 1)))
        for _ in range(4):
            x = rng.randrange(self.size)
            draw.polygon([(x, horizon), (x + rng.randrange(10, 40), horizon - rng.randrange(20, 80)),
                          (x + rng.randrange(40, 70), horizon)], fill=_colour(rng.randrange(256), 0.3))
        return image.filter(ImageFilter.GaussianBlur(radius=max(0.5, 3 - steps / 15)))

    def batch(self, prompt: str, seeds: Sequence[int], steps: int, guidance: float) -> list[Image.Image]:
        return [self.generate(prompt, s, steps, guidance) for s in seeds]

    def inpaint(self, base: Image.Image, mask: Image.Image, prompt: str, seed: int) -> Image.Image:
        patch = self.generate(prompt, seed, 30, 9.0).resize(base.size)
        return Image.composite(patch, base, mask)


def _colour(hue: int, light: float) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hls_to_rgb(hue / 256, max(0.05, min(0.95, light * 0.8)), 0.6)
    return int(r * 255), int(g * 255), int(b * 255)


def _mask_for(size: tuple[int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    w, h = size
    ImageDraw.Draw(mask).ellipse([w * 0.55, h * 0.15, w * 0.9, h * 0.5], fill=255)
    return mask


def _paint_stroke(image: Image.Image) -> Image.Image:
    painted = image.copy()
    w, h = painted.size
    stroke = [(w * 0.1, h * 0.8), (w * 0.45, h * 0.72)]
    ImageDraw.Draw(painted).line(stroke, fill=(250, 235, 200), width=max(2, w // 64))
    return painted


def run_demo(directory: str | os.PathLike[str], *, use_diffusers: bool | None = None,
             say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo session into `directory`; returns what it made (paths, verdicts, timings)."""
    started = time.perf_counter()
    out = Path(directory).resolve()
    home = _home.ensure_private_dir(out / "home")
    os.environ[_home.HOME_ENV] = str(home)
    keys = KeyStore(home)
    key = keys.load(DEMO_KEY) if keys.exists(DEMO_KEY) else keys.generate(DEMO_KEY)

    engine = _choose_engine(use_diffusers)
    say(f"provenance demo: images from {engine.describe}")
    with Store(home / "store.sqlite") as store:
        session = Session(title="Harbour at dusk (demo)", store=store, key=key, thumbnails=True)
        engine.run(session, out, say)
        png, jpeg = out / "harbour.png", out / "harbour.jpg"
        final = engine.final
        assert final is not None
        session.export(final, png)
        session.export(final, jpeg, quality=90)
        session.seal("demo finished")
        store.export(session.journal, out / "journal.jsonl")
        journal = session.journal
    pem = out / "demo-key.pem"
    pem.write_text(keys.public_key(DEMO_KEY).to_pem())

    verdicts = {}
    trusted = [keys.public_key(DEMO_KEY)]
    for path in (png, jpeg):
        verdict = verify_image(read_image_file(path), trusted=trusted)
        verdicts[path.name] = verdict
        say(f"  verify {path.name}: {verdict.status.upper()} — bound to {verdict.binding}; {verdict.reason}")
    elapsed = time.perf_counter() - started
    say(f"\nDone in {elapsed:.1f} s. Everything is in {out}:")
    say(f"  {png.name}, {jpeg.name}   final image, journal embedded")
    say("  journal.jsonl             the portable journal")
    say(f"  demo-key.pem              the public key that signed it; key store in {home}")
    say("\nNext, try:")
    say(f"  provenance verify {png} --trust {pem}")
    say(f"  provenance report {png} --format html -o {out / 'report.html'}")
    say(f"  provenance show {out / 'journal.jsonl'}")
    say(f"  provenance inspect {jpeg}")
    return {"directory": out, "journal": journal, "png": png, "jpeg": jpeg, "verdicts": verdicts,
            "seconds": elapsed, "engine": engine.describe}


class _ProceduralEngine:
    describe = "the procedural painter (install the [diffusers] extra for a tiny diffusion pipeline)"

    def __init__(self) -> None:
        self.painter = ProceduralPainter()
        self.final: Image.Image | None = None

    def run(self, session: Session, out: Path, say: Callable[[str], None]) -> None:
        painter = self.painter
        session.load_model(painter.name, sha256=painter.weights_sha256())
        session.note("Intent: a quiet harbour at dusk, warm light on the water, one boat in the foreground.")
        rounds: list[tuple[str, str | None, dict[str, Any]]] = [
            ("a harbour at dusk", None, {"seed": 1000, "steps": 20, "guidance": 7.0, "sampler": "DDIM"}),
            ("a harbour at dusk, oil painting, warm light", "blurry, text",
             {"guidance": 8.5}),
            ("a quiet harbour at dusk, oil painting, warm light on the water, one small boat",
             "blurry, text, people", {"steps": 30, "seed": 2000}),
        ]
        chosen = None
        for number, (prompt, negative, params) in enumerate(rounds, start=1):
            session.set_prompt(prompt, negative)
            session.set_parameters(**params)
            p = session.parameters
            seeds = [p["seed"] + i for i in range(4)]
            images = painter.batch(prompt, seeds, p["steps"], p["guidance"])
            generation = session.record_generation(images, seeds=seeds)
            pick = (number + 1) % 4
            reason = ("best composition so far" if number < len(rounds) else
                      "the boat sits where I want it and the light is right")
            session.select(generation.candidates[pick], reason=reason)
            chosen = images[pick]
            say(f"  round {number}: 4 candidates, kept #{pick} — {reason}")
        assert chosen is not None
        mask = _mask_for(chosen.size)
        inpainted = painter.inpaint(chosen, mask, "a pale moon low over the water", seed=77)
        session.region_edit(chosen, mask, inpainted, prompt="a pale moon low over the water", strength=0.8, seed=77)
        say("  region edit: inpainted a moon into the upper right")
        painted = _paint_stroke(inpainted)
        session.manual_edit(inpainted, painted, tool="brush", description="painted a reflection line on the water",
                            area_fraction=0.01)
        say("  manual edit: painted a reflection by hand")
        self.final = painted


class _DiffusersEngine(_ProceduralEngine):
    describe = "a tiny random-weight Stable Diffusion pipeline (diffusers, CPU)"

    def run(self, session: Session, out: Path, say: Callable[[str], None]) -> None:
        # transformers warns about optional image processors the demo never uses.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from .integrations.diffusers import run_demo_rounds

        self.final = run_demo_rounds(session, out, say)


def _choose_engine(use_diffusers: bool | None) -> _ProceduralEngine:
    if use_diffusers is False:
        return _ProceduralEngine()
    try:
        from .integrations import _tiny
        from .integrations import diffusers as _integration  # noqa: F401
    except ImportError:
        available = False
    else:
        available = _tiny.diffusers_available()
    if use_diffusers and not available:
        from .errors import UsageError

        raise UsageError("the diffusers extra is not installed: pip install 'provenance[diffusers]'")
    return _DiffusersEngine() if available else _ProceduralEngine()
