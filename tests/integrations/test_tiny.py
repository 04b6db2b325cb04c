"""The tiny, randomly initialised diffusers pipelines of `provenance.integrations._tiny`.

Skipped as a whole without the ``provenance[diffusers]`` extra.  Nothing here
may reach a model hub: ``HF_HUB_OFFLINE`` is set before diffusers is imported
(huggingface_hub reads it once, at import).  Timings are printed, not asserted.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import hashlib
import importlib
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.slow,
    # diffusers' img2img pipelines warn when one init image serves several
    # images per prompt, which is what num_images_per_prompt asks for.
    pytest.mark.filterwarnings("ignore:You have passed .* initial images:FutureWarning"),
]

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from provenance.integrations import _tiny  # noqa: E402
from provenance.integrations._tiny import (  # noqa: E402
    IMAGE_SIZE,
    KINDS,
    build_tiny_pipeline,
    diffusers_available,
    tiny_pipeline_factory,
)

STEPS = 2
N_IMAGES = 4
PROMPT = "a lighthouse at dusk, oil on canvas"

EXPECTED_CLASS = {
    "txt2img": "StableDiffusionPipeline",
    "img2img": "StableDiffusionImg2ImgPipeline",
    "inpaint": "StableDiffusionInpaintPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "sdxl_img2img": "StableDiffusionXLImg2ImgPipeline",
    "sdxl_inpaint": "StableDiffusionXLInpaintPipeline",
}


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """Print a timing past pytest's capture, so that it shows with -q too."""
    with capsys.disabled():
        print(f"\n[tiny] {line}", end="")


def init_image() -> Image.Image:
    """A fixed 64x64 RGB picture with some structure (a gradient and a square)."""
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE))
    image.putdata([(4 * x, 4 * y, (x * y) % 256) for y in range(IMAGE_SIZE) for x in range(IMAGE_SIZE)])
    image.paste((250, 240, 10), (20, 20, 44, 44))
    return image


def mask_image() -> Image.Image:
    """White (repaint) in the middle square, black (keep) around it."""
    mask = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    mask.paste(255, (16, 16, 48, 48))
    return mask


def call_kwargs(kind: str, seed: int = 1, **extra: Any) -> dict[str, Any]:
    """The arguments of one small call of a `kind` pipeline."""
    kwargs: dict[str, Any] = {
        "prompt": PROMPT,
        "num_inference_steps": STEPS,
        "num_images_per_prompt": N_IMAGES,
        "output_type": "pil",
        "generator": torch.Generator("cpu").manual_seed(seed),
    }
    if kind.endswith("img2img"):
        # strength * steps must leave at least one step: SDXL img2img's
        # default 0.3 leaves none with 2 steps and fails deep inside.
        kwargs.update(image=init_image(), strength=0.5)
    if kind.endswith("inpaint"):
        kwargs.update(image=init_image(), mask_image=mask_image())
    kwargs.update(extra)
    return kwargs


def image_bytes(images: list[Image.Image]) -> list[bytes]:
    return [image.tobytes() for image in images]


def modules(pipe: Any) -> dict[str, Any]:
    return {name: component for name, component in pipe.components.items() if isinstance(component, torch.nn.Module)}


def state_dicts(pipe: Any) -> dict[str, dict[str, Any]]:
    return {name: module.state_dict() for name, module in modules(pipe).items()}


def same_weights(a: Any, b: Any) -> bool:
    sa, sb = state_dicts(a), state_dicts(b)
    if sa.keys() != sb.keys():
        return False
    return all(
        sa[name].keys() == sb[name].keys() and all(torch.equal(sa[name][key], sb[name][key]) for key in sa[name])
        for name in sa
    )


def file_hashes(directory: Path) -> dict[str, str]:
    return {
        path.relative_to(directory).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread, as it was put back afterwards.

    The tensors are tiny, so more threads gain nothing; on a busy 2-core
    machine they lose a lot (one call went from ~0.3 s to 2-7 s with 2 threads).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def built() -> Iterator[dict[str, Any]]:
    """One pipeline of each kind, seed 0, built once for the module."""
    yield {kind: build_tiny_pipeline(kind) for kind in KINDS}


def test_module_import_is_lazy_and_import_times(capsys: pytest.CaptureFixture[str]) -> None:
    """Importing _tiny loads none of the extra; time the extra's imports in a fresh interpreter."""
    package_root = Path(_tiny.__file__).resolve().parents[2]
    code = textwrap.dedent(
        """
        import json, sys, time
        t0 = time.perf_counter()
        from provenance.integrations import _tiny
        t1 = time.perf_counter()
        heavy = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
        available = _tiny.diffusers_available()
        heavy_after_check = sorted(
            m for m in ("torch", "diffusers", "transformers") if m in sys.modules
        )
        import torch
        t2 = time.perf_counter()
        import diffusers, transformers
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
        from transformers import CLIPTextModel
        t3 = time.perf_counter()
        pipe = _tiny.build_tiny_pipeline("txt2img")
        t4 = time.perf_counter()
        print(json.dumps({
            "tiny": t1 - t0, "torch": t2 - t1, "diffusers+transformers": t3 - t2,
            "first_build": t4 - t3, "heavy": heavy, "heavy_after_check": heavy_after_check,
            "available": available,
        }))
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package_root), env.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["heavy"] == []
    assert facts["heavy_after_check"] == []
    assert facts["available"] is True
    report(
        capsys,
        "import (fresh interpreter): _tiny {tiny:.3f} s, torch {torch:.2f} s, "
        "diffusers+transformers+pipeline classes {diffusers+transformers:.2f} s, "
        "first build_tiny_pipeline('txt2img') {first_build:.2f} s".format(**facts),
    )


def test_diffusers_available() -> None:
    assert diffusers_available() is True


def test_rejects_unknown_kind_and_bad_seed() -> None:
    with pytest.raises(ValueError, match="unknown tiny pipeline kind"):
        build_tiny_pipeline("video")
    with pytest.raises(TypeError):
        build_tiny_pipeline("txt2img", seed="0")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        build_tiny_pipeline("txt2img", seed=True)


@pytest.mark.parametrize("kind", KINDS)
def test_builds_and_generates_64x64(kind: str, capfd: pytest.CaptureFixture[str]) -> None:
    start = time.perf_counter()
    pipe = build_tiny_pipeline(kind)
    build_seconds = time.perf_counter() - start

    assert type(pipe).__name__ == EXPECTED_CLASS[kind]
    assert isinstance(pipe, getattr(diffusers, EXPECTED_CLASS[kind]))
    assert pipe.device.type == "cpu"
    assert pipe.to("cpu") is pipe
    assert all(p.device.type == "cpu" for m in modules(pipe).values() for p in m.parameters())
    assert pipe.unet.config.in_channels == (9 if kind.endswith("inpaint") else 4)
    if kind.startswith("sdxl"):
        assert pipe.text_encoder_2 is not None and pipe.tokenizer_2 is not None
        assert pipe.unet.config.addition_embed_type == "text_time"
    else:
        assert pipe.safety_checker is None
        assert pipe.feature_extractor is None

    capfd.readouterr()
    pipe(**call_kwargs(kind))  # warm-up: the first call pays for lazy set-up
    start = time.perf_counter()
    output = pipe(**call_kwargs(kind))
    call_seconds = time.perf_counter() - start
    stderr = capfd.readouterr().err
    assert "it/s" not in stderr and "s/it" not in stderr, "progress bars should be off"

    images = output.images
    assert len(images) == N_IMAGES
    for image in images:
        assert isinstance(image, Image.Image)
        assert image.size == (IMAGE_SIZE, IMAGE_SIZE)
        assert image.mode == "RGB"
    # One generator, four different initial noises: four different images.
    assert len(set(image_bytes(images))) == N_IMAGES
    report(
        capfd,
        f"{kind}: build {build_seconds:.3f} s, one call "
        f"({N_IMAGES} images {IMAGE_SIZE}x{IMAGE_SIZE}, {STEPS} steps) {call_seconds:.3f} s",
    )


@pytest.mark.parametrize("kind", KINDS)
def test_same_generator_seed_same_bytes(kind: str, built: dict[str, Any]) -> None:
    pipe = built[kind]
    first = image_bytes(pipe(**call_kwargs(kind, seed=7)).images)
    second = image_bytes(pipe(**call_kwargs(kind, seed=7)).images)
    other = image_bytes(pipe(**call_kwargs(kind, seed=8)).images)
    assert first == second
    assert first != other
    # A fresh build from the same seed draws the same pictures.
    again = build_tiny_pipeline(kind)
    assert image_bytes(again(**call_kwargs(kind, seed=7)).images) == first


@pytest.mark.parametrize("kind", KINDS)
def test_weights_deterministic_across_builds(kind: str, built: dict[str, Any]) -> None:
    assert same_weights(built[kind], build_tiny_pipeline(kind, seed=0))
    assert not same_weights(built[kind], build_tiny_pipeline(kind, seed=1))


def test_build_leaves_global_rng_alone() -> None:
    torch.manual_seed(1234)
    expected = torch.rand(4)
    torch.manual_seed(1234)
    build_tiny_pipeline("sdxl")
    assert torch.equal(torch.rand(4), expected)


def test_components_are_independent_of_kind() -> None:
    """Each component is drawn from (seed, its name): the text encoder is shared by all SD kinds."""
    txt2img = build_tiny_pipeline("txt2img", seed=3)
    inpaint = build_tiny_pipeline("inpaint", seed=3)
    for name in ("text_encoder", "vae"):
        a, b = getattr(txt2img, name).state_dict(), getattr(inpaint, name).state_dict()
        assert all(torch.equal(a[key], b[key]) for key in a)
    assert txt2img.unet.config.in_channels != inpaint.unet.config.in_channels


def test_tokenizer_is_local_and_byte_level(built: dict[str, Any]) -> None:
    tokenizer = built["txt2img"].tokenizer
    assert len(tokenizer) == 514
    assert tokenizer.model_max_length == 77
    ids = tokenizer("Café au lait").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    # No merges: one token a byte, the last byte of each word with </w>.
    assert len(ids) == 2 + len("caféaulait".encode())
    assert tokenizer.decode(ids, skip_special_tokens=True) == "café au lait"
    assert max(ids) < built["txt2img"].text_encoder.config.vocab_size


@pytest.mark.parametrize("kind", ["txt2img", "sdxl"])
def test_prompt_embeds_instead_of_prompt(kind: str, built: dict[str, Any]) -> None:
    pipe = built[kind]
    from_prompt = image_bytes(pipe(**call_kwargs(kind, seed=5)).images)
    kwargs = call_kwargs(kind, seed=5)
    del kwargs["prompt"]
    if kind == "sdxl":
        embeds, negative, pooled, negative_pooled = pipe.encode_prompt(PROMPT, device="cpu")
        kwargs.update(
            prompt_embeds=embeds,
            negative_prompt_embeds=negative,
            pooled_prompt_embeds=pooled,
            negative_pooled_prompt_embeds=negative_pooled,
        )
    else:
        embeds, negative = pipe.encode_prompt(PROMPT, "cpu", 1, True)
        kwargs.update(prompt_embeds=embeds, negative_prompt_embeds=negative)
    assert image_bytes(pipe(**kwargs).images) == from_prompt


@pytest.mark.parametrize("kind", KINDS)
def test_cache_dir_save_and_offline_load(
    kind: str, built: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "tiny"
    start = time.perf_counter()
    cached = build_tiny_pipeline(kind, cache_dir=cache)
    cached_seconds = time.perf_counter() - start

    index = json.loads((cache / "model_index.json").read_text())
    assert index["_class_name"] == EXPECTED_CLASS[kind]
    weight_files = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*.safetensors"))
    expected_weights = [
        "text_encoder/model.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    if kind.startswith("sdxl"):
        expected_weights.insert(1, "text_encoder_2/model.safetensors")
    assert weight_files == expected_weights
    assert same_weights(cached, built[kind])
    assert cached.device.type == "cpu"

    pipeline_class = getattr(diffusers, EXPECTED_CLASS[kind])
    start = time.perf_counter()
    loaded = pipeline_class.from_pretrained(cache, local_files_only=True)
    load_seconds = time.perf_counter() - start
    loaded.set_progress_bar_config(disable=True)
    assert same_weights(loaded, built[kind])

    # Loaded from the same files: the same pictures, byte for byte.
    from_cached = image_bytes(cached(**call_kwargs(kind, seed=11)).images)
    from_loaded = image_bytes(loaded(**call_kwargs(kind, seed=11)).images)
    assert from_cached == from_loaded

    # Against the pipeline built in memory, only the weights are promised equal
    # (see build_tiny_pipeline's docstring); print how far the pixels are.
    in_memory = built[kind](**call_kwargs(kind, seed=11)).images
    worst = max(
        int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())
        for a, b in zip(in_memory, loaded(**call_kwargs(kind, seed=11)).images, strict=True)
    )
    report(
        capsys,
        f"{kind}: build+save+load {cached_seconds:.3f} s, from_pretrained {load_seconds:.3f} s, "
        f"largest pixel difference loaded vs in-memory {worst}",
    )


def test_cache_files_are_reproducible(tmp_path: Path) -> None:
    """The same kind and seed write byte-identical files: their hashes name the model."""
    build_tiny_pipeline("sdxl_inpaint", seed=4, cache_dir=tmp_path / "a")
    build_tiny_pipeline("sdxl_inpaint", seed=4, cache_dir=tmp_path / "b")
    build_tiny_pipeline("sdxl_inpaint", seed=5, cache_dir=tmp_path / "c")
    a, b, c = (file_hashes(tmp_path / name) for name in "abc")
    assert a == b
    assert a["unet/diffusion_pytorch_model.safetensors"] != c["unet/diffusion_pytorch_model.safetensors"]


def test_cache_dir_can_be_rebuilt_in_place(tmp_path: Path) -> None:
    first = build_tiny_pipeline("txt2img", cache_dir=str(tmp_path))
    expected = image_bytes(first(**call_kwargs("txt2img", seed=2)).images)
    del first
    second = build_tiny_pipeline("txt2img", cache_dir=str(tmp_path))
    assert image_bytes(second(**call_kwargs("txt2img", seed=2)).images) == expected


def test_factory_by_module_colon_name() -> None:
    module_name, _, attribute = "provenance.integrations._tiny:tiny_pipeline_factory".partition(":")
    factory = getattr(importlib.import_module(module_name), attribute)
    assert factory is tiny_pipeline_factory
    pipe = factory()
    assert isinstance(pipe, diffusers.StableDiffusionPipeline)
    assert same_weights(pipe, build_tiny_pipeline("txt2img"))
