"""Selective disclosure: private prompts are committed as salted hashes and revealed only on request."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from provenance import Session, SigningKey, Store, verify_file, verify_image_file
from provenance._encoding import b64encode
from provenance.journal import DISCLOSURE_MEDIA_TYPE, DISCLOSURE_PREFIX, SignedEntry, disclosed_text
from provenance.report import build_report, render_text

SECRET = "a lighthouse in the style only I know how to describe"
NEGATIVE = "my private list of things to avoid"


@pytest.fixture
def session(tmp_path: Path) -> Session:
    store = Store(tmp_path / "store.sqlite")
    s = Session(title="private", store=store, key=SigningKey.generate(), private_prompts=True)
    s.set_prompt(SECRET, NEGATIVE)
    s.set_parameters(seed=7, steps=20)
    images = [Image.new("RGB", (32, 32), (40 * i, 90, 200 - 40 * i)) for i in range(3)]
    s.record_generation(images, seeds=[7, 8, 9])
    s.select(1, reason="best")
    s.export(images[1], tmp_path / "out.png")
    return s


def _entries(path: Path) -> list[SignedEntry]:
    seen: list[SignedEntry] = []
    verdict = verify_file(path, visitor=seen.append)
    assert verdict.valid, verdict.reason
    return seen


def test_private_text_never_leaves_without_disclose(session: Session, tmp_path: Path) -> None:
    out = tmp_path / "journal.jsonl"
    session.store.export(session.journal, out)
    data = out.read_bytes() + (tmp_path / "out.png").read_bytes()
    for text in (SECRET, NEGATIVE):
        assert text.encode() not in data
        assert text.encode() not in b"".join(line.entry.to_payload() for line in _entries(out))
    assert verify_image_file(tmp_path / "out.png").binding == "exact-file"
    prompt_set = next(e for e in _entries(out) if e.entry.kind == "prompt.set").entry.body
    assert prompt_set["prompt"] is None and len(prompt_set["prompt_commitment"]) == 64
    generation = next(e for e in _entries(out) if e.entry.kind == "generation").entry.body
    assert generation["inputs"]["prompt"] is None
    assert generation["inputs"]["prompt_commitment"] == prompt_set["prompt_commitment"]


def test_disclosed_export_reveals_and_matches_the_commitment(session: Session, tmp_path: Path) -> None:
    out = tmp_path / "disclosed.jsonl"
    session.store.export(session.journal, out, disclose=True)
    assert DISCLOSURE_MEDIA_TYPE.encode() in out.read_bytes()
    commitment = next(e for e in _entries(out) if e.entry.kind == "prompt.set").entry.body["prompt_commitment"]
    blob = session.store.blobs(session.journal, disclosures=True)
    revealed = {b.sha256: disclosed_text(b) for b in blob}
    assert revealed[commitment] == SECRET
    report = render_text(build_report(out))
    assert "disclosed: matches its signed commitment" in report and SECRET[:30] in report


def test_withheld_prompt_is_reported_as_withheld(session: Session, tmp_path: Path) -> None:
    out = tmp_path / "journal.jsonl"
    session.store.export(session.journal, out)
    report = render_text(build_report(out))
    assert "withheld by the author" in report and SECRET not in report


def test_a_forged_disclosure_is_invalid(session: Session, tmp_path: Path) -> None:
    out = tmp_path / "disclosed.jsonl"
    session.store.export(session.journal, out, disclose=True)
    original = out.read_bytes()
    # Swap the disclosed text for another of the same length: the blob no longer hashes to its name.
    salt_and_text = next(
        b for b in session.store.blobs(session.journal, disclosures=True) if disclosed_text(b) == SECRET
    ).data
    other = salt_and_text.replace(SECRET.encode(), b"x" * len(SECRET.encode()))
    forged = original.replace(b64encode(salt_and_text).encode(), b64encode(other).encode())
    assert forged != original
    out.write_bytes(forged)
    assert not verify_file(out).valid


def test_commitment_is_salted(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    a = Session(store=store, key=SigningKey.generate(), private_prompts=True)
    b = Session(store=store, key=SigningKey.generate(), private_prompts=True)
    assert a.commit_text(SECRET) == a.commit_text(SECRET)  # stable within a session
    assert a.commit_text(SECRET) != b.commit_text(SECRET)  # but not guessable across sessions
    assert a.commit_text(SECRET) != hashlib.sha256(DISCLOSURE_PREFIX + SECRET.encode()).hexdigest()
    assert next(iter(store.blobs(a.journal, disclosures=True))).media_type == DISCLOSURE_MEDIA_TYPE


@pytest.mark.slow
def test_diffusers_wrapper_keeps_private_prompts_private(tmp_path: Path) -> None:
    pytest.importorskip("diffusers")
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from provenance.integrations import _tiny
    from provenance.integrations.diffusers import record

    torch.set_num_threads(1)
    store = Store(tmp_path / "s.sqlite")
    session = Session(store=store, key=SigningKey.generate(), private_prompts=True)
    pipe = record(_tiny.build_tiny_pipeline("txt2img"), session)
    pipe(SECRET, negative_prompt=NEGATIVE, num_inference_steps=2, generator=torch.Generator("cpu").manual_seed(3))
    out = tmp_path / "journal.jsonl"
    store.export(session.journal, out)
    payloads = b"".join(e.payload for e in _entries(out))
    assert SECRET.encode() not in payloads and NEGATIVE.encode() not in payloads
    call = next(e for e in _entries(out) if e.entry.kind == "generation").entry.body["inputs"]["pipeline"]["call"]
    assert call["prompt"] is None and call["prompt_commitment"] == session.commit_text(SECRET)
