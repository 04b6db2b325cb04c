"""Replay (`provenance.replay`, ``provenance replay``): re-run recorded calls, compare outputs.

Journals are recorded through `provenance.integrations.diffusers.record` around
the tiny random-weight pipelines (built once per module) and replayed on CPU.
A signed journal cannot be altered to claim another seed, so "the recorded
seed does not give these pixels" is shown the other way round: the replay runs
on a pipeline that draws its noise from another seed (or has other weights).
"""

from __future__ import annotations

import os

# huggingface_hub reads this once, at import: nothing here may reach a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from provenance._cli import main
from provenance.errors import UsageError
from provenance.keys import SigningKey
from provenance.recorder import Session
from provenance.replay import GenerationReplay, load_factory, replay_file, replay_lines
from provenance.store import Store

SRC = Path(__file__).resolve().parents[1] / "src"
TINY_FACTORY = "provenance.integrations._tiny:tiny_pipeline_factory"
KEY = SigningKey.from_seed(bytes([5]) * 32, "replay")

needs_diffusers = pytest.mark.skipif(
    not all(__import__("importlib").util.find_spec(m) for m in ("torch", "diffusers", "transformers")),
    reason="needs the provenance[diffusers] extra",
)


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("PROVENANCE_HOME", str(home))
    return home


@pytest.fixture
def store(private_home: Path) -> Iterator[Store]:
    # The default store of PROVENANCE_HOME, so that the CLI finds journals by id.
    with Store() as opened:
        yield opened


def journal_lines(session: Session) -> list[bytes]:
    return list(session.store.export_lines(session.journal))


def statuses(results: list[GenerationReplay]) -> list[str]:
    return [r.status for r in results]


# -- without a pipeline ---------------------------------------------------------------------------


def test_load_factory_errors_are_usage_errors() -> None:
    for spec, message in [
        ("no-colon", "MODULE:FACTORY"),
        (":factory", "MODULE:FACTORY"),
        ("no_such_module_here:f", "cannot import"),
        ("provenance.replay:__doc__", "not a callable"),
        ("provenance.replay:missing", "not a callable"),
    ]:
        with pytest.raises(UsageError, match=message):
            load_factory(spec)
    assert load_factory(TINY_FACTORY).__name__ == "tiny_pipeline_factory"


def test_generations_not_recorded_by_an_integration_are_skipped(store: Store) -> None:
    session = Session(store=store, key=KEY)
    session.record_generation([Image.new("RGB", (8, 8), (1, 2, 3))], seeds=[1])

    def factory() -> Any:
        raise AssertionError("no pipeline is needed for a generation with no call to repeat")

    (result,) = replay_lines(journal_lines(session), factory)
    assert (result.status, result.generation, result.mode) == ("skipped", 1, "txt2img")
    assert "not recorded by a pipeline integration" in result.reason
    assert result.to_json()["status"] == "skipped"


def test_a_journal_that_does_not_verify_is_not_replayed(store: Store) -> None:
    session = Session(store=store, key=KEY)
    session.record_generation([Image.new("RGB", (8, 8))])
    lines = journal_lines(session)
    # Lines 2-4 are the three entries (header and key first): drop the middle one.
    with pytest.raises(UsageError, match="refusing to replay"):
        replay_lines(lines[:3] + lines[4:], lambda: None)
    with pytest.raises(UsageError, match="refusing to replay"):
        replay_lines(lines[:-1], lambda: None)  # the last checkpoint cut off


def test_replay_arguments_name_what_only_a_digest_records() -> None:
    from provenance.integrations.diffusers import replay_arguments

    digest = {"pixel_sha256": "00" * 32, "width": 8, "height": 8, "mode": "RGB"}
    call = {
        "prompt": "a harbour",
        "guidance_scale": 7.5,
        "original_size": [96, 96],
        "output_type": "pil",
        "image": {"image": digest},  # found among earlier replayed outputs by replay itself
        "ip_adapter_image": {"image": digest},
        "control_image": [{"image": digest}],
        "latents": {"tensor": {"shape": [1], "dtype": "torch.float32", "sha256": "11" * 32}},
        "cross_attention_kwargs": None,
    }
    kwargs, missing = replay_arguments({"pipeline": {"call": call}})
    assert kwargs == {"prompt": "a harbour", "guidance_scale": 7.5, "original_size": (96, 96), "output_type": "pil"}
    assert sorted(missing) == ["control_image", "ip_adapter_image", "latents"]
    # A LoRA's weight for the call is a mapping of plain values: replayed as recorded.
    kwargs, _ = replay_arguments({"pipeline": {"call": call | {"cross_attention_kwargs": {"scale": 0.8}}}})
    assert kwargs["cross_attention_kwargs"] == {"scale": 0.8}


def test_cli_replay_with_a_bad_factory_is_a_one_line_error(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = Session(store=store, key=KEY)
    path = tmp_path / "j.jsonl"
    store.export(session.journal, path)
    assert main(["replay", str(path), "--pipeline", "nonsense"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("provenance: error:") and err.count("\n") == 1


# -- with the tiny pipelines ------------------------------------------------------------------------


def init_image() -> Image.Image:
    image = Image.new("RGB", (64, 64))
    image.putdata([(4 * x, 4 * y, (x * y) % 256) for y in range(64) for x in range(64)])
    return image


def mask_image() -> Image.Image:
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).ellipse((30, 6, 58, 34), fill=255)
    return mask


@pytest.fixture(scope="module")
def pipes() -> dict[str, Any]:
    pytest.importorskip("diffusers")
    import torch

    torch.set_num_threads(1)
    from provenance.integrations._tiny import build_tiny_pipeline

    return {kind: build_tiny_pipeline(kind) for kind in ("txt2img", "img2img", "inpaint", "sdxl")}


def family(pipes: dict[str, Any], sdxl: bool = False) -> Callable[[str], Any]:
    """A replay factory taking the recorded mode, as an auditor's would."""

    def factory(mode: str) -> Any:
        return pipes["sdxl"] if sdxl else pipes[mode]

    return factory


def torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def gen(seed: int) -> Any:
    import torch

    return torch.Generator("cpu").manual_seed(seed)


def record_session(store: Store, pipes: dict[str, Any]) -> Session:
    """A realistic session: two txt2img rounds, then img2img and inpainting of the kept candidate."""
    from provenance.integrations.diffusers import record

    session = Session(title="replayed", store=store, key=KEY)
    txt2img = record(pipes["txt2img"], session)
    session.set_prompt("a harbour at dusk")
    txt2img("a harbour at dusk", num_inference_steps=2, num_images_per_prompt=2, generator=gen(1))
    session.select(0)
    kept = txt2img("a harbour at dusk, warm light", negative_prompt="blurry", num_inference_steps=3,
                   guidance_scale=9.0, generator=[gen(2), gen(3)], num_images_per_prompt=2).images[1]
    session.select(1)
    varied = record(pipes["img2img"], session)("oil painting", image=kept, strength=0.7, num_inference_steps=3,
                                                generator=gen(4)).images[0]
    record(pipes["inpaint"], session)("a moon", image=varied, mask_image=mask_image(), num_inference_steps=2,
                                      strength=1.0, generator=gen(5))
    return session


@needs_diffusers
@pytest.mark.slow
def test_a_recorded_session_reproduces_on_cpu(store: Store, pipes: dict[str, Any]) -> None:
    session = record_session(store, pipes)
    started = time.perf_counter()
    results = replay_lines(journal_lines(session), family(pipes))
    print(f"\n[replay] 4 generations replayed in {time.perf_counter() - started:.2f} s")
    assert [(r.generation, r.mode) for r in results] == [(1, "txt2img"), (2, "txt2img"), (3, "img2img"),
                                                        (4, "inpaint")]
    assert statuses(results) == ["reproduced"] * 4, [r.reason for r in results]
    for result in results:
        assert all(c.reproduced and c.distance is None for c in result.candidates)
        assert result.to_json()["candidates"][0]["reproduced"] is True
    assert [len(r.candidates) for r in results] == [2, 2, 1, 1]


@needs_diffusers
@pytest.mark.slow
def test_sdxl_reproduces_including_micro_conditioning(store: Store, pipes: dict[str, Any]) -> None:
    from provenance.integrations.diffusers import record

    session = Session(store=store, key=KEY)
    sdxl = record(pipes["sdxl"], session)
    sdxl("a lighthouse", num_inference_steps=2, generator=gen(11))
    # Sizes are tuples in diffusers and lists in the journal.
    sdxl("a lighthouse", num_inference_steps=2, original_size=(96, 96), target_size=(64, 64),
         crops_coords_top_left=(4, 0), generator=gen(12))
    results = replay_lines(journal_lines(session), family(pipes, sdxl=True))
    assert statuses(results) == ["reproduced", "reproduced"], [r.reason for r in results]


@needs_diffusers
@pytest.mark.slow
@pytest.mark.parametrize("output_type", ["np", "pt"])
def test_array_outputs_reproduce(store: Store, pipes: dict[str, Any], output_type: str) -> None:
    from provenance.integrations.diffusers import record

    session = Session(store=store, key=KEY)
    record(pipes["txt2img"], session)("a harbour", num_inference_steps=2, output_type=output_type, generator=gen(3))
    (result,) = replay_lines(journal_lines(session), family(pipes))
    assert result.status == "reproduced", result.reason


class _Reseeded:
    """The pipeline, drawing its noise from another seed than the one it is given."""

    def __init__(self, pipe: Any, offset: int = 1) -> None:
        self.pipe, self.offset = pipe, offset

    def __call__(self, **kwargs: Any) -> Any:
        given = kwargs["generator"]
        kwargs["generator"] = gen(int(given.initial_seed()) + self.offset)
        return self.pipe(**kwargs)


@needs_diffusers
@pytest.mark.slow
def test_another_seed_or_other_weights_differ(store: Store, pipes: dict[str, Any]) -> None:
    from provenance.integrations._tiny import build_tiny_pipeline
    from provenance.integrations.diffusers import record

    session = Session(store=store, key=KEY)
    record(pipes["txt2img"], session)("a harbour", num_inference_steps=3, num_images_per_prompt=2, generator=gen(1))
    lines = journal_lines(session)
    (other_seed,) = replay_lines(lines, lambda: _Reseeded(pipes["txt2img"]))
    assert other_seed.status == "differs", other_seed.reason
    assert not any(c.reproduced for c in other_seed.candidates)
    assert all(c.replayed is not None and c.distance is not None for c in other_seed.candidates)
    other_weights = build_tiny_pipeline("txt2img", seed=1)
    (result,) = replay_lines(lines, lambda: other_weights)
    assert result.status == "differs", result.reason


@needs_diffusers
@pytest.mark.slow
def test_inputs_the_journal_does_not_hold_are_skipped(store: Store, pipes: dict[str, Any]) -> None:
    import torch

    from provenance.integrations.diffusers import record

    session = Session(store=store, key=KEY)
    txt2img = record(pipes["txt2img"], session)
    # Latents given as a tensor are recorded by digest only.
    txt2img("a harbour", num_inference_steps=1, latents=torch.randn(1, 4, 8, 8, generator=gen(0)), generator=gen(1))
    # An img2img source from outside the journal cannot be replayed either.
    record(pipes["img2img"], session)("paint", image=init_image(), num_inference_steps=2, generator=gen(2))
    results = replay_lines(journal_lines(session), family(pipes))
    assert statuses(results) == ["skipped", "skipped"]
    assert results[0].reason == "inputs not in the journal: latents"
    assert results[1].reason == "inputs not in the journal: image"


# -- the command line -------------------------------------------------------------------------------


@needs_diffusers
@pytest.mark.slow
def test_cli_replay_reproduces_with_the_tiny_factory(
    store: Store, tmp_path: Path, private_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from provenance.integrations._tiny import tiny_pipeline_factory
    from provenance.integrations.diffusers import record

    session = Session(title="cli", store=store, key=KEY)
    pipe = record(tiny_pipeline_factory(), session)
    pipe("a harbour at dusk", num_inference_steps=2, num_images_per_prompt=2, generator=gen(1))
    pipe("a harbour at dusk, oil painting", num_inference_steps=2)  # the recorder's own seed
    path = tmp_path / "journal.jsonl"
    store.export(session.journal, path)

    # The real command line, in a fresh process.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
           "PROVENANCE_HOME": str(private_home), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "provenance", "replay", str(path), "--pipeline", TINY_FACTORY],
                         capture_output=True, text=True, env=env, timeout=300)
    print(f"\n[replay] CLI subprocess {time.perf_counter() - started:.1f} s")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "REPRODUCED" in lines[0] and "REPRODUCED" in lines[1]
    assert lines[-1] == "2 reproduced, 0 similar, 0 differs, 0 skipped"

    # By journal id from the store, as JSON (in-process: the pipelines are imported already).
    capsys.readouterr()
    assert main(["replay", session.journal[:10], "--pipeline", TINY_FACTORY, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in report] == ["reproduced", "reproduced"]
    assert all(c["reproduced"] for r in report for c in r["candidates"])
    # Replay ran at the recorded thread count and put the caller's back.
    assert torch_threads() == 1
    assert [len(r["candidates"]) for r in report] == [2, 1]
    assert [r.status for r in replay_file(path, tiny_pipeline_factory)] == ["reproduced", "reproduced"]


@needs_diffusers
@pytest.mark.slow
def test_cli_replay_exits_1_when_outputs_differ(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from provenance.integrations._tiny import tiny_pipeline_factory
    from provenance.integrations.diffusers import record

    session = Session(store=store, key=KEY)
    record(tiny_pipeline_factory(), session)("a harbour", num_inference_steps=2, generator=gen(1))
    path = tmp_path / "journal.jsonl"
    store.export(session.journal, path)
    # An auditor's factory module whose pipeline draws noise from another seed.
    (tmp_path / "auditor_pipes.py").write_text(textwrap.dedent(
        """
        import torch
        from provenance.integrations._tiny import tiny_pipeline_factory

        class Reseeded:
            def __init__(self):
                self.pipe = tiny_pipeline_factory()

            def __call__(self, **kwargs):
                seed = kwargs["generator"].initial_seed() + 1
                kwargs["generator"] = torch.Generator("cpu").manual_seed(seed)
                return self.pipe(**kwargs)

        def reseeded():
            return Reseeded()
        """
    ))
    monkeypatch.syspath_prepend(str(tmp_path))
    capsys.readouterr()
    assert main(["replay", str(path), "--pipeline", "auditor_pipes:reseeded"]) == 1
    out = capsys.readouterr().out
    assert "DIFFERS" in out and out.splitlines()[-1] == "0 reproduced, 0 similar, 1 differs, 0 skipped"
