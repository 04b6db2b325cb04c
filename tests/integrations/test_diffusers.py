"""`provenance.integrations.diffusers.record`: every call recorded, nothing changed.

Runs the real diffusers pipeline classes on the tiny random-weight pipelines of
`provenance.integrations._tiny` (built once per module), on CPU, one thread.
Each test checks what the pipeline returns against the unwrapped pipeline
called with the same generator seed, and what the journal holds against what
the call resolved to.  Replaying those journals is in ``tests/test_replay.py``.
"""

from __future__ import annotations

import os

# huggingface_hub reads this once, at import: nothing here may reach a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"

import hashlib
import inspect
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.slow,
    # One init image for several images per prompt is what we ask for.
    pytest.mark.filterwarnings("ignore:You have passed .* initial images:FutureWarning"),
]

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from provenance import _formats  # noqa: E402
from provenance.images import digest_loaded  # noqa: E402
from provenance.integrations._tiny import IMAGE_SIZE, build_tiny_pipeline  # noqa: E402
from provenance.integrations.diffusers import (  # noqa: E402
    RecordedPipeline,
    model_identity,
    pipeline_mode,
    record,
)
from provenance.journal import Entry  # noqa: E402
from provenance.keys import SigningKey  # noqa: E402
from provenance.recorder import Session, file_sha256  # noqa: E402
from provenance.store import Store  # noqa: E402

KINDS = ("txt2img", "img2img", "inpaint", "sdxl")
PROMPT = "a harbour at dusk, oil painting"
SEED = 42


def init_image() -> Image.Image:
    """A fixed 64x64 picture with structure (a gradient and a square): the img2img/inpaint source."""
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE))
    image.putdata([(4 * x, 4 * y, (x * y) % 256) for y in range(IMAGE_SIZE) for x in range(IMAGE_SIZE)])
    image.paste((250, 240, 10), (20, 20, 44, 44))
    return image


def mask_image() -> Image.Image:
    """White (repaint) in a 16x24 box, black (keep) around it."""
    mask = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    ImageDraw.Draw(mask).rectangle((8, 16, 23, 39), fill=255)
    return mask


def call_arguments(kind: str) -> dict[str, Any]:
    """Small, fast calls that still exercise each kind: 2 images, 2-3 steps."""
    arguments: dict[str, Any] = {"prompt": PROMPT, "num_inference_steps": 2, "num_images_per_prompt": 2}
    if kind in ("img2img", "inpaint"):
        # strength x steps must leave at least one step.
        arguments.update(image=init_image(), strength=0.8, num_inference_steps=3)
    if kind == "inpaint":
        arguments["mask_image"] = mask_image()
    return arguments


def generator(seed: int = SEED) -> Any:
    return torch.Generator("cpu").manual_seed(seed)


def pixels(image: Any) -> Any:
    return np.asarray(image)


def pixel_sha256(image: Image.Image) -> str:
    return _formats.pixel_hash(image).hex()


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> None:
    # The tensors are tiny: more threads only add contention on a shared 2-core machine.
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pipes() -> dict[str, Any]:
    return {kind: build_tiny_pipeline(kind) for kind in KINDS}


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVENANCE_HOME", str(tmp_path / "home"))


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    with Store(tmp_path / "store.sqlite") as store:
        recording = Session(title="diffusers", store=store, key=SigningKey.from_seed(bytes([3]) * 32))
        yield recording
        # Whatever the test recorded, the journal verifies.
        verdict = store.verify(recording.journal)
        assert verdict.valid, verdict.reason


def entries(session: Session, kind: str) -> list[Entry]:
    return [s.entry for s in session.store.entries(session.journal) if s.entry.kind == kind]


# -- the pipeline's own behaviour is unchanged ---------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_output_is_exactly_the_unwrapped_pipelines(pipes: dict[str, Any], session: Session, kind: str) -> None:
    pipe = pipes[kind]
    recorded = record(pipe, session)
    arguments = call_arguments(kind)

    plain = pipe(**arguments, generator=generator())
    wrapped = recorded(**arguments, generator=generator())
    assert type(wrapped) is type(plain)
    assert len(wrapped.images) == len(plain.images) == 2
    for ours, theirs in zip(wrapped.images, plain.images, strict=True):
        assert isinstance(ours, Image.Image)
        assert np.array_equal(pixels(ours), pixels(theirs))

    plain_tuple = pipe(**arguments, generator=generator(), return_dict=False)
    wrapped_tuple = recorded(**arguments, generator=generator(), return_dict=False)
    assert type(wrapped_tuple) is type(plain_tuple) is tuple
    assert len(wrapped_tuple) == len(plain_tuple)
    for ours, theirs in zip(wrapped_tuple[0], plain_tuple[0], strict=True):
        assert np.array_equal(pixels(ours), pixels(theirs))

    plain_np = pipe(**arguments, generator=generator(), output_type="np")
    wrapped_np = recorded(**arguments, generator=generator(), output_type="np")
    assert isinstance(wrapped_np.images, np.ndarray)
    assert wrapped_np.images.dtype == plain_np.images.dtype
    assert np.array_equal(wrapped_np.images, plain_np.images)

    generations = entries(session, "generation")
    assert len(generations) == 3
    # The three calls made the same pictures, so they recorded the same candidates
    # (the "np" output is quantised to 8 bits exactly as diffusers' own numpy_to_pil does).
    hashes = [[c["pixel_sha256"] for c in g.body["candidates"]] for g in generations]
    assert hashes[0] == hashes[1] == hashes[2] == [pixel_sha256(i) for i in plain.images]


def test_other_attributes_are_the_pipelines_own(pipes: dict[str, Any], session: Session) -> None:
    pipe = pipes["txt2img"]
    recorded = record(pipe, session)
    assert recorded.pipeline is pipe
    assert recorded.unet is pipe.unet and recorded.scheduler is pipe.scheduler
    assert recorded.components == pipe.components
    assert recorded.device == pipe.device


# diffusers' Euler scheduler itself trips a numpy 2 deprecation when it is built.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_setting_an_attribute_reaches_the_pipeline(session: Session) -> None:
    # The diffusers idiom for changing sampler: `pipe.scheduler = X.from_config(pipe.scheduler.config)`.
    from diffusers import EulerDiscreteScheduler

    pipe = build_tiny_pipeline("txt2img")
    recorded = record(pipe, session)
    recorded.scheduler = EulerDiscreteScheduler.from_config(recorded.scheduler.config)
    assert isinstance(pipe.scheduler, EulerDiscreteScheduler)
    wrapped = recorded(PROMPT, num_inference_steps=2, generator=generator())
    plain = pipe(PROMPT, num_inference_steps=2, generator=generator())
    assert np.array_equal(pixels(wrapped.images[0]), pixels(plain.images[0]))
    assert entries(session, "generation")[0].body["inputs"]["pipeline"]["scheduler"]["class"] == \
        "EulerDiscreteScheduler"


# -- what is recorded ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_generation_records_resolved_call_generator_scheduler_candidates(
    pipes: dict[str, Any], session: Session, kind: str
) -> None:
    pipe = pipes[kind]
    recorded = record(pipe, session)
    arguments = call_arguments(kind)
    output = recorded(**arguments, generator=generator())

    (entry,) = entries(session, "generation")
    assert entry.actor == "tool"
    body = entry.body
    assert body["mode"] == pipeline_mode(pipe) == {"sdxl": "txt2img"}.get(kind, kind)
    inputs = body["inputs"]
    assert (inputs["prompt"], inputs["negative_prompt"]) == (PROMPT, None)
    pipeline = inputs["pipeline"]
    assert pipeline["class"] == type(pipe).__name__
    call = pipeline["call"]
    # Every parameter of the pipeline's __call__ is there, defaults resolved.
    defaults = {
        name: p.default
        for name, p in inspect.signature(type(pipe).__call__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    assert set(defaults) - {"callback", "callback_steps", "callback_on_step_end"} <= set(call)
    assert call["guidance_scale"] == defaults["guidance_scale"] == (5.0 if kind == "sdxl" else 7.5)
    assert call["output_type"] == "pil" and call["return_dict"] is True
    assert call["num_inference_steps"] == arguments["num_inference_steps"]
    assert call["num_images_per_prompt"] == 2
    # Left out, the size is the one the pipeline used, read back from its output
    # (image-to-image pipelines take no size: theirs is the input image's).
    if "height" in defaults:
        assert (call["height"], call["width"]) == output.images[0].size[::-1]
        assert pipeline["resolved_from_output"] == ["height", "width"]
    else:
        assert "height" not in call and pipeline["resolved_from_output"] == []
    assert call["generator"] == {"generator": {"device": "cpu", "seed": SEED}}
    assert pipeline["generator"] == {"seeds": [SEED], "device": "cpu", "created_by_recorder": False,
                                     "fresh_state": True}
    # CPU pixels depend on the thread count: it is recorded for replay.
    assert pipeline["runtime"] == {"torch": str(torch.__version__), "threads": 1}
    scheduler = pipeline["scheduler"]
    assert scheduler["class"] == "DDIMScheduler"
    assert scheduler["config"]["num_train_timesteps"] == 1000
    assert scheduler["config"]["beta_schedule"] == "scaled_linear"
    # Every output is a candidate, with its seed.
    candidates = body["candidates"]
    assert [c["index"] for c in candidates] == [0, 1]
    assert [c["seed"] for c in candidates] == [SEED, SEED]
    for candidate, image in zip(candidates, output.images, strict=True):
        assert candidate == {"index": candidate["index"], "seed": SEED, **digest_loaded(image, None).to_body()}
        assert candidate["pixel_sha256"] == pixel_sha256(image)
        assert candidate["phash"].startswith("ph2:")
    # The wrapper's candidates are the session's: the person can select one.
    assert session.select(1).entry.body["chosen"] == [candidates[1]["pixel_sha256"]]


def test_without_a_generator_a_seeded_cpu_generator_is_created(pipes: dict[str, Any], session: Session) -> None:
    pipe = pipes["txt2img"]
    recorded = record(pipe, session, seed_source=lambda: 2**62 + 12345)
    wrapped = recorded(PROMPT, num_inference_steps=2)
    plain = pipe(PROMPT, num_inference_steps=2, generator=generator(2**62 + 12345))
    assert np.array_equal(pixels(wrapped.images[0]), pixels(plain.images[0]))
    body = entries(session, "generation")[0].body
    assert body["inputs"]["pipeline"]["generator"] == {
        "seeds": [2**62 + 12345], "device": "cpu", "created_by_recorder": True, "fresh_state": True,
    }
    assert body["candidates"][0]["seed"] == 2**62 + 12345


def test_default_seed_source_gives_distinct_recorded_seeds(pipes: dict[str, Any], session: Session) -> None:
    recorded = record(pipes["txt2img"], session)
    recorded(PROMPT, num_inference_steps=1)
    recorded(PROMPT, num_inference_steps=1)
    seeds = [g.body["inputs"]["pipeline"]["generator"]["seeds"][0] for g in entries(session, "generation")]
    assert len(set(seeds)) == 2 and all(0 <= s < 2**63 for s in seeds)


def test_one_generator_per_image_gives_each_candidate_its_seed(pipes: dict[str, Any], session: Session) -> None:
    pipe = pipes["txt2img"]
    recorded = record(pipe, session)
    wrapped = recorded(PROMPT, num_inference_steps=2, num_images_per_prompt=2, generator=[generator(7), generator(8)])
    plain = pipe(PROMPT, num_inference_steps=2, num_images_per_prompt=2, generator=[generator(7), generator(8)])
    for ours, theirs in zip(wrapped.images, plain.images, strict=True):
        assert np.array_equal(pixels(ours), pixels(theirs))
    body = entries(session, "generation")[0].body
    assert [c["seed"] for c in body["candidates"]] == [7, 8]
    assert body["inputs"]["pipeline"]["generator"]["seeds"] == [7, 8]


def test_a_used_generator_is_flagged_as_not_fresh(pipes: dict[str, Any], session: Session) -> None:
    # Its seed alone would not replay the call: the journal says so.
    used = generator()
    torch.randn(3, generator=used)
    record(pipes["txt2img"], session)(PROMPT, num_inference_steps=1, generator=used)
    assert entries(session, "generation")[0].body["inputs"]["pipeline"]["generator"]["fresh_state"] is False


def test_tensor_arguments_are_recorded_by_digest(pipes: dict[str, Any], session: Session) -> None:
    latents = torch.randn(1, 4, IMAGE_SIZE // 8, IMAGE_SIZE // 8, generator=generator(5))
    record(pipes["txt2img"], session)(PROMPT, num_inference_steps=1, latents=latents, generator=generator())
    recorded = entries(session, "generation")[0].body["inputs"]["pipeline"]["call"]["latents"]
    assert recorded["tensor"]["shape"] == [1, 4, 8, 8] and recorded["tensor"]["dtype"] == "torch.float32"
    assert recorded["tensor"]["sha256"] == hashlib.sha256(latents.numpy().tobytes()).hexdigest()


def test_img2img_records_its_source(pipes: dict[str, Any], session: Session) -> None:
    record(pipes["img2img"], session)(**call_arguments("img2img"), generator=generator())
    body = entries(session, "generation")[0].body
    source = digest_loaded(init_image(), None)
    assert body["source"] == source.to_body()
    call = body["inputs"]["pipeline"]["call"]
    assert call["image"] == {"image": digest_loaded(init_image(), None, perceptual=False).to_body()}
    assert call["strength"] == 0.8


def test_inpaint_records_the_mask(pipes: dict[str, Any], session: Session) -> None:
    record(pipes["inpaint"], session)(**call_arguments("inpaint"), generator=generator())
    body = entries(session, "generation")[0].body
    assert body["mode"] == "inpaint"
    assert body["source"]["pixel_sha256"] == pixel_sha256(init_image())
    mask = body["inputs"]["mask"]
    assert mask["bbox"] == [8, 16, 24, 40]
    assert mask["area_fraction"] == pytest.approx(16 * 24 / IMAGE_SIZE**2)
    assert mask["pixel_sha256"] == pixel_sha256(mask_image())
    # The mask itself is kept as a blob (the person's own drawing; replay reuses it).
    blobs = {b.sha256: b for b in session.store.blobs(session.journal)}
    blob = blobs[mask["blob_sha256"]]
    assert blob.media_type == "image/png"
    assert np.array_equal(pixels(Image.open(io.BytesIO(blob.data))), pixels(mask_image()))


# -- model identity ------------------------------------------------------------------------------


def test_model_identity_from_weight_files(tmp_path_factory: pytest.TempPathFactory, session: Session) -> None:
    directory = tmp_path_factory.mktemp("models") / "tiny-sd"
    pipe = build_tiny_pipeline("txt2img", cache_dir=directory)
    weights = sorted(p for p in directory.rglob("*.safetensors"))
    assert len(weights) == 3  # unet, vae, text encoder
    recorded = record(pipe, session)
    (load,) = entries(session, "model.load")
    assert load.actor == "human"
    identity = load.body["identity"]
    assert identity["source"] == "tiny-sd" and load.body["name"] == "tiny-sd"
    assert identity["pipeline"] == "StableDiffusionPipeline"
    assert identity["files"] == {p.relative_to(directory).as_posix(): file_sha256(p) for p in weights}
    assert identity["components"] == {}
    assert load.body["sha256"] == identity["sha256"] and load.body["short_hash"] == identity["sha256"][:10]
    assert load.body["active_adapters"] == []
    # A loaded pipeline still records and reproduces like any other.
    recorded(PROMPT, num_inference_steps=1, generator=generator())
    assert len(entries(session, "generation")) == 1


def test_model_identity_in_memory_is_the_state_dicts(pipes: dict[str, Any], session: Session) -> None:
    identity = model_identity(pipes["txt2img"])
    assert identity["files"] == {} and identity["source"] is None
    assert set(identity["components"]) == {"unet", "vae", "text_encoder"}
    # Same weights, same identity; other weights, another.
    assert model_identity(build_tiny_pipeline("txt2img")) == identity
    other = model_identity(build_tiny_pipeline("txt2img", seed=1))
    assert other["sha256"] != identity["sha256"]
    assert all(other["components"][k] != identity["components"][k] for k in identity["components"])
    assert "text_encoder_2" in model_identity(pipes["sdxl"])["components"]
    record(pipes["txt2img"], session, name="tiny-sd (random)")
    (load,) = entries(session, "model.load")
    assert load.body["name"] == "tiny-sd (random)" and load.body["sha256"] == identity["sha256"]


def test_model_identity_of_a_bfloat16_pipeline() -> None:
    # numpy has no bfloat16: hashing must not go through a numpy float array.
    pipe = build_tiny_pipeline("txt2img")
    full = model_identity(pipe)
    half = model_identity(pipe.to(torch.bfloat16))
    assert set(half["components"]) == set(full["components"])
    assert half["sha256"] != full["sha256"]


def test_recorded_pipeline_can_be_built_directly(pipes: dict[str, Any], session: Session) -> None:
    # Without `record` no model.load is written; the calls are recorded all the same.
    RecordedPipeline(pipes["txt2img"], session)(PROMPT, num_inference_steps=1, generator=generator())
    assert entries(session, "model.load") == []
    assert len(entries(session, "generation")) == 1


# -- adapters (LoRA, through PEFT) -------------------------------------------------------------------


def test_active_adapters_are_recorded_with_their_weight_and_hash(session: Session) -> None:
    """A LoRA made here (random, not zero, weights) on a fresh tiny pipeline: the load entry
    and every call record it with the weight the person set, and a hash of its weights that
    follows a change of those weights; the pipeline's output is unchanged by recording."""
    peft = pytest.importorskip("peft")
    pipe = build_tiny_pipeline("txt2img")
    plain = record(build_tiny_pipeline("txt2img"), session)
    plain(PROMPT, num_inference_steps=2, generator=generator())
    assert entries(session, "generation")[0].body["inputs"]["pipeline"]["adapters"] == []

    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["to_q", "to_v"], init_lora_weights=False)
    pipe.unet.add_adapter(config, adapter_name="style")
    pipe.set_adapters(["style"], adapter_weights=[0.6])
    expected = pixels(pipe(PROMPT, num_inference_steps=2, generator=generator()).images[0])
    recorded = record(pipe, session)
    [adapter] = entries(session, "model.load")[-1].body["active_adapters"]
    assert adapter["name"] == "style" and adapter["kind"] == "lora" and adapter["weight"] == 0.6
    assert len(adapter["sha256"]) == 64
    output = recorded(PROMPT, num_inference_steps=2, generator=generator())
    assert np.array_equal(pixels(output.images[0]), expected)

    pipe.set_adapters(["style"], adapter_weights=[0.3])
    recorded(PROMPT, num_inference_steps=2, generator=generator())
    with torch.no_grad():
        next(p for n, p in pipe.unet.named_parameters() if "lora_A" in n).add_(0.5)
    recorded(PROMPT, num_inference_steps=2, generator=generator())
    calls = [g.body["inputs"]["pipeline"]["adapters"] for g in entries(session, "generation")[1:]]
    assert [[(a["name"], a["weight"]) for a in call] for call in calls] == [[("style", 0.6)], [("style", 0.3)],
                                                                          [("style", 0.3)]]
    hashes = [call[0]["sha256"] for call in calls]
    assert hashes[0] == hashes[1] == adapter["sha256"] != hashes[2]  # same weights, then changed ones
    assert all(call[0]["enabled"] is True for call in calls)


@pytest.mark.filterwarnings("ignore:Already found a `peft_config` attribute")  # two adapters on purpose
def test_several_adapters_blockwise_weights_and_a_disabled_lora(session: Session) -> None:
    peft = pytest.importorskip("peft")
    pipe = build_tiny_pipeline("txt2img")
    pipe.unet.add_adapter(peft.LoraConfig(r=4, lora_alpha=8, target_modules=["to_q"], init_lora_weights=False),
                          adapter_name="style")
    pipe.unet.add_adapter(peft.LoraConfig(r=2, lora_alpha=2, use_rslora=True, target_modules=["to_k"],
                                          init_lora_weights=False), adapter_name="other")
    recorded = record(pipe, session)

    def adapters() -> list[dict[str, Any]]:
        recorded(PROMPT, num_inference_steps=2, generator=generator())
        return list(entries(session, "generation")[-1].body["inputs"]["pipeline"]["adapters"])

    pipe.set_adapters(["style", "other"], adapter_weights=[0.6, 0.25])
    # Each adapter's own weight, whichever layers it targets (rsLoRA scales by alpha / sqrt(r)).
    assert [(a["name"], a["weight"], a["enabled"]) for a in adapters()] == [("style", 0.6, True),
                                                                            ("other", 0.25, True)]
    pipe.set_adapters(["style"], adapter_weights=[{"unet": {"down": 0.3, "up": 1.0}}])
    [style] = adapters()
    assert style["weight"] is None and style["weights"] == [0.3, 1.0]  # the layers differ: all are listed
    pipe.disable_lora()  # still "active" to diffusers, but switched off in every layer
    assert [a["enabled"] for a in adapters()] == [False]


def test_adapter_weights_that_cannot_be_read_are_recorded_as_unknown() -> None:
    """Offloaded to the meta device (accelerate's sequential offload does that between passes):
    no hash, and no exception in the middle of the user's call."""
    from provenance.integrations.diffusers import _adapter_sha256

    component = torch.nn.Module()
    component.lora_A = torch.nn.ModuleDict({"style": torch.nn.Linear(2, 2, device="meta")})
    assert _adapter_sha256([component], "style", {}, {}) is None


def test_latent_output_leaves_the_size_unresolved(pipes: dict[str, Any], session: Session) -> None:
    recorded = record(pipes["txt2img"], session)
    recorded(PROMPT, num_inference_steps=2, generator=generator(), output_type="latent")
    call = entries(session, "generation")[-1].body["inputs"]["pipeline"]
    assert call["call"]["height"] is None and call["resolved_from_output"] == []
