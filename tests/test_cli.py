"""The `provenance` command line: in-process through main(), and as a real process.

Exit codes: 0 success / valid, 1 the evidence does not hold, 2 usage, path,
store or key problems.  Whatever happens, the output never holds a traceback
and a failure is one line.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from _journal_fixtures import split_lines
from provenance._cli import main
from provenance._home import HOME_ENV
from provenance.keys import KeyStore, load_public_key
from provenance.store import Store

SRC = Path(__file__).resolve().parent.parent / "src"


@dataclass
class Result:
    code: int
    out: str
    err: str


class CLI:
    """Runs main() in-process with $PROVENANCE_HOME pointing at a temporary home."""

    def __init__(self, home: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.home = home
        self.capsys = capsys
        self.monkeypatch = monkeypatch
        monkeypatch.setenv(HOME_ENV, str(home))

    def __call__(self, *args: str) -> Result:
        self.capsys.readouterr()
        code = main(list(args))
        captured = self.capsys.readouterr()
        result = Result(code, captured.out.decode("utf-8"), captured.err.decode("utf-8"))
        assert "Traceback" not in result.out + result.err
        if code != 0:
            assert result.err.count("\n") <= 1 or (code == 2 and "usage" in result.err), result.err
        return result

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.code == 0, result.err
        return result.out

    def use_home(self, home: Path) -> None:
        self.home = home
        self.monkeypatch.setenv(HOME_ENV, str(home))


@pytest.fixture
def cli(tmp_path: Path, capsysbinary: Any, monkeypatch: pytest.MonkeyPatch) -> CLI:
    return CLI(tmp_path / "home", capsysbinary, monkeypatch)


@pytest.fixture
def journal(cli: CLI, tmp_path: Path) -> tuple[str, Path]:
    """A key, a journal with a few entries, and its exported file."""
    cli.ok("keygen")
    journal_id = cli.ok("new", "--title", "A cat").strip()
    cli.ok("append", journal_id, "prompt.set", "--data", '{"prompt": "a cat", "guidance": 7.5}', "--actor", "tool")
    cli.ok("append", journal_id, "generate", "--data", '{"seed": 18446744073709551615, "steps": 30}')
    cli.ok("append", journal_id, "note", "--data", '{"text": "ünïcode ✓"}')
    path = tmp_path / "journal.jsonl"
    cli.ok("export", journal_id, "-o", str(path))
    return journal_id, path


def one_line(text: str) -> str:
    assert text.endswith("\n") and text.count("\n") == 1, repr(text)
    return text[:-1]


# -- keys ------------------------------------------------------------------------------------------------------


def test_keygen_and_key_show(cli: CLI, tmp_path: Path) -> None:
    out = cli.ok("keygen")
    keyid = KeyStore(cli.home).public_key().keyid
    assert f"created key 'default': {keyid}" in out and "not encrypted" in out
    again = cli("keygen")
    assert again.code == 2 and "already exists" in one_line(again.err)
    shown = cli.ok("key", "show")
    assert shown.splitlines()[0] == f"key id: {keyid}"
    assert "-----BEGIN PUBLIC KEY-----" in shown
    assert load_public_key(shown.encode()).keyid == keyid
    assert cli.ok("key", "list") == f"default\t{keyid}\n"
    cli.ok("keygen", "--name", "second")
    assert len(cli.ok("key", "list").splitlines()) == 2
    missing = cli("key", "show", "--name", "nope")
    assert missing.code == 2 and "keygen" in missing.err


def test_commands_that_need_a_key_say_so(cli: CLI) -> None:
    result = cli("new", "--title", "x")
    assert result.code == 2 and "keygen" in one_line(result.err)


# -- journals ---------------------------------------------------------------------------------------------


def test_new_append_show(cli: CLI, journal: tuple[str, Path]) -> None:
    journal_id, _ = journal
    listed = cli.ok("list")
    assert journal_id in listed and "A cat" in listed and "4 entries" in listed
    text = cli.ok("show", journal_id)
    lines = text.splitlines()
    assert re.match(r"\s+0\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+human\s+journal\.create", lines[0])
    assert "tool" in lines[1] and "prompt.set" in lines[1]
    assert lines[-1].startswith("VALID (signer not pinned") or any(
        line.startswith("VALID") for line in lines
    )
    data = json.loads(cli.ok("show", journal_id, "--json"))
    assert data["verdict"]["status"] == "untrusted" and data["verdict"]["ok"] is True
    bodies = [e["body"] for e in data["entries"]]
    assert bodies[1] == {"prompt": "a cat", "guidance": {"$float": "7.5"}}
    assert bodies[2] == {"seed": {"$int": "18446744073709551615"}, "steps": 30}
    assert bodies[3] == {"text": "ünïcode ✓"}
    assert [e["actor"] for e in data["entries"]] == ["human", "tool", "human", "human"]
    # Exact values, as recorded.
    with Store(cli.home / "store.sqlite") as store:
        entries = list(store.entries(journal_id))
    assert entries[1].entry.body["guidance"] == 7.5 and isinstance(entries[1].entry.body["guidance"], float)
    assert entries[2].entry.body["seed"] == 2**64 - 1


def test_append_prints_the_entry_hash(cli: CLI, journal: tuple[str, Path]) -> None:
    journal_id, _ = journal
    out = one_line(cli.ok("append", journal_id[:6], "note", "--data", '{"x": 1.0}'))
    assert re.fullmatch(r"[0-9a-f]{64}", out)
    with Store(cli.home / "store.sqlite") as store:
        last = list(store.entries(journal_id))[-1]
    assert last.hash.hex() == out and last.entry.body == {"x": 1.0}
    assert isinstance(last.entry.body["x"], float)


def test_append_data_from_a_file(cli: CLI, journal: tuple[str, Path], tmp_path: Path) -> None:
    journal_id, _ = journal
    data = tmp_path / "data.json"
    data.write_text('{"from": "file", "n": 9007199254740993}')
    cli.ok("append", journal_id, "note", "--data", f"@{data}")
    with Store(cli.home / "store.sqlite") as store:
        assert list(store.entries(journal_id))[-1].entry.body == {"from": "file", "n": 9007199254740993}


@pytest.mark.parametrize(
    "args",
    [
        ["--data", "{not json"],
        ["--data", "[1, 2]"],
        ["--data", '"text"'],
        ["--data", "@/no/such/file.json"],
        ["--actor", "robot"],
    ],
)
def test_append_usage_errors(cli: CLI, journal: tuple[str, Path], args: list[str]) -> None:
    journal_id, _ = journal
    result = cli("append", journal_id, "note", *args)
    assert result.code == 2 and result.out == ""


def test_append_refusals(cli: CLI, journal: tuple[str, Path]) -> None:
    journal_id, _ = journal
    for args in (["0" * 32, "note"], ["zz", "note"], [journal_id, "Bad Kind"], [journal_id, "journal.create"]):
        result = cli("append", *args)
        assert result.code == 2, args
        one_line(result.err)
    cli.ok("seal", journal_id, "--reason", "done")
    sealed = cli("append", journal_id, "note")
    assert sealed.code == 2 and "sealed" in one_line(sealed.err)
    assert "sealed" in cli.ok("list")


# -- export, import, checkpoint, verify ----------------------------------------------------------------------------


def test_export_and_import(cli: CLI, journal: tuple[str, Path], tmp_path: Path) -> None:
    journal_id, path = journal
    full = tmp_path / "full.jsonl"
    assert "wrote journal" in cli.ok("export", journal_id, "-o", str(full), "--all-checkpoints")
    assert len(split_lines(full.read_bytes())) > len(split_lines(path.read_bytes()))
    cli.use_home(tmp_path / "other-home")
    out = one_line(cli.ok("import", str(path)))
    assert out == f"imported journal {journal_id} (4 entries)"
    assert journal_id in cli.ok("list")
    cli.ok("import", str(full))  # the same journal again: nothing new, no error
    assert cli("import", str(tmp_path / "missing.jsonl")).code == 2


def test_export_to_stdout(cli: CLI, journal: tuple[str, Path]) -> None:
    journal_id, path = journal
    assert cli.ok("export", journal_id, "-o", "-").encode() == path.read_bytes()


def test_verify_outcomes(cli: CLI, journal: tuple[str, Path], tmp_path: Path) -> None:
    journal_id, path = journal
    out = cli.ok("verify", str(path))
    assert out.startswith(f"VALID (signer not pinned; use --trust KEY.pem): journal {journal_id}, 4 entries")
    assert cli.ok("verify", journal_id[:8]).startswith("VALID")
    own = tmp_path / "own.pem"
    own.write_text(cli.ok("key", "show"))  # with its "key id:" line
    assert cli.ok("verify", str(path), "--trust", str(own)).startswith(f"VALID: journal {journal_id}")
    assert cli.ok("verify", str(path), "--trust", str(own), "--thorough").startswith("VALID:")
    # Another key pinned: exit 1.
    cli.ok("keygen", "--name", "other")
    other = tmp_path / "other.pem"
    other.write_text(cli.ok("key", "show", "--name", "other"))
    untrusted = cli("verify", str(path), "--trust", str(other))
    assert untrusted.code == 1 and one_line(untrusted.out).startswith("UNTRUSTED:")
    assert cli.ok("verify", str(path), "--trust", str(other), "--trust", str(own)).startswith("VALID:")
    # JSON.
    verdict = json.loads(cli.ok("verify", str(path), "--json", "--trust", str(own)))
    assert verdict["status"] == "valid" and verdict["ok"] is True and verdict["entries"] == 4
    assert verdict["journal"] == journal_id and verdict["signers"][0]["pinned"] is True
    failed = cli("verify", str(path), "--json", "--trust", str(other))
    assert failed.code == 1 and json.loads(failed.out)["code"] == "untrusted-signer"


def tampered_copy(path: Path, seq: int) -> bytes:
    """The file with entry `seq`'s body changed (its payload re-encoded, signature kept)."""
    lines = split_lines(path.read_bytes())
    index = [i for i, line in enumerate(lines) if line.startswith(b'{"payload"')][seq]
    record = json.loads(lines[index])
    payload = base64.b64decode(record["payload"]).replace(b"a cat", b"a dog")
    record["payload"] = base64.b64encode(payload).decode()
    lines[index] = json.dumps(record, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode() + b"\n"
    return b"".join(lines)


def test_verify_tampered_file(cli: CLI, journal: tuple[str, Path], tmp_path: Path) -> None:
    _, path = journal
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_bytes(tampered_copy(path, 1))
    result = cli("verify", str(tampered))
    assert result.code == 1
    line = one_line(result.out)
    assert line.startswith("NOT VALID: ") and re.search(r"\bentr(y|ies) [0-9]", line), line
    verdict = json.loads(cli("verify", str(tampered), "--json").out)
    assert verdict["status"] == "invalid" and verdict["ok"] is False and verdict["failed_at_entry"] in (1, 2)
    shown = cli("show", str(tampered))
    assert shown.code == 1 and "NOT VALID" in shown.out


def test_verify_against_a_held_checkpoint(cli: CLI, journal: tuple[str, Path], tmp_path: Path) -> None:
    journal_id, path = journal
    held = tmp_path / "held.note"
    held.write_text(cli.ok("checkpoint", journal_id))
    assert held.read_text().startswith(f"provenance/{journal_id}\n4\n")
    assert cli.ok("verify", str(path), "--checkpoint", str(held)).startswith("VALID")
    cli.ok("append", journal_id, "note", "--data", '{"later": true}')
    later = tmp_path / "later.note"
    later.write_text(cli.ok("checkpoint", journal_id))
    result = cli("verify", str(path), "--checkpoint", str(later))  # the old file, cut short
    assert result.code == 1 and one_line(result.out).startswith("NOT VALID")
    bad = tmp_path / "bad.note"
    bad.write_text("not a checkpoint\n")
    assert cli("verify", str(path), "--checkpoint", str(bad)).code == 2


def test_verify_usage_errors(cli: CLI, journal: tuple[str, Path], tmp_path: Path) -> None:
    _, path = journal
    missing = cli("verify", str(tmp_path / "missing.jsonl"))
    assert missing.code == 2 and "no such file" in one_line(missing.err)
    assert cli("verify", str(tmp_path / "no-such-dir") + "/").code == 2  # a missing directory
    garbage_key = tmp_path / "garbage.pem"
    garbage_key.write_bytes(b"not a key at all")
    bad_trust = cli("verify", str(path), "--trust", str(garbage_key))
    assert bad_trust.code == 2 and "--trust" in one_line(bad_trust.err)
    assert cli("verify", str(path), "--trust", str(tmp_path / "none.pem")).code == 2
    assert cli("verify", "0" * 32).code == 2  # not in the store
    assert cli("frobnicate").code == 2
    assert cli().code == 2
    assert cli("verify").code == 2
    assert cli("key").code == 2


# -- passphrases (the real scrypt cost: keep these few) ------------------------------------------------------------


def test_passphrase_protected_key(cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVENANCE_TEST_PW", "s3cret passphrase")
    out = cli.ok("keygen", "--name", "enc", "--passphrase-env", "PROVENANCE_TEST_PW")
    assert "passphrase-encrypted" in out
    assert KeyStore(cli.home).is_encrypted("enc")
    journal_id = one_line(cli.ok("new", "--key", "enc", "--passphrase-env", "PROVENANCE_TEST_PW"))
    entry_hash = one_line(cli.ok("append", journal_id, "note", "--data", '{"n": 1}', "--key", "enc",
                                 "--passphrase-env", "PROVENANCE_TEST_PW"))
    assert re.fullmatch(r"[0-9a-f]{64}", entry_hash)
    # No passphrase (standard input is not a terminal): one line, exit 2.
    result = cli("append", journal_id, "note", "--key", "enc")
    assert result.code == 2 and "passphrase" in one_line(result.err)
    monkeypatch.setenv("PROVENANCE_TEST_PW", "wrong")
    result = cli("append", journal_id, "note", "--key", "enc", "--passphrase-env", "PROVENANCE_TEST_PW")
    assert result.code == 2 and "wrong passphrase" in one_line(result.err)
    result = cli("append", journal_id, "note", "--key", "enc", "--passphrase-env", "PROVENANCE_UNSET_VARIABLE")
    assert result.code == 2 and "not set" in one_line(result.err)


# -- garbage in, one line out ----------------------------------------------------------------------------------------


def garbage_files(directory: Path) -> dict[str, Path]:
    rng = random.Random(7)
    files = {
        "random": bytes(rng.getrandbits(8) for _ in range(4096)),
        "empty": b"",
        "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f"
        b"\x15\xc4\x89\x00\x00\x00\nIDATx\x9cc\x00\x01\x00\x00\x05\x00\x01\r\n-\xb4\x00\x00\x00\x00IEND\xaeB`\x82",
        "json": b'{"type":"journal"}\n',
        "nul": b"\x00" * 1000,
        "deep": b"[" * 100_000 + b"\n",
    }
    paths = {}
    for name, content in files.items():
        paths[name] = directory / f"{name}.jsonl"
        paths[name].write_bytes(content)
    return paths


def test_garbage_files_in_process(cli: CLI, tmp_path: Path) -> None:
    cli.ok("keygen")
    for name, path in garbage_files(tmp_path).items():
        for command in ("verify", "show", "import"):
            result = cli(command, str(path))
            assert result.code == 1, (name, command, result)
            one_line((result.out or result.err).lstrip("\n"))
        assert json.loads(cli("verify", str(path), "--json").out)["status"] == "invalid"


# -- as a real process ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def process_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str]]:
    """A home with a key and a journal, and its exported file, made through the library."""
    home = tmp_path_factory.mktemp("proc-home")
    key = KeyStore(home).generate()
    with Store(home / "store.sqlite") as store:
        journal = store.create_journal(key, title="proc")
        store.append(journal, "note", {"g": 7.5}, key=key)
        path = home / "journal.jsonl"
        store.export(journal, path)
    yield home, path, journal


def spawn(home: Path, *args: str, stdin: bytes | None = None) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC)
    env[HOME_ENV] = str(home)
    return subprocess.Popen(
        [sys.executable, "-m", "provenance", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def test_real_processes(process_home: tuple[Path, Path, str], tmp_path: Path) -> None:
    home, path, journal = process_home
    tampered = tmp_path / "tampered.jsonl"
    data = path.read_bytes()
    lines = split_lines(data)
    record = json.loads(lines[-2])
    payload = base64.b64decode(record["payload"]).replace(b'"7.5"', b'"8.5"')
    record["payload"] = base64.b64encode(payload).decode()
    lines[-2] = json.dumps(record, separators=(",", ":"), sort_keys=True).encode() + b"\n"
    tampered.write_bytes(b"".join(lines))
    huge = tmp_path / "huge.jsonl"
    with open(huge, "wb") as handle:
        handle.write(b'{"type":"journal","x":"')
        handle.write(b"A" * (40 * 2**20))
        handle.write(b'"}\n')
    garbage = garbage_files(tmp_path)
    runs: dict[str, tuple[list[str], int]] = {
        "valid": (["verify", str(path)], 0),
        "valid-stored": (["verify", journal[:10]], 0),
        "show": (["show", str(path), "--json"], 0),
        "tampered": (["verify", str(tampered)], 1),
        "huge-line": (["verify", str(huge)], 1),
        "unknown-command": (["frobnicate"], 2),
        "missing": (["verify", str(tmp_path / "missing.jsonl")], 2),
        "import-png": (["import", str(garbage["png"])], 1),
        **{f"garbage-{name}": (["verify", str(garbage[name])], 1) for name in ("random", "empty", "png")},
    }
    # Start them all at once (interpreter start-up dominates), then collect.
    procs = {name: spawn(home, *args) for name, (args, _) in runs.items()}
    results = {}
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=120)
            results[name] = (proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for name, (code, out, err) in results.items():
        expected = runs[name][1]
        assert code == expected, (name, code, out, err)
        assert "Traceback" not in out and "Traceback" not in err, (name, err)
        if code == 1 and name != "show":
            one_line(out or err)
        if code == 2:
            assert err.count("\n") <= 1 or "usage" in err, (name, err)
    assert results["valid"][1].startswith("VALID")
    assert json.loads(results["show"][1])["verdict"]["entries"] == 2
    assert results["tampered"][1].startswith("NOT VALID:")
    assert "longer than" in results["huge-line"][1]
