"""The scripts under ``examples/`` run, and what they write verifies.

Scripts run as a user would run them (a fresh process, ``PROVENANCE_HOME`` in
a temporary directory); the ComfyUI node is imported from its file and called
directly, as ComfyUI would call it, with numpy and torch IMAGE batches.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image

from provenance import _formats
from provenance.binding import verify_image
from provenance.store import Store
from provenance.verify import verify_file

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
HAVE_DIFFUSERS = all(importlib.util.find_spec(m) for m in ("torch", "diffusers", "transformers"))


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("PROVENANCE_HOME", str(home))
    return home


def run_example(name: str, out: Path, home: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    # PYTHONPATH is left as it is: the scripts find src/ themselves when not installed.
    env = {**os.environ, "PROVENANCE_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    run = subprocess.run([sys.executable, str(EXAMPLES / name), str(out)], capture_output=True, text=True, env=env,
                         timeout=600, cwd=out.parent)
    return run, time.perf_counter() - started


def journal_kinds(path: Path) -> list[str]:
    kinds: list[str] = []
    verdict = verify_file(path, visitor=lambda s: kinds.append(s.entry.kind))
    assert verdict.valid and verdict.sealed, verdict.reason
    return kinds


def test_plain_script(tmp_path: Path, private_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plain"
    run, seconds = run_example("plain_script.py", out, private_home)
    with capsys.disabled():
        print(f"\n[examples] plain_script.py: {seconds:.1f} s", end="")
    assert run.returncode == 0, run.stderr
    assert "lighthouse.png: untrusted (exact-file)" in run.stdout  # valid, but no key pinned
    for name in ("lighthouse.png", "lighthouse.jpg"):
        verdict = verify_image((out / name).read_bytes())
        assert verdict.ok() and verdict.binding == "exact-file", verdict.reason
    kinds = journal_kinds(out / "lighthouse.provenance.jsonl")
    assert kinds.count("generation") == 2 and kinds.count("selection") == 2
    assert kinds[-4:] == ["edit.manual", "export", "export", "seal"]
    # The journal lives in the store under PROVENANCE_HOME, with the key made there.
    assert (private_home / "keys").is_dir()
    with Store(private_home / "store.sqlite") as store:
        assert len(store.journals()) == 1 and store.journals()[0].sealed


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_DIFFUSERS, reason="needs the provenance[diffusers] extra")
def test_diffusers_script_and_its_replay(
    tmp_path: Path, private_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "diffusers"
    run, seconds = run_example("diffusers_script.py", out, private_home)
    with capsys.disabled():
        print(f"\n[examples] diffusers_script.py: {seconds:.1f} s", end="")
    assert run.returncode == 0, run.stderr
    verdict = verify_image((out / "harbour.png").read_bytes())
    assert verdict.ok() and verdict.binding == "exact-file", verdict.reason
    journal = out / "harbour.provenance.jsonl"
    kinds = journal_kinds(journal)
    assert kinds.count("model.load") == 1 and kinds.count("generation") == 2
    # What the script prints to run next works: the journal replays.
    import torch

    from provenance.integrations._tiny import tiny_pipeline_factory
    from provenance.replay import replay_file

    torch.set_num_threads(1)
    assert "provenance replay" in run.stdout
    assert [r.status for r in replay_file(journal, tiny_pipeline_factory)] == ["reproduced", "reproduced"]


# -- the ComfyUI node --------------------------------------------------------------------------


def load_node_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("comfyui_save_node", EXAMPLES / "comfyui_save_node.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def comfy_graph(cfg: float = 8.0, text: str = "a harbour at dusk", seed: int = 156680208700286) -> dict[str, Any]:
    """An API-format graph as ComfyUI passes it in the hidden PROMPT input."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 3}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": 20, "cfg": cfg, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImageWithProvenance", "inputs": {"filename_prefix": "harbour", "images": ["8", 0]}},
    }


def batch(seed: int, count: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).random((count, 48, 64, 3), dtype=np.float32)


def test_comfyui_node_follows_comfyui_conventions() -> None:
    module = load_node_module()
    node_class = module.NODE_CLASS_MAPPINGS["SaveImageWithProvenance"]
    assert module.NODE_DISPLAY_NAME_MAPPINGS["SaveImageWithProvenance"] == "Save Image (with provenance)"
    types = node_class.INPUT_TYPES()
    assert types["required"]["images"][0] == "IMAGE"
    assert types["required"]["filename_prefix"][0] == "STRING"
    assert types["required"]["format"][0] == ["png", "jpeg", "webp"]
    assert types["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", "unique_id": "UNIQUE_ID"}
    assert node_class.RETURN_TYPES == () and node_class.OUTPUT_NODE is True
    assert callable(getattr(node_class, node_class.FUNCTION))
    assert isinstance(node_class.CATEGORY, str)


def test_comfyui_node_records_rounds_and_saves_verifiable_files(tmp_path: Path, private_home: Path) -> None:
    module = load_node_module()
    node = module.SaveImageWithProvenance(output_dir=tmp_path / "output")
    workflow = {"nodes": [{"id": 9, "type": "SaveImageWithProvenance"}], "links": []}

    images = batch(1)
    first = node.save(images, "harbour", prompt=comfy_graph(), extra_pnginfo={"workflow": workflow}, unique_id="9",
                      note="Intent: a quiet harbour.")
    saved = first["ui"]["images"]
    assert [s["filename"] for s in saved] == ["harbour_00001_.png", "harbour_00002_.png", "harbour_00003_.png"]
    assert all(s["type"] == "output" for s in saved)
    journal = first["ui"]["provenance"][0]["journal"]
    expected = module.to_pil(images)
    for entry, picture in zip(saved, expected, strict=True):
        data = (tmp_path / "output" / entry["filename"]).read_bytes()
        verdict = verify_image(data)
        assert verdict.ok() and verdict.binding == "exact-file", verdict.reason
        # The pixels are exactly ComfyUI's own conversion (scale by 255, clip, truncate).
        assert _formats.pixel_hash(_formats.decode(data)) == _formats.pixel_hash(picture)
    assert np.array_equal(np.asarray(expected[0]), np.clip(255.0 * images[0], 0, 255).astype(np.uint8))

    # A second run of the same node, with the guidance changed and one image chosen, as JPEG.
    second = node.save(batch(2), "harbour", format="jpeg", selected=1, prompt=comfy_graph(cfg=9.5),
                       extra_pnginfo={"workflow": workflow}, unique_id="9")
    assert second["ui"]["provenance"][0]["journal"] == journal
    (chosen,) = second["ui"]["images"]
    assert chosen["filename"] == "harbour_00004_.jpg"
    verdict = verify_image((tmp_path / "output" / chosen["filename"]).read_bytes())
    assert verdict.ok() and verdict.binding == "exact-file", verdict.reason

    with Store() as store:
        entries = [s.entry for s in store.entries(journal)]
        assert store.verify(journal).valid
    kinds = [e.kind for e in entries]
    assert kinds == [
        "journal.create", "session.start", "note", "prompt.set", "params.set", "generation", "export", "export",
        "export", "params.set", "generation", "selection", "export",
    ]
    by_kind: dict[str, list[Any]] = {}
    for entry in entries:
        by_kind.setdefault(entry.kind, []).append(entry)
    prompt = by_kind["prompt.set"][0].body
    assert (prompt["prompt"], prompt["negative_prompt"]) == ("a harbour at dusk", "blurry")
    first_params, second_params = (e.body for e in by_kind["params.set"])
    assert first_params["values"]["seed"] == 156680208700286 and first_params["values"]["cfg_scale"] == 8.0
    assert second_params["changes"] == {"cfg_scale": {"from": 8.0, "to": 9.5}}  # only what the person changed
    generation = by_kind["generation"][0]
    assert generation.actor == "tool"
    assert generation.body["inputs"]["comfyui"]["prompt"] == comfy_graph()
    assert len(generation.body["inputs"]["comfyui"]["workflow_sha256"]) == 64
    assert [c["seed"] for c in generation.body["candidates"]] == [156680208700286] * 3
    selection = by_kind["selection"][0]
    assert (selection.actor, selection.body["chosen_index"], len(selection.body["rejected"])) == ("human", [1], 2)


def test_comfyui_node_takes_torch_images_and_graphless_runs(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    module = load_node_module()
    node = module.SaveImageWithProvenance(output_dir=tmp_path / "out")
    tensor = torch.from_numpy(batch(3, count=2))
    result = node.save(tensor, "plain", format="webp")  # no PROMPT: e.g. called from a script
    names = [s["filename"] for s in result["ui"]["images"]]
    assert names == ["plain_00001_.webp", "plain_00002_.webp"]
    for name in names:
        assert verify_image((tmp_path / "out" / name).read_bytes()).binding == "exact-file"
    # An explicit journal id continues that journal rather than the node's own.
    other = module.SaveImageWithProvenance(output_dir=tmp_path / "out")
    again = other.save(tensor[:1], "plain", journal=result["ui"]["provenance"][0]["journal"])
    assert again["ui"]["provenance"] == result["ui"]["provenance"]
    with pytest.raises(ValueError, match="selected"):
        node.save(tensor, "plain", selected=5)
    with pytest.raises(ValueError, match="IMAGE"):
        module.to_pil(np.zeros((4, 4)))
    assert isinstance(module.to_pil(np.zeros((1, 4, 4, 1), dtype=np.float32))[0], Image.Image)
    json.dumps(result)  # what ComfyUI sends to its front end must be JSON
