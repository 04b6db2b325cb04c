"""The auditor's report: does the evidence hold, and what did the person contribute?

    report = build_report("harbour.png", trusted=[load_public_key(pem)])
    print(render_text(report))                 # 80 columns, for a terminal
    json.dumps(render_json(report))            # docs/report-schema.json
    Path("report.html").write_text(render_html(report))   # one self-contained file

The model is computed once, from one streaming verification of the journal:
entries arrive through `verify_lines`' visitor and optional blobs (thumbnails,
masks) through its blob visitor.  Nothing is read from the journal any other
way, so the report shows exactly what the verifier saw.  When the verdict is
*not valid* the report says so first and still lists what the file says, marked
as unverified throughout: an auditor needs to see what a forger claimed.

Every string, number and structure in a journal is treated as hostile: bodies
are read with defensive accessors (a wrong type is "unreadable", never an
exception), long texts are capped, blobs are bounded in size and number, and
images are decoded only through the bomb-safe container layer and re-encoded
before they reach a renderer.  ``docs/report.md`` explains each section and how
the examiners' terms are derived from entries.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import io
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import attrs
from PIL import Image, ImageDraw

from . import __version__, _formats
from .errors import Error, ImageFormatError, MalformedDataError, UsageError
from .journal import BlobRecord, Checkpoint, SignedEntry, disclosed_text
from .keys import PublicKey
from .verify import TimestampCheck, Verdict, iter_file_lines, verify_lines

__all__ = [
    "IDLE_GAP_SECONDS",
    "REPORT_FORMAT",
    "REPORT_VERSION",
    "AreaPart",
    "AreaShare",
    "BindingSection",
    "CandidateView",
    "Counts",
    "DiffOp",
    "Factor",
    "ImageRef",
    "ImportedStep",
    "Lineage",
    "LineageStep",
    "MaskRef",
    "ParamChange",
    "PromptRevision",
    "Report",
    "Round",
    "Signer",
    "Subject",
    "Summary",
    "TimeSpent",
    "TimelineItem",
    "TimestampInfo",
    "VerdictSection",
    "build_report",
    "build_report_from_lines",
    "content_notice",
    "mask_overlay",
    "render_html",
    "render_json",
    "render_text",
    "safe_thumbnail",
    "word_diff",
]

REPORT_FORMAT = "provenance-report"
REPORT_VERSION = 1

# Active time: gaps longer than this between consecutive entries are treated as
# the author being away (a break, the night) and left out of the sum.
IDLE_GAP_SECONDS = 600

# Caps that keep the model small whatever the journal holds.
_TEXT_LIMIT = 10_000  # characters of one prompt, note or reason kept in the report
_SUMMARY_LIMIT = 200  # characters of a timeline line's summary
_VALUE_LIMIT = 120  # characters of a displayed parameter value
_DIFF_TOKEN_LIMIT = 2_000  # tokens per side beyond which a prompt is not diffed (difflib is quadratic)
_TIMELINE_LIMIT = 20_000  # timeline rows kept; the rest are counted
_LIST_LIMIT = 5_000  # prompt revisions, parameter changes, rounds, edits each
_CANDIDATE_LIMIT = 64  # candidates kept per generation
_CHAIN_LIMIT = 1_000  # lineage steps followed back from the exported image
_BLOB_LIMIT = 4 * 2**20  # one thumbnail or mask
_BLOBS_TOTAL = 64 * 2**20  # all of them
_BLOB_PIXELS = 4096 * 4096  # largest thumbnail or mask decoded
_AREA_GRID = 256  # longest side of the grid the area share is computed on
_IMAGE_MEDIA = ("image/png", "image/webp", "image/jpeg")
_HEX64 = re.compile(r"[0-9a-f]{64}")

# The human-contribution levels are a reading aid with fixed, documented rules
# (docs/report.md), not a legal test.
_SUBSTANTIAL_AREA = 0.05


# -- the model -----------------------------------------------------------------------


@attrs.frozen
class Subject:
    """What the report is about: an image file, a journal file, or a stored journal."""

    kind: str  # "image" | "journal-file" | "stored-journal" | "lines"
    name: str
    journal_file: str | None = None  # for an image: the journal file given with it, if any


@attrs.frozen
class Signer:
    keyid: str
    pinned: bool


@attrs.frozen
class TimestampInfo:
    """An RFC 3161 timestamp on a checkpoint: entries ``0..size-1`` existed no later than `time`."""

    size: int
    time: _dt.datetime
    tsa: str
    verified: bool  # its signature and chain end at a pinned TSA root
    note: str = ""  # why it is not verified (empty when it is)


@attrs.frozen
class BindingSection:
    """Which binding between the image and the journal held."""

    held: str  # "exact-file" | "same-pixels" | "none"
    carrier: str  # "embedded" | "sidecar" | "compact" | "given" | "none"
    export_seq: int | None
    explanation: str


@attrs.frozen
class VerdictSection:
    """The verdict, first: valid / valid but untrusted signer / not valid, and why."""

    status: str  # "valid" | "untrusted" | "invalid"
    label: str  # "VALID" | "VALID BUT UNTRUSTED SIGNER" | "NOT VALID"
    ok: bool  # what `provenance verify` exits 0 on
    code: str
    reasons: tuple[str, ...]
    journal: str | None
    entries: int
    sealed: bool
    pinned: bool  # keys were pinned by the auditor
    signers: tuple[Signer, ...]
    first_time: _dt.datetime | None
    last_time: _dt.datetime | None
    timestamps: tuple[TimestampInfo, ...]
    trusted_entries: int  # entries 0..n-1 rest on a verified timestamp
    binding: BindingSection | None  # None unless the subject is an image
    failed_at: int | None
    journal_verified: bool  # the journal's entries verified (even if the image binding did not hold)


@attrs.frozen
class Counts:
    entries: int = 0
    prompt_revisions: int = 0
    parameter_changes: int = 0
    parameter_entries: int = 0
    generations: int = 0
    candidates: int = 0
    selections: int = 0
    chosen_candidates: int = 0
    rejected_candidates: int = 0
    region_edits: int = 0
    manual_edits: int = 0
    imported_steps: int = 0
    notes: int = 0
    exports: int = 0
    by_person: int = 0
    by_tool: int = 0
    by_automation: int = 0


@attrs.frozen
class TimeSpent:
    """First to last entry (the signer's claim) and active time (idle gaps left out)."""

    first: _dt.datetime | None
    last: _dt.datetime | None
    span_seconds: float
    active_seconds: float
    idle_gap_seconds: int
    gaps_excluded: int


@attrs.frozen
class TimelineItem:
    seq: int
    time: _dt.datetime
    actor: str
    kind: str
    category: str  # prompt, params, generation, selection, edit, import, note, export, model, journal, other
    summary: str
    imported: bool
    time_basis: str  # "trusted-timestamp" | "signer-claim"
    no_later_than: _dt.datetime | None


@attrs.frozen
class DiffOp:
    op: str  # "equal" | "insert" | "delete"
    text: str


@attrs.frozen
class PromptRevision:
    seq: int
    time: _dt.datetime
    actor: str
    revision: int | None
    prompt: str | None
    negative_prompt: str | None
    prompt_diff: tuple[DiffOp, ...]
    negative_diff: tuple[DiffOp, ...]
    truncated: bool


@attrs.frozen
class ParamChange:
    seq: int
    time: _dt.datetime
    actor: str
    name: str
    before: str  # displayed value ("unset" when it had none)
    after: str
    before_value: Any  # JSON-safe
    after_value: Any


@attrs.frozen
class ImageRef:
    """An image the journal names by its pixel hash."""

    pixel_sha256: str
    width: int | None
    height: int | None
    thumbnail: str | None  # sha256 of a thumbnail blob, when the journal names one
    thumbnail_available: bool  # ...and the blob is present
    label: str


@attrs.frozen
class MaskRef:
    blob: str | None  # sha256 of the mask image blob, when present
    bbox: tuple[int, int, int, int] | None  # in the mask's own pixels
    width: int | None
    height: int | None
    area_fraction: float | None


@attrs.frozen
class CandidateView:
    image: ImageRef
    index: int | None
    seed: str | None
    status: str  # "chosen" | "rejected" | "not-selected"
    in_lineage: bool


@attrs.frozen
class Round:
    """One generation and what the person did with its candidates."""

    seq: int
    time: _dt.datetime
    actor: str
    generation: int | None
    mode: str
    prompt_revision: int | None
    candidates: tuple[CandidateView, ...]
    candidates_total: int
    selection_seq: int | None
    reason: str | None
    rejected: int
    base: ImageRef | None  # img2img / inpaint source
    mask: MaskRef | None  # inpaint mask (a region edit recorded by an integration)


@attrs.frozen
class LineageStep:
    kind: str  # "generation" | "region-edit" | "manual-edit" | "import" | "export" | "unrecorded"
    seq: int | None
    actor: str
    title: str
    detail: str
    image: ImageRef
    base: ImageRef | None
    mask: MaskRef | None
    generation: int | None
    selection_seq: int | None
    rejected: int
    imported: bool


@attrs.frozen
class Lineage:
    steps: tuple[LineageStep, ...]  # from the first recorded ancestor to the exported image
    final: ImageRef | None
    final_source: str  # "export" | "last-kept" | "none"
    complete: bool  # the chain starts at an image the journal itself produced or imported
    note: str
    rounds: tuple[Round, ...]
    rounds_total: int


@attrs.frozen
class AreaPart:
    seq: int
    kind: str  # "region-edit" | "manual-edit"
    method: str  # "mask" | "bbox" | "declared" | "unknown"
    fraction: float | None


@attrs.frozen
class AreaShare:
    fraction: float | None
    estimate: bool
    method: str
    parts: tuple[AreaPart, ...]


@attrs.frozen
class Factor:
    key: str  # expressive_inputs | selection | coordination_arrangement | modification
    title: str
    level: str  # "none" | "limited" | "substantial"
    explanation: str
    entries: tuple[int, ...]


@attrs.frozen
class ImportedStep:
    seq: int
    kind: str
    actor: str
    description: str


@attrs.frozen
class Summary:
    """The contribution in the examiners' terms."""

    factors: tuple[Factor, ...]
    warning: str | None
    imported: tuple[ImportedStep, ...]
    disclaimer: str


@attrs.frozen
class Report:
    """Everything the renderers show, computed once from one verification."""

    subject: Subject
    verdict: VerdictSection
    content: str  # "verified" | "unverified" | "unbound" (journal verifies, image not bound) | "absent"
    title: str | None
    models: tuple[str, ...]
    counts: Counts
    time: TimeSpent
    timeline: tuple[TimelineItem, ...]
    timeline_omitted: int
    prompts: tuple[PromptRevision, ...]
    parameters: tuple[ParamChange, ...]
    lineage: Lineage
    area: AreaShare
    summary: Summary
    notes: tuple[str, ...]  # unreadable entries and other remarks about the record itself
    generated: _dt.datetime
    tool_version: str
    # Rendering assets: blobs the verified entries name (bounded), and a preview of the
    # image file the auditor gave.  Kept out of equality and repr.
    blobs: Mapping[str, BlobRecord] = attrs.field(factory=dict, eq=False, repr=False)
    preview: bytes | None = attrs.field(default=None, eq=False, repr=False)


# -- hostile-input accessors ---------------------------------------------------------


def _text(value: Any, limit: int = _TEXT_LIMIT) -> str | None:
    if not isinstance(value, str):
        return None
    return value if len(value) <= limit else value[:limit] + "…"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _fraction(value: Any) -> float | None:
    number = _number(value)
    return None if number is None else min(1.0, max(0.0, number))


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _digest(value: Any) -> str | None:
    return value if isinstance(value, str) and _HEX64.fullmatch(value) else None


def _plain(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of a recorded value (non-finite floats and huge integers become text)."""
    if depth > 8:
        return "…"
    if value is None or isinstance(value, (bool, str)):
        return value if not isinstance(value, str) else _text(value, 2_000)
    if isinstance(value, int):
        return value if abs(value) <= 2**53 - 1 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in list(value.items())[:100]}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in list(value)[:100]]
    return repr(value)[:200]


def _display(value: Any, limit: int = _VALUE_LIMIT, depth: int = 0) -> str:
    """A short human form of a recorded value (nesting shown to four levels)."""
    if depth > 4:
        return "…"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        text = value
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, (bytes, bytearray)):
        text = f"<{len(value)} bytes>"
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{_short(str(k), 40)}: {_display(v, 40, depth + 1)}"
                               for k, v in list(value.items())[:12]) + "}"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_display(v, 40, depth + 1) for v in list(value)[:12]) + "]"
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(text: str | None, limit: int = _SUMMARY_LIMIT) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# -- prompt diffs ------------------------------------------------------------------------

_TOKEN = re.compile(r"\w+|\s+|[^\w\s]", re.UNICODE)


def word_diff(before: str | None, after: str | None) -> tuple[DiffOp, ...]:
    """A word-level diff of two prompts (the first revision is all insertion)."""
    old, new = before or "", after or ""
    if old == new:
        return (DiffOp("equal", new),) if new else ()
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    if len(a) > _DIFF_TOKEN_LIMIT or len(b) > _DIFF_TOKEN_LIMIT:
        # Too long to diff in bounded time: show it as replaced.
        return tuple(op for op in (DiffOp("delete", old), DiffOp("insert", new)) if op.text)
    ops: list[DiffOp] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            ops.append(DiffOp("equal", "".join(a[i1:i2])))
            continue
        if tag in ("delete", "replace"):
            ops.append(DiffOp("delete", "".join(a[i1:i2])))
        if tag in ("insert", "replace"):
            ops.append(DiffOp("insert", "".join(b[j1:j2])))
    merged: list[DiffOp] = []
    for op in ops:
        if merged and merged[-1].op == op.op:
            merged[-1] = DiffOp(op.op, merged[-1].text + op.text)
        elif op.text:
            merged.append(op)
    return tuple(merged)


# -- images: only what decodes safely, re-encoded by us ---------------------------------------


def _decode_blob(data: bytes) -> Image.Image | None:
    """Decode a thumbnail or mask blob through the bomb-safe container layer, or None."""
    if len(data) > _BLOB_LIMIT:
        return None
    try:
        return _formats.decode(data, max_pixels=_BLOB_PIXELS)
    except Exception:  # hostile bytes of any kind: no image, never a crash
        return None


def safe_thumbnail(data: bytes, max_side: int = 160, fmt: str = "PNG") -> tuple[bytes, int, int] | None:
    """Re-encode an untrusted image as a small PNG or WebP: ``(bytes, width, height)``, or None.

    Only PNG, JPEG and WebP are accepted (detected by their signatures, not the
    declared media type), within `_BLOB_LIMIT` bytes and `_BLOB_PIXELS` pixels.
    The output is produced by Pillow from the decoded pixels, so nothing of the
    original file (metadata, trailing bytes, polyglot content) survives.
    """
    image = _decode_blob(data)
    if image is None:
        return None
    try:
        converted = image.convert("RGBA" if "A" in image.getbands() or image.mode == "P" else "RGB")
        converted.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        out = io.BytesIO()
        if fmt == "WEBP":
            # Lossy, fastest method: these are previews of previews, and a page may hold hundreds.
            converted.save(out, format="WEBP", quality=80, method=0)
        else:
            converted.save(out, format="PNG", compress_level=1)
    except Exception:
        return None
    return out.getvalue(), converted.width, converted.height


def mask_overlay(data: bytes, size: tuple[int, int], rgba: tuple[int, int, int, int]) -> bytes | None:
    """A transparent PNG of `size` with the mask (pixels >= 128) painted in `rgba`."""
    image = _decode_blob(data)
    if image is None or size[0] < 1 or size[1] < 1:
        return None
    try:
        mask = image.convert("L").resize(size, Image.Resampling.BILINEAR).point(lambda v: 255 if v >= 128 else 0)
        overlay = Image.new("RGBA", size, (0, 0, 0, 0))
        overlay.paste(Image.new("RGBA", size, rgba), (0, 0), mask)
        out = io.BytesIO()
        overlay.save(out, format="PNG", compress_level=1)
    except Exception:
        return None
    return out.getvalue()


def _preview_of(data: bytes) -> bytes | None:
    """A preview of the image file the auditor gave (decoded with the default pixel limit)."""
    try:
        image = _formats.decode(data)
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        image.thumbnail((320, 320), Image.Resampling.BILINEAR)
        out = io.BytesIO()
        image.save(out, format="PNG", compress_level=3)
    except Exception:
        return None
    return out.getvalue()


# -- collecting entries ------------------------------------------------------------------------


@attrs.define
class _Node:
    """An image the journal produced, and how (for walking the lineage back)."""

    pixel: str
    width: int | None
    height: int | None
    thumbnail: str | None
    label: str
    parent: str | None
    origin: str  # "round" | "change"
    index: int  # into _Collector.rounds or .changes
    candidate: int | None = None  # candidate index within a round


@attrs.define
class _RoundState:
    seq: int
    time: _dt.datetime
    actor: str
    generation: int | None
    mode: str
    prompt_revision: int | None
    candidates: list[tuple[str, int | None, str | None]]  # pixel, index, seed
    total: int
    base: str | None
    mask: MaskRef | None
    selection_seq: int | None = None
    reason: str | None = None


@attrs.define
class _Change:
    """A region edit, manual edit or image import: one image in, one out."""

    seq: int
    actor: str
    kind: str  # "region-edit" | "manual-edit" | "import"
    base: str | None
    result: str | None
    mask: MaskRef | None
    area_fraction: float | None
    detail: str
    imported: bool
    prompted: bool = False  # a region edit with its own prompt


@attrs.define
class _Export:
    seq: int
    file: str | None
    format: str | None
    attach: str | None
    source: str | None
    pixel: str | None
    width: int | None
    height: int | None


_CATEGORIES = {
    "journal.create": "journal",
    "session.start": "journal",
    "seal": "journal",
    "model.load": "model",
    "prompt.set": "prompt",
    "params.set": "params",
    "generation": "generation",
    "selection": "selection",
    "edit.region": "edit",
    "edit.manual": "edit",
    "import.image": "import",
    "import.metadata": "import",
    "note": "note",
    "export": "export",
}


class _Collector:
    """Builds the report's raw material from entries as the verifier streams them."""

    def __init__(self) -> None:
        self.entries = 0
        self.title: str | None = None
        self.models: list[str] = []
        self.timeline: list[tuple[int, _dt.datetime, str, str, str, str, bool]] = []
        self.timeline_omitted = 0
        self.prompts: list[PromptRevision] = []
        self.prompt_state: tuple[str | None, str | None] = (None, None)
        self.params: list[ParamChange] = []
        self.param_entries = 0
        self.param_changes = 0
        self.own_images: list[int] = []  # import.image entries the author says they made
        self.rounds: list[_RoundState] = []
        self.round_of_generation: dict[int, int] = {}
        self.changes: list[_Change] = []
        self.nodes: dict[str, _Node] = {}
        self.chosen: dict[str, tuple[int, str | None]] = {}
        self.rejected: set[str] = set()
        self.selections: list[tuple[int, str, int, int]] = []  # seq, actor, chosen, rejected
        self.exports: list[_Export] = []
        self.notes: list[tuple[int, str, str]] = []  # seq, actor, text
        self.imported: list[ImportedStep] = []
        self.actors = {"human": 0, "tool": 0, "automation": 0}
        self.kinds: dict[str, int] = {}
        self.generations = 0
        self.candidates = 0
        self.region_edits: list[int] = []  # seqs, including integrations' inpaint generations
        self.manual_edits: list[int] = []
        self.first: _dt.datetime | None = None
        self.previous: _dt.datetime | None = None
        self.active = 0.0
        self.gaps_excluded = 0
        self.backwards = 0  # entries claiming a time before the previous entry's
        self.problems: list[str] = []
        self.blobs: dict[str, BlobRecord] = {}
        self.disclosed: dict[str, str] = {}  # commitment -> text the author chose to disclose
        self.blob_bytes = 0
        self.referenced: set[str] = set()

    # -- visitors ------------------------------------------------------------------

    def visit(self, signed: SignedEntry) -> None:
        entry = signed.entry
        self.entries += 1
        actor = entry.actor.value
        self.actors[actor] = self.actors.get(actor, 0) + 1
        self.kinds[entry.kind] = self.kinds.get(entry.kind, 0) + 1
        self._time(entry.time)
        body = entry.body
        imported = entry.kind.startswith("import.") or body.get("witnessed") is False
        try:
            summary = self._entry(entry.seq, entry.time, actor, entry.kind, body)
        except Exception as exc:  # a hostile body must not stop the report: note it and go on
            summary = "(body could not be read)"
            if len(self.problems) < 100:
                self.problems.append(f"entry {entry.seq} ({entry.kind}): body not understood ({type(exc).__name__})")
        if imported and len(self.imported) < _LIST_LIMIT:
            self.imported.append(ImportedStep(entry.seq, entry.kind, actor, summary))
        if len(self.timeline) < _TIMELINE_LIMIT:
            category = _CATEGORIES.get(entry.kind, "other")
            if entry.kind == "generation" and self.region_edits and self.region_edits[-1] == entry.seq:
                category = "edit"
            self.timeline.append((entry.seq, entry.time, actor, entry.kind, category, _short(summary), imported))
        else:
            self.timeline_omitted += 1

    def visit_blob(self, blob: BlobRecord) -> None:
        # Blobs are unsigned; the entries that name them by hash are.  Keep only
        # image blobs, bounded, and (in `finish`) only those a verified entry names.
        text = disclosed_text(blob)
        if text is not None and len(self.disclosed) < _LIST_LIMIT:
            self.disclosed[blob.sha256] = text
            return
        size = len(blob.data)
        if (
            blob.media_type in _IMAGE_MEDIA
            and size <= _BLOB_LIMIT
            and self.blob_bytes + size <= _BLOBS_TOTAL
            and blob.sha256 not in self.blobs
        ):
            self.blobs[blob.sha256] = blob
            self.blob_bytes += size

    def _time(self, moment: _dt.datetime) -> None:
        if self.first is None:
            self.first = moment
        if self.previous is not None:
            gap = (moment - self.previous).total_seconds()
            if 0 <= gap <= IDLE_GAP_SECONDS:
                self.active += gap
            elif gap > IDLE_GAP_SECONDS:
                self.gaps_excluded += 1
            else:
                self.backwards += 1
        self.previous = moment

    # -- entry kinds -----------------------------------------------------------------

    def _entry(self, seq: int, time: _dt.datetime, actor: str, kind: str, body: Mapping[str, Any]) -> str:
        handler = _HANDLERS.get(kind)
        if handler is not None:
            return handler(self, seq, time, actor, body)
        if kind.startswith("import."):
            return f"imported step ({kind})"
        return _display(dict(body), _SUMMARY_LIMIT) if body else ""

    def _image(self, body: Any, label: str, parent: str | None, origin: str, index: int,
               candidate: int | None = None) -> str | None:
        body = _dict(body)
        pixel = _digest(body.get("pixel_sha256"))
        if pixel is None:
            return None
        thumbnail = _digest(body.get("thumbnail_sha256"))
        if thumbnail is not None:
            self.referenced.add(thumbnail)
        if pixel not in self.nodes:  # the first entry that produced these pixels is their origin
            self.nodes[pixel] = _Node(
                pixel, _int(body.get("width")), _int(body.get("height")), thumbnail, label, parent, origin, index,
                candidate,
            )
        elif thumbnail is not None and self.nodes[pixel].thumbnail is None:
            self.nodes[pixel].thumbnail = thumbnail
        return pixel

    def _mask(self, value: Any) -> MaskRef | None:
        body = _dict(value)
        if not body:
            return None
        blob = _digest(body.get("blob_sha256"))
        if blob is not None:
            self.referenced.add(blob)
        box = _list(body.get("bbox"))
        bbox = None
        if len(box) == 4 and all(_int(v) is not None for v in box):
            x0, y0, x1, y1 = (int(v) for v in box)
            if x1 > x0 and y1 > y0:
                bbox = (x0, y0, x1, y1)
        return MaskRef(blob, bbox, _int(body.get("width")), _int(body.get("height")),
                       _fraction(body.get("area_fraction")))

    def journal_create(self, seq: int, time: _dt.datetime, actor: str, body: Mapping[str, Any]) -> str:
        self.title = _text(body.get("title"), 300)
        return f"journal created: {self.title}" if self.title else "journal created"

    def session_start(self, seq: int, time: _dt.datetime, actor: str, body: Mapping[str, Any]) -> str:
        tool = _dict(body.get("tool"))
        return f"session started in {_display(tool.get('name'), 60)} {_display(tool.get('version'), 30)}"

    def model_load(self, seq: int, time: _dt.datetime, actor: str, body: Mapping[str, Any]) -> str:
        name = _display(body.get("name"), 80)
        short = _text(body.get("short_hash"), 20)
        adapters = [
            f"{_display(_dict(a).get('name'), 40)} ×{_display(_dict(a).get('weight'), 10)}"
            for a in _list(body.get("adapters"))[:10]
        ]
        text = f"{name} [{short}]" if short else name
        if adapters:
            text += " with " + ", ".join(adapters)
        if len(self.models) < 50:
            self.models.append(text)
        return f"model {text}"

    def _revealed(self, body: Mapping[str, Any], name: str) -> Any:
        """The text of a prompt field, or for a private one its disclosure or a 'withheld' note."""
        value = body.get(name)
        commitment = body.get(f"{name}_commitment")
        if value is None and isinstance(commitment, str):
            if commitment in self.disclosed:
                return self.disclosed[commitment] + " [disclosed: matches its signed commitment]"
            return f"[withheld by the author; committed as sha256:{_display(commitment, 16)}…]"
        return value

    def prompt_set(self, seq: int, time: _dt.datetime, actor: str, body: Mapping[str, Any]) -> str:
        revealed = {name: self._revealed(body, name) for name in ("prompt", "negative_prompt")}
        body = {**body, **revealed}
        prompt, negative = _text(body.get("prompt")), _text(body.get("negative_prompt"))
        revision = _int(body.get("revision"))
        before = self.prompt_state
        self.prompt_state = (prompt, negative)
        if len(self.prompts) < _LIST_LIMIT:
            raw_prompt, raw_negative = body.get("prompt"), body.get("negative_prompt")
            truncated = any(isinstance(t, str) and len(t) > _TEXT_LIMIT for t in (raw_prompt, raw_negative))
            self.prompts.append(PromptRevision(
                seq, time, actor, revision, prompt, negative,
                word_diff(before[0], prompt), word_diff(before[1], negative), truncated,
            ))
        label = f"revision {revision}" if revision is not None else "prompt"
        return f"{label}: {_short(prompt, 120)}" + (f" | negative: {_short(negative, 60)}" if negative else "")

    def params_set(self, seq: int, time: _dt.datetime, actor: str, body: Mapping[str, Any]) -> str:
        self.param_entries += 1
        changes = _dict(body.get("changes"))
        parts = []
        for name, change in list(changes.items())[:200]:
            change = _dict(change)
            before, after = change.get("from"), change.get("to")
            if len(self.params) < _LIST_LIMIT:
                self.params.append(ParamChange(
                    seq, time, actor, _display(name, 60), _display(before), _display(after),
                    _plain(before), _plain(after),
                ))
            parts.append(f"{_display(name, 30)} {_display(before, 20)}→{_display(after, 20)}")
        self.param_changes += len(changes)
        return ", ".join(parts) if parts else "parameters set"

    def generation(self, seq: int, time: _dt.datetime, actor: str, body: Mapping[str, Any]) -> str:
        self.generations += 1
        number = _int(body.get("generation"))
        mode = _text(body.get("mode"), 40) or "generation"
        inputs = _dict(body.get("inputs"))
        mask = self._mask(inputs.get("mask")) if mode in ("inpaint", "outpaint") else None
        source = _dict(body.get("source"))
        index = len(self.rounds)
        base = None
        if source:
            base = self._image(source, "source image (recorded as a generation input)", None, "round", index)
        candidates = _list(body.get("candidates"))
        self.candidates += len(candidates)
        kept: list[tuple[str, int | None, str | None]] = []
        label = f"generation {number}" if number is not None else f"generation at entry {seq}"
        for position, candidate in enumerate(candidates):
            item = _dict(candidate)
            cindex = _int(item.get("index"))
            shown = cindex if cindex is not None else position
            pixel = self._image(item, f"{label}, candidate #{shown}", base, "round", index, position)
            if pixel is not None and len(kept) < _CANDIDATE_LIMIT:
                seed = item.get("seed")
                kept.append((pixel, cindex, None if seed is None else _display(seed, 40)))
        if len(self.rounds) < _LIST_LIMIT:
            self.rounds.append(_RoundState(
                seq, time, actor, number, mode, _int(inputs.get("prompt_revision")), kept, len(candidates), base, mask,
            ))
            if number is not None:
                self.round_of_generation[number] = index
        if mask is not None:
            # An integration recorded an inpaint call with the person's mask: a region edit.
            self.region_edits.append(seq)
        what = f"{label} ({mode}): {len(candidates)} candidate{'s' if len(candidates) != 1 else ''}"
        if mask is not None and mask.area_fraction is not None:
            what += f", mask over {mask.area_fraction:.1%} of the image"
        return what

    def selection(self, seq: int, time: _dt.datetime, actor: str, body: Mapping[str, Any]) -> str:
        number = _int(body.get("generation"))
        chosen = [p for p in (_digest(c) for c in _list(body.get("chosen"))) if p is not None]
        rejected = [p for p in (_digest(c) for c in _list(body.get("rejected"))) if p is not None]
        reason = _text(body.get("reason"), 2_000)
        for pixel in chosen:
            self.chosen.setdefault(pixel, (seq, reason))
        self.rejected.update(rejected[:10_000])
        self.selections.append((seq, actor, len(chosen), len(rejected)))
        round_index = self.round_of_generation.get(number) if number is not None else None
        if round_index is not None and self.rounds[round_index].selection_seq is None:
            self.rounds[round_index].selection_seq = seq
            self.rounds[round_index].reason = reason
        indexes = ", ".join("#" + _display(i, 6) for i in _list(body.get("chosen_index"))[:8])
        text = f"kept {indexes or str(len(chosen))} of generation {_display(number, 12)}, rejected {len(rejected)}"
        return text + (f": {_short(reason, 100)}" if reason else "")

    def edit_region(self, seq: int, time: _dt.datetime, actor: str, body: Mapping[str, Any]) -> str:
        mode = _text(body.get("mode"), 40) or "inpaint"
        mask = self._mask(body.get("mask"))
        index = len(self.changes)
        base = self._image(body.get("base"), "image before a region edit", None, "change", index)
        prompt = _text(body.get("prompt"), 2_000)
        result = self._image(body.get("result"), f"{mode} result (entry {seq})", base, "change", index)
        detail = f"{mode}" + (f" “{_short(prompt, 120)}”" if prompt else "")
        strength = _number(body.get("strength"))
        if strength is not None:
            detail += f", strength {strength:g}"
        if len(self.changes) < _LIST_LIMIT:
            self.changes.append(_Change(seq, actor, "region-edit", base, result, mask,
                                        None if mask is None else mask.area_fraction, detail, False, bool(prompt)))
        self.region_edits.append(seq)
        area = "" if mask is None or mask.area_fraction is None else f", mask over {mask.area_fraction:.1%}"
        return f"{detail}{area}"

    def edit_manual(self, seq: int, time: _dt.datetime, actor: str, body: Mapping[str, Any]) -> str:
        index = len(self.changes)
        before = self._image(body.get("before"), "image before a manual edit", None, "change", index)
        operation = _text(body.get("operation"), 60) or "edit"
        result = self._image(body.get("result"), f"manual {operation} (entry {seq})", before, "change", index)
        description = _text(body.get("description"), 2_000)
        tool = _text(body.get("tool"), 60)
        detail = operation + (f" with {tool}" if tool else "")
        detail += f": {_short(description, 140)}" if description else ""
        area = _fraction(body.get("area_fraction"))
        if len(self.changes) < _LIST_LIMIT:
            self.changes.append(_Change(seq, actor, "manual-edit", before, result, None, area, detail, False))
        self.manual_edits.append(seq)
        return detail + ("" if area is None else f" ({area:.1%} of the image, as declared)")

    def import_image(self, seq: int, time: _dt.datetime, actor: str, body: Mapping[str, Any]) -> str:
        index = len(self.changes)
        made = body.get("made_by_person")
        source = _text(body.get("source"), 300)
        who = "made by the person (their claim)" if made is True else "not made by the person" if made is False \
            else "maker not stated"
        result = self._image(body.get("result"), f"imported image (entry {seq})", None, "change", index)
        detail = f"imported image, {who}" + (f", from {_short(source, 80)}" if source else "")
        if len(self.changes) < _LIST_LIMIT:
            self.changes.append(_Change(seq, actor, "import", None, result, None, None, detail, True))
        if made is True and len(self.own_images) < _LIST_LIMIT:
            self.own_images.append(seq)
        return detail

    def import_metadata(self, seq: int, time: _dt.datetime, actor: str, body: Mapping[str, Any]) -> str:
        tool = _display(body.get("tool"), 40)
        prompt = _text(body.get("prompt"), 300)
        source = _text(body.get("source"), 120)
        text = f"imported {tool} metadata (not witnessed)"
        if source:
            text += f" from {_short(source, 60)}"
        return text + (f": “{_short(prompt, 100)}”" if prompt else "")

    def note(self, seq: int, time: _dt.datetime, actor: str, body: Mapping[str, Any]) -> str:
        text = _text(body.get("text"), 2_000) or ""
        if len(self.notes) < _LIST_LIMIT:
            self.notes.append((seq, actor, text))
        return text

    def export(self, seq: int, time: _dt.datetime, actor: str, body: Mapping[str, Any]) -> str:
        binding = _dict(body.get("binding"))
        record = _Export(
            seq, _text(body.get("file"), 200), _text(body.get("format"), 20), _text(body.get("attach"), 20),
            _digest(body.get("source")), _digest(binding.get("pixel_sha256")), _int(binding.get("width")),
            _int(binding.get("height")),
        )
        if len(self.exports) < _LIST_LIMIT:
            self.exports.append(record)
        size = f"{record.width}×{record.height}" if record.width and record.height else "size unknown"
        return f"exported {record.file or 'an image'} ({record.format or '?'}, {record.attach or '?'}, {size})"

    def seal(self, seq: int, time: _dt.datetime, actor: str, body: Mapping[str, Any]) -> str:
        reason = _text(body.get("reason"), 300)
        return "journal sealed" + (f": {_short(reason, 120)}" if reason else "")


_HANDLERS: dict[str, Callable[[_Collector, int, _dt.datetime, str, Mapping[str, Any]], str]] = {
    "journal.create": _Collector.journal_create,
    "session.start": _Collector.session_start,
    "model.load": _Collector.model_load,
    "prompt.set": _Collector.prompt_set,
    "params.set": _Collector.params_set,
    "generation": _Collector.generation,
    "selection": _Collector.selection,
    "edit.region": _Collector.edit_region,
    "edit.manual": _Collector.edit_manual,
    "import.image": _Collector.import_image,
    "import.metadata": _Collector.import_metadata,
    "note": _Collector.note,
    "export": _Collector.export,
    "seal": _Collector.seal,
}


# -- from collected entries to the report --------------------------------------------------------


def _label(status: str) -> str:
    return {"valid": "VALID", "untrusted": "VALID BUT UNTRUSTED SIGNER"}.get(status, "NOT VALID")


_BINDING_TEXT = {
    "exact-file": "this exact file is the one the journal's export entry binds (hard binding: the file's bytes, "
    "provenance data left out)",
    "same-pixels": "the pixels are the ones the journal's export entry binds, but the file differs "
    "(metadata changed or re-saved without changing pixels; colour profile, gamma and orientation tags "
    "are not bound and can change how the pixels look)",
    "none": "the image is not bound to the journal",
}


def _verdict_section(
    journal: Verdict, image: Any | None, collector: _Collector
) -> VerdictSection:
    """Combine the journal verdict (from our own pass) with the image verdict, if any."""
    status, reason, code = journal.status, journal.reason, journal.code
    binding = None
    reasons: list[str] = []
    if image is not None:
        binding = BindingSection(
            image.binding, image.carrier, image.export_seq,
            _BINDING_TEXT.get(image.binding, image.binding) if image.binding != "none" or journal.status == "invalid"
            else image.reason,
        )
        if image.status == "invalid":
            status, reason = "invalid", image.reason
            code = image.code
        elif journal.status == "invalid":  # our own pass disagrees (cannot happen unless the file changed)
            status = "invalid"
    reasons.append(reason)
    if status == "invalid" and journal.failed_at is not None:
        reasons.append(f"verification stopped at entry {journal.failed_at}")
    if status == "untrusted":
        if journal.pinned:
            untrusted = ", ".join(journal.untrusted_signers)
            reasons.append(f"the signatures are sound, but signer {untrusted} is not among the keys you pinned")
        else:
            reasons.append(
                "the signatures are sound, but no key was pinned: nothing ties the signer to a person "
                "(pin the author's public key with --trust KEY.pem)"
            )
    if journal.status != "invalid" and not journal.sealed:
        reasons.append("the journal is not sealed: more entries could follow the last one shown")
    stamps = tuple(TimestampInfo(t.size, t.time, t.tsa, t.verified, t.note) for t in journal.timestamps)
    trusted = max((t.size for t in stamps if t.verified), default=0)
    for t in stamps:
        if not t.verified:
            reasons.append(
                f"the timestamp on checkpoint {t.size} by {_short(t.tsa, 60)} is not verified ({t.note}): "
                "it is the TSA's unverified claim (pin its root with --tsa-root)"
            )
    for item in collector.timeline:
        seq, moment = item[0], item[1]
        bound = _no_later_than(seq, journal.timestamps)
        if bound is not None and moment > bound + _dt.timedelta(seconds=1):
            reasons.append(
                f"entry {seq} claims a time ({moment:%Y-%m-%d %H:%M:%S}) after the trusted timestamp that "
                f"covers it ({bound:%Y-%m-%d %H:%M:%S}): the signer's clock or claim is wrong"
            )
            break
    signers = tuple(
        Signer(k, journal.pinned and k not in journal.untrusted_signers) for k in journal.signers
    )
    ok = status != "invalid" and journal.ok()
    return VerdictSection(
        status=status,
        label=_label(status),
        ok=ok,
        code=code,
        reasons=tuple(reasons),
        journal=journal.journal,
        entries=journal.entries if journal.status != "invalid" else collector.entries,
        sealed=journal.sealed,
        pinned=journal.pinned,
        signers=signers,
        first_time=journal.first_time or collector.first,
        last_time=journal.last_time or collector.previous,
        timestamps=stamps,
        trusted_entries=trusted,
        binding=binding,
        failed_at=journal.failed_at,
        journal_verified=journal.status != "invalid",
    )


def _no_later_than(seq: int, stamps: Sequence[TimestampCheck]) -> _dt.datetime | None:
    times = [t.time for t in stamps if t.verified and t.size > seq]
    return min(times) if times else None


def _counts(c: _Collector) -> Counts:
    return Counts(
        entries=c.entries,
        prompt_revisions=c.kinds.get("prompt.set", 0),
        parameter_changes=c.param_changes,
        parameter_entries=c.param_entries,
        generations=c.generations,
        candidates=c.candidates,
        selections=len(c.selections),
        chosen_candidates=sum(s[2] for s in c.selections),
        rejected_candidates=sum(s[3] for s in c.selections),
        region_edits=len(c.region_edits),
        manual_edits=len(c.manual_edits),
        imported_steps=len(c.imported),
        notes=c.kinds.get("note", 0),
        exports=c.kinds.get("export", 0),
        by_person=c.actors.get("human", 0),
        by_tool=c.actors.get("tool", 0),
        by_automation=c.actors.get("automation", 0),
    )


class _Lineage:
    """Walks from the exported image back through the edits and generations that made it."""

    def __init__(self, c: _Collector, blobs: Mapping[str, BlobRecord]) -> None:
        self.c = c
        self.blobs = blobs

    def ref(self, pixel: str | None, label: str = "") -> ImageRef | None:
        if pixel is None:
            return None
        node = self.c.nodes.get(pixel)
        if node is None:
            return ImageRef(pixel, None, None, None, False, label or "an image this journal did not record")
        return ImageRef(pixel, node.width, node.height, node.thumbnail, node.thumbnail in self.blobs,
                        label or node.label)

    def final(self, export_seq: int | None) -> tuple[_Export | None, str | None, str]:
        exports = self.c.exports
        chosen = None
        if export_seq is not None:
            chosen = next((e for e in exports if e.seq == export_seq), None)
        if chosen is None and exports:
            chosen = exports[-1]
        if chosen is not None:
            start = chosen.source if chosen.source in self.c.nodes else chosen.pixel
            return chosen, start, "export"
        # No export: the last image the person kept (a selection) or made (an edit).
        kept = [(seq, pixel) for pixel, (seq, _) in self.c.chosen.items()]
        kept += [(ch.seq, ch.result) for ch in self.c.changes if ch.result is not None]
        if kept:
            return None, max(kept, key=lambda item: item[0])[1], "last-kept"
        return None, None, "none"

    def step(self, node: _Node) -> LineageStep:
        c = self.c
        image = self.ref(node.pixel)
        assert image is not None
        if node.origin == "round":
            r = c.rounds[node.index]
            kind = "region-edit" if r.mask is not None else "generation"
            seq, reason = c.chosen.get(node.pixel, (None, None))
            rejected = sum(1 for p, _, _ in r.candidates if p in c.rejected)
            title = f"Generation {_display(r.generation, 12)} ({r.mode}), candidate #{_display(node.candidate, 6)} " \
                    f"of {r.total}"
            detail = (
                f"kept by {'a person' if self._actor(seq) == 'human' else 'the ' + self._actor(seq)} "
                f"(entry {seq}), {rejected} rejected" + (f": “{_short(reason, 160)}”" if reason else "")
                if seq is not None else "not recorded as selected"
            )
            return LineageStep(kind, r.seq, r.actor, title, detail, image, self.ref(r.base), r.mask, r.generation,
                               seq, rejected, False)
        ch = c.changes[node.index]
        titles = {"region-edit": "Region edit", "manual-edit": "Manual edit", "import": "Imported image"}
        return LineageStep(ch.kind, ch.seq, ch.actor, titles[ch.kind], ch.detail, image,
                           self.ref(ch.base), ch.mask, None, None, 0, ch.imported)

    def _actor(self, seq: int | None) -> str:
        for s, actor, _, _ in self.c.selections:
            if s == seq:
                return actor
        return "tool"

    def build(self, export_seq: int | None, rounds_limit: int = _LIST_LIMIT) -> Lineage:
        c = self.c
        export, start, source = self.final(export_seq)
        steps: list[LineageStep] = []
        seen: set[str] = set()
        cursor = start
        complete = False
        while cursor is not None and cursor not in seen and len(steps) < _CHAIN_LIMIT:
            seen.add(cursor)
            node = c.nodes.get(cursor)
            if node is None:
                image = self.ref(cursor, "an image this journal did not record")
                assert image is not None
                steps.append(LineageStep("unrecorded", None, "unknown", "Unrecorded image",
                                         "named as a base or source, but no entry produced or imported it", image,
                                         None, None, None, None, 0, False))
                break
            steps.append(self.step(node))
            if node.parent is None:
                complete = (node.origin == "change" and c.changes[node.index].kind == "import") or (
                    node.origin == "round" and c.rounds[node.index].base is None
                )
            cursor = node.parent
        steps.reverse()
        final_ref: ImageRef | None = None
        if export is not None:
            pixel = export.pixel or export.source or "0" * 64
            node = c.nodes.get(pixel) or (c.nodes.get(export.source) if export.source else None)
            final_ref = ImageRef(pixel, export.width, export.height, node.thumbnail if node else None,
                                 bool(node and node.thumbnail in self.blobs), f"exported {export.file or 'image'}")
            attached = {"embed": "journal embedded", "sidecar": "journal in a sidecar file",
                        "compact": "compact proof embedded"}.get(export.attach or "", "journal attached")
            detail = f"{(export.format or 'image').upper()} file, {attached}"
            if export.source and export.pixel and export.source != export.pixel:
                detail += "; pixels differ from the recorded image (re-encoded, e.g. lossy JPEG)"
            steps.append(LineageStep("export", export.seq, "human", f"Export: {export.file or 'image'}", detail,
                                     final_ref, self.ref(start), None, None, None, 0, False))
        elif start is not None:
            final_ref = self.ref(start)
        if source == "none":
            note = "The journal records no image that was kept or exported."
        elif not steps or (len(steps) == 1 and steps[0].kind == "export"):
            note = "The exported image's pixels are not among the images the journal recorded."
            complete = False
        elif complete:
            note = "Each step from the first recorded image to the exported one is in the journal."
        else:
            note = "The chain reaches an image the journal did not record (its origin is not evidenced here)."
        in_lineage = {s.image.pixel_sha256 for s in steps}
        rounds = tuple(self.round(r, in_lineage) for r in c.rounds[-rounds_limit:])
        return Lineage(tuple(steps), final_ref, source, complete, note, rounds, len(c.rounds))

    def round(self, r: _RoundState, in_lineage: set[str]) -> Round:
        c = self.c
        views = []
        for pixel, index, seed in r.candidates:
            status = "chosen" if pixel in c.chosen else "rejected" if pixel in c.rejected else "not-selected"
            image = self.ref(pixel)
            assert image is not None
            views.append(CandidateView(image, index, seed, status, pixel in in_lineage))
        rejected = sum(1 for v in views if v.status == "rejected")
        return Round(r.seq, r.time, r.actor, r.generation, r.mode, r.prompt_revision, tuple(views), r.total,
                     r.selection_seq, r.reason, rejected, self.ref(r.base), r.mask)


def _area(c: _Collector, lineage: Lineage, blobs: Mapping[str, BlobRecord]) -> AreaShare:
    """Share of the final image touched by human-directed region and manual edits."""
    on_chain = {s.seq for s in lineage.steps if s.kind in ("region-edit", "manual-edit")}
    use_chain = lineage.final_source != "none" and bool(lineage.steps)
    edits: list[tuple[int, str, str, MaskRef | None, float | None]] = []  # seq, kind, actor, mask, declared
    for ch in c.changes:
        if ch.kind in ("region-edit", "manual-edit") and (not use_chain or ch.seq in on_chain):
            edits.append((ch.seq, ch.kind, ch.actor, ch.mask, ch.area_fraction))
    for r in c.rounds:
        if r.mask is not None and (not use_chain or r.seq in on_chain):
            edits.append((r.seq, "region-edit", r.actor, r.mask, r.mask.area_fraction))
    # Human-directed: a person's edit, or an integration's inpaint call (the mask is the caller's input).
    edits = sorted((e for e in edits if e[2] != "automation"), key=lambda e: e[0])
    if not edits:
        scope = "the exported image's lineage" if use_chain else "the journal"
        return AreaShare(0.0, False, f"no human-directed region or manual edits on {scope}", ())
    final = lineage.final
    width = final.width if final and final.width else None
    height = final.height if final and final.height else None
    if width is None or height is None:
        mask_dims = next(((m.width, m.height) for _, _, _, m, _ in edits if m and m.width and m.height), None)
        width, height = mask_dims if mask_dims else (1, 1)
    assert width is not None and height is not None
    scale = min(1.0, _AREA_GRID / max(width, height))
    grid = (max(1, round(width * scale)), max(1, round(height * scale)))
    canvas = Image.new("L", grid, 0)
    draw = ImageDraw.Draw(canvas)
    parts: list[AreaPart] = []
    declared = 0.0
    estimate = scale < 1.0
    drawn = False
    for seq, kind, _, mask, fraction in edits:
        if kind == "manual-edit":
            if fraction is None:
                parts.append(AreaPart(seq, kind, "unknown", None))
                estimate = True
            else:
                parts.append(AreaPart(seq, kind, "declared", fraction))
                declared += fraction
                estimate = True
            continue
        assert mask is not None
        image = _decode_blob(blobs[mask.blob].data) if mask.blob in blobs and mask.blob else None
        if image is not None:
            layer = image.convert("L").resize(grid, Image.Resampling.BILINEAR).point(lambda v: 255 if v >= 128 else 0)
            canvas.paste(255, (0, 0), layer)
            parts.append(AreaPart(seq, kind, "mask", mask.area_fraction))
            drawn = True
            if (image.width, image.height) != grid or (mask.width and mask.width != image.width):
                estimate = True
        elif mask.bbox is not None:
            mw, mh = mask.width or width, mask.height or height
            x0, y0, x1, y1 = mask.bbox
            sx, sy = grid[0] / mw, grid[1] / mh
            draw.rectangle([x0 * sx, y0 * sy, x1 * sx - 1, y1 * sy - 1], fill=255)
            parts.append(AreaPart(seq, kind, "bbox", mask.area_fraction))
            estimate = drawn = True
        elif mask.area_fraction is not None:
            parts.append(AreaPart(seq, kind, "declared", mask.area_fraction))
            declared += mask.area_fraction
            estimate = True
        else:
            parts.append(AreaPart(seq, kind, "unknown", None))
            estimate = True
    covered = canvas.histogram()[255] / float(grid[0] * grid[1]) if drawn else 0.0
    fraction = min(1.0, covered + declared)
    methods = sorted({p.method for p in parts})
    how = [
        f"union of the region edits' masks on a {grid[0]}×{grid[1]} grid over the final image"
        if drawn else "",
        "masks known only by their bounding boxes count their whole box (an over-estimate)"
        if "bbox" in methods else "",
        "manual edits' area fractions, as the author declared them, are added (their location is not recorded)"
        if "declared" in methods else "",
        "some edits record no area and are not counted (an under-estimate)" if "unknown" in methods else "",
    ]
    method = "; ".join(h for h in how if h) + "; capped at 100%"
    return AreaShare(round(fraction, 4), estimate, method, tuple(parts))


_DISCLAIMER = (
    "This summary organises the recorded evidence in the terms courts and copyright offices have used; "
    "it is not a legal opinion, and the levels follow fixed rules (docs/report.md), not a legal test."
)


def _summary(c: _Collector, lineage: Lineage, area: AreaShare, counts: Counts) -> Summary:
    human = {"human"}
    prompts = [p.seq for p in c.prompts if p.actor in human]
    notes = [seq for seq, actor, _ in c.notes if actor in human]
    own = list(c.own_images)
    region_prompts = [ch.seq for ch in c.changes if ch.kind == "region-edit" and ch.actor in human and ch.prompted]
    expressive_entries = sorted({*prompts, *notes, *own, *region_prompts})
    if own:
        level, why = "substantial", (
            f"{len(own)} image(s) the author says they made themselves were brought in (imported, so their "
            "making was not witnessed), besides the prompts"
        )
    elif prompts or region_prompts:
        level, why = "limited", (
            f"{len(prompts)} prompt revision(s) by the person"
            + (f" and {len(notes)} note(s) of intent" if notes else "")
            + "; prompts are instructions to the model, and offices have not treated them alone as "
            "expressive input to the image"
        )
    else:
        level, why = "none", "no prompt, note or image of the person's own is recorded"
    expressive = Factor("expressive_inputs", "Expressive human inputs", level, why, tuple(expressive_entries))

    human_selections = [(seq, chosen, rejected) for seq, actor, chosen, rejected in c.selections if actor in human]
    with_alternatives = [s for s in human_selections if s[2] > 0]
    rejected = sum(s[2] for s in human_selections)
    if len(with_alternatives) >= 2:
        level = "substantial"
    elif human_selections:
        level = "limited"
    else:
        level = "none"
    why = (
        f"{len(human_selections)} selection(s) by the person, keeping {sum(s[1] for s in human_selections)} and "
        f"rejecting {rejected} of {counts.candidates} candidates over {counts.generations} generation(s)"
        if human_selections else "no selection by the person is recorded"
    )
    selection = Factor("selection", "Selection", level, why, tuple(s[0] for s in human_selections))

    chosen_pixels = set(c.chosen)
    arrangement: list[int] = []
    for ch in c.changes:
        if ch.kind == "region-edit" and ch.actor in human:
            arrangement.append(ch.seq)
    for r in c.rounds:
        if r.base is not None and r.actor != "automation" and (r.mask is not None or r.base in chosen_pixels):
            arrangement.append(r.seq)
    # A kept candidate that became the base of a later edit or generation: choices combined into one image.
    built_on = [s.selection_seq for s in lineage.steps if s.selection_seq is not None and s is not lineage.steps[-1]
                and any(t.kind in ("region-edit", "manual-edit") for t in lineage.steps)]
    arrangement_entries = sorted({*arrangement, *(s for s in built_on if s is not None)})
    regions = len(arrangement)
    if regions >= 2 or (regions >= 1 and built_on):
        level = "substantial"
    elif regions or built_on:
        level = "limited"
    else:
        level = "none"
    why = (
        f"{regions} step(s) placed new content in regions or on images the person chose"
        + (f", building on {len(built_on)} kept candidate(s)" if built_on else "")
        if arrangement_entries else "nothing records the person placing or combining elements"
    )
    coordination = Factor("coordination_arrangement", "Coordination and arrangement", level, why,
                          tuple(arrangement_entries))

    modifications = sorted(
        {ch.seq for ch in c.changes if ch.kind in ("region-edit", "manual-edit") and ch.actor != "automation"}
        | {r.seq for r in c.rounds if r.mask is not None and r.actor != "automation"}
    )
    share = area.fraction or 0.0
    manual = [seq for seq in c.manual_edits]
    if not modifications:
        level, why = "none", "no region edit or manual edit is recorded"
    else:
        level = "substantial" if share >= _SUBSTANTIAL_AREA else "limited"
        why = (
            f"{len([s for s in modifications if s not in manual])} region edit(s) and {len(manual)} manual edit(s); "
            f"about {share:.1%} of the final image's area was touched"
            + (" (an estimate)" if area.estimate else "")
        )
    modification = Factor("modification", "Modification", level, why, tuple(modifications))

    warning = None
    if modification.level == "none" and expressive.level != "substantial" and coordination.level == "none":
        warning = (
            "The record shows little more than prompts and re-rolls: "
            f"{counts.prompt_revisions} prompt revision(s), {counts.parameter_changes} parameter change(s), "
            f"{counts.generations} generation(s) and {counts.selections} selection(s), with no region edit, no "
            "manual edit and no image of the person's own. The US Copyright Office (Copyright and Artificial "
            "Intelligence, Part 2, January 2025) treated prompts alone as insufficient human control over the "
            "expressive elements of a generated image, and revising prompts or re-generating did not change that."
        )
    return Summary((expressive, selection, coordination, modification), warning, tuple(c.imported), _DISCLAIMER)


def _timeline(c: _Collector, stamps: Sequence[TimestampCheck]) -> tuple[TimelineItem, ...]:
    verified = sorted((t for t in stamps if t.verified), key=lambda t: t.size)
    items = []
    for seq, time, actor, kind, category, summary, imported in c.timeline:
        bound = _no_later_than(seq, verified) if verified else None
        items.append(TimelineItem(seq, time, actor, kind, category, summary, imported,
                                  "trusted-timestamp" if bound is not None else "signer-claim", bound))
    return tuple(items)


def _assemble(
    subject: Subject, journal: Verdict, image: Any | None, c: _Collector, preview: bytes | None,
    now: _dt.datetime | None, absent: str | None = None,
) -> Report:
    verdict = _verdict_section(journal, image, c)
    if absent is not None:
        content = "absent"
    elif not verdict.journal_verified:
        content = "unverified"
    elif verdict.status == "invalid":
        content = "unbound"
    else:
        content = "verified"
    blobs = {k: v for k, v in c.blobs.items() if k in c.referenced}
    export_seq = None if image is None else image.export_seq
    lineage = _Lineage(c, blobs).build(export_seq)
    area = _area(c, lineage, blobs)
    counts = _counts(c)
    span = (c.previous - c.first).total_seconds() if c.first and c.previous else 0.0
    time = TimeSpent(c.first, c.previous, max(0.0, span), c.active, IDLE_GAP_SECONDS, c.gaps_excluded)
    notes = list(c.problems)
    if absent:
        notes.insert(0, absent)
    if c.backwards:
        notes.append(
            f"{c.backwards} entr{'y claims' if c.backwards == 1 else 'ies claim'} a time earlier than the entry "
            "before it: the signer's clock (or claim) went backwards"
        )
    if c.timeline_omitted:
        notes.append(f"the timeline lists the first {len(c.timeline)} entries; {c.timeline_omitted} more are counted")
    return Report(
        subject=subject,
        verdict=verdict,
        content=content,
        title=c.title,
        models=tuple(c.models),
        counts=counts,
        time=time,
        timeline=_timeline(c, journal.timestamps),
        timeline_omitted=c.timeline_omitted,
        prompts=tuple(c.prompts),
        parameters=tuple(c.params),
        lineage=lineage,
        area=area,
        summary=_summary(c, lineage, area, counts),
        notes=tuple(notes),
        generated=now or _dt.datetime.now(_dt.UTC),
        tool_version=__version__,
        blobs=blobs,
        preview=preview,
    )


# -- inputs --------------------------------------------------------------------------------------


def build_report_from_lines(
    lines: Iterable[bytes],
    *,
    subject: Subject | None = None,
    trusted: Sequence[PublicKey] = (),
    checkpoints: Sequence[Checkpoint] = (),
    tsa_roots: Sequence[bytes] = (),
    thorough: bool = False,
    now: _dt.datetime | None = None,
) -> Report:
    """The report on a journal given as its lines (each ending in a newline)."""
    collector = _Collector()
    verdict = verify_lines(
        lines, trusted=trusted, checkpoints=checkpoints, tsa_roots=tsa_roots, thorough=thorough,
        visitor=collector.visit, blob_visitor=collector.visit_blob,
    )
    return _assemble(subject or Subject("lines", "journal"), verdict, None, collector, None, now)


_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


def _is_image(head: bytes) -> bool:
    return head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _file_lines(path: Path) -> Iterator[bytes]:
    try:
        handle: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed when the generator finishes
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        try:
            yield from iter_file_lines(handle)
        except OSError as exc:
            raise MalformedDataError(f"read error: {exc.strerror or exc}") from None


def _report_image(
    path: Path, journal_file: Path | None, options: dict[str, Any], now: _dt.datetime | None
) -> Report:
    from .binding import sidecar_path, verify_image
    from .images import read_image_file

    data = read_image_file(path)
    subject = Subject("image", str(path), None if journal_file is None else str(journal_file))
    given = list(_file_lines(journal_file)) if journal_file is not None else None
    sidecar_file = sidecar_path(path)
    sidecar = None
    if sidecar_file.is_file():
        sidecar = read_image_file(sidecar_file)  # bounded read; it is a journal, not an image
    collector = _Collector()
    image = verify_image(
        data, sidecar=sidecar, journal_lines=given,
        visitor=collector.visit, blob_visitor=collector.visit_blob, **options,
    )
    # The collector saw the journal verify_image read, if it read one (not a compact proof alone).
    read_journal = image.carrier in ("embedded", "sidecar", "given") or (
        image.carrier == "compact" and given is not None
    )
    journal, absent = image.journal, None
    if read_journal:
        if sidecar is not None and image.carrier != "sidecar" and collector.referenced - set(collector.blobs):
            # Thumbnails left out of the embedded copy may be in a sidecar: blobs are
            # content-addressed and named by signed entries, so any source will do.
            for line in sidecar.splitlines(keepends=True):
                if b'"type":"blob"' in line:
                    _blob_from_line(line, collector)
    else:
        if image.carrier == "compact":
            absent = ("the image carries only a compact proof of its export entry; give the full journal "
                      "(--journal FILE) to report the process")
        elif image.journal.code == "no-provenance":
            absent = "no journal was found for this image (none embedded, no sidecar)"
        else:
            absent = f"no journal could be read from this image: {image.reason}"
    preview = _preview_of(data) if _is_image(data[:16]) else None
    return _assemble(subject, journal, image, collector, preview, now, absent)


def _blob_from_line(line: bytes, collector: _Collector) -> None:
    from .journal import parse_line

    try:
        record = parse_line(line.rstrip(b"\n"))
    except Error:
        return
    if isinstance(record, BlobRecord):
        collector.visit_blob(record)


def build_report(
    target: str | os.PathLike[str],
    *,
    journal_file: str | os.PathLike[str] | None = None,
    store: Any | None = None,
    trusted: Sequence[PublicKey] = (),
    checkpoints: Sequence[Checkpoint] = (),
    tsa_roots: Sequence[bytes] = (),
    thorough: bool = False,
    now: _dt.datetime | None = None,
) -> Report:
    """The report on an image file, a portable journal file, or a journal in the local store.

    An image is verified with `provenance.binding.verify_image` (its embedded
    journal, its sidecar, or `journal_file`), which says which binding held; a
    journal file is streamed; anything else is taken as a journal id (or unique
    prefix) in `store` (default: the local store).  Raises `provenance.Error`
    subclasses for unreadable input; a journal that does not verify is a report
    whose verdict says so.
    """
    options: dict[str, Any] = {
        "trusted": trusted, "checkpoints": checkpoints, "tsa_roots": tsa_roots, "thorough": thorough,
    }
    path = Path(target)
    if path.is_file():
        try:
            with open(path, "rb") as handle:
                head = handle.read(16)
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
        if _is_image(head):
            return _report_image(path, None if journal_file is None else Path(journal_file), options, now)
        if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
            raise ImageFormatError(f"{path.name} is not a PNG, JPEG or WebP file")
        return build_report_from_lines(_file_lines(path), subject=Subject("journal-file", str(path)), now=now,
                                       **options)
    if path.exists():
        raise UsageError(f"{path} is not a file")
    name = str(target)
    if os.sep in name or "." in name:
        raise UsageError(f"no such file: {name}")
    from .store import Store

    own = store is None
    opened = Store() if store is None else store
    try:
        journal = opened.resolve(name)
        return build_report_from_lines(
            opened.export_lines(journal, all_checkpoints=True), subject=Subject("stored-journal", journal), now=now,
            **options,
        )
    finally:
        if own:
            opened.close()


# -- renderers (kept in private modules) ---------------------------------------------------------


def render_text(report: Report, width: int = 80) -> str:
    """The report as plain text for a terminal, lines at most `width` columns."""
    from ._report_text import render

    return render(report, width)


def render_json(report: Report) -> dict[str, Any]:
    """The report as a JSON-compatible dict; see ``docs/report-schema.json``.

    Images are named by hash only (thumbnails stay out of JSON); every value is
    plain JSON (times as RFC 3339 UTC strings, no non-finite numbers).
    """
    v = report.verdict
    lineage = report.lineage
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "generated": _iso(report.generated),
        "tool": {"name": "provenance", "version": report.tool_version},
        "subject": {"kind": report.subject.kind, "name": report.subject.name,
                    "journal_file": report.subject.journal_file},
        "verdict": {
            "status": v.status,
            "label": v.label,
            "ok": v.ok,
            "code": v.code,
            "reasons": list(v.reasons),
            "journal": v.journal,
            "entries": v.entries,
            "sealed": v.sealed,
            "keys_pinned": v.pinned,
            "signers": [{"keyid": s.keyid, "pinned": s.pinned} for s in v.signers],
            "time": {
                "first": _iso(v.first_time),
                "last": _iso(v.last_time),
                "basis": "signer-claim",
                "trusted_entries": v.trusted_entries,
                "timestamps": [
                    {"size": t.size, "time": _iso(t.time), "tsa": t.tsa, "verified": t.verified, "note": t.note}
                    for t in v.timestamps
                ],
            },
            "binding": None if v.binding is None else {
                "held": v.binding.held, "carrier": v.binding.carrier, "export_entry": v.binding.export_seq,
                "explanation": v.binding.explanation,
            },
            "failed_at_entry": v.failed_at,
            "journal_verified": v.journal_verified,
        },
        "content": {"status": report.content, "notice": content_notice(report)},
        "title": report.title,
        "models": list(report.models),
        "counts": attrs.asdict(report.counts),
        "time_spent": {
            "first": _iso(report.time.first),
            "last": _iso(report.time.last),
            "span_seconds": round(report.time.span_seconds, 3),
            "active_seconds": round(report.time.active_seconds, 3),
            "idle_gap_seconds": report.time.idle_gap_seconds,
            "gaps_excluded": report.time.gaps_excluded,
        },
        "timeline": [
            {"seq": t.seq, "time": _iso(t.time), "actor": t.actor, "kind": t.kind, "category": t.category,
             "summary": t.summary, "imported": t.imported, "time_basis": t.time_basis,
             "no_later_than": _iso(t.no_later_than)}
            for t in report.timeline
        ],
        "timeline_omitted": report.timeline_omitted,
        "prompts": [
            {"seq": p.seq, "time": _iso(p.time), "actor": p.actor, "revision": p.revision, "prompt": p.prompt,
             "negative_prompt": p.negative_prompt, "prompt_diff": _diff_json(p.prompt_diff),
             "negative_diff": _diff_json(p.negative_diff), "truncated": p.truncated}
            for p in report.prompts
        ],
        "parameters": [
            {"seq": c.seq, "time": _iso(c.time), "actor": c.actor, "name": c.name, "from": c.before_value,
             "to": c.after_value, "from_text": c.before, "to_text": c.after}
            for c in report.parameters
        ],
        "lineage": {
            "final": _image_json(lineage.final),
            "final_source": lineage.final_source,
            "complete": lineage.complete,
            "note": lineage.note,
            "steps": [
                {"kind": s.kind, "seq": s.seq, "actor": s.actor, "title": s.title, "detail": s.detail,
                 "image": _image_json(s.image), "base": _image_json(s.base), "mask": _mask_json(s.mask),
                 "generation": s.generation, "selection_seq": s.selection_seq, "rejected": s.rejected,
                 "imported": s.imported}
                for s in lineage.steps
            ],
            "rounds": [
                {"seq": r.seq, "time": _iso(r.time), "actor": r.actor, "generation": r.generation, "mode": r.mode,
                 "prompt_revision": r.prompt_revision, "candidates_total": r.candidates_total,
                 "candidates": [
                     {"image": _image_json(c.image), "index": c.index, "seed": c.seed, "status": c.status,
                      "in_lineage": c.in_lineage}
                     for c in r.candidates
                 ],
                 "selection_seq": r.selection_seq, "reason": r.reason, "rejected": r.rejected,
                 "base": _image_json(r.base), "mask": _mask_json(r.mask)}
                for r in lineage.rounds
            ],
            "rounds_total": lineage.rounds_total,
        },
        "area": {
            "fraction": report.area.fraction,
            "estimate": report.area.estimate,
            "method": report.area.method,
            "parts": [{"seq": p.seq, "kind": p.kind, "method": p.method, "fraction": p.fraction}
                      for p in report.area.parts],
        },
        "summary": {
            "factors": [
                {"key": f.key, "title": f.title, "level": f.level, "explanation": f.explanation,
                 "entries": list(f.entries)}
                for f in report.summary.factors
            ],
            "warning": report.summary.warning,
            "imported": [{"seq": i.seq, "kind": i.kind, "actor": i.actor, "description": i.description}
                         for i in report.summary.imported],
            "disclaimer": report.summary.disclaimer,
        },
        "notes": list(report.notes),
    }


def content_notice(report: Report) -> str | None:
    """What the reader must know about everything after the verdict, or None when it is evidence."""
    if report.content == "unverified":
        return (
            "UNVERIFIED: the journal did not verify. Everything below is what the file says, listed so that "
            "you can see what is claimed; it is not evidence."
        )
    if report.content == "unbound":
        return (
            "The journal verifies, but it does not bind this image: the process below is signed, but it is "
            "not evidence about this file."
        )
    if report.content == "absent":
        return report.notes[0] if report.notes else "no journal content is available"
    return None


def _iso(moment: _dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _diff_json(ops: Sequence[DiffOp]) -> list[dict[str, str]]:
    return [{"op": op.op, "text": op.text} for op in ops]


def _image_json(ref: ImageRef | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    return {"pixel_sha256": ref.pixel_sha256, "width": ref.width, "height": ref.height,
            "thumbnail_sha256": ref.thumbnail, "thumbnail_available": ref.thumbnail_available, "label": ref.label}


def _mask_json(mask: MaskRef | None) -> dict[str, Any] | None:
    if mask is None:
        return None
    return {"blob_sha256": mask.blob, "bbox": None if mask.bbox is None else list(mask.bbox), "width": mask.width,
            "height": mask.height, "area_fraction": mask.area_fraction}


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page: no script, no network, printable on A4."""
    from ._report_html import render

    return render(report)
