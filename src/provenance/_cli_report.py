"""The `report` command, and batch mode for auditors: `verify DIR`, `report DIR`.

Batch mode walks a folder (its top level; ``--recursive`` for the whole tree),
takes images (PNG, JPEG, WebP) and journal files (``*.jsonl``; a sidecar beside
its image is verified with the image, not on its own), and handles each file on
its own: an unreadable, malformed or hostile file becomes a row with its error,
never the end of the run.  A progress bar goes to standard error, and only when
that is a terminal; the summary table goes to standard output.  The exit code is
0 only when every file is ok (valid, or valid with no key pinned).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs

from . import _cli as cli
from ._report_text import cell_width, clean
from .binding import SIDECAR_SUFFIX

__all__ = [
    "Row",
    "add_directory_options",
    "cmd_report",
    "find_targets",
    "register",
    "report_directory",
    "verify_directory",
]

Command = Callable[[str, cli.Handler, str], argparse.ArgumentParser]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
JOURNAL_SUFFIXES = (".jsonl",)
_FORMAT_SUFFIX = {"text": "txt", "json": "json", "html": "html"}
_MAX_FILES = 1_000_000  # a walk stops listing past this many candidate files


@attrs.frozen
class Row:
    """One file of a batch run."""

    file: str  # relative to the folder
    status: str  # "valid" | "untrusted" | "invalid" | "error"
    ok: bool
    binding: str  # "exact-file" | "same-pixels" | "none" | "-" (journal files)
    signers: tuple[str, ...]
    entries: int
    reason: str
    report: str | None = None  # the report file written (report DIR)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file, "status": self.status, "ok": self.ok, "binding": self.binding,
            "signers": list(self.signers), "entries": self.entries, "reason": self.reason, "report": self.report,
        }


# -- options -------------------------------------------------------------------------


def add_directory_options(parser: argparse.ArgumentParser) -> None:
    """Options batch mode reads (added to `verify` by the CLI, and to `report` here)."""
    parser.add_argument("--recursive", action="store_true", help="for a directory: include its subdirectories")


def register(command: Command) -> None:
    sub = command("report", cmd_report,
                  "report how an image was made: the verdict first, then the human contribution")
    sub.add_argument("target", metavar="IMAGE|JOURNAL|FILE|DIR")
    sub.add_argument("--format", choices=["text", "json", "html"], default="text",
                     help="text (80 columns), json (docs/report-schema.json) or html (one self-contained file)")
    sub.add_argument("-o", "--output", metavar="OUT",
                     help="write the report here (default: standard output); for a directory, the output directory")
    sub.add_argument("--journal", metavar="FILE",
                     help="for an image: its full journal file (thumbnails, or when only a compact proof is attached)")
    sub.add_argument("--width", type=int, default=80, metavar="COLUMNS", help="text width (default: %(default)s)")
    cli.add_trust_options(sub)
    add_directory_options(sub)


def _verify_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "trusted": cli._trusted(getattr(args, "trust", [])),
        "checkpoints": cli._held_checkpoints(getattr(args, "checkpoint", [])),
        "tsa_roots": [cli._read_bytes(p) for p in getattr(args, "tsa_root", [])],
        "thorough": bool(getattr(args, "thorough", False)),
    }


# -- one report ----------------------------------------------------------------------


def _rendered(report: Any, fmt: str, width: int) -> str:
    from .report import render_html, render_json, render_text

    if fmt == "json":
        return json.dumps(render_json(report), indent=2, ensure_ascii=False) + "\n"
    if fmt == "html":
        return render_html(report)
    return render_text(report, width)


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report

    if Path(args.target).is_dir():
        return report_directory(args)
    options = _verify_options(args)
    report = build_report(args.target, journal_file=args.journal, **options)
    text = _rendered(report, args.format, args.width)
    if args.output and args.output != "-":
        _write_text(Path(args.output), text)
        cli._out(f"{report.verdict.label}: wrote {args.output}")
    else:
        sys.stdout.write(text)
    return cli.EXIT_OK if report.verdict.ok else cli.EXIT_INVALID


def _write_text(path: Path, text: str) -> None:
    from ._io import write_atomic
    from .errors import UsageError

    write_atomic(path, (text.encode("utf-8"),), UsageError)


# -- walking a folder ------------------------------------------------------------------


def find_targets(root: Path, recursive: bool = False, skip: Path | None = None) -> list[Path]:
    """Images and journal files under `root`, sorted; sidecars whose image is present are left out."""
    found: list[Path] = []

    def wanted(path: Path) -> bool:
        name = path.name.lower()
        if name.endswith(SIDECAR_SUFFIX):
            image = path.with_name(path.name[: -len(SIDECAR_SUFFIX)])
            return not image.is_file()  # verified with its image otherwise
        return name.endswith(IMAGE_SUFFIXES + JOURNAL_SUFFIXES)

    skip_resolved = skip.resolve() if skip is not None else None
    walker: Iterator[tuple[str, list[str], list[str]]]
    if recursive:
        walker = os.walk(root, followlinks=False, onerror=None)
    else:
        try:
            names = sorted(os.listdir(root))
        except OSError:
            names = []
        walker = iter([(str(root), [], names)])
    for directory, subdirs, files in walker:
        here = Path(directory)
        if skip_resolved is not None:
            subdirs[:] = [d for d in subdirs if (here / d).resolve() != skip_resolved]
        subdirs.sort()
        for name in sorted(files):
            path = here / name
            if path.is_file() and wanted(path):
                found.append(path)
                if len(found) >= _MAX_FILES:
                    return found
    return found


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


class _Progress:
    """A one-line progress bar on standard error, drawn only when it is a terminal."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.enabled = total > 0 and _isatty(self.stream)
        self.last = 0.0

    def update(self, done: int, name: str) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < self.total and now - self.last < 0.05:
            return
        self.last = now
        width = 30
        filled = width * done // self.total
        label = clean(name)
        if cell_width(label) > 30:
            label = "…" + label[-29:]
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} {label}\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def _verify_one(path: Path, options: dict[str, Any]) -> tuple[str, bool, str, tuple[str, ...], int, str]:
    from . import binding
    from .images import read_image_file
    from .report import _is_image  # the same magic-number test the report uses
    from .verify import verify_file

    with open(path, "rb") as handle:
        head = handle.read(16)
    if _is_image(head):
        data = read_image_file(path)
        sidecar_file = binding.sidecar_path(path)
        sidecar = read_image_file(sidecar_file) if sidecar_file.is_file() else None
        image_options = {k: v for k, v in options.items() if k != "thorough"}
        verdict = binding.verify_image(data, sidecar=sidecar, **image_options)
        return (verdict.status, verdict.ok(), verdict.binding, verdict.journal.signers, verdict.journal.entries,
                verdict.reason)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ("error", False, "-", (), 0, "not a PNG, JPEG or WebP file")
    journal = verify_file(path, **options)
    return journal.status, journal.ok(), "-", journal.signers, journal.entries, journal.reason


def _row(path: Path, root: Path, work: Callable[[Path], Row]) -> Row:
    try:
        return work(path)
    except (KeyboardInterrupt, SystemExit):
        raise
    except MemoryError:
        return Row(_relative(path, root), "error", False, "-", (), 0, "out of memory")
    except Exception as exc:  # one bad file is a row with its error, never the end of the run
        return Row(_relative(path, root), "error", False, "-", (), 0, _one_line(exc))


def _run(root: Path, targets: Sequence[Path], work: Callable[[Path], Row]) -> list[Row]:
    progress = _Progress(len(targets))
    rows: list[Row] = []
    try:
        for done, path in enumerate(targets, start=1):
            progress.update(done - 1, _relative(path, root))
            rows.append(_row(path, root, work))
            progress.update(done, _relative(path, root))
    finally:
        progress.close()
    return rows


_LABELS = {"valid": "VALID", "untrusted": "UNTRUSTED", "invalid": "NOT VALID", "error": "ERROR"}
# (UNTRUSTED: a key was pinned and this signer is not among them.)


def _status_label(row: Row) -> str:
    if row.status == "untrusted" and row.ok:
        return "VALID*"  # valid, no key pinned
    return _LABELS.get(row.status, row.status.upper())


def summary_table(rows: Sequence[Row], width: int = 80) -> list[str]:
    """The batch summary: one line per file (and its reason when not ok), then the totals."""
    from ._report_text import _fit, _pad, _wrap

    lines = []
    widths = [11, 11, 16, 7]
    name_width = max(12, width - sum(widths) - len(widths) - 2)
    header = ("file", "verdict", "binding", "signer", "entries")
    lines.append("  " + " ".join([_pad(header[0], name_width), *(_pad(h, w) for h, w in
                                                                  zip(header[1:], widths, strict=True))]).rstrip())
    for row in rows:
        signer = row.signers[0][:16] + (f"+{len(row.signers) - 1}" if len(row.signers) > 1 else "") \
            if row.signers else "-"
        cells = [_pad(clean(row.file), name_width), _pad(_status_label(row), widths[0]), _pad(row.binding, widths[1]),
                 _pad(signer, widths[2]), _pad(str(row.entries) if row.status != "error" else "-", widths[3])]
        lines.append(("  " + " ".join(cells)).rstrip())
        if not row.ok or row.status == "error":
            lines.append(_fit("      " + clean(row.reason), width))
    counts = {s: sum(1 for r in rows if r.status == s) for s in ("valid", "untrusted", "invalid", "error")}
    ok = sum(1 for r in rows if r.ok)
    unpinned = sum(1 for r in rows if r.ok and r.status == "untrusted")
    lines.append("")
    lines.extend(_wrap(
        f"{len(rows)} file(s), {ok} ok: {counts['valid']} valid, {unpinned} valid with no key pinned; "
        f"{counts['untrusted'] - unpinned} signed by a key not pinned, {counts['invalid']} not valid, "
        f"{counts['error']} unreadable.", width))
    if unpinned:
        lines.append("VALID* = valid, signer not pinned (use --trust KEY.pem)")
    return lines


def _root(args: argparse.Namespace) -> Path:
    root = Path(args.target)
    if not root.is_dir():
        from .errors import UsageError

        raise UsageError(f"not a directory: {args.target}")
    return root


def verify_directory(args: argparse.Namespace) -> int:
    """`provenance verify DIR`: verify every image and journal file; a summary table."""
    root = _root(args)
    options = _verify_options(args)
    targets = find_targets(root, getattr(args, "recursive", False))

    def work(path: Path) -> Row:
        status, ok, held, signers, entries, reason = _verify_one(path, options)
        return Row(_relative(path, root), status, ok, held, signers, entries, reason)

    rows = _run(root, targets, work)
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps({"directory": str(root), "files": [r.to_json() for r in rows],
                                     "ok": all(r.ok for r in rows)}, indent=2) + "\n")
    else:
        for line in summary_table(rows):
            cli._out(line)
    return cli.EXIT_OK if rows and all(r.ok for r in rows) else cli.EXIT_INVALID


def _report_name(relative: str, suffix: str, taken: set[str]) -> str:
    flat = relative.replace(os.sep, "__")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", flat).lstrip(".") or "file"
    name = f"{safe[:150]}.report.{suffix}"
    number = 2
    while name.lower() in taken or name.lower().startswith("index."):
        name = f"{safe[:150]}-{number}.report.{suffix}"
        number += 1
    taken.add(name.lower())
    return name


def report_directory(args: argparse.Namespace) -> int:
    """`provenance report DIR -o OUTDIR`: one report per file, an index, and a summary table."""
    from .errors import UsageError
    from .report import build_report

    root = _root(args)
    if not args.output or args.output == "-":
        raise UsageError("report DIR needs -o OUTDIR, the directory to write the reports into")
    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out}: {exc.strerror or exc}") from None
    options = _verify_options(args)
    fmt = args.format
    suffix = _FORMAT_SUFFIX[fmt]
    targets = find_targets(root, getattr(args, "recursive", False), skip=out)
    taken: set[str] = set()

    def work(path: Path) -> Row:
        relative = _relative(path, root)
        report = build_report(path, **options)
        name = _report_name(relative, suffix, taken)
        _write_text(out / name, _rendered(report, fmt, getattr(args, "width", 80)))
        v = report.verdict
        held = v.binding.held if v.binding is not None else "-"
        return Row(relative, v.status, v.ok, held, tuple(s.keyid for s in v.signers), v.entries,
                   v.reasons[0] if v.reasons else "", name)

    rows = _run(root, targets, work)
    index = _write_index(out, root, rows, fmt)
    for line in summary_table(rows):
        cli._out(line)
    cli._out(f"reports in {out}; index: {index.name}")
    return cli.EXIT_OK if rows and all(r.ok for r in rows) else cli.EXIT_INVALID


def _write_index(out: Path, root: Path, rows: Sequence[Row], fmt: str) -> Path:
    if fmt == "json":
        path = out / "index.json"
        _write_text(path, json.dumps({"directory": str(root), "files": [r.to_json() for r in rows],
                                      "ok": all(r.ok for r in rows)}, indent=2) + "\n")
        return path
    if fmt == "text":
        path = out / "index.txt"
        _write_text(path, f"Reports on {clean(str(root))}\n\n" + "\n".join(summary_table(rows)) + "\n")
        return path
    path = out / "index.html"
    _write_text(path, _index_html(root, rows))
    return path


_INDEX_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 0 auto; padding: 16px 20px; color: #111827; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: 4px 8px;
  border-bottom: 1px solid #d1d5db; vertical-align: top; }
th { background: #f3f4f6; font-size: 12px; text-transform: uppercase; }
.valid { color: #166534; font-weight: 700; } .untrusted { color: #92400e; font-weight: 700; }
.invalid, .error { color: #b91c1c; font-weight: 700; } .mono { font-family: monospace; font-size: 12px; }
@page { size: A4; margin: 14mm 12mm; }
"""


def _index_html(root: Path, rows: Sequence[Row]) -> str:
    def esc(text: object) -> str:
        return html.escape(clean(str(text)), quote=True)

    body = []
    for row in rows:
        name = esc(row.file)
        if row.report:
            # The name is ours (only [A-Za-z0-9._-]), quoted anyway: a relative link, never a URL scheme.
            name = f'<a href="{esc(urllib.parse.quote(row.report))}">{name}</a>'
        signer = esc(", ".join(row.signers)) or "-"
        body.append(f'<tr><td>{name}</td><td class="{esc(row.status)}">{esc(_status_label(row))}</td>'
                    f'<td>{esc(row.binding)}</td><td class="mono">{signer}</td><td>{row.entries}</td>'
                    f"<td>{esc(row.reason)}</td></tr>")
    ok = sum(1 for r in rows if r.ok)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">'
        f"<title>Provenance reports: {esc(root)}</title><style>{_INDEX_CSS}</style></head><body>"
        f"<h1>Provenance reports: {esc(root)}</h1><p>{len(rows)} file(s), {ok} ok.</p>"
        "<table><thead><tr><th>File</th><th>Verdict</th><th>Binding</th><th>Signer</th><th>Entries</th>"
        "<th>Reason</th></tr></thead><tbody>" + "".join(body) + "</tbody></table>"
        "<p>VALID* = valid, signer not pinned.</p></body></html>\n"
    )
