"""The recording API (`provenance.recorder.Session`): one signed entry per call.

Every test records through a real SQLite store in a temporary directory and,
when it is done, the `session` fixture verifies the journal (so "the journal
verifies after each call" is checked for every test, and explicitly where a
test makes several calls).  Keys come from fixed seeds: no scrypt, no key store
unless a test is about the key store.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, PngImagePlugin

from provenance import _formats
from provenance.binding import SIDECAR_SUFFIX, verify_image
from provenance.errors import UsageError
from provenance.images import THUMBNAIL_MAX_SIDE, digest_image
from provenance.importers import import_from_image
from provenance.journal import Entry
from provenance.keys import SigningKey
from provenance.recorder import Adapter, Candidate, Session, file_sha256, short_hash
from provenance.store import Store

SRC = Path(__file__).resolve().parents[1] / "src"


# -- helpers ---------------------------------------------------------------------------


def picture(seed: int, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    """Deterministic noise: distinct seeds give distinct pixels (and pixel hashes)."""
    rng = random.Random(seed)
    channels = len(Image.new(mode, (1, 1)).getbands())
    return Image.frombytes(mode, size, rng.randbytes(size[0] * size[1] * channels))


def pixel_sha256(image: Image.Image) -> str:
    return _formats.pixel_hash(image).hex()


def entries(session: Session) -> list[Entry]:
    return [signed.entry for signed in session.store.entries(session.journal)]


def last(session: Session) -> Entry:
    return entries(session)[-1]


def size(session: Session) -> int:
    return session.store.info(session.journal).size


def assert_verifies(session: Session) -> None:
    """The stored journal verifies, and with its key pinned it is trusted."""
    verdict = session.store.verify(session.journal)
    assert verdict.valid, verdict.reason
    pinned = session.store.verify(session.journal, trusted=[session.key.public])
    assert pinned.status == "valid", pinned.reason


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Never touch the real user data directory, even by accident.
    home = tmp_path / "home"
    monkeypatch.setenv("PROVENANCE_HOME", str(home))
    return home


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.from_seed(bytes([7]) * 32, "test")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store.sqlite") as opened:
        yield opened


@pytest.fixture
def session(store: Store, key: SigningKey) -> Iterator[Session]:
    recording = Session(title="harbour at dusk", store=store, key=key)
    yield recording
    assert_verifies(recording)


@pytest.fixture
def thumbs(store: Store, key: SigningKey) -> Iterator[Session]:
    recording = Session(title="with thumbnails", store=store, key=key, thumbnails=True)
    yield recording
    assert_verifies(recording)


# -- starting ---------------------------------------------------------------------------


def test_a_session_opens_a_journal_with_create_and_start(session: Session) -> None:
    first, start = entries(session)
    assert (first.kind, first.seq, first.actor) == ("journal.create", 0, "human")
    assert first.body["title"] == "harbour at dusk"
    assert (start.kind, start.actor) == ("session.start", "human")
    assert start.body["tool"]["name"] == "provenance"
    assert session.store.info(session.journal).title == "harbour at dusk"
    assert session.started == first.time


def test_tool_name_and_version_are_recorded(store: Store, key: SigningKey) -> None:
    recording = Session(store=store, key=key, tool="my-script", tool_version="2.3")
    assert last(recording).body["tool"] == {"name": "my-script", "version": "2.3"}
    assert_verifies(recording)


def test_without_a_key_the_key_store_default_key_is_made_then_reused(store: Store, private_home: Path) -> None:
    first = Session(store=store)
    second = Session(store=store)
    assert first.key.keyid == second.key.keyid
    assert (private_home / "keys").is_dir()
    assert_verifies(first)


def test_a_session_without_a_store_opens_and_closes_the_default_one(private_home: Path, key: SigningKey) -> None:
    with Session(title="own store", key=key) as recording:
        journal = recording.journal
        recording.note("hello")
    with Store() as reopened:
        assert reopened.info(journal).size == 3
        assert reopened.path.parent == private_home


# -- model.load -------------------------------------------------------------------------


def test_load_model_hashes_the_weights_file(session: Session, tmp_path: Path) -> None:
    # Larger than the 4 MiB read chunk, so the chunked hash is exercised.
    data = random.Random(1).randbytes(4 * 2**20 + 12345)
    weights = tmp_path / "v1-5-pruned.safetensors"
    weights.write_bytes(data)
    entry = session.load_model("sd-1.5", path=weights)
    expected = hashlib.sha256(data).hexdigest()
    body = entry.entry.body
    assert (entry.entry.kind, entry.entry.actor) == ("model.load", "human")
    assert body["name"] == "sd-1.5"
    assert body["sha256"] == expected == file_sha256(weights)
    assert body["short_hash"] == expected[:10]
    assert body["file"] == "v1-5-pruned.safetensors"  # the name only: no local paths leak
    assert body["adapters"] == []
    assert_verifies(session)


def test_short_hash_is_automatic1111_autov2() -> None:
    # A1111's "AutoV2" hash: the first ten hex digits of the file's SHA-256
    # (the empty file's SHA-256 starts e3b0c44298).
    assert short_hash(hashlib.sha256(b"").hexdigest()) == "e3b0c44298"
    assert len(short_hash("ab" * 32)) == 10


def test_load_model_with_a_known_hash_reads_no_file(session: Session) -> None:
    body = session.load_model("remote", path="/nonexistent/model.ckpt", sha256="cd" * 32).entry.body
    assert body["sha256"] == "cd" * 32 and body["short_hash"] == "cd" * 5 and body["file"] == "model.ckpt"


def test_load_model_without_path_or_hash_records_the_name(session: Session) -> None:
    body = session.load_model("some-api-model").entry.body
    assert body["sha256"] is None and body["short_hash"] is None and body["file"] is None


def test_load_model_missing_file_is_a_usage_error(session: Session, tmp_path: Path) -> None:
    before = size(session)
    with pytest.raises(UsageError, match="cannot read"):
        session.load_model("x", path=tmp_path / "missing.safetensors")
    assert size(session) == before


def test_load_model_records_adapters_and_details(session: Session) -> None:
    lora = hashlib.sha256(b"lora weights").hexdigest()
    body = session.load_model(
        "sdxl-base",
        sha256="ef" * 32,
        adapters=[Adapter("detail-tweaker", weight=0.6, sha256=lora), Adapter("style", weight=1, kind="lycoris")],
        vae="sdxl-vae-fp16",
    ).entry.body
    assert body["adapters"] == [
        {"name": "detail-tweaker", "kind": "lora", "weight": 0.6, "sha256": lora, "short_hash": lora[:10]},
        {"name": "style", "kind": "lycoris", "weight": 1.0, "sha256": None, "short_hash": None},
    ]
    assert isinstance(body["adapters"][1]["weight"], float)
    assert body["vae"] == "sdxl-vae-fp16"


# -- prompt.set -------------------------------------------------------------------------


def test_prompt_revisions_and_what_changed(session: Session) -> None:
    first = session.set_prompt("a harbour at dusk", negative="blurry").entry
    assert (first.kind, first.actor) == ("prompt.set", "human")
    assert first.body == {
        "revision": 1,
        "prompt": "a harbour at dusk",
        "negative_prompt": "blurry",
        "changed": ["prompt", "negative_prompt"],
    }
    second = session.set_prompt("a harbour at dusk, oil painting", negative="blurry").entry.body
    assert (second["revision"], second["changed"]) == (2, ["prompt"])
    third = session.set_prompt("a harbour at dusk, oil painting", negative="blurry, text").entry.body
    assert (third["revision"], third["changed"]) == (3, ["negative_prompt"])
    # Re-stating the same prompt is still a (recorded) decision, with nothing changed.
    fourth = session.set_prompt("a harbour at dusk, oil painting", negative="blurry, text").entry.body
    assert (fourth["revision"], fourth["changed"]) == (4, [])
    # Dropping the negative prompt is a change of it.
    fifth = session.set_prompt("a harbour at dusk, oil painting").entry.body
    assert (fifth["negative_prompt"], fifth["changed"]) == (None, ["negative_prompt"])
    assert_verifies(session)


def test_the_first_prompt_without_a_negative_changes_only_the_prompt(session: Session) -> None:
    assert session.set_prompt("a cat").entry.body["changed"] == ["prompt"]


def test_prompt_actor_can_be_overridden(session: Session) -> None:
    assert session.set_prompt("from a template", actor="automation").entry.actor == "automation"


# -- params.set -------------------------------------------------------------------------


def test_parameters_are_recorded_as_changes_from_previous_values(session: Session) -> None:
    seed = 2**64 - 59  # a 64-bit seed: tagged in the journal, round-trips exactly
    first = session.set_parameters(seed=seed, steps=30, guidance=7.5, sampler="DDIM")
    assert first is not None
    assert (first.entry.kind, first.entry.actor) == ("params.set", "human")
    assert first.entry.body["changes"] == {
        "guidance": {"from": None, "to": 7.5},
        "sampler": {"from": None, "to": "DDIM"},
        "seed": {"from": None, "to": seed},
        "steps": {"from": None, "to": 30},
    }
    second = session.set_parameters(steps=30, guidance=8.5, width=768)
    assert second is not None
    assert second.entry.body["changes"] == {"guidance": {"from": 7.5, "to": 8.5}, "width": {"from": None, "to": 768}}
    assert second.entry.body["values"] == {"seed": seed, "steps": 30, "guidance": 8.5, "sampler": "DDIM", "width": 768}
    assert session.parameters == second.entry.body["values"]
    assert_verifies(session)


def test_no_entry_when_no_parameter_changed(session: Session) -> None:
    session.set_parameters(seed=1, steps=20)
    before = size(session)
    assert session.set_parameters(seed=1) is None
    assert session.set_parameters() is None
    assert size(session) == before


def test_a_refused_entry_leaves_prompt_and_parameters_as_recorded(session: Session) -> None:
    # A value the journal cannot hold is refused; the session must not act as if it
    # had been recorded (else the next identical call would record nothing).
    session.set_prompt("a harbour")
    before = size(session)
    with pytest.raises(UsageError, match="cannot record"):
        session.set_parameters(seed=1, sampler=object())
    with pytest.raises(UsageError, match="cannot record"):
        session.set_prompt("a harbour, oil", negative=object())  # type: ignore[arg-type]
    assert size(session) == before and session.parameters == {}
    params = session.set_parameters(seed=1)
    assert params is not None and params.entry.body["changes"] == {"seed": {"from": None, "to": 1}}
    prompt = session.set_prompt("a harbour, oil").entry.body
    assert (prompt["revision"], prompt["changed"]) == (2, ["prompt"])


def test_parameters_property_is_a_copy(session: Session) -> None:
    session.set_parameters(seed=1)
    session.parameters["seed"] = 99
    assert session.parameters == {"seed": 1}


_PARAM_NAMES = st.sampled_from(["seed", "steps", "guidance", "sampler", "width"])
_PARAM_VALUES = st.one_of(st.integers(-(2**63), 2**64), st.floats(allow_nan=False), st.text(max_size=8), st.none())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=st.lists(st.dictionaries(_PARAM_NAMES, _PARAM_VALUES, max_size=4), min_size=1, max_size=5))
def test_parameter_changes_are_exactly_the_differences(
    rounds: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory, key: SigningKey
) -> None:
    with Store(tmp_path_factory.mktemp("params") / "store.sqlite") as own:
        recording = Session(store=own, key=key)
        current: dict[str, Any] = {}
        for update in rounds:
            expected = {
                name: {"from": current.get(name), "to": value}
                for name, value in update.items()
                if name not in current or current[name] != value
            }
            before = size(recording)
            signed = recording.set_parameters(**update)
            current.update(update)
            if not expected:
                assert signed is None and size(recording) == before
                continue
            assert signed is not None
            assert signed.entry.body["changes"] == expected
            assert signed.entry.body["values"] == current
        assert own.verify(recording.journal).valid


# -- generation -------------------------------------------------------------------------


def test_record_generation_candidates_digests_and_seeds(session: Session) -> None:
    session.set_prompt("a harbour", negative="blurry")
    session.set_parameters(seed=1234, steps=30, guidance=7.5)
    images = [picture(i) for i in range(4)]
    generation = session.record_generation(images, seeds=[1234, 1235, 1236, 1237])
    entry = generation.entry.entry
    assert (entry.kind, entry.actor) == ("generation", "tool")
    assert generation.number == entry.body["generation"] == 1
    assert entry.body["mode"] == "txt2img"
    assert "source" not in entry.body
    assert entry.body["inputs"] == {
        "prompt": "a harbour",
        "negative_prompt": "blurry",
        "prompt_revision": 1,
        "seed": 1234,
        "steps": 30,
        "guidance": 7.5,
    }
    for index, (image, candidate, body) in enumerate(zip(images, generation.candidates, entry.body["candidates"],
                                                         strict=True)):
        digest = digest_image(image)
        assert candidate == Candidate(1, index, digest, 1234 + index)
        assert candidate.id == digest.pixel_sha256 == pixel_sha256(image)
        assert body == {"index": index, "seed": 1234 + index, **digest.to_body()}
        assert body["phash"].startswith("ph2:")
        assert (body["width"], body["height"], body["mode"]) == (64, 48, "RGB")
        assert "thumbnail_sha256" not in body and "file_sha256" not in body
    assert list(session.store.blobs(session.journal)) == []
    assert_verifies(session)


def test_generation_numbers_count_up_and_inputs_override(session: Session) -> None:
    session.set_parameters(seed=1, steps=10)
    first = session.record_generation([picture(1)])
    second = session.record_generation([picture(2)], inputs={"steps": 12, "scheduler": "euler"}, mode="img2img",
                                       source=picture(1))
    assert (first.number, second.number) == (1, 2)
    body = second.entry.entry.body
    assert body["inputs"]["steps"] == 12 and body["inputs"]["scheduler"] == "euler"
    assert body["inputs"]["prompt"] is None and body["inputs"]["prompt_revision"] is None
    assert body["mode"] == "img2img"
    assert body["source"] == digest_image(picture(1)).to_body()
    assert first.candidates[0].seed is None and body["candidates"][0]["seed"] is None


def test_generation_from_files_and_bytes_records_file_hashes(session: Session, tmp_path: Path) -> None:
    image = picture(5)
    path = tmp_path / "out.png"
    image.save(path)
    data = path.read_bytes()
    generation = session.record_generation([path, data, str(path)])
    for candidate in generation.candidates:
        assert candidate.digest.file_sha256 == hashlib.sha256(data).hexdigest()
        assert candidate.id == pixel_sha256(image)


def test_generation_without_perceptual_hashes(store: Store, key: SigningKey) -> None:
    recording = Session(store=store, key=key, perceptual_hashes=False)
    body = recording.record_generation([picture(1)]).entry.entry.body["candidates"][0]
    assert "phash" not in body
    assert_verifies(recording)


def test_generation_thumbnails_are_blobs(thumbs: Session) -> None:
    images = [picture(i, size=(512, 256)) for i in range(3)]
    generation = thumbs.record_generation(images)
    blobs = {blob.sha256: blob for blob in thumbs.store.blobs(thumbs.journal)}
    named = [body["thumbnail_sha256"] for body in generation.entry.entry.body["candidates"]]
    assert set(named) == set(blobs)
    for name in named:
        blob = blobs[name]
        assert blob.media_type == "image/webp"
        assert hashlib.sha256(blob.data).hexdigest() == name
        thumb = Image.open(io.BytesIO(blob.data))
        assert thumb.format == "WEBP" and max(thumb.size) <= THUMBNAIL_MAX_SIDE
        assert len(blob.data) < 64 * 1024
    # Blobs travel with the portable journal (and can be left out of it).
    exported = b"".join(thumbs.store.export_lines(thumbs.journal))
    assert exported.count(b'"type":"blob"') == 3
    assert b'"type":"blob"' not in b"".join(thumbs.store.export_lines(thumbs.journal, blobs=False))
    assert_verifies(thumbs)


def test_generation_input_errors(session: Session) -> None:
    before = size(session)
    with pytest.raises(UsageError, match="at least one"):
        session.record_generation([])
    with pytest.raises(UsageError, match="one seed per image"):
        session.record_generation([picture(1), picture(2)], seeds=[1])
    assert size(session) == before


# -- selection --------------------------------------------------------------------------


def _four(session: Session, base: int = 0) -> list[Candidate]:
    return list(session.record_generation([picture(base + i) for i in range(4)]).candidates)


def test_select_by_candidate_rejects_the_others_by_default(session: Session) -> None:
    candidates = _four(session)
    entry = session.select(candidates[2], reason="best light on the water").entry
    assert (entry.kind, entry.actor) == ("selection", "human")
    assert entry.body == {
        "generation": 1,
        "chosen": [candidates[2].id],
        "chosen_index": [2],
        "rejected": [candidates[0].id, candidates[1].id, candidates[3].id],
        "reason": "best light on the water",
    }


def test_select_by_index_in_the_last_or_a_given_generation(session: Session) -> None:
    first = _four(session, 0)
    second = _four(session, 10)
    latest = session.select(1).entry.body
    assert (latest["generation"], latest["chosen"]) == (2, [second[1].id])
    earlier = session.select(3, generation=1).entry.body
    assert (earlier["generation"], earlier["chosen"], earlier["chosen_index"]) == (1, [first[3].id], [3])
    assert earlier["rejected"] == [c.id for c in first[:3]]


def test_select_by_pixel_hash_finds_any_generation(session: Session) -> None:
    first = _four(session, 0)
    _four(session, 10)
    body = session.select(first[0].id).entry.body
    assert (body["generation"], body["chosen_index"]) == (1, [0])


def test_select_with_explicit_rejected_and_several_chosen(session: Session) -> None:
    candidates = _four(session)
    body = session.select([candidates[0], 3], rejected=[1]).entry.body
    assert body["chosen"] == [candidates[0].id, candidates[3].id]
    assert body["chosen_index"] == [0, 3]
    # Candidate 2 was neither kept nor rejected: the person said nothing about it.
    assert body["rejected"] == [candidates[1].id]
    assert session.select(candidates[1], rejected=[]).entry.body["rejected"] == []
    assert session.select((candidates[2].id,)).entry.body["chosen"] == [candidates[2].id]


def test_select_unknown_candidate_is_a_usage_error(session: Session) -> None:
    _four(session)
    before = size(session)
    for ref in (7, "00" * 32):
        with pytest.raises(UsageError, match="no recorded candidate"):
            session.select(ref)
    with pytest.raises(UsageError):
        session.select(0, generation=5)
    assert size(session) == before


def test_select_before_any_generation_or_of_nothing_is_a_usage_error(session: Session) -> None:
    with pytest.raises(UsageError):
        session.select(0)
    _four(session)
    with pytest.raises(UsageError, match="at least one"):
        session.select([])


# -- edits and imports ------------------------------------------------------------------


def _mask(box: tuple[int, int, int, int], size: tuple[int, int] = (64, 48), mode: str = "L") -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask.convert(mode)


def test_region_edit_records_mask_bbox_area_and_digests(session: Session) -> None:
    session.set_prompt("a harbour", negative="blurry")
    base, result = picture(1), picture(2)
    mask = _mask((8, 4, 23, 11))  # 16 x 8 pixels of 64 x 48
    candidate = session.region_edit(base, mask, result, prompt="a moon", strength=0.75, seed=77, sampler="DDIM")
    entry = last(session)
    assert (entry.kind, entry.actor) == ("edit.region", "human")
    body = entry.body
    assert body["mode"] == "inpaint"
    assert body["base"] == digest_image(base).to_body()
    assert body["mask"]["pixel_sha256"] == pixel_sha256(mask)
    assert body["mask"]["bbox"] == [8, 4, 24, 12]  # Pillow's box: right and bottom exclusive
    assert body["mask"]["area_fraction"] == pytest.approx(16 * 8 / (64 * 48), abs=1e-6)
    assert "phash" not in body["mask"]  # a mask is not matched perceptually
    assert (body["prompt"], body["negative_prompt"], body["strength"], body["seed"]) == ("a moon", "blurry", 0.75, 77)
    assert body["sampler"] == "DDIM"
    assert body["result"] == {"index": 0, "seed": 77, **digest_image(result).to_body()}
    assert candidate == Candidate(1, 0, digest_image(result), 77)
    # The result is a candidate like any other: it can be selected.
    assert session.select(candidate).entry.body["chosen"] == [candidate.id]


def test_region_edit_defaults_to_the_session_prompt_and_takes_any_mask_mode(session: Session) -> None:
    session.set_prompt("a harbour", negative="blurry")
    session.region_edit(picture(1), _mask((0, 0, 31, 47), mode="RGB"), picture(2), mode="outpaint")
    body = last(session).body
    assert (body["mode"], body["prompt"], body["negative_prompt"]) == ("outpaint", "a harbour", "blurry")
    assert body["mask"]["area_fraction"] == 0.5 and body["mask"]["bbox"] == [0, 0, 32, 48]
    assert body["strength"] is None


def test_region_edit_empty_mask(session: Session) -> None:
    session.region_edit(picture(1), Image.new("L", (64, 48), 0), picture(2))
    mask = last(session).body["mask"]
    assert mask["bbox"] is None and mask["area_fraction"] == 0.0


def test_region_edit_rejects_unknown_mode(session: Session) -> None:
    with pytest.raises(UsageError, match="inpaint or outpaint"):
        session.region_edit(picture(1), _mask((0, 0, 4, 4)), picture(2), mode="img2img")


def test_region_edit_with_thumbnails_keeps_the_mask(thumbs: Session) -> None:
    thumbs.region_edit(picture(1), _mask((8, 4, 23, 11)), picture(2))
    body = last(thumbs).body
    blobs = {blob.sha256 for blob in thumbs.store.blobs(thumbs.journal)}
    assert {body["mask"]["blob_sha256"], body["result"]["thumbnail_sha256"]} == blobs


def test_manual_edit(session: Session) -> None:
    before, after = picture(1), picture(2)
    candidate = session.manual_edit(before, after, tool="krita brush", description="painted a reflection",
                                    area_fraction=0.02)
    entry = last(session)
    assert (entry.kind, entry.actor) == ("edit.manual", "human")
    assert entry.body == {
        "generation": 1,
        "operation": "paint",
        "tool": "krita brush",
        "description": "painted a reflection",
        "area_fraction": 0.02,
        "before": digest_image(before).to_body(),
        "result": {"index": 0, **digest_image(after).to_body()},
    }
    assert candidate.id == pixel_sha256(after) and candidate.generation == 1
    crop = session.manual_edit(after, after.crop((0, 0, 32, 32)), tool="gimp", description="square crop",
                               operation="crop")
    assert last(session).body["operation"] == "crop" and crop.generation == 2


def test_import_image(session: Session, tmp_path: Path) -> None:
    sketch = picture(3)
    path = tmp_path / "sketch.png"
    sketch.save(path)
    candidate = session.import_image(path, made_by_person=True, source="my pencil sketch, scanned")
    entry = last(session)
    assert (entry.kind, entry.actor) == ("import.image", "human")
    assert entry.body["made_by_person"] is True
    assert entry.body["source"] == "my pencil sketch, scanned"
    assert entry.body["result"]["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry.body["result"]["pixel_sha256"] == candidate.id == pixel_sha256(sketch)
    # An imported image can be the base of the next step.
    session.record_generation([picture(4)], mode="img2img", source=path)
    assert last(session).body["source"]["pixel_sha256"] == candidate.id


A1111_PARAMETERS = (
    "a castle on a hill, <lora:detail:0.6>\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3141592653, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1"
)


def test_import_metadata_from_a_real_a1111_png(session: Session, tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111_PARAMETERS)
    path = tmp_path / "00042-3141592653.png"
    picture(9).save(path, pnginfo=info)
    result = import_from_image(path)
    signed = session.import_metadata(result)
    assert len(signed) == 1
    entry = signed[0].entry
    assert entry == last(session)
    assert (entry.kind, entry.actor) == ("import.metadata", "automation")
    body = entry.body
    assert body["witnessed"] is False
    assert body["tool"] == "automatic1111"
    assert body["source"] == result.source and "parameters" in body["source"]
    assert body["prompt"] == "a castle on a hill, <lora:detail:0.6>"
    assert body["negative_prompt"] == "blurry, lowres"
    params = body["parameters"]
    assert (params["steps"], params["cfg_scale"], params["seed"]) == (28, 6.5, 3141592653)
    assert (params["sampler"], params["scheduler"]) == ("DPM++ 2M", "Karras")
    assert (params["width"], params["height"], params["model_hash"]) == (512, 768, "6ce0161689")
    assert params["loras"] == [{"name": "detail", "weight": 0.6}]
    assert body["skipped"] == []
    # Importing does not change what this session itself has witnessed.
    assert session.parameters == {}
    assert_verifies(session)


def test_import_metadata_actor_can_be_overridden(session: Session, tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111_PARAMETERS)
    buffer = io.BytesIO()
    picture(9).save(buffer, format="PNG", pnginfo=info)
    assert session.import_metadata(import_from_image(buffer.getvalue()), actor="human")[0].entry.actor == "human"


def test_note(session: Session) -> None:
    entry = session.note("Intent: warm light, one boat.").entry
    assert (entry.kind, entry.actor, entry.body) == ("note", "human", {"text": "Intent: warm light, one boat."})
    assert session.note("auto", actor="tool").entry.actor == "tool"


# -- export ------------------------------------------------------------------------------


def _session_with_choice(session: Session) -> Candidate:
    session.set_prompt("a harbour")
    candidates = _four(session)
    session.select(candidates[1])
    return candidates[1]


@pytest.mark.parametrize(
    ("name", "mode", "fmt", "carrier"),
    [
        ("final.png", "embed", "png", "embedded"),
        ("final.jpg", "embed", "jpeg", "embedded"),
        ("final.webp", "embed", "webp", "embedded"),
        ("final.png", "sidecar", "png", "sidecar"),
        ("final.png", "compact", "png", "compact"),
        ("final.jpg", "compact", "jpeg", "compact"),
    ],
)
def test_export_binds_the_exact_file(
    session: Session, tmp_path: Path, name: str, mode: str, fmt: str, carrier: str
) -> None:
    chosen = _session_with_choice(session)
    image = picture(1)  # the chosen candidate's pixels
    path = session.export(image, tmp_path / name, mode=mode)
    assert path == tmp_path / name and path.is_file()
    entry = last(session)
    assert (entry.kind, entry.actor) == ("export", "human")
    assert (entry.body["file"], entry.body["format"], entry.body["attach"]) == (name, fmt, mode)
    # `source` names the recorded candidate the exported image is.
    assert entry.body["source"] == chosen.id
    binding = entry.body["binding"]
    assert (binding["alg"], binding["width"], binding["height"]) == ("sha256", 64, 48)
    if fmt == "png":
        assert binding["pixel_sha256"] == chosen.id and binding["phash"] == chosen.digest.phash
    data = path.read_bytes()
    sidecar = None
    if mode == "sidecar":
        sidecar = path.with_name(name + SIDECAR_SUFFIX).read_bytes()
        assert b'"type":"export"' not in data  # nothing embedded
    verdict = verify_image(data, sidecar=sidecar)
    assert verdict.ok(), verdict.reason
    assert (verdict.binding, verdict.carrier, verdict.export_seq) == ("exact-file", carrier, entry.seq)
    pinned = verify_image(data, sidecar=sidecar, trusted=[session.key.public])
    assert pinned.status == "valid", pinned.reason
    assert_verifies(session)


def test_export_of_an_existing_file_and_of_rgba_as_jpeg(session: Session, tmp_path: Path) -> None:
    rgba = picture(1, mode="RGBA")
    candidate = session.record_generation([rgba]).candidates[0]
    jpeg = session.export(rgba, tmp_path / "final.jpg")
    assert verify_image(jpeg.read_bytes()).binding == "exact-file"
    # A file already encoded is attached as it is (its pixels are not re-encoded).
    source = tmp_path / "already.png"
    rgba.save(source)
    copy = session.export(source, tmp_path / "copy.png")
    assert last(session).body["source"] == candidate.id
    assert verify_image(copy.read_bytes()).binding == "exact-file"
    assert pixel_sha256(Image.open(copy)) == candidate.id


def test_jpeg_export_of_an_rgba_candidate_names_that_candidate(session: Session, tmp_path: Path) -> None:
    rgba = picture(1, mode="RGBA")
    candidate = session.record_generation([rgba]).candidates[0]
    session.export(rgba, tmp_path / "final.jpg")
    assert last(session).body["source"] == candidate.id


def _resave(path: Path, image: Image.Image, out: Path) -> bytes:
    """`image` saved by Pillow as another PNG, carrying `path`'s embedded journal unchanged."""
    info = PngImagePlugin.PngInfo()
    with Image.open(path) as original:
        info.add_itxt("provenance:journal", original.text["provenance:journal"], zip=True)
    image.save(out, pnginfo=info, compress_level=1)
    return out.read_bytes()


def test_a_changed_file_or_changed_pixels_no_longer_bind(session: Session, tmp_path: Path) -> None:
    _session_with_choice(session)
    path = session.export(picture(1), tmp_path / "final.png")
    assert verify_image(path.read_bytes()).binding == "exact-file"
    # Same pixels, other bytes (re-compressed): only the pixel hash still holds.
    resaved = verify_image(_resave(path, picture(1), tmp_path / "resaved.png"))
    assert (resaved.binding, resaved.ok()) == ("same-pixels", True)
    # One pixel changed: nothing binds.
    edited = picture(1)
    edited.putpixel((0, 0), (0, 0, 0) if edited.getpixel((0, 0)) != (0, 0, 0) else (1, 1, 1))
    changed = verify_image(_resave(path, edited, tmp_path / "edited.png"))
    assert (changed.binding, changed.status) == ("none", "invalid")
    with pytest.raises(UsageError):
        session.export(picture(1), tmp_path / "x.png", mode="inline")


def test_each_export_journal_contains_every_earlier_step(session: Session, tmp_path: Path) -> None:
    _session_with_choice(session)
    png = session.export(picture(1), tmp_path / "a.png")
    session.note("also as JPEG")
    jpeg = session.export(picture(1), tmp_path / "a.jpg")
    assert verify_image(png.read_bytes()).journal.entries < verify_image(jpeg.read_bytes()).journal.entries
    assert verify_image(jpeg.read_bytes()).journal.entries == size(session)


# -- seal ---------------------------------------------------------------------------------


def test_seal_closes_the_journal(session: Session) -> None:
    session.note("done")
    entry = session.seal("finished").entry
    assert (entry.kind, entry.actor) == ("seal", "human")
    assert entry.body == {"entries": entry.seq + 1, "reason": "finished"}
    assert session.store.info(session.journal).sealed
    with pytest.raises(UsageError, match="sealed"):
        session.note("too late")
    assert session.store.verify(session.journal).sealed


def test_seal_on_exit(store: Store, key: SigningKey) -> None:
    with Session(store=store, key=key, seal_on_exit=True) as recording:
        recording.note("one step")
    assert store.info(recording.journal).sealed
    # An error inside the block leaves the journal open (it can be continued).
    with pytest.raises(RuntimeError), Session(store=store, key=key, seal_on_exit=True) as failing:
        raise RuntimeError("generation crashed")
    assert not store.info(failing.journal).sealed
    # Already sealed inside the block: no second seal.
    with Session(store=store, key=key, seal_on_exit=True) as early:
        early.seal()
    assert [e.entry.kind for e in store.entries(early.journal)][-2:] == ["session.start", "seal"]
    for journal in (recording.journal, failing.journal, early.journal):
        assert store.verify(journal).valid


# -- continuing ----------------------------------------------------------------------------


def test_continuing_a_journal_picks_up_prompt_params_and_generations(store: Store, key: SigningKey) -> None:
    first = Session(title="two sittings", store=store, key=key)
    first.set_prompt("a harbour", negative="blurry")
    first.set_parameters(seed=10, steps=20, guidance=7.5)
    earlier = _four(first, 0)
    latest = _four(first, 10)
    first.close()

    second = Session(journal=first.journal[:8], store=store, key=key)  # a unique prefix will do
    assert second.journal == first.journal
    assert second.parameters == {"seed": 10, "steps": 20, "guidance": 7.5}
    # No second session.start: continuing is not starting.
    assert [e.kind for e in entries(second)].count("session.start") == 1
    # Parameters continue from the recorded values.
    assert second.set_parameters(seed=10, steps=20) is None
    change = second.set_parameters(steps=25)
    assert change is not None and change.entry.body["changes"] == {"steps": {"from": 20, "to": 25}}
    # The prompt revision continues, and `changed` is relative to the recorded prompt.
    prompt = second.set_prompt("a harbour", negative="blurry, text").entry.body
    assert (prompt["revision"], prompt["changed"]) == (2, ["negative_prompt"])
    # Recorded candidates can be selected: by index in the last generation, or by hash.
    assert second.select(2).entry.body["chosen"] == [latest[2].id]
    assert second.select(earlier[0].id).entry.body["generation"] == 1
    # Generation numbers continue.
    generation = second.record_generation([picture(99)])
    assert generation.number == 3
    assert generation.entry.entry.body["inputs"]["prompt_revision"] == 2
    assert_verifies(second)


def test_continuing_after_edits_and_imports_keeps_generation_numbers_unique(store: Store, key: SigningKey) -> None:
    first = Session(store=store, key=key)
    first.record_generation([picture(1)])
    first.region_edit(picture(1), _mask((0, 0, 8, 8)), picture(2))
    first.manual_edit(picture(2), picture(3), tool="brush", description="touch-up")
    imported = first.import_image(picture(4), made_by_person=True)
    assert imported.generation == 4

    second = Session(journal=first.journal, store=store, key=key)
    # The imported image is the latest output, selectable by index and by hash.
    assert second.select(0).entry.body["chosen"] == [imported.id]
    assert second.select(picture_id(3)).entry.body["generation"] == 3
    assert second.record_generation([picture(5)]).number == 5
    numbers = [e.body["generation"] for e in entries(second) if "generation" in e.body and e.kind != "selection"]
    assert numbers == sorted(set(numbers))
    assert_verifies(second)


def picture_id(seed: int) -> str:
    return pixel_sha256(picture(seed))


def test_continuing_an_unknown_journal_fails(store: Store, key: SigningKey) -> None:
    from provenance.errors import JournalNotFoundError

    with pytest.raises(JournalNotFoundError):
        Session(journal="ab" * 16, store=store, key=key)


# -- who acted -----------------------------------------------------------------------------


def test_default_actors_follow_who_usually_does_what(session: Session, tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111_PARAMETERS)
    buffer = io.BytesIO()
    picture(9).save(buffer, format="PNG", pnginfo=info)

    session.load_model("m", sha256="00" * 32)
    session.set_prompt("p")
    session.set_parameters(seed=1)
    session.record_generation([picture(1), picture(2)])
    session.select(0)
    session.region_edit(picture(1), _mask((0, 0, 8, 8)), picture(3))
    session.manual_edit(picture(3), picture(4), tool="brush", description="d")
    session.import_image(picture(5), made_by_person=True)
    session.import_metadata(import_from_image(buffer.getvalue()))
    session.note("n")
    session.export(picture(4), tmp_path / "out.png")
    session.seal()
    actors = {e.kind: e.actor for e in entries(session)}
    assert actors == {
        "journal.create": "human",
        "session.start": "human",
        "model.load": "human",
        "prompt.set": "human",
        "params.set": "human",
        "generation": "tool",
        "selection": "human",
        "edit.region": "human",
        "edit.manual": "human",
        "import.image": "human",
        "import.metadata": "automation",
        "note": "human",
        "export": "human",
        "seal": "human",
    }
    # Every entry went in signed and chained, one at a time.
    assert [e.seq for e in entries(session)] == list(range(size(session)))


def test_an_unknown_actor_is_a_usage_error(session: Session) -> None:
    # Errors from the API share one base class (`provenance.Error`), so callers can catch them alike.
    before = size(session)
    for call in (lambda: session.note("x", actor="robot"), lambda: session.set_prompt("p", actor="Human")):
        with pytest.raises(UsageError, match="actor"):
            call()
    assert size(session) == before


# -- crash safety --------------------------------------------------------------------------

_CRASH_CHILD = textwrap.dedent(
    """
    import random, sys
    from PIL import Image
    from provenance.keys import SigningKey
    from provenance.recorder import Session
    from provenance.store import Store

    def picture(seed):
        return Image.frombytes("RGB", (32, 32), random.Random(seed).randbytes(32 * 32 * 3))

    store = Store(sys.argv[1])
    session = Session(title="crash", store=store, key=SigningKey.from_seed(bytes([7]) * 32),
                      thumbnails=sys.argv[2] == "thumbs")
    print("journal", session.journal, flush=True)
    step = 0
    while True:
        step += 1
        session.set_prompt(f"prompt {step}")
        session.set_parameters(seed=step)
        session.record_generation([picture(2 * step), picture(2 * step + 1)], seeds=[step, step])
        session.select(step % 2, reason=f"round {step}")
        # Only what was recorded before this line is claimed durable.
        print("recorded", step, store.info(session.journal).size, flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(("rounds", "thumbnails"), [(2, False), (5, True), (9, False)])
def test_sigkill_mid_session_loses_nothing_recorded(
    tmp_path: Path, key: SigningKey, rounds: int, thumbnails: bool
) -> None:
    script = tmp_path / "child.py"
    script.write_text(_CRASH_CHILD)
    database = tmp_path / "crash.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
           "PROVENANCE_HOME": str(tmp_path / "home")}
    child = subprocess.Popen(
        [sys.executable, str(script), str(database), "thumbs" if thumbnails else "plain"],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    assert child.stdout is not None
    journal, durable, done = "", 0, 0
    deadline = time.monotonic() + 120
    try:
        while done < rounds and time.monotonic() < deadline:
            words = child.stdout.readline().split()
            assert words, "the child exited early"
            if words[0] == "journal":
                journal = words[1]
            else:
                done, durable = int(words[1]), int(words[2])
        assert done == rounds
        # Kill it while it is busy appending the next round (no clean shutdown).
        time.sleep(random.Random(rounds).uniform(0.0, 0.05))
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    with Store(database) as reopened:
        info = reopened.info(journal)
        assert info.size >= durable  # every acknowledged entry survived
        kinds = [signed.entry.kind for signed in reopened.entries(journal)]
        assert kinds[:2] == ["journal.create", "session.start"]
        assert kinds[2 : 2 + 4 * rounds] == ["prompt.set", "params.set", "generation", "selection"] * rounds
        verdict = reopened.verify(journal)
        assert verdict.valid, verdict.reason
        assert verdict.entries == info.size
        # The crashed journal can be continued where it stopped.
        resumed = Session(journal=journal, store=reopened, key=key)
        assert resumed.parameters["seed"] >= rounds
        resumed.note("resumed after a crash")
        assert reopened.verify(journal).valid
