"""Known-answer test vectors for the journal format (format version 1).

Everything here is fixed -- key seed, journal id, times -- and Ed25519 is
deterministic, so the output is the same byte for byte on every machine.
`python tests/vectors/make_vectors.py --write` regenerates the files; the tests
check that the code still produces exactly what is stored, and that
docs/format.md publishes the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "src"))

from provenance import merkle  # noqa: E402
from provenance._encoding import canonical_json, encode_value  # noqa: E402
from provenance.journal import (  # noqa: E402
    ENTRY_PAYLOAD_TYPE,
    Checkpoint,
    Entry,
    Header,
    KeyRecord,
    SignedEntry,
    origin_for,
    pae,
)
from provenance.keys import SigningKey  # noqa: E402

KEY_SEED = bytes(range(1, 33))
JOURNAL_ID = "0123456789abcdef0123456789abcdef"
START = dt.datetime(2026, 11, 22, 9, 30, 0, tzinfo=dt.UTC)

BODIES: list[tuple[str, str, dict[str, object]]] = [
    ("journal.create", "human", {"title": "harbour at dusk", "tool": {"name": "provenance", "version": "0.1.0"}}),
    ("prompt.set", "human", {"revision": 1, "prompt": "a harbour at dusk, oil painting",
                             "negative_prompt": "blurry", "changed": ["prompt", "negative_prompt"]}),
    ("params.set", "human", {"changes": {"guidance": {"from": None, "to": 7.5},
                                         "seed": {"from": None, "to": 18446744073709551557}},
                             "values": {"guidance": 7.5, "seed": 18446744073709551557}}),
    ("seal", "human", {"entries": 4, "reason": None}),
]


def build() -> dict[str, bytes]:
    key = SigningKey.from_seed(KEY_SEED)
    lines = [Header(JOURNAL_ID).to_line(), KeyRecord(key.public).to_line()]
    tree = merkle.CompactTree()
    prev = None
    notes = []
    for seq, (kind, actor, body) in enumerate(BODIES):
        entry = Entry(JOURNAL_ID, seq, prev, START + dt.timedelta(seconds=seq), actor, kind, body, key.keyid)
        signed = SignedEntry.sign(entry, key)
        tree.append(signed.leaf_hash)
        prev = signed.hash
        checkpoint = Checkpoint(origin_for(JOURNAL_ID), tree.size, tree.root(),
                                START + dt.timedelta(seconds=seq, milliseconds=1)).sign(key)
        lines += [signed.to_line(), checkpoint.to_line()]
        notes.append(checkpoint.note())
    first_payload = json.loads(lines[2])["payload"]
    values = {"guidance": 7.5, "steps": 30, "seed": 18446744073709551557, "ratio": 1.0, "$weird": b"\x00\xff"}
    return {
        "journal-v1.jsonl": b"".join(line + b"\n" for line in lines),
        "checkpoint-v1.txt": notes[-1].encode(),
        "public-key.pem": key.public.to_pem().encode(),
        "encoding-v1.json": canonical_json(encode_value(values)) + b"\n",
        "pae-v1.txt": pae(ENTRY_PAYLOAD_TYPE, b"{}") + b"\n",
        "summary.json": json.dumps(
            {
                "key_seed_hex": KEY_SEED.hex(),
                "keyid": key.keyid,
                "journal": JOURNAL_ID,
                "entries": len(BODIES),
                "root_hex": tree.root().hex(),
                "first_entry_sha256": hashlib.sha256(
                    __import__("base64").b64decode(first_payload)).hexdigest(),
            },
            indent=2,
        ).encode() + b"\n",
    }


DOC = HERE.parents[1] / "docs" / "format.md"
DOC_SECTION = "## 9. Test vectors"


def doc_section(files: dict[str, bytes]) -> str:
    """The test-vector section of docs/format.md, made from the files themselves."""

    def block(name: str, lang: str = "") -> str:
        return f"```{lang}\n{files[name].decode()}```\n"

    return (
        f"{DOC_SECTION}\n\n"
        "Key seed `0102…1f20` (32 bytes 0x01…0x20), journal id `0123456789abcdef0123456789abcdef`,\n"
        "times from 2026-11-22T09:30:00Z. Regenerate with `python tests/vectors/make_vectors.py --write`\n"
        "(which also rewrites this section).\n\n"
        "`tests/vectors/summary.json`:\n\n" + block("summary.json", "json") + "\n"
        "`tests/vectors/public-key.pem`:\n\n" + block("public-key.pem") + "\n"
        "`tests/vectors/encoding-v1.json` — the values `{\"guidance\": 7.5, \"steps\": 30, "
        "\"seed\": 18446744073709551557, \"ratio\": 1.0, \"$weird\": b\"\\x00\\xff\"}`:\n\n"
        + block("encoding-v1.json", "json") + "\n"
        "`tests/vectors/pae-v1.txt` — DSSE PAE of the payload `{}`:\n\n" + block("pae-v1.txt") + "\n"
        "`tests/vectors/checkpoint-v1.txt` — the checkpoint after the fourth entry:\n\n"
        + block("checkpoint-v1.txt") + "\n"
        "`tests/vectors/journal-v1.jsonl` — the whole journal (a checkpoint after each entry):\n\n"
        + block("journal-v1.jsonl")
    )


if __name__ == "__main__":
    files = build()
    if "--write" in sys.argv:
        for name, data in files.items():
            (HERE / name).write_bytes(data)
        text = DOC.read_text(encoding="utf-8")
        DOC.write_text(text[: text.index(DOC_SECTION)] + doc_section(files), encoding="utf-8")
        print(f"wrote {len(files)} vector files to {HERE} and their section of {DOC}")
    else:
        for name, data in files.items():
            same = (HERE / name).is_file() and (HERE / name).read_bytes() == data
            print(f"{name}: {'matches' if same else 'DIFFERS'}")
