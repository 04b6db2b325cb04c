"""The report as plain text for a terminal: verdict first, every line within the width.

Journal strings are hostile here too: control and format characters (ANSI
escape sequences, bidirectional overrides, NUL...) are shown as ``\\uXXXX``
escapes so that a journal cannot move the cursor, recolour or reorder the
auditor's terminal.  Widths are measured in terminal columns (East Asian wide
characters count two, combining marks none).
"""

from __future__ import annotations

import datetime as _dt
import functools
import unicodedata
from collections.abc import Iterable, Sequence

from .report import DiffOp, Factor, LineageStep, Report, Round, content_notice

__all__ = ["cell_width", "clean", "render"]

_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
_LEVEL = {"none": "NONE", "limited": "LIMITED", "substantial": "SUBSTANTIAL"}
_STATUS = {"chosen": "kept", "rejected": "rejected", "not-selected": "-"}


def clean(text: str | None) -> str:
    """`text` with every character a terminal would act on made visible."""
    if not text:
        return ""
    if text.isprintable():  # the common case, checked in C: nothing to neutralise
        return text
    out = []
    for ch in text:
        if ch in "\t\n\r":
            out.append(" ")
        elif unicodedata.category(ch) in _UNSAFE:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


@functools.lru_cache(maxsize=8192)
def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def cell_width(text: str) -> int:
    """Terminal columns `text` occupies (after `clean`)."""
    if text.isascii():  # the common case: one column per character
        return len(text)
    return sum(_char_width(ch) for ch in text)


def _fit(text: str, width: int) -> str:
    """`text` cut to at most `width` columns, with an ellipsis when cut."""
    if cell_width(text) <= width:
        return text
    if text.isascii():
        return text[: width - 1] + "…"
    out, used = [], 0
    for ch in text:
        w = _char_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def _pad(text: str, width: int) -> str:
    text = _fit(text, width)
    return text + " " * (width - cell_width(text))


def _wrap(text: str, width: int, indent: str = "", first: str | None = None) -> list[str]:
    """Greedy word wrap by columns; words longer than a line are split."""
    lead = indent if first is None else first
    width = max(width, cell_width(lead) + 10, cell_width(indent) + 10)
    words = clean(text).split(" ")
    lines: list[str] = []
    line, used = lead, cell_width(lead)
    fresh = True
    for word in words:
        if not word:
            continue
        w = cell_width(word)
        gap = 0 if fresh else 1
        if used + gap + w <= width:
            line += (" " if gap else "") + word
            used += gap + w
            fresh = False
            continue
        if not fresh:
            lines.append(line)
            line, used, fresh = indent, cell_width(indent), True
        while cell_width(word) > width - used:
            room = width - used
            piece, taken = "", 0
            for ch in word:
                cw = _char_width(ch)
                if taken + cw > room:
                    break
                piece += ch
                taken += cw
            if not piece:  # a wide character that cannot fit at all: drop it rather than loop
                word = word[1:]
                continue
            lines.append(line + piece)
            word = word[len(piece):]
            line, used = indent, cell_width(indent)
        if word:
            line += word
            used += cell_width(word)
            fresh = False
    if not fresh or not lines:
        lines.append(line)
    return lines


def _when(moment: _dt.datetime | None) -> str:
    return "unknown" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float) -> str:
    """A short human duration: "3 s", "4 min 05 s", "2 h 10 min" (tenths under ten seconds)."""
    if 0 < seconds < 1:
        return f"{seconds:.2f} s"
    if 0 < seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def _clock(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    total = int(abs(seconds))
    hours, rest = divmod(total, 3600)
    if hours > 9999:
        return sign + f"{hours // 24}d"
    return f"{sign}{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _diff(ops: Sequence[DiffOp]) -> str:
    parts = []
    for op in ops:
        text = clean(op.text)
        if op.op == "insert":
            parts.append("{+" + text + "+}")
        elif op.op == "delete":
            parts.append("[-" + text + "-]")
        else:
            parts.append(text)
    return "".join(parts)


class _Writer:
    def __init__(self, width: int) -> None:
        self.width = width
        self.lines: list[str] = []

    def line(self, text: str = "") -> None:
        self.lines.append(_fit(clean(text), self.width))

    def para(self, text: str, indent: str = "", first: str | None = None) -> None:
        self.lines.extend(_wrap(text, self.width, indent, first))

    def heading(self, text: str, unverified: bool = False) -> None:
        title = text.upper() + ("  (UNVERIFIED)" if unverified else "")
        self.lines.extend(["", _fit(title, self.width), "-" * min(self.width, cell_width(title))])

    def table(self, rows: Iterable[Sequence[str]], widths: Sequence[int], indent: str = "  ") -> None:
        # The last column takes what is left of the line; on a narrow terminal the
        # fixed columns shrink in proportion so that it keeps at least ten columns.
        widths = list(widths)
        room = self.width - len(indent) - (len(widths) - 1) - 10
        fixed = sum(widths[:-1])
        if fixed > room:
            widths[:-1] = [max(3, w * room // fixed) for w in widths[:-1]]
        last = max(10, self.width - sum(widths[:-1]) - (len(widths) - 1) - len(indent))
        for row in rows:
            cells = [_pad(clean(c), w) for c, w in zip(row[:-1], widths[:-1], strict=True)]
            cells.append(_fit(clean(row[-1]), last))
            self.lines.append(_fit((indent + " ".join(cells)).rstrip(), self.width))


def render(report: Report, width: int = 80) -> str:
    """The whole report as text, lines at most `width` columns (minimum 40)."""
    width = max(40, width)
    w = _Writer(width)
    _verdict(w, report)
    notice = content_notice(report)
    unverified = report.content != "verified"
    if notice:
        w.line()
        w.line("!" * width)
        w.para(notice, "! ", "! ")
        w.line("!" * width)
    if report.content == "absent":
        return "\n".join(w.lines) + "\n"
    _contribution(w, report, unverified)
    _summary(w, report, unverified)
    _lineage(w, report, unverified)
    _rounds(w, report, unverified)
    _prompts(w, report, unverified)
    _parameters(w, report, unverified)
    _timeline(w, report, unverified)
    if report.notes:
        w.heading("Notes on the record")
        for note in report.notes:
            w.para(note, "    ", "  - ")
    w.line()
    w.para(f"Report by provenance {report.tool_version}, {_when(report.generated)} UTC. "
           "Times are UTC.")
    return "\n".join(w.lines) + "\n"


def _verdict(w: _Writer, report: Report) -> None:
    v = report.verdict
    w.line(f"VERDICT: {v.label}")
    w.line("=" * w.width)
    for reason in v.reasons:
        w.para(reason, "    ", "  - ")
    w.line()
    subject = report.subject
    kind = {"image": "image", "journal-file": "journal file", "stored-journal": "stored journal"}.get(
        subject.kind, subject.kind)
    rows = [("Subject", f"{kind} {subject.name}")]
    if subject.journal_file:
        rows.append(("Journal", f"file {subject.journal_file}"))
    if report.title:
        rows.append(("Title", report.title))
    if v.journal:
        sealed = ", sealed" if v.sealed else ", not sealed"
        rows.append(("Journal id", f"{v.journal} ({v.entries} entries{sealed})"))
    for signer in v.signers:
        rows.append(("Signing key", f"{signer.keyid} ({'pinned' if signer.pinned else 'NOT pinned'})"))
    if not v.signers:
        rows.append(("Signing key", "none verified"))
    if v.binding is not None:
        held = {"exact-file": "EXACT FILE", "same-pixels": "SAME PIXELS", "none": "NONE"}.get(
            v.binding.held, v.binding.held)
        entry = f" (export entry {v.binding.export_seq})" if v.binding.export_seq is not None else ""
        rows.append(("Binding", f"{held}{entry}, journal {v.binding.carrier}: {v.binding.explanation}"))
    rows.append(("Times", f"{_when(v.first_time)} to {_when(v.last_time)} UTC: the signer's claim"))
    for t in v.timestamps:
        trust = "verified against a pinned TSA root" if t.verified else f"NOT verified: {t.note}"
        rows.append(("", f"entries 0-{t.size - 1} existed no later than {_when(t.time)} UTC: RFC 3161 "
                         f"timestamp by {t.tsa} ({trust})"))
    if v.trusted_entries:
        rows.append(("", f"entries after {v.trusted_entries - 1} rest on the signer's claim alone"))
    elif v.journal_verified:
        rows.append(("", "no time rests on a trusted timestamp"))
    for label, text in rows:
        w.para(text, " " * 15, f"  {label:<12} ")


def _contribution(w: _Writer, report: Report, unverified: bool) -> None:
    c = report.counts
    w.heading("The contribution", unverified)
    left = [
        ("Prompt revisions", c.prompt_revisions),
        ("Parameter changes", c.parameter_changes),
        ("Generations", c.generations),
        ("Candidates", c.candidates),
        ("Selections", c.selections),
        ("  rejected candidates", c.rejected_candidates),
    ]
    right = [
        ("Region edits", c.region_edits),
        ("Manual edits", c.manual_edits),
        ("Imported steps", c.imported_steps),
        ("Notes", c.notes),
        ("Exports", c.exports),
        ("Entries", c.entries),
    ]
    half = (w.width - 2) // 2
    if half >= 30:
        for (ln, lv), (rn, rv) in zip(left, right, strict=True):
            w.line("  " + _pad(f"{ln:<22}{lv:>6}", half) + f"{rn:<22}{rv:>6}")
    else:
        for name, value in left + right:
            w.line(f"  {name:<22}{value:>6}")
    w.line(f"  By a person {c.by_person}, by the tool {c.by_tool}, by automation {c.by_automation}")
    t = report.time
    w.para(
        f"Time spent: {duration(t.span_seconds)} from the first to the last entry ({_when(t.first)} to "
        f"{_when(t.last)} UTC, the signer's claim); active {duration(t.active_seconds)} (the sum of gaps between "
        f"consecutive entries, leaving out {t.gaps_excluded} gap(s) over {t.idle_gap_seconds // 60} minutes).",
        "    ", "  ",
    )
    a = report.area
    share = "unknown" if a.fraction is None else f"{a.fraction:.1%}" + (" (an estimate)" if a.estimate else "")
    w.para(f"Area of the final image touched by human-directed region or manual edits: {share}. Method: "
           f"{a.method}.", "    ", "  ")
    if report.models:
        w.para("Model: " + "; ".join(report.models), "    ", "  ")


def _factor(w: _Writer, factor: Factor) -> None:
    w.line(f"  {factor.title}: {_LEVEL.get(factor.level, factor.level)}")
    w.para(factor.explanation, "      ", "      ")
    if factor.entries:
        shown = ", ".join(str(s) for s in factor.entries[:30])
        more = f" and {len(factor.entries) - 30} more" if len(factor.entries) > 30 else ""
        w.para(f"entries {shown}{more}", "      ", "      ")


def _summary(w: _Writer, report: Report, unverified: bool) -> None:
    s = report.summary
    w.heading("In the examiners' terms", unverified)
    if s.warning:
        w.line("  " + "*" * (w.width - 4))
        w.para("WARNING: " + s.warning, "  * ", "  * ")
        w.line("  " + "*" * (w.width - 4))
    for factor in s.factors:
        _factor(w, factor)
    w.line("  Imported rather than witnessed:")
    if not s.imported:
        w.line("      none: every step was recorded as it happened")
    for item in s.imported[:200]:
        w.para(f"entry {item.seq} ({item.kind}, {item.actor}): {item.description}", "        ", "      - ")
    if len(s.imported) > 200:
        w.line(f"      ... and {len(s.imported) - 200} more")
    w.para(s.disclaimer, "  ", "  ")


def _image_text(step: LineageStep) -> str:
    image = step.image
    size = f"{image.width}x{image.height}" if image.width and image.height else "size unknown"
    thumb = "thumbnail in journal" if image.thumbnail_available else "no thumbnail"
    return f"pixels {image.pixel_sha256[:16]}, {size}, {thumb}"


def _lineage(w: _Writer, report: Report, unverified: bool) -> None:
    lineage = report.lineage
    w.heading("Lineage of the exported image", unverified)
    w.para(lineage.note, "  ", "  ")
    for number, step in enumerate(lineage.steps, start=1):
        lead = f"  {number:>2}. "
        entry = f" [entry {step.seq}, {step.actor}]" if step.seq is not None else ""
        w.para(step.title + entry, " " * len(lead), lead)
        w.para(step.detail, " " * len(lead), " " * len(lead))
        if step.mask is not None:
            m = step.mask
            box = "" if m.bbox is None else f" box {m.bbox[0]},{m.bbox[1]}-{m.bbox[2]},{m.bbox[3]}"
            area = "" if m.area_fraction is None else f" over {m.area_fraction:.1%} of the image"
            w.para(f"mask{area}{box}" + (", mask image in journal" if m.blob else ""), " " * len(lead),
                   " " * len(lead))
        if step.imported:
            w.para("IMPORTED: brought in from outside, not witnessed", " " * len(lead), " " * len(lead))
        w.para(_image_text(step), " " * len(lead), " " * len(lead))


def _rounds(w: _Writer, report: Report, unverified: bool) -> None:
    rounds = report.lineage.rounds
    if not rounds:
        return
    w.heading("Generations and selections", unverified)
    if report.lineage.rounds_total > len(rounds):
        w.line(f"  (the last {len(rounds)} of {report.lineage.rounds_total} generations)")
    for r in rounds:
        _round(w, r)


def _round(w: _Writer, r: Round) -> None:
    marks = " ".join(
        f"#{c.index if c.index is not None else '?'}:{_STATUS[c.status]}" + ("*" if c.in_lineage else "")
        for c in r.candidates
    )
    label = f"gen {r.generation if r.generation is not None else '?'} ({r.mode}, entry {r.seq})"
    w.para(f"{label}: {r.candidates_total} candidates  {marks}", "      ", "  ")
    if r.selection_seq is not None:
        text = f"selected in entry {r.selection_seq}, {r.rejected} rejected"
        w.para(text + (f": “{r.reason}”" if r.reason else ""), "      ", "      ")
    if r.mask is not None and r.mask.area_fraction is not None:
        w.para(f"inpainted through a mask over {r.mask.area_fraction:.1%} of the image", "      ", "      ")


def _prompts(w: _Writer, report: Report, unverified: bool) -> None:
    if not report.prompts:
        return
    w.heading("Prompt revisions", unverified)
    w.line("  Each revision against the one before: {+added+} [-removed-]")
    for p in report.prompts:
        who = {"human": "person"}.get(p.actor, p.actor)
        label = f"Revision {p.revision}" if p.revision is not None else "Prompt"
        w.line(f"  {label} (entry {p.seq}, {_when(p.time)}, {who})")
        w.para(_diff(p.prompt_diff) or "(empty)", " " * 14, "    prompt:   ")
        if p.negative_prompt or p.negative_diff:
            w.para(_diff(p.negative_diff) or "(empty)", " " * 14, "    negative: ")
        if p.truncated:
            w.line("    (long prompt: the report keeps its first 10,000 characters)")


def _parameters(w: _Writer, report: Report, unverified: bool) -> None:
    if not report.parameters:
        return
    w.heading("Parameter changes", unverified)
    rows = [("entry", "parameter", "from", "to")]
    rows += [(str(c.seq), c.name, c.before, c.after) for c in report.parameters]
    w.table(rows, [6, 18, 22, 0])


def _timeline(w: _Writer, report: Report, unverified: bool) -> None:
    w.heading("Timeline", unverified)
    start = report.time.first
    trusted = "" if not report.verdict.trusted_entries else "  T = rests on a trusted timestamp"
    w.line(f"  +elapsed from {_when(start)} UTC (the signer's claim){trusted}")
    w.line("  (imported steps are marked !)")
    rows: list[tuple[str, ...]] = [("entry", "+h:mm:ss", "by", "kind", "what")]
    for t in report.timeline:
        elapsed = _clock((t.time - start).total_seconds()) if start else ""
        mark = "T" if t.time_basis == "trusted-timestamp" else ""
        who = {"human": "person", "automation": "auto"}.get(t.actor, t.actor)
        kind = ("!" if t.imported else "") + t.kind
        rows.append((f"{t.seq}{mark}", elapsed, who, kind, t.summary))
    w.table(rows, [6, 8, 6, 16, 0])
    if report.timeline_omitted:
        w.line(f"  ... {report.timeline_omitted} more entries are counted above but not listed")
