"""Match a suspect image — a stripped, re-encoded, resized or cropped copy found
elsewhere — with the images recorded in journals, by perceptual hash.

Every candidate, edit result and exported image a journal records carries a
perceptual hash (``phash``, see `provenance.phash`).  `best_match` compares a
suspect with a list of them; `find_in_store` asks the local store's index of
perceptual hashes for the few recorded images that can be within the threshold,
then compares only those.  Results always carry the distance and the threshold,
so an auditor sees how close a match is, not only a yes or no.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from . import phash
from .binding import _decode_any, _detect
from .images import digest_loaded

__all__ = [
    "MatchResult",
    "Reference",
    "ScoredReference",
    "best_match",
    "collect_phashes",
    "find_in_store",
    "load_suspect",
    "reference_for_image",
]

_MAX_DEPTH = 8


@attrs.frozen
class Reference:
    description: str
    phash: str
    journal_status: str | None = None


@attrs.frozen
class ScoredReference:
    description: str
    distance: int
    journal_status: str | None = None


@attrs.frozen
class MatchResult:
    best: ScoredReference | None
    threshold: int
    compared: int

    @property
    def close(self) -> bool:
        """The closest recorded image is within the threshold (whatever its journal's verdict)."""
        return self.best is not None and self.best.distance <= self.threshold

    @property
    def matched(self) -> bool:
        """Within the threshold of an image recorded in a journal that is not invalid:
        a hash read from a tampered or broken journal is evidence of nothing."""
        return self.close and self.best is not None and self.best.journal_status != "invalid"

    def to_json(self) -> dict[str, Any]:
        return {
            "matched": self.matched,
            "threshold": self.threshold,
            "compared": self.compared,
            "best": None
            if self.best is None
            else {
                "description": self.best.description,
                "distance": self.best.distance,
                "journal_status": self.best.journal_status,
            },
        }


def collect_phashes(body: Mapping[str, Any], where: str = "", depth: int = 0) -> Iterator[tuple[str, str]]:
    """Every perceptual hash in an entry body, with where it sits (e.g. ``candidates[2]``)."""
    if depth > _MAX_DEPTH:
        return
    for key, value in body.items():
        if value is None or isinstance(value, (str, int, float)):  # scalars, before the ABC check below
            if key == "phash" and isinstance(value, str):
                yield where, value
        elif isinstance(value, Mapping):
            yield from collect_phashes(value, f"{where} {key}" if where else f": {key}", depth + 1)
        elif isinstance(value, list):
            for index, item in enumerate(value[:10_000]):
                if isinstance(item, Mapping):
                    label = f"{where} {key}[{index}]" if where else f": {key}[{index}]"
                    yield from collect_phashes(item, label, depth + 1)


def load_suspect(data: bytes) -> int:
    """The suspect's hash, from any image Pillow can safely decode."""
    return phash.suspect_hash(_decode_any(data, _detect(data)))


def reference_for_image(data: bytes, description: str) -> Reference:
    image = _decode_any(data, _detect(data))
    digest = digest_loaded(image, None, perceptual=True)
    assert digest.phash is not None
    return Reference(description, digest.phash)


def best_match(suspect: int, references: Sequence[Reference]) -> MatchResult:
    best: ScoredReference | None = None
    compared = 0
    for reference in references:
        try:
            parsed = phash.PerceptualHash.from_str(reference.phash)
        except ValueError:
            continue  # a malformed hash in a journal matches nothing
        compared += 1
        scored = ScoredReference(reference.description, phash.distance(suspect, parsed), reference.journal_status)
        if best is None or _rank(scored) < _rank(best):
            best = scored
    return MatchResult(best, phash.THRESHOLD, compared)


def _rank(scored: ScoredReference) -> tuple[bool, bool, int]:
    # A match in a sound journal comes first, then a match in an invalid one
    # (reported, not counted), then the nearest miss, whatever its journal.
    miss = scored.distance > phash.THRESHOLD
    return miss, not miss and scored.journal_status == "invalid", scored.distance


def find_in_store(store: Any, suspect: int) -> MatchResult:
    """Search every journal in the store through its perceptual-hash index."""
    rows = store.phash_candidates(phash.probe_keys(suspect))
    references = [Reference(f"journal {journal} entry {seq}", value) for journal, seq, value in rows]
    return best_match(suspect, references)
