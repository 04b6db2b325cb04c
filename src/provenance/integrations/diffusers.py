"""Record every call of a diffusers pipeline, without changing how it is used.

    pipe = StableDiffusionPipeline.from_pretrained(...)
    with provenance.Session(title="harbour") as session:
        pipe = provenance.integrations.diffusers.record(pipe, session)
        images = pipe("a harbour at dusk", num_images_per_prompt=4).images   # recorded

`record` returns a thin proxy: calling it calls the pipeline and returns exactly
what the pipeline returned; every other attribute is the pipeline's own.  Each
call appends a ``generation`` entry with

* the resolved arguments, defaults applied (tensors by shape and SHA-256,
  images by their digests);
* the generator's seed and device -- when the caller gave no generator, a seeded
  CPU generator is created and passed in, so the call can be replayed;
* the scheduler class and configuration, and the pipeline class;
* every output image as a candidate (pixel, perceptual hashes, seed, index).

On wrapping, a ``model.load`` entry records the model identity: the SHA-256 of
each weight file when the pipeline was loaded from a local directory, otherwise
a SHA-256 over each component's state dict, and the active adapters (LoRA).
"""

from __future__ import annotations

import hashlib
import inspect
import io
import math
import secrets
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from ..images import digest_loaded
from ..recorder import Session, file_sha256

__all__ = ["RecordedPipeline", "model_identity", "pipeline_mode", "record", "replay_arguments"]

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
# Arguments that are not recorded as values: they are tensors or callbacks whose
# digest (or name) is recorded instead.
_CALLBACK_ARGS = ("callback", "callback_on_step_end", "callback_steps")
_PROMPT_ARGS = ("prompt", "negative_prompt", "prompt_2", "negative_prompt_2")


def pipeline_mode(pipe: Any) -> str:
    name = type(pipe).__name__.lower()
    if "inpaint" in name:
        return "inpaint"
    if "img2img" in name:
        return "img2img"
    return "txt2img"


def _tensor_bytes(tensor: Any) -> bytes:
    """A tensor's raw bytes, for any dtype (numpy has no bfloat16, so go through uint8)."""
    import torch

    return bytes(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())


def _tensors_sha256(named: Iterable[tuple[str, Any]]) -> str:
    """SHA-256 over named tensors, in the order given: each name, shape, dtype, then its bytes."""
    digest = hashlib.sha256()
    for name, tensor in named:
        digest.update(name.encode() + b"\0" + str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        digest.update(_tensor_bytes(tensor))
    return digest.hexdigest()


def _state_dict_sha256(module: Any) -> str:
    return _tensors_sha256(sorted(module.state_dict().items()))


def model_identity(pipe: Any) -> dict[str, Any]:
    """Weight files' SHA-256 when loaded from disk; else SHA-256 of each component's state dict."""
    source = getattr(pipe, "name_or_path", None) or getattr(getattr(pipe, "config", None), "_name_or_path", None)
    identity: dict[str, Any] = {"pipeline": type(pipe).__name__, "source": None, "files": {}, "components": {}}
    if source and Path(str(source)).is_dir():
        root = Path(str(source))
        identity["source"] = root.name
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix in _WEIGHT_SUFFIXES:
                identity["files"][path.relative_to(root).as_posix()] = file_sha256(path)
    if not identity["files"]:
        for name, component in sorted(getattr(pipe, "components", {}).items()):
            if component is not None and hasattr(component, "state_dict"):
                identity["components"][name] = _state_dict_sha256(component)
    combined = hashlib.sha256()
    for name, value in sorted({**identity["files"], **identity["components"]}.items()):
        combined.update(f"{name}={value}\n".encode())
    identity["sha256"] = combined.hexdigest()
    return identity


# Components that can carry PEFT adapters (LoRA) in the pipelines covered here.
_ADAPTER_COMPONENTS = ("unet", "transformer", "text_encoder", "text_encoder_2")


def _adapter_components(pipe: Any) -> list[Any]:
    """The components with adapters loaded (diffusers and transformers flag them)."""
    return [
        module
        for name in _ADAPTER_COMPONENTS
        if getattr(module := getattr(pipe, name, None), "_hf_peft_config_loaded", False)
    ]


# name -> (the adapter's parameters, their torch versions, SHA-256 of their weights)
AdapterDigests = dict[str, tuple[tuple[Any, ...], tuple[int, ...], str]]


def _adapters(pipe: Any, digests: AdapterDigests | None = None) -> list[dict[str, Any]]:
    """The active adapters: name, kind, whether enabled, the weight the person set, and a SHA-256 of their weights.

    `weight` is the one weight every layer of the adapter applies; when the
    layers differ (weights per component or per block), `weight` is None and
    `weights` lists the distinct ones.  `digests` keeps the weight hashes
    between calls; see `_adapter_sha256`.  Never raises: what cannot be read
    is recorded as None.
    """
    components = _adapter_components(pipe)
    if not components:
        return []  # the common case, at no cost: no adapter was ever loaded
    try:
        active = [str(name) for name in pipe.get_active_adapters()]
    except Exception:  # no PEFT backend: nothing to record
        return []
    weights: dict[str, set[float | None]] = {name: set() for name in active}
    enabled: dict[str, bool | None] = dict.fromkeys(active)
    try:
        for module in components:
            for layer in module.modules():
                scaling = getattr(layer, "scaling", None)
                if not isinstance(scaling, dict):
                    continue
                # `disable_lora()` leaves the adapters active but switches the layers off.
                layer_on = not bool(getattr(layer, "disable_adapters", False))
                for name in active:
                    if name in scaling:
                        weights[name].add(_adapter_weight(layer, name))
                        enabled[name] = layer_on and enabled[name] is not False
    except Exception:
        pass  # recorded as unknown below
    kept: AdapterDigests = {}
    records = []
    for name in active:
        distinct = weights[name]
        record: dict[str, Any] = {
            "name": name,
            "kind": "lora",
            "enabled": enabled[name],
            "weight": next(iter(distinct)) if len(distinct) == 1 else None,
            "sha256": _adapter_sha256(components, name, digests, kept),
        }
        if len(distinct) > 1:
            record["weights"] = sorted(w for w in distinct if w is not None)
        records.append(record)
    if digests is not None:
        # Only the adapters in use stay cached: a removed one's tensors are let go.
        digests.clear()
        digests.update(kept)
    return records


def _adapter_weight(layer: Any, name: str) -> float | None:
    """The weight given to `set_adapters`: PEFT keeps it multiplied by alpha / r (or alpha / sqrt(r))."""
    try:
        rank, alpha = layer.r[name], layer.lora_alpha[name]
        base = alpha / math.sqrt(rank) if getattr(layer, "use_rslora", {}).get(name) else alpha / rank
        return round(float(layer.scaling[name]) / float(base), 6)
    except Exception:
        return None


def _adapter_sha256(
    components: list[Any], name: str, digests: AdapterDigests | None, kept: AdapterDigests
) -> str | None:
    """SHA-256 over the adapter's parameters (name, shape, dtype, bytes), or None if they cannot be read.

    A hash is reused while the very same parameter objects hold the adapter and
    torch's version counter of each is unchanged (a reload makes new objects;
    an in-place update counts).  An edit through ``.data``, which torch does
    not count, is not seen until the adapter is reloaded.
    """
    try:
        marker = f".{name}."
        parameters = [
            (f"{index}.{label}", parameter)
            for index, module in enumerate(components)
            for label, parameter in module.named_parameters()
            if "lora_" in label and marker in f".{label}."
        ]
        if not parameters or any(parameter.is_meta for _, parameter in parameters):
            return None  # offloaded to the meta device: the weights are not here to hash
        objects = tuple(parameter for _, parameter in parameters)
        versions = tuple(int(parameter._version) for parameter in objects)
        cached = None if digests is None else digests.get(name)
        if cached is not None and cached[1] == versions and len(cached[0]) == len(objects) and all(
            a is b for a, b in zip(cached[0], objects, strict=True)
        ):
            value = cached[2]
        else:
            value = _tensors_sha256(parameters)
        kept[name] = (objects, versions, value)
        return value
    except Exception:
        return None


def _to_record(value: Any, depth: int = 0) -> Any:
    """A JSON-able description of an argument: tensors and images by digest."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth > 4:
        return repr(value)[:200]
    if isinstance(value, Image.Image):
        return {"image": digest_loaded(value, None, perceptual=False).to_body()}
    if isinstance(value, (list, tuple)):
        return [_to_record(v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_record(v, depth + 1) for k, v in value.items()}
    module = type(value).__module__
    if module.startswith("torch") and hasattr(value, "shape"):
        if type(value).__name__ == "Generator":
            return {"generator": {"device": str(value.device), "seed": int(value.initial_seed())}}
        return {
            "tensor": {
                "shape": list(value.shape),
                "dtype": str(value.dtype),
                "sha256": hashlib.sha256(_tensor_bytes(value)).hexdigest(),
            }
        }
    if type(value).__name__ == "Generator" and hasattr(value, "initial_seed"):
        return {"generator": {"device": str(value.device), "seed": int(value.initial_seed())}}
    if module.startswith("numpy") and hasattr(value, "tobytes"):
        return {
            "array": {
                "shape": list(getattr(value, "shape", ())),
                "dtype": str(getattr(value, "dtype", "")),
                "sha256": hashlib.sha256(value.tobytes()).hexdigest(),
            }
        }
    if callable(value):
        return {"callable": getattr(value, "__qualname__", type(value).__name__)}
    return repr(value)[:200]


def _output_images(output: Any) -> list[Image.Image]:
    images = output.images if hasattr(output, "images") else output[0] if isinstance(output, tuple) else output
    if isinstance(images, Image.Image):
        return [images]
    result: list[Image.Image] = []
    for item in images if isinstance(images, (list, tuple)) else list(images):
        if isinstance(item, Image.Image):
            result.append(item)
            continue
        array = item.detach().cpu().float().numpy() if hasattr(item, "detach") else item
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
            array = array.transpose(1, 2, 0)
        if array.dtype.kind == "f":
            array = (array.clip(0, 1) * 255).round()
        result.append(Image.fromarray(array.astype("uint8").squeeze()))
    return result


class RecordedPipeline:
    """A diffusers pipeline whose calls are recorded in a session's journal."""

    def __init__(self, pipe: Any, session: Session, *, seed_source: Callable[[], int] | None = None) -> None:
        self._pipe = pipe
        self._session = session
        self._seed_source = seed_source or (lambda: secrets.randbits(63))
        self._signature = inspect.signature(type(pipe).__call__)
        self._adapter_digests: AdapterDigests = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # `pipe.scheduler = ...` must reach the pipeline, as it would unwrapped.
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._pipe, name, value)

    @property
    def pipeline(self) -> Any:
        return self._pipe

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import torch

        bound = self._signature.bind(self._pipe, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        arguments.pop("self", None)
        extra = arguments.pop("kwargs", {}) or {}
        generator = arguments.get("generator")
        if generator is None:
            seed = self._seed_source()
            generator = torch.Generator("cpu").manual_seed(seed)
            kwargs["generator"] = generator
            arguments["generator"] = generator
            created = True
        else:
            created = False
        generators = generator if isinstance(generator, list) else [generator]
        seeds = [int(g.initial_seed()) for g in generators]
        fresh = all(_is_fresh(g) for g in generators)

        output = self._pipe(*args, **kwargs)

        images = _output_images(output)
        recorded = {k: _to_record(v) for k, v in arguments.items() if k not in _CALLBACK_ARGS}
        recorded.update({k: _to_record(v) for k, v in extra.items()})
        # The pipeline fills in a size left out (from the model's sample size, or
        # from the input image): record the one it used, and that it was resolved.
        # (Only for decoded outputs: latents are smaller than the image they stand for.)
        resolved: list[str] = [side for side in ("height", "width") if side in recorded and recorded[side] is None]
        if not images or recorded.get("output_type") not in (None, "pil", "np", "pt"):
            resolved = []
        for side in resolved:
            recorded[side] = getattr(images[0], side)
        per_prompt = max(1, len(images) // max(1, len(seeds)))
        candidate_seeds = [seeds[min(i // per_prompt, len(seeds) - 1)] for i in range(len(images))]
        scheduler = getattr(self._pipe, "scheduler", None)
        inputs = {
            "pipeline": {
                "class": type(self._pipe).__name__,
                "call": recorded,
                "generator": {
                    "seeds": seeds,
                    "device": str(generators[0].device),
                    "created_by_recorder": created,
                    "fresh_state": fresh,
                },
                "scheduler": {
                    "class": type(scheduler).__name__,
                    "config": _to_record(dict(getattr(scheduler, "config", {}) or {})),
                },
                # On CPU the pixels depend on torch's intra-op thread count (sums
                # are split differently): replay needs it to reproduce exactly.
                "runtime": {"torch": str(torch.__version__), "threads": int(torch.get_num_threads())},
                # Adapters (LoRA) active for this call, with the weight set for it.
                "adapters": _adapters(self._pipe, self._adapter_digests),
                # Arguments the call left out whose value is read back from its output.
                "resolved_from_output": resolved,
            },
            "prompt": arguments.get("prompt") if isinstance(arguments.get("prompt"), str) else None,
            "negative_prompt": arguments.get("negative_prompt")
            if isinstance(arguments.get("negative_prompt"), str)
            else None,
        }
        if self._session.private_prompts or self._session._private_prompt:
            # Private prompts: every copy of their text becomes its commitment.
            for mapping in (recorded, inputs):
                for name in _PROMPT_ARGS:
                    value = mapping.get(name)
                    if isinstance(value, str):
                        mapping[name] = None
                        mapping[f"{name}_commitment"] = self._session.commit_text(value)
        source = arguments.get("image")
        mask = arguments.get("mask_image")
        mode = pipeline_mode(self._pipe)
        if isinstance(mask, Image.Image):
            grey = mask.convert("L")
            area = grey.point(lambda v: 255 if v >= 128 else 0).histogram()[255] / float(grey.width * grey.height)
            box = grey.getbbox()
            # The mask is the person's own drawing and small once compressed: keep
            # it (as an optional blob) so reports can show it and replay can reuse it.
            png = io.BytesIO()
            grey.save(png, format="PNG", optimize=True)
            inputs["mask"] = {
                **digest_loaded(grey, None, perceptual=False).to_body(),
                "bbox": None if box is None else list(box),
                "area_fraction": round(area, 6),
                "blob_sha256": self._session.store.put_blob(self._session.journal, png.getvalue(), "image/png"),
            }
        self._session.record_generation(
            images,
            seeds=candidate_seeds,
            inputs=inputs,
            mode=mode,
            source=source if isinstance(source, Image.Image) else None,
        )
        return output


def _is_fresh(generator: Any) -> bool:
    """Whether the generator is still at its seed's initial state (so a replay can reproduce it)."""
    import torch

    try:
        probe = torch.Generator(str(generator.device)).manual_seed(int(generator.initial_seed()))
        return bool(torch.equal(probe.get_state(), generator.get_state()))
    except Exception:
        return False


def record(
    pipe: Any, session: Session, *, name: str | None = None, seed_source: Callable[[], int] | None = None
) -> RecordedPipeline:
    """Wrap `pipe` so that every call is recorded in `session`; records the model identity now."""
    identity = model_identity(pipe)
    session.load_model(
        name or identity["source"] or identity["pipeline"],
        sha256=identity["sha256"],
        adapters=(),
        actor="human",
        identity=identity,
        active_adapters=_adapters(pipe),
    )
    return RecordedPipeline(pipe, session, seed_source=seed_source)


# -- replay ------------------------------------------------------------------------

_REPLAYABLE = (
    "prompt",
    "negative_prompt",
    "height",
    "width",
    "num_inference_steps",
    "guidance_scale",
    "num_images_per_prompt",
    "eta",
    "strength",
    "guidance_rescale",
    "clip_skip",
    "output_type",
    "prompt_2",
    "negative_prompt_2",
    "original_size",
    "target_size",
    "aesthetic_score",
    "crops_coords_top_left",
    "negative_original_size",
    "negative_crops_coords_top_left",
    "negative_target_size",
    "negative_aesthetic_score",
    "denoising_start",
    "denoising_end",
    "timesteps",
    "sigmas",
)
# Mappings of plain values passed through as recorded.
_REPLAYABLE_MAPPINGS = frozenset({"cross_attention_kwargs"})
# SDXL's micro-conditioning sizes are tuples; the journal holds them as lists,
# and the pipelines concatenate them with tuples.
_TUPLE_ARGS = frozenset(
    {
        "original_size",
        "target_size",
        "crops_coords_top_left",
        "negative_original_size",
        "negative_crops_coords_top_left",
        "negative_target_size",
    }
)


def _recorded_by_digest(value: Any) -> bool:
    """Whether `_to_record` kept only a digest of this value (a tensor, an array, an image, or a list of them)."""
    if isinstance(value, dict):
        return any(key in value for key in ("tensor", "array", "image"))
    return isinstance(value, list) and any(_recorded_by_digest(item) for item in value)


def replay_arguments(inputs: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Keyword arguments to repeat a recorded call (minus images and generator), and what is missing."""
    call = inputs.get("pipeline", {}).get("call", {})
    kwargs: dict[str, Any] = {}
    missing: list[str] = []
    for name, value in call.items():
        if name in _REPLAYABLE and (value is None or isinstance(value, (bool, int, float, str, list))):
            kwargs[name] = tuple(value) if name in _TUPLE_ARGS and isinstance(value, list) else value
        elif name in _REPLAYABLE_MAPPINGS and isinstance(value, dict) and all(
            isinstance(item, (bool, int, float, str)) or item is None for item in value.values()
        ):
            kwargs[name] = dict(value)  # e.g. {"scale": 0.8}, a LoRA's weight for this call
        elif _recorded_by_digest(value) and not (name in ("image", "mask_image") and "image" in value):
            # Only a digest is in the journal (replay finds `image`/`mask_image` itself):
            # say so, rather than replay without it and report "differs".
            missing.append(name)
    if call.get("output_type") in (None, "pil"):
        kwargs["output_type"] = "pil"
    return kwargs, missing


def run_demo_rounds(session: Session, out: Path, say: Callable[[str], None]) -> Image.Image:
    """The demo's session on tiny random-weight pipelines, recorded through `record`."""
    import torch

    from . import _tiny

    torch.set_num_threads(1)
    model_dir = out / "tiny-sd"
    txt2img = record(_tiny.build_tiny_pipeline("txt2img", cache_dir=model_dir), session, name="tiny-sd (random)")
    session.note("Intent: a quiet harbour at dusk, warm light on the water, one boat in the foreground.")
    rounds: list[tuple[str, str | None, dict[str, Any]]] = [
        ("a harbour at dusk", None, {"seed": 1000, "num_inference_steps": 2, "guidance_scale": 7.0}),
        ("a harbour at dusk, oil painting, warm light", "blurry, text", {"guidance_scale": 8.5}),
        (
            "a quiet harbour at dusk, oil painting, warm light on the water, one small boat",
            "blurry, text, people",
            {"num_inference_steps": 3, "seed": 2000},
        ),
    ]
    chosen: Image.Image | None = None
    for number, (prompt, negative, params) in enumerate(rounds, start=1):
        session.set_prompt(prompt, negative)
        session.set_parameters(**params)
        p = session.parameters
        result = txt2img(
            prompt,
            negative_prompt=negative,
            num_inference_steps=p["num_inference_steps"],
            guidance_scale=p["guidance_scale"],
            num_images_per_prompt=4,
            generator=torch.Generator("cpu").manual_seed(p["seed"]),
        )
        generation = session._last_generation or 0
        pick = (number + 1) % 4
        reason = (
            "best composition so far"
            if number < len(rounds)
            else "the boat sits where I want it and the light is right"
        )
        session.select(pick, generation=generation, reason=reason)
        chosen = result.images[pick]
        say(f"  round {number}: 4 candidates from the tiny pipeline, kept #{pick} — {reason}")
    assert chosen is not None
    inpaint = _tiny.build_tiny_pipeline("inpaint")
    inpaint.scheduler = txt2img.scheduler
    # Through `record`, so the inpainting model's identity is in the journal too.
    inpainter = record(inpaint, session, name="tiny-sd-inpaint (random)")
    mask = Image.new("L", chosen.size, 0)
    w, h = chosen.size
    from PIL import ImageDraw

    ImageDraw.Draw(mask).ellipse([w * 0.55, h * 0.15, w * 0.9, h * 0.5], fill=255)
    moon = inpainter(
        "a pale moon low over the water",
        image=chosen,
        mask_image=mask,
        num_inference_steps=2,
        generator=torch.Generator("cpu").manual_seed(77),
    ).images[0]
    session.select(0, generation=session._last_generation, reason="the moon balances the boat")
    assert isinstance(moon, Image.Image)
    say("  region edit: inpainted a moon into the upper right (recorded by the integration)")
    painted = moon.copy()
    ImageDraw.Draw(painted).line([(w * 0.1, h * 0.8), (w * 0.45, h * 0.72)], fill=(250, 235, 200), width=2)
    session.manual_edit(
        moon, painted, tool="brush", description="painted a reflection line on the water", area_fraction=0.01
    )
    say("  manual edit: painted a reflection by hand")
    return painted
