"""The journal format: entries, their DSSE signatures, and signed checkpoints.

See ``docs/format.md`` for the normative description.  In short:

* an *entry* is canonical JSON (RFC 8785) of ``v, journal, seq, prev, time,
  actor, kind, body, signer``; its hash is SHA-256 over exactly those bytes,
  and ``prev`` holds the previous entry's hash, so entries form a chain;
* each entry is signed with Ed25519 over the DSSE pre-authentication encoding
  of those bytes under the payload type `ENTRY_PAYLOAD_TYPE`; the bytes are kept
  as signed (base64 in the envelope) and never re-serialised;
* the entries are the leaves of an RFC 6962 Merkle tree; a *checkpoint* is a
  C2SP signed note (origin, size, root, a ``time`` extension line) signed with
  the same Ed25519 keys, so one signature commits to a whole prefix;
* the portable file is JSON Lines: a header, the public keys, then entries in
  order with each checkpoint right after the entry that completes it, and RFC
  3161 timestamps right after the checkpoint they cover.
"""

from __future__ import annotations

import datetime as _dt
import enum
import functools
import hashlib
import re
import secrets
from collections.abc import Mapping
from typing import Any

import attrs

from . import merkle
from ._encoding import (
    MAX_SAFE_INTEGER,
    b64decode,
    b64encode,
    canonical_json,
    canonical_json_encoded,
    encode_value,
    format_time,
    loads_canonical,
    parse_time,
    strict_loads,
)
from .errors import MalformedDataError
from .keys import PublicKey, SigningKey

__all__ = [
    "CHECKPOINT_SPAN",
    "DISCLOSURE_MEDIA_TYPE",
    "ENTRY_PAYLOAD_TYPE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Actor",
    "BlobRecord",
    "Checkpoint",
    "Entry",
    "Header",
    "SignedEntry",
    "TimestampRecord",
    "disclosed_text",
    "disclosure_blob",
    "new_journal_id",
    "origin_for",
    "pae",
    "parse_entry_line",
    "parse_line",
]

FORMAT_NAME = "provenance-journal"
FORMAT_VERSION = 1
ENTRY_PAYLOAD_TYPE = "application/vnd.provenance.entry+json; version=1"
_PAYLOAD_TYPE_BYTES = ENTRY_PAYLOAD_TYPE.encode()
# A verifier holds entries waiting for a checkpoint in memory; the store writes a
# checkpoint at least this often, and export keeps one at least this often, so
# that an honest journal never makes it check more than it must.
CHECKPOINT_SPAN = 1024
MAX_LINE = 32 * 2**20  # one journal line (an entry with small thumbnails fits easily)

GENESIS_KIND = "journal.create"
SEAL_KIND = "seal"

_JOURNAL_ID_RE = re.compile(r"[0-9a-f]{32}")
_KEYID_RE = re.compile(r"[0-9a-f]{32}")
_KIND_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){0,7}")
_ENTRY_FIELDS = frozenset({"v", "journal", "seq", "prev", "time", "actor", "kind", "body", "signer"})


class Actor(enum.StrEnum):
    """Who performed a step: a person, the generating tool, or unattended automation."""

    HUMAN = "human"
    TOOL = "tool"
    AUTOMATION = "automation"


def new_journal_id() -> str:
    return secrets.token_hex(16)


def origin_for(journal_id: str) -> str:
    """The checkpoint origin line of a journal."""
    return f"provenance/{journal_id}"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what an entry signature covers."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def _check_journal_id(_inst: object, _attr: object, value: str) -> None:
    if not isinstance(value, str) or not _JOURNAL_ID_RE.fullmatch(value):
        raise ValueError("journal id must be 32 lowercase hex digits")


def _check_kind(_inst: object, _attr: object, value: str) -> None:
    if not isinstance(value, str) or not _KIND_RE.fullmatch(value) or len(value) > 64:
        raise ValueError(f"invalid entry kind {str(value)[:70]!r}")


def _check_keyid(_inst: object, _attr: object, value: str) -> None:
    if not isinstance(value, str) or not _KEYID_RE.fullmatch(value):
        raise ValueError("key id must be 32 lowercase hex digits")


def _check_hash(_inst: object, _attr: object, value: Any) -> None:
    if value is not None and (not isinstance(value, bytes) or len(value) != 32):
        raise ValueError("hashes are 32 bytes")


@attrs.frozen
class Entry:
    """One step of a journal, before signing."""

    journal: str = attrs.field(validator=_check_journal_id)
    seq: int = attrs.field(validator=[attrs.validators.instance_of(int), attrs.validators.ge(0)])
    prev: bytes | None = attrs.field(validator=_check_hash)
    time: _dt.datetime
    actor: Actor = attrs.field(converter=Actor)
    kind: str = attrs.field(validator=_check_kind)
    body: Mapping[str, Any]
    signer: str = attrs.field(validator=_check_keyid)

    def __attrs_post_init__(self) -> None:
        if (self.seq == 0) != (self.prev is None):
            raise ValueError("only the first entry has no previous hash")

    def to_payload(self) -> bytes:
        return canonical_json_encoded(
            {
                "v": FORMAT_VERSION,
                "journal": self.journal,
                "seq": self.seq,
                "prev": None if self.prev is None else self.prev.hex(),
                "time": format_time(self.time),
                "actor": self.actor.value,
                "kind": self.kind,
                "body": encode_value(dict(self.body)),
                "signer": self.signer,
            }
        )

    @classmethod
    def from_payload(cls, payload: bytes) -> Entry:
        """Parse and validate; raises MalformedDataError."""
        try:
            # One spelling per entry: the payload must be exactly its RFC 8785
            # form, with floats only as tags; the tags come back decoded.
            data = loads_canonical(payload)
            if type(data) is not dict or data.keys() != _ENTRY_FIELDS:
                raise ValueError("entry fields are not exactly " + ", ".join(sorted(_ENTRY_FIELDS)))
            if type(data["v"]) is not int or data["v"] != FORMAT_VERSION:
                raise ValueError(f"unsupported entry version {data['v']!r}")
            seq = data["seq"]
            if type(seq) is not int or seq > MAX_SAFE_INTEGER:
                # (a tagged `$int` decodes to an int too, but only past the safe range)
                raise ValueError("seq is not an integer")
            prev = data["prev"]
            if prev is not None and (type(prev) is not str or not _PREV_RE.fullmatch(prev)):
                raise ValueError("prev is not a SHA-256 hex digest")
            body = data["body"]
            if type(body) is not dict:
                raise ValueError("body is not an object")
            # The checks the attrs validators (and the converter of `actor`) make,
            # made here at once so that the entry can be built without them.
            journal, kind, signer = data["journal"], data["kind"], data["signer"]
            if type(journal) is not str or not _JOURNAL_ID_RE.fullmatch(journal):
                raise ValueError("journal id must be 32 lowercase hex digits")
            if seq < 0:
                raise ValueError(f"'seq' must be >= 0: {seq}")
            if type(kind) is not str or len(kind) > 64 or not _KIND_RE.fullmatch(kind):
                raise ValueError(f"invalid entry kind {str(kind)[:70]!r}")
            if type(signer) is not str or not _KEYID_RE.fullmatch(signer):
                raise ValueError("key id must be 32 lowercase hex digits")
            actor = _ACTORS.get(data["actor"]) if type(data["actor"]) is str else None
            if actor is None:
                raise ValueError(f"{str(data['actor'])[:40]!r} is not a valid Actor")
            if (seq == 0) != (prev is None):
                raise ValueError("only the first entry has no previous hash")
            entry = _new_entry(
                journal,
                seq,
                None if prev is None else bytes.fromhex(prev),
                parse_time(data["time"]),
                actor,
                kind,
                body,
                signer,
            )
        except (ValueError, TypeError, RecursionError) as exc:
            raise MalformedDataError(f"malformed entry: {exc}") from None
        return entry


_PREV_RE = re.compile(r"[0-9a-f]{64}")
_ACTORS = {actor.value: actor for actor in Actor}
_object_new = object.__new__
_sha256 = hashlib.sha256
_object_setattr = object.__setattr__


def _new_entry(
    journal: str,
    seq: int,
    prev: bytes | None,
    time: _dt.datetime,
    actor: Actor,
    kind: str,
    body: Mapping[str, Any],
    signer: str,
) -> Entry:
    """An `Entry` built without running its validators: only for fields already checked alike."""
    entry: Entry = _object_new(Entry)
    _object_setattr(entry, "journal", journal)
    _object_setattr(entry, "seq", seq)
    _object_setattr(entry, "prev", prev)
    _object_setattr(entry, "time", time)
    _object_setattr(entry, "actor", actor)
    _object_setattr(entry, "kind", kind)
    _object_setattr(entry, "body", body)
    _object_setattr(entry, "signer", signer)
    return entry


@attrs.frozen
class SignedEntry:
    """An entry as signed: the exact payload bytes, its signature, and the parse.

    `signature` is None for an entry appended in a batch: such an entry is
    covered only by the checkpoint its signer signed in the same transaction
    (verifiers require that checkpoint; see docs/format.md §5).
    """

    payload: bytes
    keyid: str
    signature: bytes | None
    entry: Entry = attrs.field(eq=False)

    @functools.cached_property
    def hash(self) -> bytes:
        return hashlib.sha256(self.payload).digest()

    @functools.cached_property
    def leaf_hash(self) -> bytes:
        # The tree commits to the whole envelope line, signature included, so a
        # checkpoint also fixes every signature byte (and whether there is one).
        return merkle.leaf_hash(self.to_line())

    @classmethod
    def sign(cls, entry: Entry, key: SigningKey, *, own_signature: bool = True) -> SignedEntry:
        """Sign `entry` (or, with `own_signature=False`, leave it to the batch's checkpoint)."""
        if entry.signer != key.keyid:
            raise ValueError("entry names another signer")
        payload = entry.to_payload()
        signature = key.sign(pae(ENTRY_PAYLOAD_TYPE, payload)) if own_signature else None
        return cls(payload, key.keyid, signature, entry)

    def signature_valid(self, key: PublicKey) -> bool:
        return (
            self.signature is not None
            and key.keyid == self.keyid
            and key.verify(self.signature, pae(ENTRY_PAYLOAD_TYPE, self.payload))
        )

    def to_line(self) -> bytes:
        return self._line

    @functools.cached_property
    def _line(self) -> bytes:
        # The envelope holds only base64, hex and fixed ASCII, so it is built from
        # a template: these are exactly the RFC 8785 bytes, without the cost.
        signatures = (
            b"[]"
            if self.signature is None
            else b'[{"keyid":"%s","sig":"%s"}]' % (self.keyid.encode(), b64encode(self.signature).encode())
        )
        return b'{"payload":"%s","payloadType":"%s","signatures":%s,"type":"entry"}' % (
            b64encode(self.payload).encode(),
            _PAYLOAD_TYPE_BYTES,
            signatures,
        )


def _note_key_hash(name: str, public: PublicKey) -> bytes:
    # C2SP signed-note key hash for Ed25519 (algorithm byte 0x01).
    return hashlib.sha256(name.encode() + b"\n\x01" + public.raw).digest()[:4]


@attrs.frozen
class Checkpoint:
    """A signed tree head in the C2SP tlog-checkpoint signed-note form."""

    origin: str
    size: int
    root: bytes = attrs.field(validator=_check_hash)
    time: _dt.datetime
    # (key name = key id, 4-byte key hash, 64-byte signature)
    signatures: tuple[tuple[str, bytes, bytes], ...] = ()

    def body(self) -> bytes:
        """The signed text: everything above the blank line."""
        return (
            f"{self.origin}\n{self.size}\n{b64encode(self.root)}\ntime {format_time(self.time)}\n"
        ).encode()

    def sign(self, key: SigningKey) -> Checkpoint:
        signature = (key.keyid, _note_key_hash(key.keyid, key.public), key.sign(self.body()))
        return attrs.evolve(self, signatures=(*self.signatures, signature))

    def note(self) -> str:
        lines = [
            f"\u2014 {name} {b64encode(key_hash + sig)}\n" for name, key_hash, sig in self.signatures
        ]
        return self.body().decode() + "\n" + "".join(lines)

    def signers(self, keys: Mapping[str, PublicKey]) -> list[str]:
        """Key ids among `keys` whose signature on this checkpoint verifies."""
        good: list[str] = []
        body = self.body()
        for name, key_hash, sig in self.signatures:
            public = keys.get(name)
            if public is not None and key_hash == _note_key_hash(name, public) and public.verify(sig, body):
                good.append(name)
        return good

    def to_line(self) -> bytes:
        return canonical_json({"type": "checkpoint", "note": self.note()})

    @classmethod
    def from_note(cls, note: str) -> Checkpoint:
        if not isinstance(note, str):
            raise MalformedDataError("malformed checkpoint: not text")
        try:
            text, sep, sig_block = note.partition("\n\n")
            if not sep or not sig_block.endswith("\n"):
                raise ValueError("no signature block")
            lines = text.split("\n")
            if len(lines) != 4:
                raise ValueError("expected origin, size, root and time lines")
            origin, size_text, root_text, time_line = lines
            if not re.fullmatch(r"0|[1-9][0-9]{0,15}", size_text):
                raise ValueError("bad tree size")
            if not time_line.startswith("time "):
                raise ValueError("missing time line")
            signatures = []
            for line in sig_block[:-1].split("\n"):
                match = re.fullmatch(r"\u2014 ([0-9a-f]{32}) ([A-Za-z0-9+/=]{1,200})", line)
                if match is None:
                    raise ValueError("malformed signature line")
                blob = b64decode(match.group(2))
                if len(blob) != 68:
                    raise ValueError("signature is not an Ed25519 note signature")
                signatures.append((match.group(1), blob[:4], blob[4:]))
            root = b64decode(root_text)
            checkpoint = cls(origin, int(size_text), root, parse_time(time_line[5:]), tuple(signatures))
            if checkpoint.body().decode() != text + "\n":
                raise ValueError("non-canonical checkpoint text")
        except (ValueError, TypeError) as exc:
            raise MalformedDataError(f"malformed checkpoint: {exc}") from None
        return checkpoint


@attrs.frozen
class Header:
    journal: str = attrs.field(validator=_check_journal_id)

    def to_line(self) -> bytes:
        return canonical_json(
            {
                "type": "journal",
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "journal": self.journal,
                "origin": origin_for(self.journal),
            }
        )


@attrs.frozen
class KeyRecord:
    public: PublicKey

    def to_line(self) -> bytes:
        return canonical_json(
            {
                "type": "key",
                "algorithm": "ed25519",
                "keyid": self.public.keyid,
                "public_key": b64encode(self.public.raw),
            }
        )


@attrs.frozen
class TimestampRecord:
    """An RFC 3161 token over the note of the checkpoint at `size`."""

    size: int
    token: bytes

    def to_line(self) -> bytes:
        return canonical_json({"type": "timestamp", "size": self.size, "token": b64encode(self.token)})


@attrs.frozen
class BlobRecord:
    """Optional content an entry refers to by SHA-256 (a thumbnail, a mask).

    Blobs are not signed themselves: the entry that names their hash is.  They
    can be left out of a journal file (for example when embedding it) without
    invalidating it.
    """

    media_type: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def to_line(self) -> bytes:
        return canonical_json(
            {"type": "blob", "sha256": self.sha256, "media_type": self.media_type, "data": b64encode(self.data)}
        )


# Selective disclosure: a private text is recorded as the SHA-256 of a blob of
# this media type holding DISCLOSURE_PREFIX, a 16-byte random salt and the
# UTF-8 text.  The entry (signed) names the hash; the blob, which reveals the
# text, is exported only when the author chooses to disclose it.
DISCLOSURE_MEDIA_TYPE = "application/vnd.provenance.disclosure"
DISCLOSURE_PREFIX = b"provenance-commitment-v1\x00"
_SALT_BYTES = 16


def disclosure_blob(text: str, salt: bytes) -> BlobRecord:
    if len(salt) != _SALT_BYTES:
        raise ValueError("a disclosure salt is 16 bytes")
    return BlobRecord(DISCLOSURE_MEDIA_TYPE, DISCLOSURE_PREFIX + salt + text.encode("utf-8"))


def disclosed_text(blob: BlobRecord) -> str | None:
    """The text a disclosure blob reveals (its hash is the commitment), or None if it is not one."""
    if blob.media_type != DISCLOSURE_MEDIA_TYPE or not blob.data.startswith(DISCLOSURE_PREFIX):
        return None
    body = blob.data[len(DISCLOSURE_PREFIX) + _SALT_BYTES :]
    if len(blob.data) < len(DISCLOSURE_PREFIX) + _SALT_BYTES:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


Record = Header | KeyRecord | SignedEntry | Checkpoint | TimestampRecord | BlobRecord


def _fields(data: dict[str, Any], required: set[str]) -> None:
    if set(data) != required:
        raise ValueError(f"{data.get('type')} record fields are not exactly {', '.join(sorted(required))}")


# An entry line has one canonical spelling (`SignedEntry.to_line`); matching it
# directly spares a JSON parse per entry, the verifier's hot path.
# The payload's characters are left to `b64decode`, which refuses any outside
# canonical base64 (so this costs no scan with a character class).
_ENTRY_LINE_RE = re.compile(
    rb'\{"payload":"([^"]*)","payloadType":"'
    + re.escape(_PAYLOAD_TYPE_BYTES)
    + rb'","signatures":(?:\[\]|\[\{"keyid":"([0-9a-f]{32})","sig":"([A-Za-z0-9+/]{86}==)"\}\]),"type":"entry"\}'
)


def _parse_entry_line(match: re.Match[bytes]) -> SignedEntry:
    payload = b64decode(match.group(1).decode("ascii"))
    keyid = match.group(2)
    signature = None if match.group(3) is None else b64decode(match.group(3).decode("ascii"))
    entry = Entry.from_payload(payload)
    if keyid is not None and keyid.decode("ascii") != entry.signer:
        raise ValueError("signature key id differs from the entry's signer")
    signed = SignedEntry(payload, entry.signer, signature, entry)
    # The line matched the template `to_line` fills, with canonical base64 (checked
    # by `b64decode`) and the signer's key id: it is exactly that line already.
    line = match.group(0)
    _object_setattr(signed, "_line", line)
    # Every verifier needs both hashes: set them now rather than through the
    # cached properties' lookup hook, which costs more than the hashing.
    _object_setattr(signed, "hash", _sha256(payload).digest())
    _object_setattr(signed, "leaf_hash", merkle.leaf_hash(line))
    return signed


def parse_entry_line(line: bytes, end: int) -> SignedEntry | None:
    """``line[:end]`` parsed as an entry line in its canonical form, or None if it is not one.

    The verifier's hot path: None sends the line to `parse_line`, which parses
    anything else (and says what is wrong with it).  Raises MalformedDataError
    for an entry line whose payload is malformed.
    """
    match = _ENTRY_LINE_RE.fullmatch(line, 0, end)
    if match is None:
        return None
    try:
        return _parse_entry_line(match)
    except MalformedDataError:
        raise
    except (ValueError, TypeError, RecursionError) as exc:
        raise MalformedDataError(str(exc)) from None


def parse_line(line: bytes) -> Record:
    """Parse one line of a portable journal file; raises MalformedDataError."""
    signed = parse_entry_line(line, len(line))
    if signed is not None:
        return signed
    try:
        data = strict_loads(line)
        if not isinstance(data, dict):
            raise ValueError("a line is not a JSON object")
        kind = data.get("type")
        if kind == "entry":
            _fields(data, {"type", "payloadType", "payload", "signatures"})
            if data["payloadType"] != ENTRY_PAYLOAD_TYPE:
                raise ValueError("unknown payload type")
            signatures = data["signatures"]
            if signatures == []:
                signature = None
            elif (
                not isinstance(signatures, list)
                or len(signatures) != 1
                or not isinstance(signatures[0], dict)
                or set(signatures[0]) != {"keyid", "sig"}
            ):
                raise ValueError("an entry carries one signature (or none, in a batch)")
            else:
                signature = b64decode(signatures[0]["sig"])
                if len(signature) != 64:
                    raise ValueError("signature is not 64 bytes")
            payload = b64decode(data["payload"])
            entry = Entry.from_payload(payload)
            if signature is not None and signatures[0]["keyid"] != entry.signer:
                raise ValueError("signature key id differs from the entry's signer")
            return SignedEntry(payload, entry.signer, signature, entry)
        if kind == "checkpoint":
            _fields(data, {"type", "note"})
            if not isinstance(data["note"], str):
                raise ValueError("note is not text")
            return Checkpoint.from_note(data["note"])
        if kind == "key":
            _fields(data, {"type", "algorithm", "keyid", "public_key"})
            if data["algorithm"] != "ed25519":
                raise ValueError("unsupported key algorithm")
            public = PublicKey(b64decode(data["public_key"]))
            if public.keyid != data["keyid"]:
                raise ValueError("key id does not match the public key")
            return KeyRecord(public)
        if kind == "timestamp":
            _fields(data, {"type", "size", "token"})
            size = data["size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                raise ValueError("bad timestamp size")
            return TimestampRecord(size, b64decode(data["token"]))
        if kind == "blob":
            _fields(data, {"type", "sha256", "media_type", "data"})
            media_type = data["media_type"]
            if not isinstance(media_type, str) or not re.fullmatch(r"[a-z]+/[a-z0-9.+-]{1,60}", media_type):
                raise ValueError("bad blob media type")
            blob = BlobRecord(media_type, b64decode(data["data"]))
            if blob.sha256 != data["sha256"]:
                raise ValueError("blob content does not match its hash")
            return blob
        if kind == "journal":
            _fields(data, {"type", "format", "version", "journal", "origin"})
            if data["format"] != FORMAT_NAME:
                raise ValueError("not a provenance journal")
            if data["version"] != FORMAT_VERSION:
                raise ValueError(f"unsupported journal version {data['version']!r}")
            header = Header(data["journal"])
            if data["origin"] != origin_for(header.journal):
                raise ValueError("origin does not match the journal id")
            return header
        raise ValueError(f"unknown record type {str(kind)[:40]!r}")
    except MalformedDataError:
        raise
    except (ValueError, TypeError, RecursionError) as exc:
        raise MalformedDataError(str(exc)) from None
