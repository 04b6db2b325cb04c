"""Known-answer vectors: the code reproduces them byte for byte; docs/format.md publishes them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from provenance import load_public_key, verify_file

VECTORS = Path(__file__).parent / "vectors"
FORMAT_DOC = Path(__file__).parents[1] / "docs" / "format.md"


def _build() -> dict[str, bytes]:
    spec = importlib.util.spec_from_file_location("make_vectors", VECTORS / "make_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    files: dict[str, bytes] = module.build()
    return files


BUILT = _build()


@pytest.mark.parametrize("name", sorted(BUILT))
def test_code_reproduces_the_stored_vector(name: str) -> None:
    assert (VECTORS / name).read_bytes() == BUILT[name]


@pytest.mark.parametrize("name", sorted(BUILT))
def test_docs_publish_the_vector(name: str) -> None:
    assert BUILT[name].decode() in FORMAT_DOC.read_text(encoding="utf-8")


def test_vector_journal_verifies_against_its_pinned_key() -> None:
    key = load_public_key((VECTORS / "public-key.pem").read_bytes())
    verdict = verify_file(VECTORS / "journal-v1.jsonl", trusted=[key])
    assert verdict.status == "valid" and verdict.sealed and verdict.entries == 4
    assert verdict.root is not None and verdict.root.hex() == (
        "4421769706ea3a6628f800d83b08cddec1a3064eb5e78e9a39bfdc6bffb8dae4"
    )
