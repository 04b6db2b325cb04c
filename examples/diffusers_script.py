"""Record every call of a diffusers pipeline by wrapping it once with `record`.

The pipeline is the tiny random-weight Stable Diffusion pipeline that ships with
`provenance` for tests (offline, CPU, a second per batch); with a real model
you would write ``StableDiffusionPipeline.from_pretrained(...)`` instead and
keep the rest as it is:

    python examples/diffusers_script.py [OUTPUT_DIR]

Needs the ``provenance[diffusers]`` extra.  The journal it writes can be
re-run by anyone holding the same pipeline:

    provenance replay OUTPUT_DIR/harbour.provenance.jsonl \\
        --pipeline provenance.integrations._tiny:tiny_pipeline_factory
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Never reach a model hub from an example (huggingface_hub reads this at import).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

try:
    import provenance  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch

from provenance.binding import verify_image
from provenance.integrations._tiny import build_tiny_pipeline
from provenance.integrations.diffusers import record
from provenance.recorder import Session


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "diffusers-script-output")
    out.mkdir(parents=True, exist_ok=True)
    # The tiny pipeline's tensors are small: one thread is fastest (and replay
    # uses the thread count the journal records).
    torch.set_num_threads(1)
    pipe = build_tiny_pipeline("txt2img")

    with Session(title="Harbour (diffusers)") as session:
        # From here on every call is recorded; the pipeline behaves exactly as before.
        pipe = record(pipe, session, name="tiny-sd (random weights)")
        session.note("Intent: a quiet harbour at dusk.")

        session.set_prompt("a harbour at dusk")
        first = pipe("a harbour at dusk", num_inference_steps=2, num_images_per_prompt=4,
                     generator=torch.Generator("cpu").manual_seed(1234))
        session.select(1, reason="the calmest water")

        # A second round with a refined prompt; no generator given: the recorder
        # creates a seeded one and records its seed, so this call replays too.
        session.set_prompt("a harbour at dusk, oil painting, warm light", negative="blurry")
        second = pipe("a harbour at dusk, oil painting, warm light", negative_prompt="blurry",
                      num_inference_steps=3, guidance_scale=8.0, num_images_per_prompt=4)
        session.select(2, reason="warm light on the water")
        final = second.images[2]
        assert len(first.images) == 4

        png = session.export(final, out / "harbour.png")
        session.seal("finished")
        session.store.export(session.journal, out / "harbour.provenance.jsonl")

    verdict = verify_image(png.read_bytes())
    print(f"{png.name}: {verdict.status} ({verdict.binding}) — {verdict.reason}")
    print("replay it: provenance replay", out / "harbour.provenance.jsonl",
          "--pipeline provenance.integrations._tiny:tiny_pipeline_factory")
    return 0 if verdict.ok() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
