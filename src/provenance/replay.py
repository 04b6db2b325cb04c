"""Replay: re-run each recorded generation and report whether its outputs reproduce.

A journal recorded through `provenance.integrations.diffusers` holds, for every
call, the resolved arguments, the generator seeds, the scheduler and the model
identity.  Replaying runs the same calls, in order, on a pipeline the auditor
provides (``--pipeline MODULE:FACTORY``) and compares every output with the
recorded candidate: the same pixel hash ("reproduced"), a perceptual distance
within the matching threshold ("similar"), or neither ("differs").  Inputs that
are images (an img2img source, an inpainting base) are taken from earlier
replayed outputs with the recorded pixel hash; masks from the journal's blobs.
"""

from __future__ import annotations

import importlib
import inspect
import io
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
from PIL import Image

from . import _formats, phash
from .errors import UsageError
from .journal import SignedEntry
from .verify import iter_file_lines, verify_lines

__all__ = ["GenerationReplay", "load_factory", "replay_file", "replay_lines"]


@attrs.frozen
class CandidateReplay:
    index: int
    recorded: str
    replayed: str | None
    distance: int | None

    @property
    def reproduced(self) -> bool:
        return self.replayed == self.recorded


@attrs.frozen
class GenerationReplay:
    seq: int
    generation: int
    mode: str
    status: str  # "reproduced", "similar", "differs" or "skipped"
    reason: str
    candidates: tuple[CandidateReplay, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "entry": self.seq,
            "generation": self.generation,
            "mode": self.mode,
            "status": self.status,
            "reason": self.reason,
            "candidates": [
                {"index": c.index, "recorded": c.recorded, "replayed": c.replayed, "distance": c.distance,
                 "reproduced": c.reproduced}
                for c in self.candidates
            ],
        }


def load_factory(spec: str) -> Callable[..., Any]:
    """``package.module:function`` -> the function."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageError("--pipeline takes MODULE:FACTORY, e.g. mypkg.pipes:make_pipeline")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name}: {exc}") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise UsageError(f"{spec} is not a callable factory")
    return factory  # type: ignore[no-any-return]


def _pipeline_for(factory: Callable[..., Any], mode: str, cache: dict[str, Any]) -> Any:
    if mode not in cache:
        parameters = inspect.signature(factory).parameters.values()
        takes_mode = any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)
        cache[mode] = factory(mode) if takes_mode else factory()
    return cache[mode]


def replay_file(path: str | Path, factory: Callable[..., Any]) -> list[GenerationReplay]:
    """Verify the journal file, then replay every recorded generation in order."""
    with open(path, "rb") as handle:
        return replay_lines(iter_file_lines(handle), factory)


def replay_lines(lines: Iterable[bytes], factory: Callable[..., Any]) -> list[GenerationReplay]:
    """`replay_file` for a journal given as its lines."""
    generations: list[SignedEntry] = []
    blobs: dict[str, bytes] = {}

    def visit(signed: SignedEntry) -> None:
        if signed.entry.kind == "generation":
            generations.append(signed)

    verdict = verify_lines(lines, visitor=visit, blob_visitor=lambda b: blobs.__setitem__(b.sha256, b.data))
    if not verdict.valid:
        raise UsageError(f"refusing to replay a journal that does not verify: {verdict.reason}")
    return replay_entries(generations, factory, blobs)


def replay_entries(
    generations: Sequence[SignedEntry], factory: Callable[..., Any], blobs: dict[str, bytes]
) -> list[GenerationReplay]:
    from .integrations.diffusers import _output_images, replay_arguments

    outputs: dict[str, Image.Image] = {}
    pipes: dict[str, Any] = {}
    results: list[GenerationReplay] = []
    for signed in generations:
        body = signed.entry.body
        number, mode = int(body.get("generation", 0)), str(body.get("mode", "txt2img"))
        inputs = body.get("inputs") or {}
        candidates = [c for c in body.get("candidates", []) if isinstance(c, dict)]
        pipeline = inputs.get("pipeline") if isinstance(inputs, dict) else None
        if not isinstance(pipeline, dict):
            results.append(GenerationReplay(signed.entry.seq, number, mode, "skipped",
                                            "not recorded by a pipeline integration (no call to repeat)"))
            continue
        kwargs, missing = replay_arguments(inputs)
        call = pipeline.get("call", {})
        for name in ("image", "mask_image"):
            value = call.get(name)
            if not isinstance(value, dict) or "image" not in value:
                continue
            wanted = value["image"].get("pixel_sha256")
            if wanted in outputs:
                kwargs[name] = outputs[wanted]
            elif name == "mask_image" and isinstance(inputs.get("mask"), dict) and \
                    inputs["mask"].get("blob_sha256") in blobs:
                kwargs[name] = Image.open(io.BytesIO(blobs[inputs["mask"]["blob_sha256"]])).convert("L")
                kwargs[name].load()
            else:
                missing.append(name)
        if missing:
            results.append(GenerationReplay(signed.entry.seq, number, mode, "skipped",
                                            f"inputs not in the journal: {', '.join(sorted(set(missing)))}"))
            continue
        import torch  # only now: a journal with nothing to re-run needs no torch

        generator_info = pipeline.get("generator", {})
        seeds = generator_info.get("seeds") or []
        device = str(generator_info.get("device", "cpu"))
        generators = [torch.Generator(device).manual_seed(int(s)) for s in seeds]
        if generators:
            kwargs["generator"] = generators if len(generators) > 1 else generators[0]
        pipe = _pipeline_for(factory, mode, pipes)
        threads = (pipeline.get("runtime") or {}).get("threads")
        restore = torch.get_num_threads()
        if isinstance(threads, int) and threads > 0 and device == "cpu":
            # CPU results depend on the thread count: use the recorded one.
            torch.set_num_threads(threads)
        try:
            result = pipe(**kwargs)
        finally:
            torch.set_num_threads(restore)
        # As the recorder saw them: output_type "np" or "pt" gives arrays, not PIL images.
        images = _output_images(result)
        replayed: list[CandidateReplay] = []
        for candidate, image in zip(candidates, images, strict=False):
            pixel = _formats.pixel_hash(image).hex()
            outputs[pixel] = image
            recorded = str(candidate.get("pixel_sha256"))
            distance = None
            if pixel != recorded and isinstance(candidate.get("phash"), str):
                distance = phash.distance(phash.suspect_hash(image), phash.PerceptualHash.from_str(candidate["phash"]))
            replayed.append(CandidateReplay(int(candidate.get("index", len(replayed))), recorded, pixel, distance))
        if len(images) != len(candidates):
            status, reason = "differs", f"{len(images)} outputs where {len(candidates)} were recorded"
        elif all(c.reproduced for c in replayed):
            status, reason = "reproduced", f"all {len(replayed)} outputs identical (same pixel hash)"
        elif all(c.reproduced or (c.distance is not None and c.distance <= phash.THRESHOLD) for c in replayed):
            status, reason = "similar", "outputs differ in pixels but match perceptually"
        else:
            status, reason = "differs", "outputs do not reproduce"
        results.append(GenerationReplay(signed.entry.seq, number, mode, status, reason, tuple(replayed)))
    return results
