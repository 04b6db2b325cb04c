"""The journal verifier.  It trusts nothing it reads.

Verification streams the portable journal form line by line in constant
memory: it rebuilds the hash chain and the RFC 6962 tree as it goes and checks
each checkpoint's root and signatures when the entry that completes it has been
read.  An entry covered by a valid checkpoint signed by the entry's own signer
needs no separate signature check (the checkpoint signature already commits to
its exact bytes), which is what makes verification faster than one signature
check per entry; any other entry's own signature is checked.  ``thorough=True``
checks every entry signature as well.

Outcomes are *invalid* (tampered, broken, malformed, incomplete),
*untrusted* (everything verifies, but a signer is not among the pinned keys),
or *valid*.  With no pinned keys at all the verdict is "untrusted" with
``pinned=False``, which callers present as "valid, signer not pinned".
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import attrs

from . import merkle
from .errors import (
    BadSignatureError,
    BadTimestampError,
    BrokenChainError,
    ForkedJournalError,
    IncompleteJournalError,
    MalformedDataError,
    StoreError,
    TamperedEntryError,
    TruncatedJournalError,
    UnpinnedTimestampAuthorityError,
    UntrustedSignerError,
    UsageError,
    VerificationError,
)
from .journal import (
    CHECKPOINT_SPAN,
    ENTRY_PAYLOAD_TYPE,
    GENESIS_KIND,
    MAX_LINE,
    SEAL_KIND,
    BlobRecord,
    Checkpoint,
    Header,
    KeyRecord,
    Record,
    SignedEntry,
    TimestampRecord,
    origin_for,
    pae,
    parse_entry_line,
    parse_line,
)
from .keys import PublicKey

__all__ = [
    "StreamingVerifier",
    "TimestampCheck",
    "Verdict",
    "check_trust_inputs",
    "iter_file_lines",
    "verify_file",
    "verify_lines",
]

# Signed entries waiting for a checkpoint are kept in memory; past this many they
# are checked one by one so that memory stays bounded on any input.
_PENDING_LIMIT = CHECKPOINT_SPAN

EntryVisitor = Callable[[SignedEntry], None]
BlobVisitor = Callable[[BlobRecord], None]

_FAILURE_CODES: dict[type[VerificationError], str] = {
    MalformedDataError: "malformed",
    TamperedEntryError: "tampered",
    BadSignatureError: "bad-signature",
    BadTimestampError: "bad-timestamp",
    BrokenChainError: "broken-chain",
    TruncatedJournalError: "truncated",
    IncompleteJournalError: "incomplete",
    ForkedJournalError: "forked",
    UntrustedSignerError: "untrusted-signer",
}


def failure_code(error: VerificationError) -> str:
    for cls in type(error).__mro__:
        if cls in _FAILURE_CODES:
            return _FAILURE_CODES[cls]
    return "invalid"


@attrs.frozen
class TimestampCheck:
    """An RFC 3161 timestamp found on a checkpoint."""

    size: int
    time: _dt.datetime
    tsa: str
    verified: bool  # True only when its chain ends at a pinned TSA root
    note: str = ""  # why it is not verified (empty when it is)


@attrs.frozen
class Verdict:
    status: str  # "valid" | "untrusted" | "invalid"
    reason: str
    code: str  # "ok", "unpinned", "untrusted-signer", or a failure code
    journal: str | None = None
    entries: int = 0
    root: bytes | None = None
    sealed: bool = False
    signers: tuple[str, ...] = ()
    untrusted_signers: tuple[str, ...] = ()
    pinned: bool = False
    checkpoints: int = 0
    first_time: _dt.datetime | None = None
    last_time: _dt.datetime | None = None
    timestamps: tuple[TimestampCheck, ...] = ()
    failed_at: int | None = None

    @property
    def valid(self) -> bool:
        """Cryptographically sound (trusted or not)."""
        return self.status != "invalid"

    def ok(self) -> bool:
        """What `provenance verify` exits 0 on: valid, and trusted when keys were pinned."""
        return self.status == "valid" or (self.status == "untrusted" and not self.pinned)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "ok": self.ok(),
            "reason": self.reason,
            "code": self.code,
            "journal": self.journal,
            "entries": self.entries,
            "root": None if self.root is None else self.root.hex(),
            "sealed": self.sealed,
            "signers": [
                {"keyid": k, "pinned": self.pinned and k not in self.untrusted_signers} for k in self.signers
            ],
            "trust_anchors_given": self.pinned,
            "checkpoints_verified": self.checkpoints,
            "first_time": None if self.first_time is None else self.first_time.isoformat(),
            "last_time": None if self.last_time is None else self.last_time.isoformat(),
            "timestamps": [
                {"size": t.size, "time": t.time.isoformat(), "tsa": t.tsa, "verified": t.verified, "note": t.note}
                for t in self.timestamps
            ],
            "failed_at_entry": self.failed_at,
        }


def check_trust_inputs(held: Sequence[Checkpoint], tsa_roots: Sequence[bytes]) -> None:
    """Raise UsageError for what an auditor pinned that could never be used, before any verdict."""
    if tsa_roots:
        # Garbage given as a root must say so even when no timestamp needs it.
        from .timestamp import check_roots  # imported lazily: only auditors pinning a TSA need it

        check_roots(tsa_roots)
    if any(c.size < 1 for c in held):
        # It could never be compared (checks follow each entry) and would
        # make a sound journal look cut short.
        raise UsageError("a held checkpoint must cover at least one entry (this one covers none)")


class StreamingVerifier:
    """One streaming verification: `feed` each line, then `finish`.

    Both raise a `VerificationError` subclass at the first failure.
    """

    def __init__(
        self,
        trusted: Sequence[PublicKey] = (),
        held: Sequence[Checkpoint] = (),
        tsa_roots: Sequence[bytes] = (),
        thorough: bool = False,
        visitor: EntryVisitor | None = None,
        blob_visitor: BlobVisitor | None = None,
    ) -> None:
        check_trust_inputs(held, tsa_roots)
        self.blob_visitor = blob_visitor
        self.trusted = {k.keyid for k in trusted}
        self.held = sorted(held, key=lambda c: c.size)
        self.trusted_keys = {k.keyid: k for k in trusted}
        self.tsa_roots = tsa_roots
        self.thorough = thorough
        self.visitor = visitor
        self.header: Header | None = None
        self.keys: dict[str, PublicKey] = {}
        self.tree = merkle.CompactTree()
        self.prev: bytes | None = None
        # (seq, keyid, payload, signature): only what a later signature check needs.
        self.pending: list[tuple[int, str, bytes, bytes]] = []
        self.unsigned: dict[str, int] = {}
        self.sealed = False
        self.last_checkpoint: Checkpoint | None = None
        self.checkpoints = 0
        self.signers: dict[str, None] = {}
        self.first_time: _dt.datetime | None = None
        self.last_time: _dt.datetime | None = None
        self.timestamps: list[TimestampCheck] = []
        self.at: int | None = None
        self.line_no = 0

    # -- records -------------------------------------------------------------

    def feed(self, line: bytes) -> Record:
        self.line_no += 1
        if self.header is not None and line[-1:] == b"\n":
            # Entry lines, almost every line, matched at once in their one
            # canonical spelling (so the checks below hold by construction).
            try:
                signed = parse_entry_line(line, len(line) - 1)
            except MalformedDataError as exc:
                raise MalformedDataError(f"line {self.line_no}: {exc}") from None
            if signed is not None:
                self._entry(signed)
                return signed
        if not line.endswith(b"\n") or line[:1].isspace() or line[:-1].rstrip() != line[:-1]:
            raise MalformedDataError(f"line {self.line_no} is not one JSON object ending in a newline")
        try:
            record = parse_line(line[:-1])
        except MalformedDataError as exc:
            raise MalformedDataError(f"line {self.line_no}: {exc}") from None
        if record.to_line() != line[:-1]:
            # One spelling per record: nothing in a journal file can change unnoticed.
            raise MalformedDataError(f"line {self.line_no} is not in canonical form (RFC 8785)")
        if self.header is None:
            if not isinstance(record, Header):
                raise MalformedDataError("the file does not start with a journal header")
            self.header = record
            return record
        self._dispatch(record)
        return record

    def _dispatch(self, record: Record) -> None:
        if isinstance(record, SignedEntry):
            self._entry(record)
        elif isinstance(record, Checkpoint):
            self._checkpoint(record)
        elif isinstance(record, KeyRecord):
            if record.public.keyid in self.keys:
                raise MalformedDataError(f"key {record.public.keyid} is listed twice")
            self.keys[record.public.keyid] = record.public
        elif isinstance(record, TimestampRecord):
            self._timestamp(record)
        elif isinstance(record, BlobRecord):
            if self.blob_visitor is not None:
                self.blob_visitor(record)
        else:
            raise MalformedDataError("a second journal header")

    def _entry(self, signed: SignedEntry) -> None:
        assert self.header is not None
        entry, seq = signed.entry, self.tree.size
        self.at = entry.seq
        if entry.journal != self.header.journal:
            raise BrokenChainError(f"entry {entry.seq} belongs to another journal (spliced in)")
        if entry.seq != seq:
            what = "repeated or out of order" if entry.seq < seq else "missing before it"
            raise BrokenChainError(f"expected entry {seq} but found entry {entry.seq} (entries {what})")
        if entry.prev != self.prev:
            raise BrokenChainError(f"entry {seq} does not follow entry {seq - 1} (hash chain broken)")
        if self.sealed:
            raise IncompleteJournalError(f"entry {seq} follows the seal that closed the journal")
        if (seq == 0) != (entry.kind == GENESIS_KIND):
            raise MalformedDataError(f"entry {seq}: {GENESIS_KIND} must be the first entry and only it")
        public = self.keys.get(signed.keyid)
        if public is None:
            raise MalformedDataError(f"entry {seq} is signed by key {signed.keyid}, which the journal does not list")
        if signed.signature is None:
            # Batched entries rely on their signer's checkpoint; remember the
            # first one per signer still waiting for it (bounded by the signers).
            self.unsigned.setdefault(signed.keyid, seq)
        elif self.thorough and not signed.signature_valid(public):
            raise BadSignatureError(f"entry {seq}: signature does not verify (entry tampered)")
        self.tree.append(signed.leaf_hash)
        self.prev = signed.hash
        self.sealed = entry.kind == SEAL_KIND
        self.signers.setdefault(signed.keyid)
        self.first_time = self.first_time or entry.time
        self.last_time = entry.time
        if not self.thorough and signed.signature is not None:
            self.pending.append((seq, signed.keyid, signed.payload, signed.signature))
            if len(self.pending) > _PENDING_LIMIT:
                self._check_pending(frozenset())
        self._check_held()
        if self.visitor is not None:
            self.visitor(signed)

    def _check_pending(self, covered_by: frozenset[str]) -> None:
        for seq, keyid, payload, signature in self.pending:
            if keyid in covered_by:
                continue
            if not self.keys[keyid].verify(signature, pae(ENTRY_PAYLOAD_TYPE, payload)):
                self.at = seq
                raise BadSignatureError(f"entry {seq}: signature does not verify (entry tampered)")
        self.pending.clear()

    def _check_unsigned(self, covered_by: frozenset[str]) -> None:
        for keyid, first in self.unsigned.items():
            if keyid not in covered_by:
                self.at = first
                raise BadSignatureError(
                    f"entry {first} carries no signature of its own and no checkpoint of its signer covers it"
                )
        self.unsigned.clear()

    def _checkpoint(self, checkpoint: Checkpoint) -> None:
        assert self.header is not None
        size = self.tree.size
        if checkpoint.origin != origin_for(self.header.journal):
            raise BrokenChainError("a checkpoint of another journal is spliced in")
        if checkpoint.size > size:
            self.at = size
            raise TruncatedJournalError(
                f"a checkpoint covers {checkpoint.size} entries but only {size} precede it "
                f"(entries removed)"
            )
        if checkpoint.size < size or checkpoint.size == 0:
            raise MalformedDataError(f"checkpoint for size {checkpoint.size} is out of place")
        if self.last_checkpoint is not None and self.last_checkpoint.size == size:
            raise MalformedDataError(f"a second checkpoint for size {size}")
        if checkpoint.root != self.tree.root():
            # Locate the culprit if an entry's own signature fails; else the
            # entries were swapped for validly signed ones, or the root altered.
            self._check_pending(frozenset())
            raise TamperedEntryError(
                f"checkpoint at size {size} does not match the entries (entries altered or replaced)"
            )
        signers = self._checkpoint_signers(checkpoint)
        self._check_pending(frozenset(signers))
        self._check_unsigned(frozenset(signers))
        self.signers.update(dict.fromkeys(signers))
        self.last_checkpoint = checkpoint
        self.checkpoints += 1

    def _checkpoint_signers(self, checkpoint: Checkpoint) -> list[str]:
        if not checkpoint.signatures:
            raise BadSignatureError(f"checkpoint at size {checkpoint.size} is not signed")
        for name, _, _ in checkpoint.signatures:
            if name not in self.keys:
                raise MalformedDataError(f"checkpoint at size {checkpoint.size} is signed by an unlisted key")
        good = checkpoint.signers(self.keys)
        if len(good) != len(checkpoint.signatures):
            raise BadSignatureError(f"checkpoint at size {checkpoint.size}: signature does not verify")
        return good

    def _check_held(self) -> None:
        """Compare against checkpoints the auditor already holds."""
        while self.held and self.held[0].size == self.tree.size:
            held = self.held.pop(0)
            if held.root != self.tree.root():
                raise ForkedJournalError(
                    f"the checkpoint you hold for size {held.size} disagrees with this journal "
                    "(forked or rewritten)"
                )

    def _timestamp(self, record: TimestampRecord) -> None:
        checkpoint = self.last_checkpoint
        if checkpoint is None or checkpoint.size != record.size or checkpoint.size != self.tree.size:
            raise MalformedDataError(f"timestamp for size {record.size} does not follow its checkpoint")
        from . import timestamp  # imported lazily: only journals with timestamps need it

        signed = checkpoint.note().encode()
        # A token must cover its checkpoint and, when it chains to a pinned
        # root, carry a sound signature: else the journal file was altered.
        # No journal signer vouches for a token, so one whose TSA the auditor
        # did not pin is reported as that TSA's unchecked claim, not a defect.
        if self.tsa_roots:
            try:
                info = timestamp.verify_timestamp(record.token, signed, roots=self.tsa_roots)
                note = ""
            except UnpinnedTimestampAuthorityError as exc:
                info = timestamp.read_timestamp_covering(record.token, signed)
                note = f"{exc}; its signature is not checked"
            except UntrustedSignerError as exc:  # chains to a pinned root, but not a valid TSA for it
                raise BadTimestampError(f"timestamp on checkpoint {record.size}: {exc}") from None
        else:
            info = timestamp.read_timestamp_covering(record.token, signed)
            note = "no TSA root pinned; its signature is not checked"
        self.timestamps.append(TimestampCheck(record.size, info.time, info.tsa, not note, note))

    # -- end -----------------------------------------------------------------

    def finish(self) -> Verdict:
        if self.header is None:
            raise MalformedDataError("empty file: no journal header")
        size = self.tree.size
        if size == 0:
            raise MalformedDataError("the journal has no entries")
        if self.held:
            held = self.held[-1]
            self.at = size
            raise TruncatedJournalError(
                f"journal has {size} entries but a checkpoint you hold covers {held.size} (cut short)"
            )
        if self.last_checkpoint is None or self.last_checkpoint.size != size:
            first = 0 if self.last_checkpoint is None else self.last_checkpoint.size
            self.at = first
            raise IncompleteJournalError(
                f"entries {first}..{size - 1} are not covered by a signed checkpoint (cut short or unfinished)"
            )
        signers = tuple(self.signers)
        unused = set(self.keys) - set(signers)
        if unused:
            raise MalformedDataError(f"key {sorted(unused)[0]} is listed but signs nothing")
        untrusted = tuple(k for k in signers if k not in self.trusted)
        common: dict[str, Any] = {
            "journal": self.header.journal,
            "entries": size,
            "root": self.tree.root(),
            "sealed": self.sealed,
            "signers": signers,
            "untrusted_signers": untrusted if self.trusted else signers,
            "pinned": bool(self.trusted),
            "checkpoints": self.checkpoints,
            "first_time": self.first_time,
            "last_time": self.last_time,
            "timestamps": tuple(self.timestamps),
        }
        if not self.trusted:
            return Verdict(
                "untrusted",
                f"valid: {size} entries, signed by {', '.join(signers)} (no key pinned)",
                "unpinned",
                **common,
            )
        if untrusted:
            return Verdict(
                "untrusted",
                f"signatures valid but signer {untrusted[0]} is not a pinned key",
                "untrusted-signer",
                **common,
            )
        return Verdict("valid", f"valid: {size} entries, every signer pinned", "ok", **common)


def verify_lines(
    lines: Iterable[bytes],
    *,
    trusted: Sequence[PublicKey] = (),
    checkpoints: Sequence[Checkpoint] = (),
    tsa_roots: Sequence[bytes] = (),
    thorough: bool = False,
    visitor: EntryVisitor | None = None,
    blob_visitor: BlobVisitor | None = None,
) -> Verdict:
    """Verify a journal given as its lines (each ending in a newline).

    `visitor` sees each entry as it is read (before the checkpoint covering it
    has been checked: act on what it saw only if the verdict is valid), and
    `blob_visitor` each optional blob.
    """
    stream = StreamingVerifier(trusted, checkpoints, tsa_roots, thorough, visitor, blob_visitor)
    try:
        for line in lines:
            stream.feed(line)
        return stream.finish()
    except VerificationError as exc:
        return Verdict(
            "invalid",
            str(exc),
            failure_code(exc),
            journal=None if stream.header is None else stream.header.journal,
            entries=stream.tree.size,
            failed_at=stream.at,
        )


def iter_file_lines(handle: BinaryIO) -> Iterator[bytes]:
    """Lines of a journal file, each bounded so that a hostile file cannot exhaust memory."""
    while True:
        line = handle.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE:
            raise MalformedDataError(f"a line is longer than {MAX_LINE} bytes")
        yield line


def verify_file(path: str | Path, **options: Any) -> Verdict:
    """Verify a portable journal file (JSON Lines)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, after the generator is done
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        return verify_lines(_guarded(handle), **options)


def _guarded(handle: BinaryIO) -> Iterator[bytes]:
    try:
        yield from iter_file_lines(handle)
    except OSError as exc:
        raise MalformedDataError(f"read error: {exc.strerror or exc}") from None
