"""Image commands of the CLI: attach, verify (images), inspect, extract, match, find."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import _cli as cli
from . import binding
from .errors import UsageError
from .images import MAX_IMAGE_FILE, read_image_file
from .journal import SignedEntry
from .verify import verify_lines

Command = Callable[[str, cli.Handler, str], argparse.ArgumentParser]


def _default_output(image: Path) -> Path:
    return image.with_name(f"{image.stem}.provenance{image.suffix}")


def cmd_attach(args: argparse.Namespace) -> int:
    image = Path(args.image)
    data = read_image_file(image)
    mode = "sidecar" if args.sidecar else "compact" if args.compact else "embed"
    if mode == "embed" and binding._detect(data) is None:
        mode = "sidecar"  # docs/containers.md: any format other than PNG, JPEG and WebP gets a sidecar
    output = Path(args.output) if args.output else _default_output(image)
    key = cli._signing_key(args)
    with cli._open_store() as store:
        journal = store.resolve(args.journal)
        result = binding.attach(data, store=store, journal=journal, key=key, mode=mode, file_name=output.name)
        binding.write_file(output, result.data)
        if result.sidecar is not None:
            binding.write_file(binding.sidecar_path(output), result.sidecar)
    cli._out(f"wrote {output} ({result.format}, journal {mode}ded)" if mode == "embed" else f"wrote {output}")
    if result.sidecar is not None:
        cli._out(f"wrote {binding.sidecar_path(output)}")
    cli._out(f"export entry {result.entry.entry.seq}: {result.entry.hash.hex()}")
    return cli.EXIT_OK


def looks_like_image(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return False
    return head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8", b"GIF8", b"II*\x00", b"MM\x00*", b"BM")) or (
        head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    )


def verify_image_file(path: Path, args: argparse.Namespace) -> binding.ImageVerdict:
    journal_lines = None
    if getattr(args, "journal", None):
        journal_lines = cli._read_bytes(args.journal, MAX_IMAGE_FILE).splitlines(keepends=True)
    return binding.verify_image_file(
        path,
        journal_lines=journal_lines,
        trusted=cli._trusted(getattr(args, "trust", [])),
        checkpoints=cli._held_checkpoints(getattr(args, "checkpoint", [])),
        tsa_roots=[cli._read_bytes(p) for p in getattr(args, "tsa_root", [])],
        thorough=getattr(args, "thorough", False),
    )


def _print_compact_verdict(verdict: binding.ImageVerdict) -> None:
    """Say exactly what a compact attachment proved: one entry, and a signed size."""
    journal = verdict.journal
    if journal.status == "untrusted" and journal.pinned:
        cli._out(f"UNTRUSTED: {journal.reason}")
        return
    label = "VALID" if journal.status == "valid" else "VALID (signer not pinned; use --trust KEY.pem)"
    cli._out(
        f"{label}: export entry {verdict.export_seq} is included in journal {journal.journal} "
        f"of {journal.entries} signed entries (compact attachment)"
    )
    cli._print_signers(journal, sys.stdout)
    if journal.first_time is not None:
        cli._out(f"  export entry time {journal.first_time:%Y-%m-%d %H:%M:%S} UTC (the signer's claim)")
    cli._out("  only that entry and its checkpoint are in this file: check the other entries with --journal FILE")


def print_image_verdict(verdict: binding.ImageVerdict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(verdict.to_json(), indent=2) + "\n")
        return
    if verdict.status == "invalid":
        cli._out(f"NOT VALID: {verdict.reason}")
        return
    if verdict.journal_checked:
        cli._print_verdict(verdict.journal, False)
    else:
        _print_compact_verdict(verdict)
    held = {
        "exact-file": "this exact file (hard binding)",
        "same-pixels": "the same pixels, not the same file (metadata changed or re-saved; "
        "colour profile, gamma and orientation are not bound)",
    }[verdict.binding]
    cli._out(f"  bound to export entry {verdict.export_seq}: {held}; journal {verdict.carrier}")


def cmd_inspect(args: argparse.Namespace) -> int:
    data = read_image_file(args.image)
    if binding._detect(data):
        report = binding.inspect_image(data)
    else:  # a format that cannot carry a journal: only a sidecar can
        report = {"format": None, "chunks": [], "provenance": None}
    sidecar = binding.sidecar_path(Path(args.image))
    report["sidecar"] = str(sidecar) if sidecar.is_file() else None
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
        return cli.EXIT_OK
    cli._out(f"{args.image}: {report['format'].upper() if report['format'] else 'not PNG, JPEG or WebP'}")
    for chunk in report["chunks"]:
        name = chunk.get("type") or chunk.get("name")
        extra = " <- provenance" if chunk.get("provenance") or chunk.get("ours") else ""
        cli._out(f"  {name!s:<8} offset {chunk.get('offset')!s:>9}  length {chunk.get('length')!s:>9}{extra}")
    provenance = report["provenance"]
    if provenance is None and report["sidecar"] is not None:
        cli._out(f"no embedded provenance data; a sidecar journal is beside it: {report['sidecar']}; "
                 f"run `provenance verify {args.image}`")
    elif provenance is None:
        cli._out("no provenance data")
    else:
        cli._out(
            f"provenance: journal {provenance['journal']} ({provenance['carrier']}, {provenance['entries']} "
            f"entries, {provenance['bytes']} bytes); run `provenance verify {args.image}`"
        )
    return cli.EXIT_OK


def cmd_extract(args: argparse.Namespace) -> int:
    data = read_image_file(args.image)
    # Only PNG, JPEG and WebP can carry a journal; any other image may still have a sidecar.
    carried = binding.journal_lines_from_image(data) if binding._detect(data) else None
    if carried is None:
        sidecar = binding.sidecar_path(Path(args.image))
        if not sidecar.is_file():
            cli._out("no provenance data")
            return cli.EXIT_INVALID
        lines = read_image_file(sidecar).splitlines(keepends=True)  # bounded read
    else:
        lines = carried[0]
    journal = b"".join(lines)
    if args.output == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(journal)
        sys.stdout.buffer.flush()
        return cli.EXIT_OK
    target = Path(args.output)
    binding.write_file(target, journal)
    cli._out(f"wrote {target}")
    return cli.EXIT_OK


def register(command: Command) -> None:
    sub = command("attach", cmd_attach, "bind an image to a journal: append an export entry and attach the journal")
    sub.add_argument("image", metavar="IMAGE")
    sub.add_argument("--journal", required=True, metavar="JOURNAL", help="the journal (id or prefix) to bind")
    sub.add_argument("-o", "--output", metavar="OUT", help="output image (default: NAME.provenance.EXT)")
    group = sub.add_mutually_exclusive_group()
    group.add_argument("--sidecar", action="store_true", help="write the journal beside the image, not inside")
    group.add_argument("--compact", action="store_true",
                       help="embed only the checkpoint, the export entry's inclusion proof and a pointer")
    cli._add_key_options(sub)

    sub = command("inspect", cmd_inspect, "show what provenance data an image file carries")
    sub.add_argument("image", metavar="IMAGE")
    sub.add_argument("--json", action="store_true")

    sub = command("extract", cmd_extract, "write the journal an image carries as a portable file")
    sub.add_argument("image", metavar="IMAGE")
    sub.add_argument("-o", "--output", required=True, metavar="FILE")


def image_verify_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--journal", metavar="FILE", help="for images with a compact attachment: the full journal")


# -- matching stripped copies ---------------------------------------------------------


def _phash_refs_from_lines(lines: list[bytes], label: str) -> tuple[list[tuple[str, str]], str]:
    """(description, phash string) for every image a journal records, and the journal's verdict."""
    from .matching import collect_phashes

    found: list[tuple[str, str]] = []

    def visit(signed: SignedEntry) -> None:
        for where, value in collect_phashes(signed.entry.body):
            found.append((f"{label} entry {signed.entry.seq} ({signed.entry.kind}{where})", value))

    verdict = verify_lines(lines, visitor=visit)
    return found, verdict.status


def cmd_match(args: argparse.Namespace) -> int:
    from . import matching

    suspect = matching.load_suspect(read_image_file(args.suspect))
    references: list[matching.Reference] = []
    for target in args.references:
        path = Path(target)
        if looks_like_image(path):
            data = read_image_file(path)
            carried = binding.journal_lines_from_image(data) if binding._detect(data) else None
            if carried is not None:
                found, status = _phash_refs_from_lines(carried[0], path.name)
                references += [matching.Reference(d, p, status) for d, p in found]
            else:
                references.append(matching.reference_for_image(data, f"{path.name} (the image itself)"))
        else:
            lines = path.read_bytes().splitlines(keepends=True) if path.is_file() else None
            if lines is None:
                raise UsageError(f"no such file: {target}")
            found, status = _phash_refs_from_lines(lines, path.name)
            references += [matching.Reference(d, p, status) for d, p in found]
    result = matching.best_match(suspect, references)
    _print_match(result, args.json)
    return cli.EXIT_OK if result.matched else cli.EXIT_INVALID


def cmd_find(args: argparse.Namespace) -> int:
    from . import matching

    suspect = matching.load_suspect(read_image_file(args.suspect))
    with cli._open_store() as store:
        result = matching.find_in_store(store, suspect)
    _print_match(result, args.json)
    return cli.EXIT_OK if result.matched else cli.EXIT_INVALID


def _print_match(result: Any, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
        return
    if result.best is None:
        cli._out(f"NO MATCH: no recorded image to compare with (threshold {result.threshold})")
        return
    verdict = "MATCH" if result.matched else "NO MATCH"
    cli._out(f"{verdict}: distance {result.best.distance} (threshold {result.threshold}, "
             f"{result.compared} recorded images compared)")
    if result.close and not result.matched:
        cli._out("  the closest recorded image is in a journal that is NOT VALID: it proves nothing")
    cli._out(f"  closest: {result.best.description}")
    # `match` pins no key, so "untrusted" here only means "valid, signer not pinned" (as `verify` says).
    status = {"untrusted": "valid, signer not pinned", "invalid": "NOT VALID"}.get(result.best.journal_status or "")
    if status:
        cli._out(f"  journal verdict: {status}")


def register_matching(command: Command) -> None:
    sub = command("match", cmd_match, "compare a suspect image with images recorded in journals (perceptual hash)")
    sub.add_argument("suspect", metavar="SUSPECT")
    sub.add_argument("references", nargs="+", metavar="IMAGE_OR_JOURNAL")
    sub.add_argument("--json", action="store_true")
    sub = command("find", cmd_find, "search every journal in the local store for a suspect image")
    sub.add_argument("suspect", metavar="SUSPECT")
    sub.add_argument("--json", action="store_true")


def cmd_import_metadata(args: argparse.Namespace) -> int:
    from .importers import import_from_image
    from .recorder import Session

    result = import_from_image(Path(args.image))
    key = cli._signing_key(args)
    with cli._open_store() as store:
        session = Session(journal=args.journal, store=store, key=key)
        entries = session.import_metadata(result)
    cli._out(f"imported {len(entries)} step(s) from {result.source} as unwitnessed history")
    for note in result.skipped:
        cli._out(f"  skipped: {note}")
    return cli.EXIT_OK


def register_importers(command: Command) -> None:
    sub = command(
        "import-metadata",
        cmd_import_metadata,
        "record AUTOMATIC1111 / ComfyUI / InvokeAI / NovelAI metadata from an image as imported, unwitnessed steps",
    )
    sub.add_argument("image", metavar="IMAGE")
    sub.add_argument("--journal", required=True, metavar="JOURNAL")
    cli._add_key_options(sub)
