"""The `provenance` command line.

Exit codes: 0 success (for `verify`: valid, and trusted when keys were
pinned); 1 the evidence does not hold (not valid, untrusted, no match);
2 usage errors, unreadable paths, store or key problems; 130 interrupted.
Every failure is one line on standard error, never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from . import __version__
from ._encoding import encode_value
from ._io import read_limited
from .errors import Error, UsageError, VerificationError
from .journal import Actor, Checkpoint, SignedEntry
from .keys import DEFAULT_KEY_NAME, KeyStore, PublicKey, SigningKey, load_public_key
from .store import Store
from .verify import Verdict, verify_file

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like every other usage error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# -- helpers ---------------------------------------------------------------------


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _passphrase(args: argparse.Namespace, *, confirm: bool, prompt: str) -> bytes | None:
    variable = getattr(args, "passphrase_env", None)
    if variable:
        value = os.environ.get(variable)
        if value is None:
            raise UsageError(f"environment variable {variable} is not set")
        return value.encode("utf-8")
    if not sys.stdin.isatty():
        return None
    first = getpass.getpass(prompt)
    if not first:
        return None
    if confirm and getpass.getpass("Repeat passphrase: ") != first:
        raise UsageError("the passphrases differ")
    return first.encode("utf-8")


def _signing_key(args: argparse.Namespace) -> SigningKey:
    keys = KeyStore()
    name = args.key
    if not keys.exists(name) and name == DEFAULT_KEY_NAME and not getattr(args, "passphrase_env", None):
        raise UsageError("no signing key yet: run `provenance keygen` first")
    passphrase = None
    if keys.is_encrypted(name):
        passphrase = _passphrase(args, confirm=False, prompt=f"Passphrase for key {name!r}: ")
    return keys.load(name, passphrase=passphrase)


def _open_store() -> Store:
    return Store()


def _trusted(paths: Sequence[str]) -> list[PublicKey]:
    keys = []
    for path in paths:
        try:
            keys.append(load_public_key(_read_bytes(path)))
        except VerificationError as exc:
            raise UsageError(f"--trust {path}: {exc}") from None
    return keys


def _read_bytes(path: str, limit: int = 1 << 20) -> bytes:
    return read_limited(path, limit, UsageError)


def _held_checkpoints(paths: Sequence[str]) -> list[Checkpoint]:
    held = []
    for path in paths:
        try:
            held.append(Checkpoint.from_note(_read_bytes(path).decode("utf-8", "replace")))
        except VerificationError as exc:
            raise UsageError(f"--checkpoint {path}: {exc}") from None
    return held


def _is_file_target(target: str) -> bool:
    return os.sep in target or "." in target or Path(target).exists()


def _summary(body: Any, width: int) -> str:
    text = json.dumps(encode_value(body), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _entry_line(signed: SignedEntry) -> str:
    entry = signed.entry
    when = entry.time.strftime("%Y-%m-%d %H:%M:%S")
    head = f"{entry.seq:>5}  {when}  {entry.actor.value:<10} {entry.kind:<18}"
    return head + " " + _summary(dict(entry.body), 79 - len(head) - 1)


def _entry_json(signed: SignedEntry) -> dict[str, Any]:
    entry = signed.entry
    return {
        "seq": entry.seq,
        "hash": signed.hash.hex(),
        "time": entry.time.isoformat(),
        "actor": entry.actor.value,
        "kind": entry.kind,
        "signer": entry.signer,
        "body": encode_value(dict(entry.body)),
    }


def _print_signers(verdict: Verdict, stream: TextIO) -> None:
    for keyid in verdict.signers:
        pinned = verdict.pinned and keyid not in verdict.untrusted_signers
        stream.write(f"  signer {keyid} ({'pinned' if pinned else 'not pinned'})\n")


def _print_verdict(verdict: Verdict, as_json: bool, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    if as_json:
        stream.write(json.dumps(verdict.to_json(), indent=2) + "\n")
        return
    if verdict.status == "invalid":
        stream.write(f"NOT VALID: {verdict.reason}\n")
    elif verdict.status == "untrusted" and verdict.pinned:
        stream.write(f"UNTRUSTED: {verdict.reason}\n")
    else:
        label = "VALID" if verdict.status == "valid" else "VALID (signer not pinned; use --trust KEY.pem)"
        stream.write(f"{label}: journal {verdict.journal}, {verdict.entries} entries")
        stream.write(", sealed\n" if verdict.sealed else "\n")
        _print_signers(verdict, stream)
        if verdict.first_time and verdict.last_time:
            stream.write(
                f"  entry times {verdict.first_time:%Y-%m-%d %H:%M:%S} to {verdict.last_time:%Y-%m-%d %H:%M:%S} "
                "UTC (the signer's claim)\n"
            )
        for ts in verdict.timestamps:
            trust = "verified against a pinned TSA" if ts.verified else f"NOT verified: {ts.note}"
            stream.write(f"  checkpoint {ts.size} time-stamped {ts.time:%Y-%m-%d %H:%M:%S} UTC by {ts.tsa} ({trust})\n")


# -- commands ----------------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace) -> int:
    passphrase = _passphrase(args, confirm=True, prompt="Passphrase (empty for none): ")
    keys = KeyStore()
    key = keys.generate(args.name, passphrase=passphrase)
    _out(f"created key {args.name!r}: {key.keyid}")
    _out(f"  file: {keys.path(args.name)} ({'passphrase-encrypted' if passphrase else 'not encrypted'})")
    _out("  give auditors your public key: provenance key show" + ("" if args.name == DEFAULT_KEY_NAME
                                                                    else f" --name {args.name}"))
    return EXIT_OK


def cmd_key_show(args: argparse.Namespace) -> int:
    public = KeyStore().public_key(args.name)
    _out(f"key id: {public.keyid}")
    sys.stdout.write(public.to_pem())
    return EXIT_OK


def cmd_key_list(args: argparse.Namespace) -> int:
    keys = KeyStore()
    unreadable = 0
    for name in keys.names():
        try:
            _out(f"{name}\t{keys.public_key(name).keyid}")
        except Error as exc:  # one bad file must not hide the other keys
            unreadable += 1
            sys.stderr.write(f"provenance: error: key {name!r}: {exc}\n")
    return EXIT_USAGE if unreadable else EXIT_OK


def cmd_new(args: argparse.Namespace) -> int:
    key = _signing_key(args)
    with _open_store() as store:
        _out(store.create_journal(key, title=args.title))
    return EXIT_OK


def cmd_append(args: argparse.Namespace) -> int:
    data: Any = {}
    if args.data is not None:
        text = _read_bytes(args.data[1:]).decode("utf-8", "replace") if args.data.startswith("@") else args.data
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"--data is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise UsageError("--data must be a JSON object")
    key = _signing_key(args)
    with _open_store() as store:
        journal = store.resolve(args.journal)
        signed = store.append(journal, args.kind, data, key=key, actor=Actor(args.actor))
    _out(signed.hash.hex())
    return EXIT_OK


def cmd_seal(args: argparse.Namespace) -> int:
    key = _signing_key(args)
    with _open_store() as store:
        signed = store.seal(store.resolve(args.journal), key=key, reason=args.reason)
    _out(signed.hash.hex())
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    with _open_store() as store:
        for info in store.journals():
            state = "sealed" if info.sealed else "open"
            _out(f"{info.id}  {info.size:>6} entries  {state:<6}  {info.title or ''}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    entries: list[dict[str, Any]] = []

    def visit(signed: SignedEntry) -> None:
        if args.json:
            entries.append(_entry_json(signed))
        else:
            _out(_entry_line(signed))

    verdict = _verify_target(args.target, visitor=visit)
    if args.json:
        sys.stdout.write(json.dumps({"verdict": verdict.to_json(), "entries": entries}, indent=2) + "\n")
    else:
        _out()
        _print_verdict(verdict, False)
    return EXIT_OK if verdict.valid else EXIT_INVALID


def _verify_target(target: str, **options: Any) -> Verdict:
    if _is_file_target(target):
        if not Path(target).is_file():
            raise UsageError(f"no such file: {target}")
        return verify_file(target, **options)
    with _open_store() as store:
        return store.verify(store.resolve(target), **options)


def cmd_export(args: argparse.Namespace) -> int:
    with _open_store() as store:
        journal = store.resolve(args.journal)
        options = {"all_checkpoints": args.all_checkpoints, "disclose": args.disclose}
        if args.output == "-":
            store.export(journal, sys.stdout.buffer, **options)
        else:
            store.export(journal, args.output, **options)
            _out(f"wrote journal {journal} to {args.output}")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    if not Path(args.file).is_file():
        raise UsageError(f"no such file: {args.file}")
    with _open_store() as store:
        journal = store.import_file(args.file)
        info = store.info(journal)
    _out(f"imported journal {journal} ({info.size} entries)")
    return EXIT_OK


def cmd_checkpoint(args: argparse.Namespace) -> int:
    with _open_store() as store:
        journal = store.resolve(args.journal)
        sys.stdout.write(store.checkpoint(journal).note())
    return EXIT_OK


def cmd_timestamp(args: argparse.Namespace) -> int:
    from .timestamp import request_timestamp

    with _open_store() as store:
        journal = store.resolve(args.journal)
        checkpoint = store.checkpoint(journal)
        token = request_timestamp(checkpoint.note().encode(), args.tsa, timeout=args.timeout)
        store.add_timestamp(journal, checkpoint.size, token)
    _out(f"time-stamped checkpoint {checkpoint.size} of journal {journal} by {args.tsa}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from . import _cli_images

    if Path(args.target).is_dir():
        from . import _cli_report

        return _cli_report.verify_directory(args)

    if _is_file_target(args.target) and _cli_images.looks_like_image(Path(args.target)):
        image_verdict = _cli_images.verify_image_file(Path(args.target), args)
        _cli_images.print_image_verdict(image_verdict, args.json)
        return EXIT_OK if image_verdict.ok() else EXIT_INVALID
    verdict = _verify_target(
        args.target,
        trusted=_trusted(args.trust),
        checkpoints=_held_checkpoints(args.checkpoint),
        tsa_roots=[_read_bytes(p) for p in args.tsa_root],
        thorough=args.thorough,
    )
    _print_verdict(verdict, args.json)
    return EXIT_OK if verdict.ok() else EXIT_INVALID


# -- parser --------------------------------------------------------------------------


def add_trust_options(parser: argparse.ArgumentParser) -> None:
    """What an auditor pins: signer keys, checkpoints already held, TSA roots (verify and report)."""
    parser.add_argument("--trust", action="append", default=[], metavar="PUBLIC_KEY_FILE",
                        help="pin a signer's public key (PEM or OpenSSH); repeatable")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NOTE_FILE",
                        help="a checkpoint you hold: the journal must be consistent with it; repeatable")
    parser.add_argument("--tsa-root", action="append", default=[], metavar="CERT_FILE",
                        help="pin a time-stamping authority's root certificate; repeatable")
    parser.add_argument("--thorough", action="store_true", help="also check every entry's own signature")


def _add_key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", default=DEFAULT_KEY_NAME, metavar="NAME", help="signing key (default: %(default)s)")
    parser.add_argument(
        "--passphrase-env", metavar="VAR", help="read the key's passphrase from this environment variable"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="provenance",
        description="Record, sign, bind and verify how an AI-assisted image was made.",
        epilog="The key store and journal store live in $PROVENANCE_HOME (default: the user data directory).",
    )
    parser.add_argument("--version", action="version", version=f"provenance {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    sub = command("keygen", cmd_keygen, "create an Ed25519 signing key in the key store")
    sub.add_argument("--name", default=DEFAULT_KEY_NAME, help="key name (default: %(default)s)")
    sub.add_argument("--passphrase-env", metavar="VAR", help="encrypt the key with the passphrase in this variable")

    key = command("key", lambda a: _usage(key), "show or list keys")
    key_commands = key.add_subparsers(dest="key_command", metavar="ACTION", parser_class=_Parser)
    sub = key_commands.add_parser("show", help="print a key's id and public key (PEM) for auditors")
    sub.add_argument("--name", default=DEFAULT_KEY_NAME)
    sub.set_defaults(handler=cmd_key_show)
    sub = key_commands.add_parser("list", help="list the keys in the key store")
    sub.set_defaults(handler=cmd_key_list)

    sub = command("new", cmd_new, "start a new journal and print its id")
    sub.add_argument("--title")
    _add_key_options(sub)

    sub = command("append", cmd_append, "append a signed entry and print its hash")
    sub.add_argument("journal", metavar="JOURNAL")
    sub.add_argument("kind", metavar="KIND", help="entry kind, e.g. note or prompt.set")
    sub.add_argument("--data", metavar="JSON", help="entry body as a JSON object (or @FILE)")
    sub.add_argument("--actor", choices=[a.value for a in Actor], default=Actor.HUMAN.value)
    _add_key_options(sub)

    sub = command("seal", cmd_seal, "close a journal: nothing may be appended after a seal")
    sub.add_argument("journal", metavar="JOURNAL")
    sub.add_argument("--reason")
    _add_key_options(sub)

    command("list", cmd_list, "list the journals in the local store")

    sub = command("show", cmd_show, "print a journal's entries and its verdict")
    sub.add_argument("target", metavar="JOURNAL|FILE")
    sub.add_argument("--json", action="store_true")

    sub = command("export", cmd_export, "write a journal as a portable file")
    sub.add_argument("journal", metavar="JOURNAL")
    sub.add_argument("-o", "--output", required=True, metavar="FILE", help="output file, or - for stdout")
    sub.add_argument("--all-checkpoints", action="store_true", help="keep every checkpoint, not just the needed ones")
    sub.add_argument("--disclose", action="store_true",
                     help="include the texts recorded as private (salted commitments), revealing them")

    sub = command("import", cmd_import, "add a portable journal file to the local store (after verifying it)")
    sub.add_argument("file", metavar="FILE")

    sub = command("checkpoint", cmd_checkpoint, "print a journal's latest signed checkpoint (for auditors to hold)")
    sub.add_argument("journal", metavar="JOURNAL")

    sub = command("timestamp", cmd_timestamp, "get an RFC 3161 timestamp on a journal's latest checkpoint")
    sub.add_argument("journal", metavar="JOURNAL")
    sub.add_argument("--tsa", required=True, metavar="URL", help="the time-stamping authority's URL")
    sub.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")

    sub = command("verify", cmd_verify, "verify an image, a journal file or a stored journal")
    sub.add_argument("target", metavar="IMAGE|FILE|JOURNAL|DIR")
    add_trust_options(sub)
    sub.add_argument("--json", action="store_true", help="print a machine-readable verdict")
    _register_extensions(command, sub)
    return parser


def _register_extensions(
    command: Callable[[str, Handler, str], argparse.ArgumentParser], verify: argparse.ArgumentParser
) -> None:
    """Commands that live in other modules (images, recording, report) add themselves here."""
    from . import _cli_images

    _cli_images.image_verify_options(verify)
    _cli_images.register(command)
    from . import _cli_report

    _cli_report.add_directory_options(verify)
    _cli_report.register(command)
    _cli_images.register_matching(command)
    _cli_images.register_importers(command)
    sub = command("replay", cmd_replay, "re-run recorded generations on your pipeline and report what reproduces")
    sub.add_argument("journal", metavar="JOURNAL|FILE")
    sub.add_argument("--pipeline", required=True, metavar="MODULE:FACTORY",
                     help="a factory returning the pipeline (called with the mode if it takes an argument)")
    sub.add_argument("--json", action="store_true")

    sub = command("demo", cmd_demo, "run a complete recorded session offline, export it and verify it")
    sub.add_argument("directory", nargs="?", default="provenance-demo", metavar="DIR")
    sub.add_argument("--engine", choices=["auto", "diffusers", "procedural"], default="auto",
                     help="image source (default: the tiny diffusers pipeline when installed)")


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    use = None if args.engine == "auto" else args.engine == "diffusers"
    result = run_demo(args.directory, use_diffusers=use)
    return EXIT_OK if all(v.ok() for v in result["verdicts"].values()) else EXIT_INVALID


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay import load_factory, replay_file, replay_lines

    factory = load_factory(args.pipeline)
    if _is_file_target(args.journal):
        results = replay_file(args.journal, factory)
    else:
        with _open_store() as store:
            results = replay_lines(store.export_lines(store.resolve(args.journal)), factory)
    if args.json:
        sys.stdout.write(json.dumps([r.to_json() for r in results], indent=2) + "\n")
    else:
        for r in results:
            _out(f"generation {r.generation:>3} (entry {r.seq}, {r.mode}): {r.status.upper():<10} {r.reason}")
        counts = {s: sum(1 for r in results if r.status == s) for s in ("reproduced", "similar", "differs", "skipped")}
        _out(", ".join(f"{n} {s}" for s, n in counts.items()))
    return EXIT_OK if all(r.status in ("reproduced", "similar", "skipped") for r in results) else EXIT_INVALID


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # Pillow warns on stderr about files it reads anyway (a size past its own
    # bomb threshold, under ours; corrupt EXIF): the verdict or the one-line
    # error says what matters.
    warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
    from . import binding  # (loaded already, by the image commands' parser)

    binding.capture_native_diagnostics = True
    try:
        args = parser.parse_args(argv)
        handler: Handler | None = getattr(args, "handler", None)
        if handler is None:
            return _usage(parser)
        return handler(args)
    except VerificationError as exc:
        sys.stderr.write(f"provenance: not valid: {exc}\n")
        return EXIT_INVALID
    except Error as exc:
        sys.stderr.write(f"provenance: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("provenance: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except MemoryError:
        sys.stderr.write("provenance: error: out of memory\n")
        return EXIT_USAGE
    except Exception as exc:  # the promise is "never a traceback"; say what it was in one line
        sys.stderr.write(f"provenance: internal error: {type(exc).__name__}: {exc}\n")
        return EXIT_INTERNAL


