"""A ComfyUI node, "Save Image (with provenance)", written as a plugin author would.

Drop this file into ``ComfyUI/custom_nodes/`` (with `provenance` installed in
ComfyUI's Python) and the node appears under *image/provenance*.  It saves
images like ComfyUI's own *Save Image* node, and records each run in a signed
journal that travels inside every saved file:

* the prompt text and sampler settings the person set in the graph (read from
  the graph ComfyUI executed) as ``prompt.set`` / ``params.set`` -- only what
  changed since the node's previous run;
* the batch the graph produced as one ``generation`` (actor: the tool), with
  the whole executed graph as its inputs;
* optionally which image of the batch the person kept (``selected``);
* the export of each saved file, bound to it (hard binding + pixel hash).

One journal per node across runs: iterating on a prompt in ComfyUI builds up
the "several rounds of choices" that courts looked at.  Set ``journal`` to
continue a particular journal instead.

Nothing here imports ComfyUI: a node is a plain class following ComfyUI's
conventions (``INPUT_TYPES``, ``RETURN_TYPES``, ``FUNCTION``, ``OUTPUT_NODE``,
``CATEGORY``, and ``NODE_CLASS_MAPPINGS`` at module level).  ``IMAGE`` inputs are
float tensors ``[batch, height, width, channels]`` in 0..1; numpy arrays of the
same shape work too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

try:
    import provenance  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from provenance.errors import ImportFormatError
from provenance.importers import parse_comfyui
from provenance.recorder import Session

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "SaveImageWithProvenance", "to_pil"]

_FORMATS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
# The normalised importer names that are the person's settings (the rest is layout).
_SETTINGS = ("seed", "steps", "cfg_scale", "sampler", "scheduler", "denoising_strength", "model", "width",
             "height", "batch_size", "loras", "clip_skip")


def default_output_directory() -> Path:
    """ComfyUI's output folder inside ComfyUI; elsewhere $COMFYUI_OUTPUT_DIR or ./output."""
    try:
        import folder_paths  # ComfyUI's own module

        return Path(folder_paths.get_output_directory())
    except ImportError:
        return Path(os.environ.get("COMFYUI_OUTPUT_DIR", "output"))


def to_pil(images: Any) -> list[Image.Image]:
    """ComfyUI IMAGE (torch or numpy, [B, H, W, C] in 0..1) to 8-bit images.

    Converted exactly as ComfyUI's Save Image does (scale, clip, truncate), so
    the recorded pixels are the ones a stock save would write.
    """
    array = images.detach().cpu().float().numpy() if hasattr(images, "detach") else np.asarray(images)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected IMAGE [batch, height, width, channels], got shape {array.shape}")
    pictures = []
    for frame in array:
        pixels = np.clip(255.0 * frame, 0, 255).astype(np.uint8)
        pictures.append(Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels))
    return pictures


class SaveImageWithProvenance:
    """Save images with a signed journal of how they were made inside each file."""

    CATEGORY = "image/provenance"
    DESCRIPTION = "Saves images with a signed, verifiable record of the prompts, settings and choices behind them."
    RETURN_TYPES: ClassVar[tuple[str, ...]] = ()
    FUNCTION = "save"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # the name ComfyUI looks up
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": ("STRING", {"default": "provenance"}),
                "format": (list(_FORMATS), {"default": "png"}),
            },
            "optional": {
                "selected": ("INT", {"default": -1, "min": -1, "max": 4095,
                                     "tooltip": "The image of the batch you chose (-1: save them all, no choice)."}),
                "note": ("STRING", {"default": "", "multiline": True, "tooltip": "Your intent, in your words."}),
                "journal": ("STRING", {"default": "", "tooltip": "Continue this journal (id); empty: this node's."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", "unique_id": "UNIQUE_ID"},
        }

    def __init__(self, output_dir: str | os.PathLike[str] | None = None) -> None:
        self.output_dir = Path(output_dir) if output_dir is not None else default_output_directory()
        # ComfyUI keeps node instances between runs of a workflow: remember each
        # node's journal and the prompt it last recorded there.
        self._journals: dict[str, str] = {}
        self._prompts: dict[str, tuple[str | None, str | None]] = {}

    def save(
        self,
        images: Any,
        filename_prefix: str = "provenance",
        format: str = "png",
        selected: int = -1,
        note: str = "",
        journal: str = "",
        prompt: dict[str, Any] | None = None,
        extra_pnginfo: dict[str, Any] | None = None,
        unique_id: str | None = None,
    ) -> dict[str, Any]:
        pictures = to_pil(images)
        if selected >= len(pictures):
            raise ValueError(f"selected={selected}, but the batch has {len(pictures)} images")
        node = str(unique_id or "node")
        wanted = journal.strip() or self._journals.get(node)
        with Session(title=f"ComfyUI: {filename_prefix}", journal=wanted or None,
                     tool="comfyui-provenance-example", tool_version="1") as session:
            self._journals[node] = session.journal
            if note.strip():
                session.note(note.strip())
            settings = self._record_settings(session, prompt)
            inputs: dict[str, Any] = {"comfyui": {"prompt": prompt}}
            workflow = (extra_pnginfo or {}).get("workflow")
            if workflow is not None:
                # The UI layout is large and says nothing about the image: its hash will do.
                inputs["comfyui"]["workflow_sha256"] = hashlib.sha256(
                    json.dumps(workflow, sort_keys=True, separators=(",", ":")).encode()
                ).hexdigest()
            seed = settings.get("seed")
            strength = settings.get("denoising_strength")
            generation = session.record_generation(
                pictures,
                seeds=[seed] * len(pictures) if isinstance(seed, int) else None,
                inputs=inputs,
                mode="txt2img" if strength in (None, 1.0) else "img2img",
            )
            keep = list(range(len(pictures)))
            if selected >= 0:
                session.select(generation.candidates[selected], reason="chosen in ComfyUI")
                keep = [selected]
            results = [self._export(session, pictures[i], filename_prefix, format) for i in keep]
        return {"ui": {"images": results, "provenance": [{"journal": session.journal}]}}

    def _record_settings(self, session: Session, graph: dict[str, Any] | None) -> dict[str, Any]:
        """The prompt and sampler settings of the executed graph, recorded where they changed."""
        if not graph:
            return {}
        try:
            steps = parse_comfyui(json.dumps(graph), None).steps
        except ImportFormatError:
            return {}  # a graph without a sampler (e.g. only loading and saving)
        if not steps:
            return {}
        step = steps[-1]  # the last pass (after any hires refinement) made the image
        text = (step.prompt, step.negative_prompt)
        if self._prompts.get(session.journal) != text and step.prompt is not None:
            session.set_prompt(step.prompt, step.negative_prompt)
            self._prompts[session.journal] = text
        settings = {k: step.parameters[k] for k in _SETTINGS if k in step.parameters}
        session.set_parameters(**settings)
        return settings

    def _export(self, session: Session, picture: Image.Image, prefix: str, fmt: str) -> dict[str, str]:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^\w.-]+", "_", prefix).strip("._") or "provenance"
        taken = [int(m.group(1)) for p in self.output_dir.glob(f"{safe}_*_.*")
                 if (m := re.fullmatch(rf"{re.escape(safe)}_(\d+)_\.\w+", p.name))]
        name = f"{safe}_{max(taken, default=0) + 1:05}_.{_FORMATS[fmt]}"
        session.export(picture, self.output_dir / name)
        return {"filename": name, "subfolder": "", "type": "output"}


NODE_CLASS_MAPPINGS = {"SaveImageWithProvenance": SaveImageWithProvenance}
NODE_DISPLAY_NAME_MAPPINGS = {"SaveImageWithProvenance": "Save Image (with provenance)"}
