"""The report as one self-contained HTML page.

One file, readable offline forever: styles in a ``<style>`` element, the
timeline and mask overlays as inline SVG, thumbnails as ``data:`` URIs, no
script and no external reference of any kind.  A Content-Security-Policy meta
element (``default-src 'none'``) makes the promise enforceable: even if
something slipped through, the browser would neither run it nor fetch anything.

Every string from a journal goes through `_esc` (control and format
characters made visible, then ``html.escape`` with quotes) before it reaches
the page, in text and in attributes alike.  Only numbers this module computes
go into SVG geometry and style attributes.  Images are never copied from the
journal: each is decoded through the bomb-safe container layer and re-encoded
as PNG by `provenance.report.safe_thumbnail`, within a page-wide budget.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
from collections.abc import Sequence

from ._report_text import clean, duration
from .report import (
    CandidateView,
    DiffOp,
    ImageRef,
    LineageStep,
    MaskRef,
    Report,
    Round,
    content_notice,
    mask_overlay,
    safe_thumbnail,
)

__all__ = ["render"]

# Thumbnails re-encoded per page (each costs about a millisecond); past this,
# images are shown as labelled boxes.  The lineage is drawn first, so it always
# gets its images; then the generations, newest first.
_IMAGE_BUDGET = 160
_CHAIN_SIDE = 178
_CANDIDATE_SIDE = 88
_TIMELINE_MARKS = 5_000
_TABLE_OPEN_LIMIT = 300

_COLOURS = {
    "prompt": "#1f5fbf",
    "params": "#6b4fbb",
    "generation": "#7a7a7a",
    "selection": "#1b7f4b",
    "edit": "#c2410c",
    "import": "#b8860b",
    "note": "#0e7490",
    "export": "#111827",
    "model": "#9d174d",
    "journal": "#4b5563",
    "other": "#9ca3af",
}
_LANES = ("prompt", "params", "generation", "selection", "edit", "import", "note", "export", "model", "journal",
          "other")
_LANE_NAMES = {"params": "parameters", "journal": "journal", "other": "other"}
_LEVEL_CLASS = {"none": "lv-none", "limited": "lv-limited", "substantial": "lv-substantial"}

_CSS = """
:root { --ink: #111827; --muted: #4b5563; --line: #d1d5db; --bg: #ffffff; --soft: #f3f4f6; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0 auto; max-width: 1100px; padding: 16px 20px 40px; color: var(--ink); background: var(--bg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
h1 { font-size: 28px; margin: 0 0 6px; letter-spacing: .02em; }
h2 { font-size: 19px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--ink); }
h3 { font-size: 15px; margin: 16px 0 6px; }
code, .mono { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; word-break: break-all; }
.verdict { border-radius: 8px; padding: 16px 20px; color: #fff; }
.verdict.valid { background: #166534; } .verdict.untrusted { background: #92400e; }
.verdict.invalid { background: #b91c1c; }
.verdict .subject { font-size: 13px; opacity: .92; margin-bottom: 4px; }
.verdict ul { margin: 6px 0 0 18px; padding: 0; }
.facts { display: grid; grid-template-columns: 150px 1fr; gap: 4px 12px; margin: 12px 0 0;
  padding: 12px 16px; border: 1px solid var(--line); border-radius: 8px; background: var(--soft); }
.facts dt { font-weight: 600; color: var(--muted); } .facts dd { margin: 0; }
.notice { margin: 12px 0; padding: 12px 16px; border: 3px solid #b91c1c; border-radius: 8px; background: #fef2f2;
  color: #7f1d1d; font-weight: 600; }
.unverified-tag { color: #b91c1c; font-size: 13px; font-weight: 700; margin-left: 8px; }
.counts { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 8px; }
.count { border: 1px solid var(--line); border-radius: 8px; padding: 8px 10px; background: var(--soft); }
.count .n { display: block; font-size: 24px; font-weight: 700; }
.count .l { color: var(--muted); font-size: 12px; }
.warning { margin: 14px 0; padding: 12px 16px; border: 3px solid #b45309; background: #fffbeb; border-radius: 8px; }
.warning strong { color: #92400e; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
th, td { text-align: left; vertical-align: top; padding: 4px 8px; border-bottom: 1px solid var(--line);
  overflow-wrap: anywhere; }
th { background: var(--soft); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
td.num { text-align: right; white-space: nowrap; }
.lv { display: inline-block; min-width: 96px; text-align: center; padding: 2px 8px; border-radius: 12px;
  font-size: 12px; font-weight: 700; color: #fff; }
.lv-none { background: #6b7280; } .lv-limited { background: #b45309; } .lv-substantial { background: #166534; }
.chain { display: flex; flex-wrap: wrap; align-items: stretch; gap: 8px; }
.card { break-inside: avoid; page-break-inside: avoid; border: 1px solid var(--line); border-radius: 8px;
  padding: 8px; width: 196px; background: #fff; }
.card.export { border: 2px solid var(--ink); }
.card.imported { border: 2px dashed #b8860b; }
.card .t { font-weight: 700; font-size: 13px; margin-top: 6px; }
.card .d { font-size: 12px; color: var(--muted); overflow-wrap: anywhere; }
.arrow { align-self: center; font-size: 22px; color: var(--muted); }
.thumb { display: block; width: 178px; height: 178px; object-fit: contain; background: var(--soft);
  border-radius: 4px; }
.box { display: flex; align-items: center; justify-content: center; width: 178px; height: 178px; text-align: center;
  background: repeating-linear-gradient(45deg, #f3f4f6, #f3f4f6 8px, #e5e7eb 8px, #e5e7eb 16px);
  color: var(--muted); font-size: 11px; border-radius: 4px; padding: 6px; overflow-wrap: anywhere; }
.card.wide { width: 384px; }
.pair { display: flex; gap: 6px; }
.entries { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; }
.round { break-inside: avoid; page-break-inside: avoid; border-bottom: 1px solid var(--line); padding: 8px 0; }
.cands { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 4px; }
.cand { width: 92px; font-size: 11px; text-align: center; }
.cand svg { width: 88px; height: 88px; }
.cand img, .cand .box { width: 88px; height: 88px; object-fit: contain; border: 3px solid transparent;
  border-radius: 4px; }
.cand.chosen img, .cand.chosen .box { border-color: #166534; }
.cand.rejected img, .cand.rejected .box { opacity: .45; border-color: #d1d5db; }
.cand.chosen .s { color: #166534; font-weight: 700; } .cand.rejected .s { color: #6b7280; }
.tl svg { width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 11px; font-weight: 700;
  background: #fef3c7; color: #92400e; }
.trusted { color: #166534; font-weight: 700; }
.diff ins { background: #dcfce7; color: #14532d; text-decoration: none; border-bottom: 2px solid #16a34a; }
.diff del { background: #fee2e2; color: #7f1d1d; text-decoration: line-through; }
.diff { margin: 2px 0 8px; padding: 6px 10px; background: var(--soft); border-radius: 6px; overflow-wrap: anywhere; }
.muted { color: var(--muted); }
footer { margin-top: 32px; font-size: 12px; color: var(--muted); }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  h2 { break-after: avoid; page-break-after: avoid; }
  .card { width: 170px; } .thumb, .box { width: 152px; height: 152px; }
  tr { break-inside: avoid; page-break-inside: avoid; }
}
"""


def _esc(text: object) -> str:
    """Journal text, made visible (control characters) and escaped for HTML text and attributes."""
    return html.escape(clean(str(text)) if text is not None else "", quote=True)


def _when(moment: _dt.datetime | None) -> str:
    return "unknown" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


class _Images:
    """Re-encoded thumbnails as data: URIs, once each, within the page budget."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.cache: dict[tuple[str, int], tuple[str, int, int] | None] = {}
        self.spent = 0

    def uri(self, sha: str | None, side: int = _CHAIN_SIDE) -> tuple[str, int, int] | None:
        if sha is None:
            return None
        if (sha, side) in self.cache:
            return self.cache[(sha, side)]
        blob = self.report.blobs.get(sha)
        result = None
        if blob is not None and self.spent < _IMAGE_BUDGET:
            self.spent += 1
            made = safe_thumbnail(blob.data, side, "WEBP")
            if made is not None:
                result = (_data_uri(made[0], "image/webp"), made[1], made[2])
        self.cache[(sha, side)] = result
        return result

    def overlay(self, mask: MaskRef, size: tuple[int, int]) -> str | None:
        if mask.blob is None or mask.blob not in self.report.blobs or self.spent >= _IMAGE_BUDGET:
            return None
        self.spent += 1
        made = mask_overlay(self.report.blobs[mask.blob].data, size, (220, 38, 38, 150))
        return None if made is None else _data_uri(made)


def _data_uri(data: bytes, media_type: str = "image/png") -> str:
    # Only ever called on bytes this module's helpers encoded, with a fixed media type.
    return f"data:{media_type};base64," + base64.b64encode(data).decode("ascii")


def _img(images: _Images, ref: ImageRef | None, css: str = "thumb", alt: str | None = None,
         side: int = _CHAIN_SIDE) -> str:
    if ref is None:
        return f'<div class="box {css}">no image</div>'
    made = images.uri(ref.thumbnail, side)
    label = alt or ref.label
    if made is None:
        size = f"{ref.width}×{ref.height}" if ref.width and ref.height else ""
        why = "thumbnail not in this journal" if not ref.thumbnail_available else "thumbnail not shown"
        return (f'<div class="box {css}" title="{_esc(label)}">{_esc(size)}<br>{why}<br>'
                f'<span class="mono">{_esc(ref.pixel_sha256[:12])}</span></div>')
    uri, width, height = made
    return (f'<img class="{css}" src="{uri}" width="{width}" height="{height}" alt="{_esc(label)}" '
            f'title="{_esc(label)}">')


def _preview(report: Report, css: str = "thumb") -> str | None:
    if report.preview is None:
        return None
    made = safe_thumbnail(report.preview, 320)
    if made is None:
        return None
    uri, width, height = _data_uri(made[0]), made[1], made[2]
    return f'<img class="{css}" src="{uri}" width="{width}" height="{height}" alt="the image you gave">'


def _mask_svg(images: _Images, base: ImageRef | None, mask: MaskRef) -> str:
    """The base thumbnail with the mask drawn over it (the mask image when present, else its box)."""
    made = images.uri(base.thumbnail) if base is not None else None
    if made is not None:
        uri, tw, th = made
    else:
        uri = None
        bw = (base.width if base and base.width else None) or mask.width or 1
        bh = (base.height if base and base.height else None) or mask.height or 1
        scale = 160 / max(bw, bh, 1)
        tw, th = max(1, round(bw * scale)), max(1, round(bh * scale))
    parts = [f'<svg class="thumb" viewBox="0 0 {tw} {th}" '
             f'width="{tw}" height="{th}" role="img" aria-label="mask over the base image">']
    parts.append("<title>region edit: the mask over the image it was applied to</title>")
    if uri is not None:
        parts.append(f'<image href="{uri}" x="0" y="0" width="{tw}" height="{th}"/>')
    else:
        parts.append(f'<rect x="0" y="0" width="{tw}" height="{th}" fill="#e5e7eb"/>')
    overlay = images.overlay(mask, (tw, th))
    if overlay is not None:
        parts.append(f'<image href="{overlay}" x="0" y="0" width="{tw}" height="{th}"/>')
    if mask.bbox is not None:
        mw = mask.width or (base.width if base and base.width else None) or tw
        mh = mask.height or (base.height if base and base.height else None) or th
        x0, y0, x1, y1 = mask.bbox
        sx, sy = tw / max(mw, 1), th / max(mh, 1)
        x, y = max(0.0, x0 * sx), max(0.0, y0 * sy)
        w, h = max(0.0, min(tw, x1 * sx) - x), max(0.0, min(th, y1 * sy) - y)
        fill = "none" if overlay is not None else "rgba(220,38,38,0.35)"
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{fill}" '
                     'stroke="#dc2626" stroke-width="2" stroke-dasharray="4 2"/>')
    parts.append("</svg>")
    return "".join(parts)


def render(report: Report) -> str:
    """The page."""
    images = _Images(report)
    out: list[str] = []
    title = f"Provenance report: {report.subject.name}"
    out.append(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        'style-src \'unsafe-inline\'; base-uri \'none\'; form-action \'none\'">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
    )
    _verdict(out, report)
    notice = content_notice(report)
    if notice:
        out.append(f'<div class="notice" id="notice">{_esc(notice)}</div>')
    if report.content != "absent":
        tag = "" if report.content == "verified" else '<span class="unverified-tag">UNVERIFIED</span>'
        if report.content == "unbound":
            tag = '<span class="unverified-tag">NOT BOUND TO THIS IMAGE</span>'
        _counts(out, report, tag)
        _summary(out, report, tag)
        _lineage(out, report, images, tag)
        _timeline(out, report, tag)
        _prompts(out, report, tag)
        _parameters(out, report, tag)
    _footer(out, report)
    out.append("</body></html>\n")
    return "".join(out)


def _verdict(out: list[str], report: Report) -> None:
    v = report.verdict
    out.append(f'<header class="verdict {_esc(v.status)}" id="verdict">')
    out.append(f'<div class="subject">Provenance report on {_esc(_subject_kind(report))} '
               f"<strong>{_esc(report.subject.name)}</strong></div>")
    out.append(f'<h1 id="verdict-label">{_esc(v.label)}</h1><ul>')
    out.extend(f"<li>{_esc(reason)}</li>" for reason in v.reasons)
    out.append("</ul></header>")
    facts: list[tuple[str, str]] = []
    if report.title:
        facts.append(("Title", _esc(report.title)))
    if v.journal:
        facts.append(("Journal", f'<span class="mono">{_esc(v.journal)}</span>, {v.entries} entries, '
                                 f"{'sealed' if v.sealed else 'not sealed'}"))
    if report.subject.journal_file:
        facts.append(("Journal file", _esc(report.subject.journal_file)))
    for signer in v.signers:
        state = '<span class="trusted">pinned</span>' if signer.pinned else "<strong>not pinned</strong>"
        facts.append(("Signing key", f'<span class="mono">{_esc(signer.keyid)}</span> ({state})'))
    if not v.signers:
        facts.append(("Signing key", "none verified"))
    if v.binding is not None:
        held = {"exact-file": "exact file", "same-pixels": "same pixels", "none": "none"}.get(
            v.binding.held, v.binding.held)
        entry = f" (export entry {v.binding.export_seq})" if v.binding.export_seq is not None else ""
        facts.append(("Image binding", f"<strong>{_esc(held)}</strong>{entry}, journal {_esc(v.binding.carrier)}: "
                                       f"{_esc(v.binding.explanation)}"))
    facts.append(("Time span", f"{_when(v.first_time)} to {_when(v.last_time)} UTC "
                               "<em>(the signer's claim)</em>"))
    for t in v.timestamps:
        trust = ('<span class="trusted">verified against a pinned TSA root</span>' if t.verified
                 else f"<strong>not verified</strong> ({_esc(t.note)})")
        facts.append(("Timestamp", f"entries 0–{t.size - 1} existed no later than {_when(t.time)} UTC, "
                                   f"RFC 3161 timestamp by {_esc(t.tsa)}, {trust}"))
    if v.trusted_entries:
        facts.append(("Trusted times", f"entries 0–{v.trusted_entries - 1} rest on a trusted timestamp; later "
                                       "entries on the signer's claim alone"))
    elif v.journal_verified:
        facts.append(("Trusted times", "none: every time is the signer's claim"))
    out.append('<dl class="facts" id="keys">')
    out.extend(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in facts)
    out.append("</dl>")


def _subject_kind(report: Report) -> str:
    return {"image": "the image", "journal-file": "the journal file", "stored-journal": "the stored journal"}.get(
        report.subject.kind, "the journal")


def _counts(out: list[str], report: Report, tag: str) -> None:
    c = report.counts
    out.append(f'<section id="contribution"><h2>The contribution{tag}</h2><div class="counts" id="counts">')
    cells = [
        ("prompt-revisions", c.prompt_revisions, "prompt revisions"),
        ("parameter-changes", c.parameter_changes, "parameter changes"),
        ("generations", c.generations, "generations"),
        ("candidates", c.candidates, "candidates"),
        ("selections", c.selections, f"selections ({c.rejected_candidates} candidates rejected)"),
        ("region-edits", c.region_edits, "region edits"),
        ("manual-edits", c.manual_edits, "manual edits"),
        ("imported-steps", c.imported_steps, "imported steps"),
    ]
    for key, number, label in cells:
        out.append(f'<div class="count" id="count-{key}"><span class="n">{number}</span>'
                   f'<span class="l">{_esc(label)}</span></div>')
    t = report.time
    out.append(f'<div class="count" id="count-time"><span class="n">{_esc(duration(t.active_seconds))}</span>'
               f'<span class="l">active time ({_esc(duration(t.span_seconds))} first to last entry)</span></div>')
    a = report.area
    share = "?" if a.fraction is None else f"{a.fraction:.1%}"
    out.append(f'<div class="count" id="count-area"><span class="n">{"≈" if a.estimate else ""}{share}</span>'
               '<span class="l">of the final image touched by human-directed edits</span></div></div>')
    out.append(
        f'<p class="muted">By a person: {c.by_person} entries; by the tool: {c.by_tool}; by automation: '
        f"{c.by_automation}. {c.notes} notes, {c.exports} exports, {c.entries} entries in all. "
        f"Time: {_when(t.first)} to {_when(t.last)} UTC (the signer's claim); active time is the sum of the gaps "
        f"between consecutive entries, leaving out {t.gaps_excluded} gap(s) longer than "
        f"{t.idle_gap_seconds // 60} minutes. Area: {_esc(a.method)}.</p>"
    )
    if report.models:
        out.append(f'<p class="muted">Model: {_esc("; ".join(report.models))}</p>')
    if report.summary.warning:
        out.append(f'<div class="warning" id="warning"><strong>Warning: little more than prompts and re-rolls.'
                   f"</strong> {_esc(report.summary.warning)}</div>")
    out.append("</section>")


def _summary(out: list[str], report: Report, tag: str) -> None:
    s = report.summary
    out.append(f'<section id="summary"><h2>In the examiners\' terms{tag}</h2>')
    out.append("<table><thead><tr><th>Factor</th><th>Level</th><th>What the record shows</th><th>Entries</th>"
               "</tr></thead><tbody>")
    for f in s.factors:
        entries = ", ".join(str(e) for e in f.entries[:40]) + (" …" if len(f.entries) > 40 else "")
        out.append(f'<tr id="factor-{_esc(f.key)}"><td><strong>{_esc(f.title)}</strong></td>'
                   f'<td><span class="lv {_LEVEL_CLASS.get(f.level, "lv-none")}">{_esc(f.level)}</span></td>'
                   f"<td>{_esc(f.explanation)}</td><td class=\"entries\">{_esc(entries) or '—'}</td></tr>")
    out.append("</tbody></table>")
    out.append('<h3 id="imported">Imported rather than witnessed</h3>')
    if not s.imported:
        out.append("<p>None: every step was recorded as it happened.</p>")
    else:
        out.append("<table><thead><tr><th>Entry</th><th>Kind</th><th>By</th><th>What</th></tr></thead><tbody>")
        for item in s.imported[:500]:
            out.append(f'<tr><td class="num">{item.seq}</td><td><span class="badge">imported</span> '
                       f"{_esc(item.kind)}</td><td>{_esc(item.actor)}</td><td>{_esc(item.description)}</td></tr>")
        out.append("</tbody></table>")
    out.append(f'<p class="muted">{_esc(s.disclaimer)}</p></section>')


def _step_card(images: _Images, report: Report, step: LineageStep) -> str:
    classes = "card" + (" export" if step.kind == "export" else "") + (" imported" if step.imported else "")
    classes += " wide" if step.mask is not None and step.kind != "export" else ""
    if step.kind == "export":
        picture = _preview(report) or _img(images, step.image, alt=step.title)
    elif step.mask is not None:
        picture = (f'<div class="pair">{_mask_svg(images, step.base, step.mask)}'
                   f'{_img(images, step.image, "thumb")}</div>')
    else:
        picture = _img(images, step.image, alt=step.title)
    entry = f"entry {step.seq}, " if step.seq is not None else ""
    who = {"human": "a person", "tool": "the tool", "automation": "automation"}.get(step.actor, step.actor)
    badge = ' <span class="badge">imported</span>' if step.imported else ""
    mask = ""
    if step.mask is not None and step.mask.area_fraction is not None:
        mask = f"<br>mask over {step.mask.area_fraction:.1%} of the image (red)"
    return (f'<div class="{classes}" data-kind="{_esc(step.kind)}">{picture}<div class="t">{_esc(step.title)}{badge}'
            f'</div><div class="d">{_esc(entry)}by {_esc(who)}<br>{_esc(step.detail)}{mask}</div></div>')


def _lineage(out: list[str], report: Report, images: _Images, tag: str) -> None:
    lineage = report.lineage
    out.append(f'<section id="lineage"><h2>Lineage of the exported image{tag}</h2>')
    out.append(f"<p>{_esc(lineage.note)} Candidates are identified by their pixel hashes; a selection names the "
               "kept and rejected ones, each edit the image it started from and the one it made.</p>")
    cards = [_step_card(images, report, step) for step in lineage.steps]
    if not cards and report.preview is not None:
        cards.append(f'<div class="card export">{_preview(report) or ""}<div class="t">The image you gave</div>'
                     '<div class="d">not found among the images the journal recorded</div></div>')
    out.append('<div class="chain" id="lineage-chain">' + '<div class="arrow">→</div>'.join(cards) + "</div>")
    if lineage.rounds:
        out.append('<h3 id="rounds">Generations and selections</h3>')
        if lineage.rounds_total > len(lineage.rounds):
            out.append(f'<p class="muted">The last {len(lineage.rounds)} of {lineage.rounds_total} generations.</p>')
        # Spend the image budget on the newest generations first, show them in order.
        rendered = [_round(images, r) for r in reversed(lineage.rounds)]
        out.extend(reversed(rendered))
    out.append("</section>")


def _candidate(images: _Images, c: CandidateView) -> str:
    status = {"chosen": "kept", "rejected": "rejected", "not-selected": "not selected"}[c.status]
    star = " ★" if c.in_lineage else ""
    index = "?" if c.index is None else str(c.index)
    seed = f"<br>seed {_esc(c.seed)}" if c.seed is not None else ""
    picture = _img(images, c.image, "", f"candidate #{index}: {status}", _CANDIDATE_SIDE)
    return (f'<div class="cand {_esc(c.status)}">{picture}'
            f'<div class="s">#{_esc(index)} {status}{star}</div><span class="muted">{seed}</span></div>')


def _round(images: _Images, r: Round) -> str:
    number = "?" if r.generation is None else str(r.generation)
    head = (f"<strong>Generation {_esc(number)}</strong> ({_esc(r.mode)}, entry {r.seq}, {_when(r.time)}): "
            f"{r.candidates_total} candidate{'s' if r.candidates_total != 1 else ''}")
    if r.prompt_revision is not None:
        head += f", prompt revision {r.prompt_revision}"
    if r.selection_seq is not None:
        head += f"; selection in entry {r.selection_seq}, {r.rejected} rejected"
        if r.reason:
            head += f": “{_esc(r.reason)}”"
    else:
        head += "; no selection recorded"
    mask = ""
    if r.mask is not None:
        mask = f'<div class="cand">{_mask_svg(images, r.base, r.mask)}<div class="s">inpaint mask</div></div>'
    cands = "".join(_candidate(images, c) for c in r.candidates)
    return f'<div class="round">{head}<div class="cands">{mask}{cands}</div></div>'


def _timeline_svg(report: Report) -> str:
    items = report.timeline[:_TIMELINE_MARKS]
    lanes = [lane for lane in _LANES if any(t.category == lane for t in items)]
    if not items or not lanes:
        return ""
    width, left, right, lane_h, top = 1000, 110, 20, 22, 10
    height = top + lane_h * len(lanes) + 34
    first, last = items[0].time, items[-1].time
    span = (last - first).total_seconds()
    by_time = span > 0
    count = max(1, len(items) - 1)

    def x_of(index: int) -> float:
        fraction = (items[index].time - first).total_seconds() / span if by_time else index / count
        return left + max(0.0, min(1.0, fraction)) * (width - left - right)

    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="timeline of the journal entries">',
             "<title>Timeline: one mark per entry, by kind</title>"]
    for row, lane in enumerate(lanes):
        y = top + row * lane_h
        parts.append(f'<rect x="{left}" y="{y}" width="{width - left - right}" height="{lane_h - 4}" '
                     f'fill="{"#f9fafb" if row % 2 else "#f3f4f6"}"/>')
        parts.append(f'<text x="{left - 8}" y="{y + lane_h - 9}" text-anchor="end" font-size="12" '
                     f'fill="#374151">{_LANE_NAMES.get(lane, lane)}</text>')
    lane_of = {lane: row for row, lane in enumerate(lanes)}
    for index, item in enumerate(items):
        row = lane_of.get(item.category, len(lanes) - 1)
        cy = top + row * lane_h + (lane_h - 4) / 2
        colour = _COLOURS.get(item.category, "#9ca3af")
        stroke = ' stroke="#b8860b" stroke-width="2"' if item.imported else ""
        parts.append(f'<circle cx="{x_of(index):.1f}" cy="{cy:.1f}" r="4.5" fill="{colour}"{stroke}>'
                     f"<title>entry {item.seq} {_esc(item.kind)} ({_esc(item.actor)}): {_esc(item.summary)}</title>"
                     "</circle>")
    axis_y = top + lane_h * len(lanes) + 4
    parts.append(f'<line x1="{left}" y1="{axis_y}" x2="{width - right}" y2="{axis_y}" stroke="#6b7280"/>')
    if by_time:
        for tick in range(5):
            x = left + tick * (width - left - right) / 4
            label = duration(span * tick / 4)
            anchor = "start" if tick == 0 else "end" if tick == 4 else "middle"
            parts.append(f'<line x1="{x:.1f}" y1="{axis_y}" x2="{x:.1f}" y2="{axis_y + 5}" stroke="#6b7280"/>')
            parts.append(f'<text x="{x:.1f}" y="{axis_y + 18}" font-size="11" text-anchor="{anchor}" '
                         f'fill="#374151">+{_esc(label)}</text>')
    else:
        parts.append(f'<text x="{left}" y="{axis_y + 18}" font-size="11" fill="#374151">entries in order (no '
                     "time elapsed)</text>")
    parts.append("</svg>")
    return "".join(parts)


def _timeline(out: list[str], report: Report, tag: str) -> None:
    out.append(f'<section id="timeline"><h2>Timeline{tag}</h2>')
    start = report.time.first
    out.append(f'<p class="muted">From {_when(start)} UTC. Entry times are the signer\'s claim'
               + ("; entries marked ✓ rest on a trusted timestamp" if report.verdict.trusted_entries else "")
               + ". Imported steps are ringed in gold.</p>")
    out.append(f'<div class="tl" id="timeline-chart">{_timeline_svg(report)}</div>')
    rows = []
    for t in report.timeline:
        elapsed = duration((t.time - start).total_seconds()) if start else ""
        trusted = (f' <span class="trusted" title="no later than {_when(t.no_later_than)} UTC">✓</span>'
                   if t.time_basis == "trusted-timestamp" else "")
        badge = ' <span class="badge">imported</span>' if t.imported else ""
        who = {"human": "person"}.get(t.actor, t.actor)
        rows.append(f'<tr><td class="num">{t.seq}</td><td class="num">{_when(t.time)[11:]}{trusted}</td>'
                    f'<td class="num">+{_esc(elapsed)}</td><td>{_esc(who)}</td><td>{_esc(t.kind)}{badge}</td>'
                    f"<td>{_esc(t.summary)}</td></tr>")
    opened = " open" if len(rows) <= _TABLE_OPEN_LIMIT else ""
    out.append(f"<details{opened}><summary>All {len(rows)} entries</summary><table id=\"timeline-table\"><thead>"
               "<tr><th>Entry</th><th>Time (UTC)</th><th>Elapsed</th><th>By</th><th>Kind</th><th>What</th></tr>"
               "</thead><tbody>" + "".join(rows) + "</tbody></table></details>")
    if report.timeline_omitted:
        out.append(f'<p class="muted">{report.timeline_omitted} more entries are counted but not listed.</p>')
    out.append("</section>")


def _diff_html(ops: Sequence[DiffOp]) -> str:
    parts = []
    for op in ops:
        text = _esc(op.text)
        parts.append(f"<ins>{text}</ins>" if op.op == "insert" else f"<del>{text}</del>" if op.op == "delete"
                     else text)
    return "".join(parts) or '<span class="muted">(empty)</span>'


def _prompts(out: list[str], report: Report, tag: str) -> None:
    if not report.prompts:
        return
    out.append(f'<section id="prompts"><h2>Prompt revisions{tag}</h2><p class="muted">Each revision against the one '
               "before it: <ins>added</ins>, <del>removed</del>.</p>")
    for p in report.prompts:
        label = f"Revision {p.revision}" if p.revision is not None else "Prompt"
        who = {"human": "a person"}.get(p.actor, p.actor)
        out.append(f"<h3>{_esc(label)} <span class=\"muted\">entry {p.seq}, {_when(p.time)} UTC, by {_esc(who)}"
                   "</span></h3>")
        out.append(f'<div class="diff prompt-diff"><strong>Prompt:</strong> {_diff_html(p.prompt_diff)}</div>')
        if p.negative_prompt or p.negative_diff:
            out.append(f'<div class="diff"><strong>Negative:</strong> {_diff_html(p.negative_diff)}</div>')
        if p.truncated:
            out.append('<p class="muted">A long prompt: the report keeps its first 10,000 characters.</p>')
    out.append("</section>")


def _parameters(out: list[str], report: Report, tag: str) -> None:
    if not report.parameters:
        return
    out.append(f'<section id="parameters"><h2>Parameter changes{tag}</h2><table><thead><tr><th>Entry</th>'
               "<th>Time (UTC)</th><th>Parameter</th><th>From</th><th>To</th></tr></thead><tbody>")
    for c in report.parameters:
        out.append(f'<tr><td class="num">{c.seq}</td><td class="num">{_when(c.time)[11:]}</td>'
                   f"<td>{_esc(c.name)}</td><td>{_esc(c.before)}</td><td>{_esc(c.after)}</td></tr>")
    out.append("</tbody></table></section>")


def _footer(out: list[str], report: Report) -> None:
    out.append("<footer>")
    if report.notes:
        out.append("<h3>Notes on the record</h3><ul>" + "".join(f"<li>{_esc(n)}</li>" for n in report.notes)
                   + "</ul>")
    out.append(f"<p>Report by provenance {_esc(report.tool_version)}, {_when(report.generated)} UTC. The journal "
               "format is specified in docs/format.md and this report in docs/report.md. This page is self-contained: "
               "it runs no script and loads nothing.</p></footer>")
