"""RFC 3161 timestamps on journal checkpoints, end to end with a real OpenSSL TSA."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from _tsa import LocalTSA
from provenance import SigningKey, Store, verify_file
from provenance._cli import main
from provenance._encoding import canonical_json
from provenance.errors import UsageError
from provenance.timestamp import request_timestamp


def _timestamped_journal(tmp_path: Path, tsa: LocalTSA) -> tuple[Path, int]:
    key = SigningKey.generate()
    with Store(tmp_path / "store.sqlite") as store:
        journal = store.create_journal(key, title="stamped")
        store.append(journal, "note", {"text": "before the stamp"}, key=key)
        checkpoint = store.checkpoint(journal)
        store.add_timestamp(journal, checkpoint.size, request_timestamp(checkpoint.note().encode(), tsa.url))
        store.append(journal, "note", {"text": "after the stamp"}, key=key)
        out = tmp_path / "journal.jsonl"
        store.export(journal, out)
    return out, checkpoint.size


def test_pinned_tsa_verifies_the_checkpoint_time(tmp_path: Path, local_tsa: LocalTSA) -> None:
    out, size = _timestamped_journal(tmp_path, local_tsa)
    verdict = verify_file(out, tsa_roots=[local_tsa.root_pem])
    assert verdict.valid
    (stamp,) = verdict.timestamps
    assert stamp.size == size and stamp.verified
    assert verdict.first_time is not None and abs((stamp.time - verdict.first_time).total_seconds()) < 60


def test_unpinned_tsa_is_reported_as_a_claim(tmp_path: Path, local_tsa: LocalTSA) -> None:
    out, _ = _timestamped_journal(tmp_path, local_tsa)
    verdict = verify_file(out)
    assert verdict.valid
    assert [t.verified for t in verdict.timestamps] == [False]
    assert "no TSA root pinned; its signature is not checked" in verdict.timestamps[0].note


def test_timestamp_moved_to_another_checkpoint_is_caught(tmp_path: Path, local_tsa: LocalTSA) -> None:
    out, _ = _timestamped_journal(tmp_path, local_tsa)
    lines = out.read_bytes().splitlines(keepends=True)
    stamp = next(i for i, line in enumerate(lines) if b'"type":"timestamp"' in line)
    moved = lines[:stamp] + lines[stamp + 1 :] + [lines[stamp]]
    # Re-labelled to the last checkpoint's size, it no longer covers that note.
    last_size = sum(1 for line in lines if b'"type":"entry"' in line)
    moved[-1] = moved[-1].replace(b'"size":2', b'"size":%d' % last_size)
    out.write_bytes(b"".join(moved))
    verdict = verify_file(out)
    assert not verdict.valid
    assert "does not cover" in verdict.reason


def test_tsa_certificate_not_valid_at_the_token_time_under_a_pinned_root_is_invalid(tmp_path: Path) -> None:
    # It chains to the root the auditor pinned, so it is judged, not set aside as a claim.
    with LocalTSA() as tsa:
        tsa.sign_with_an_expired_certificate()
        out, _ = _timestamped_journal(tmp_path, tsa)
        verdict = verify_file(out, tsa_roots=[tsa.root_pem])
    assert not verdict.valid and verdict.code == "bad-timestamp"
    assert "not valid at the time-stamp's time" in verdict.reason


def test_garbage_tsa_root_is_refused_even_without_timestamps(tmp_path: Path) -> None:
    key = SigningKey.generate()
    with Store(tmp_path / "store.sqlite") as store:
        journal = store.create_journal(key, title="no stamps")
        out = tmp_path / "journal.jsonl"
        store.export(journal, out)
    with pytest.raises(UsageError, match="cannot be parsed"):
        verify_file(out, tsa_roots=[b"not a certificate"])
    assert verify_file(out).valid


def test_tsa_outside_the_pinned_roots_is_an_unverified_claim(tmp_path: Path, local_tsa: LocalTSA) -> None:
    # No journal signer vouches for a timestamp line: a token the auditor cannot
    # check is reported as a claim, never as a trusted time, and breaks nothing.
    out, _ = _timestamped_journal(tmp_path, local_tsa)
    with LocalTSA() as other:
        verdict = verify_file(out, tsa_roots=[other.root_pem])
    assert verdict.valid and verdict.code == "unpinned"
    (stamp,) = verdict.timestamps
    assert not stamp.verified and "untrusted TSA" in stamp.note
    assert verdict.to_json()["timestamps"][0]["note"] == stamp.note


def test_broken_signature_under_a_pinned_root_makes_the_journal_invalid(tmp_path: Path, local_tsa: LocalTSA) -> None:
    out, _ = _timestamped_journal(tmp_path, local_tsa)
    lines = out.read_bytes().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if b'"type":"timestamp"' in line)
    record = json.loads(lines[at])
    token = bytearray(base64.b64decode(record["token"]))
    token[-1] ^= 0x01  # the SignerInfo's signature is the token's last element
    record["token"] = base64.b64encode(bytes(token)).decode()
    lines[at] = canonical_json(record) + b"\n"
    out.write_bytes(b"".join(lines))
    verdict = verify_file(out, tsa_roots=[local_tsa.root_pem])
    assert not verdict.valid and verdict.code == "bad-signature"
    assert "timestamp signature does not verify" in verdict.reason
    # With no root to check it against, the same bytes are only an unverified claim.
    assert verify_file(out).valid


@pytest.mark.slow
def test_cli_timestamp_and_verify(
    tmp_path: Path, local_tsa: LocalTSA, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROVENANCE_HOME", str(tmp_path / "home"))
    assert main(["keygen"]) == 0
    assert main(["new", "--title", "t"]) == 0
    journal = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["timestamp", journal, "--tsa", local_tsa.url]) == 0
    root = tmp_path / "root.pem"
    root.write_bytes(local_tsa.root_pem)
    assert main(["verify", journal, "--tsa-root", str(root)]) == 0
    assert "verified against a pinned TSA" in capsys.readouterr().out
