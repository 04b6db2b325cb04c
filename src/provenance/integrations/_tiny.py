"""Tiny, randomly initialised diffusers pipelines, built offline on CPU.

These are the stand-ins for real Stable Diffusion checkpoints in the tests, the
demo and the benchmarks: the same pipeline classes, the same call signatures
and the same on-disk layout as the real thing, but with 34,000 (SD) or 45,000
(SDXL) random weights, so that four 64x64 images take a fraction of a second on a CPU and
nothing is ever downloaded.  Their pictures are noise; what matters is that
they are reproducible: the same ``seed`` gives the same weights, and a fixed
``torch.Generator("cpu").manual_seed(s)`` gives the same pixels.

torch, diffusers and transformers (the ``provenance[diffusers]`` extra) are
imported only inside the functions, so importing this module costs nothing and
works without them; `diffusers_available` says whether they are installed.

The tensors are so small that torch's intra-op threads bring nothing, and on a
busy machine they cost much (a call measured ~0.3 s on one thread, 2-7 s on
two, with another process busy on the 2 cores): benchmarks and tests should
call ``torch.set_num_threads(1)``.  This module leaves that global alone.

The CLIP tokenizer is made locally too: a byte-level vocabulary of the 256 byte
characters, the same with the ``</w>`` end-of-word suffix, and the two special
tokens, with no merges (every character of a prompt is one token).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

__all__ = [
    "IMAGE_SIZE",
    "KINDS",
    "build_tiny_pipeline",
    "diffusers_available",
    "tiny_pipeline_factory",
]

KINDS: Final[tuple[str, ...]] = (
    "txt2img",
    "img2img",
    "inpaint",
    "sdxl",
    "sdxl_img2img",
    "sdxl_inpaint",
)
"""The kinds `build_tiny_pipeline` accepts."""

IMAGE_SIZE: Final = 64
"""Default height and width, in pixels, of the images the tiny pipelines make."""

_PIPELINE_CLASSES: Final[dict[str, str]] = {
    "txt2img": "StableDiffusionPipeline",
    "img2img": "StableDiffusionImg2ImgPipeline",
    "inpaint": "StableDiffusionInpaintPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "sdxl_img2img": "StableDiffusionXLImg2ImgPipeline",
    "sdxl_inpaint": "StableDiffusionXLInpaintPipeline",
}

_LATENT_CHANNELS: Final = 4
# The inpainting UNets take the noisy latents, the downsized mask and the
# latents of the masked image: 4 + 1 + 4 channels.
_INPAINT_IN_CHANNELS: Final = 2 * _LATENT_CHANNELS + 1
# Four VAE levels, as in the real models: the latents are 8 times smaller than
# the image (8x8 for 64x64), so the UNet has almost nothing to do.
_VAE_SCALE_FACTOR: Final = 8

_TOKENIZER_MAX_LENGTH: Final = 77
_BOS_TOKEN: Final = "<|startoftext|>"
_EOS_TOKEN: Final = "<|endoftext|>"
_BOS_TOKEN_ID: Final = 512
_EOS_TOKEN_ID: Final = 513

_TEXT_HIDDEN_SIZE: Final = 8
_TEXT_PROJECTION_DIM: Final = 8
_SDXL_ADDITION_TIME_EMBED_DIM: Final = 4
# SDXL's micro-conditioning: six time ids (original size, crop corner, target
# size), each embedded in `addition_time_embed_dim` values, next to the pooled
# embedding of the second text encoder.
_SDXL_ADD_TIME_IDS: Final = 6

_TEXT_ENCODER_CONFIG: Final[dict[str, Any]] = {
    "vocab_size": 1000,
    "hidden_size": _TEXT_HIDDEN_SIZE,
    "intermediate_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": _TOKENIZER_MAX_LENGTH,
    "projection_dim": _TEXT_PROJECTION_DIM,
    "bos_token_id": _BOS_TOKEN_ID,
    "eos_token_id": _EOS_TOKEN_ID,
    "pad_token_id": _EOS_TOKEN_ID,
}

_VAE_CONFIG: Final[dict[str, Any]] = {
    "sample_size": IMAGE_SIZE,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": _LATENT_CHANNELS,
    "block_out_channels": (4, 4, 4, 4),
    "layers_per_block": 1,
    "norm_num_groups": 2,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    # float32 throughout: without this, the SDXL pipelines "upcast" the VAE
    # on every call and warn about it.
    "force_upcast": False,
}

_UNET_CONFIG: Final[dict[str, Any]] = {
    "sample_size": IMAGE_SIZE // _VAE_SCALE_FACTOR,
    "in_channels": _LATENT_CHANNELS,
    "out_channels": _LATENT_CHANNELS,
    "block_out_channels": (4, 8),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": _TEXT_HIDDEN_SIZE,
    "attention_head_dim": 2,
    "norm_num_groups": 2,
}

_SDXL_UNET_CONFIG: Final[dict[str, Any]] = {
    **_UNET_CONFIG,
    # The two text encoders' hidden states are concatenated.
    "cross_attention_dim": 2 * _TEXT_HIDDEN_SIZE,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": _SDXL_ADDITION_TIME_EMBED_DIM,
    "projection_class_embeddings_input_dim": (
        _SDXL_ADD_TIME_IDS * _SDXL_ADDITION_TIME_EMBED_DIM + _TEXT_PROJECTION_DIM
    ),
}

_SCHEDULER_CONFIG: Final[dict[str, Any]] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}


def diffusers_available() -> bool:
    """Whether torch, diffusers and transformers are installed.

    Only looks for the packages, without importing them (importing diffusers
    takes seconds).
    """
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "diffusers", "transformers"))


def build_tiny_pipeline(
    kind: str = "txt2img",
    *,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """Build a tiny, randomly initialised diffusers pipeline on CPU.

        ``kind`` is one of `KINDS`: ``"txt2img"``, ``"img2img"`` and ``"inpaint"``
        give a ``StableDiffusionPipeline``, ``StableDiffusionImg2ImgPipeline`` and
        ``StableDiffusionInpaintPipeline``; ``"sdxl"``, ``"sdxl_img2img"`` and
        ``"sdxl_inpaint"`` their Stable Diffusion XL counterparts.  The weights are
        drawn from ``seed`` alone (the same seed gives identical weights; the
        caller's global torch RNG state is left as it was).  The pipeline is on
        CPU in float32, with no safety checker, no watermarker and progress bars
        off; it makes `IMAGE_SIZE` x `IMAGE_SIZE` images unless told otherwise.

        With ``cache_dir``, the pipeline is written there with ``save_pretrained``
        (safetensors; overwriting what a previous call left, so give each kind
    and seed a directory of its own: a component that only another kind has
    would stay behind) and the pipeline
        returned is the one loaded back from it with
        ``from_pretrained(..., local_files_only=True)``, so its weights come from
        real files that a caller can hash or load again.  Two things follow from
        how diffusers and transformers load them:

        - The loaded weights are memory-mapped views of those files: changing or
          rewriting the files (a tampering test, another call with the same
          ``cache_dir``) changes the weights of a pipeline already loaded.
        - A loaded pipeline computes exactly as any other pipeline loaded from
          the same files, but not always to the last bit as the pipeline built in
          memory from the same seed: the mapped tensors are not 64-byte aligned,
          and CPU BLAS kernels may sum in another order for them.  The SDXL kinds
          have shown it (an occasional pixel value off by one); the SD kinds
          have not.  Compare like with like: built with built, loaded with loaded.

        Raises ``ValueError`` for an unknown kind and ``ModuleNotFoundError`` when
        the ``provenance[diffusers]`` extra is not installed.
    """
    if kind not in _PIPELINE_CLASSES:
        raise ValueError(f"unknown tiny pipeline kind {kind!r}; expected one of {', '.join(KINDS)}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, not {type(seed).__name__}")
    _require_extra()

    pipeline_class = getattr(_module("diffusers"), _PIPELINE_CLASSES[kind])
    pipe = pipeline_class(**_components(kind, seed))
    if cache_dir is not None:
        path = Path(cache_dir)
        path.mkdir(parents=True, exist_ok=True)
        with _quiet_loading():
            pipe.save_pretrained(path, safe_serialization=True)
            # low_cpu_mem_usage=False: what diffusers falls back to anyway
            # without accelerate, minus the warning that it did.
            pipe = pipeline_class.from_pretrained(path, local_files_only=True, low_cpu_mem_usage=False)
    return _finish(pipe)


def tiny_pipeline_factory() -> Any:
    """Return the tiny txt2img pipeline (seed 0): a zero-argument factory.

    Usable wherever a ``MODULE:FACTORY`` reference to a pipeline is expected,
    e.g. ``provenance.integrations._tiny:tiny_pipeline_factory``.
    """
    return build_tiny_pipeline("txt2img")


def _require_extra() -> None:
    missing = [name for name in ("torch", "diffusers", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        raise ModuleNotFoundError(
            f"the tiny pipelines need {', '.join(missing)}: install provenance[diffusers]",
            name=missing[0],
        )


def _module(name: str) -> Any:
    """Import a module of the extra, typed as Any.

    diffusers' constructors are untyped (``register_to_config``), and mypy must
    say the same of this file whether or not the extra is installed.
    """
    return importlib.import_module(name)


def _component_seed(seed: int, component: str) -> int:
    """A seed for one component, so that each is drawn independently of the others."""
    digest = hashlib.sha256(f"provenance-tiny:{seed}:{component}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _components(kind: str, seed: int) -> dict[str, Any]:
    torch = _module("torch")
    diffusers = _module("diffusers")
    transformers = _module("transformers")

    sdxl = kind.startswith("sdxl")
    unet_config = dict(_SDXL_UNET_CONFIG if sdxl else _UNET_CONFIG)
    if kind.endswith("inpaint"):
        unet_config["in_channels"] = _INPAINT_IN_CHANNELS

    def seeded(component: str) -> None:
        torch.manual_seed(_component_seed(seed, component))

    components: dict[str, Any] = {}
    # fork_rng: the weights are drawn from the global RNG, whose state the
    # caller keeps.
    with torch.random.fork_rng(devices=[]):
        seeded("unet")
        components["unet"] = diffusers.UNet2DConditionModel(**unet_config)
        seeded("vae")
        components["vae"] = diffusers.AutoencoderKL(**_VAE_CONFIG)
        seeded("text_encoder")
        components["text_encoder"] = transformers.CLIPTextModel(transformers.CLIPTextConfig(**_TEXT_ENCODER_CONFIG))
        if sdxl:
            seeded("text_encoder_2")
            components["text_encoder_2"] = transformers.CLIPTextModelWithProjection(
                transformers.CLIPTextConfig(**_TEXT_ENCODER_CONFIG)
            )
    for module in components.values():
        module.eval()
    components["scheduler"] = diffusers.DDIMScheduler(**_SCHEDULER_CONFIG)

    with tempfile.TemporaryDirectory(prefix="provenance-tiny-tokenizer-") as tmp:
        components["tokenizer"] = _tokenizer(Path(tmp))
        if sdxl:
            components["tokenizer_2"] = _tokenizer(Path(tmp))

    if sdxl:
        components["add_watermarker"] = False
    else:
        components["safety_checker"] = None
        components["feature_extractor"] = None
        components["requires_safety_checker"] = False
    return components


def _byte_characters() -> list[str]:
    """The 256 printable characters that stand for the bytes in byte-level BPE.

    GPT-2's table (``bytes_to_unicode``, which transformers 5 no longer
    exports): printable bytes stand for themselves, the others are moved up
    past 255, in byte order.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table: dict[int, str] = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return [table[b] for b in range(256)]


def _tokenizer(directory: Path) -> Any:
    """A CLIP tokenizer over single byte-level characters, made in ``directory``."""
    characters = _byte_characters()
    vocab = {char: i for i, char in enumerate(characters)}
    vocab.update({f"{char}</w>": len(characters) + i for i, char in enumerate(characters)})
    vocab[_BOS_TOKEN] = _BOS_TOKEN_ID
    vocab[_EOS_TOKEN] = _EOS_TOKEN_ID
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), "utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", "utf-8")
    # from_pretrained on the folder, not CLIPTokenizer(vocab_file=...): in
    # transformers 5 the constructor takes `vocab_file` silently and ignores it.
    return _module("transformers").CLIPTokenizer.from_pretrained(
        directory,
        model_max_length=_TOKENIZER_MAX_LENGTH,
        local_files_only=True,
    )


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Turn off diffusers' and transformers' progress bars for a save and load.

    They are global switches: each is put back as it was.
    """
    restore = []
    for module in (_module("diffusers.utils.logging"), _module("transformers.utils.logging")):
        if module.is_progress_bar_enabled():
            module.disable_progress_bar()
            restore.append(module)
    try:
        yield
    finally:
        for module in restore:
            module.enable_progress_bar()


def _finish(pipe: Any) -> Any:
    pipe = pipe.to("cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe
