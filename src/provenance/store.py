"""The embedded journal store: one SQLite database in the data directory.

Durability and concurrency come from SQLite itself: WAL mode with
``synchronous=FULL`` (an append that returned survives power loss or SIGKILL),
``BEGIN IMMEDIATE`` (appenders to one journal queue for the write lock, so the
sequence number and previous hash they read cannot go stale), and a primary key
on (journal, seq) so that a fork could not be written even by a buggy writer.

Every append transaction also signs a checkpoint at the new size, so every
entry in the store is covered by a signature the moment its append returns.
`append_many` writes a batch under one transaction, one fsync and one
checkpoint.
"""

from __future__ import annotations

import datetime as _dt
import os
import sqlite3
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import attrs

from . import __version__, merkle
from ._home import data_dir, ensure_private_dir
from ._io import write_atomic
from .errors import (
    ForkedJournalError,
    JournalNotFoundError,
    StoreError,
    UsageError,
    VerificationError,
)
from .journal import (
    CHECKPOINT_SPAN,
    DISCLOSURE_MEDIA_TYPE,
    GENESIS_KIND,
    SEAL_KIND,
    Actor,
    BlobRecord,
    Checkpoint,
    Header,
    KeyRecord,
    Record,
    SignedEntry,
    TimestampRecord,
    _check_kind,
    _new_entry,
    new_journal_id,
    origin_for,
    parse_line,
)
from .keys import PublicKey, SigningKey
from .verify import StreamingVerifier, Verdict, iter_file_lines, verify_lines

__all__ = ["JournalInfo", "NewEntry", "Store"]

STORE_FILE = "store.sqlite"
_SCHEMA_VERSION = "2"
_BUSY_TIMEOUT_MS = 60_000
_INDEX_BATCH = 1000  # perceptual hashes indexed per statement by a search
_UNSIGNED_LINE_END = b'"signatures":[],"type":"entry"}'

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journals (
    id TEXT PRIMARY KEY,
    title TEXT,
    created TEXT NOT NULL,
    size INTEGER NOT NULL,
    head BLOB NOT NULL,       -- hash of the last entry (cached, updated with each append)
    frontier BLOB NOT NULL,   -- RFC 6962 compact range at `size` (cached likewise)
    sealed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS entries (
    journal TEXT NOT NULL REFERENCES journals(id),
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    kind TEXT NOT NULL,
    keyid TEXT NOT NULL,
    line BLOB NOT NULL,       -- the exact exported line, as signed
    PRIMARY KEY (journal, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    journal TEXT NOT NULL REFERENCES journals(id),
    size INTEGER NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (journal, size)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timestamps (
    journal TEXT NOT NULL REFERENCES journals(id),
    size INTEGER NOT NULL,
    token BLOB NOT NULL,
    PRIMARY KEY (journal, size, token)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs (
    journal TEXT NOT NULL REFERENCES journals(id),
    sha256 TEXT NOT NULL,
    media_type TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (journal, sha256)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS phashes (
    id INTEGER PRIMARY KEY,   -- in recording order: appending touches only the table's last page
    journal TEXT NOT NULL,
    seq INTEGER NOT NULL,
    phash TEXT NOT NULL       -- a perceptual hash an entry records (provenance.phash string form)
);
CREATE TABLE IF NOT EXISTS phash_bands (
    band INTEGER NOT NULL,    -- one of provenance.phash.index_keys() of phashes(id)
    id INTEGER NOT NULL REFERENCES phashes(id),
    PRIMARY KEY (band, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS public_keys (keyid TEXT PRIMARY KEY, public_key BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS journal_keys (
    journal TEXT NOT NULL, keyid TEXT NOT NULL, PRIMARY KEY (journal, keyid)
) WITHOUT ROWID;
"""


@attrs.frozen
class NewEntry:
    """An entry to append: what happened, who did it, and optionally when."""

    kind: str
    body: Mapping[str, Any] = attrs.field(factory=dict)
    actor: Actor = attrs.field(default=Actor.TOOL, converter=Actor)
    time: _dt.datetime | None = None


@attrs.frozen
class JournalInfo:
    id: str
    title: str | None
    created: str
    size: int
    root: bytes
    head: bytes
    sealed: bool


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


class Store:
    """A SQLite journal store.  Safe to use from several processes at once."""

    def __init__(self, path: str | Path | None = None) -> None:
        if path is None:
            path = ensure_private_dir(data_dir()) / STORE_FILE
        self.path = Path(path)
        try:
            if not self.path.exists():
                # Journals may hold private prompts: owner-only from the start.
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            with self._write():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                if row is None:
                    self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
                elif row[0] == "1":
                    self._migrate_from_1()
                elif row[0] != _SCHEMA_VERSION:
                    raise StoreError(f"{self.path} has store schema {row[0]}; this version reads {_SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        except OSError as exc:
            raise StoreError(f"cannot open store {self.path}: {exc.strerror or exc}") from None

    def _migrate_from_1(self) -> None:
        """Schema 1 kept each perceptual hash once per index band, in the band's row:
        keep each once (its bands are rebuilt by the next search)."""
        self._db.execute(
            "INSERT INTO phashes (journal, seq, phash) "
            "SELECT DISTINCT journal, seq, phash FROM phash_index ORDER BY journal, seq, phash"
        )
        self._db.execute("DROP TABLE phash_index")
        self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (_SCHEMA_VERSION,))

    # -- plumbing ------------------------------------------------------------

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self) -> _Transaction:
        return _Transaction(self._db, self.path)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {exc}") from None

    # -- journals ------------------------------------------------------------

    def create_journal(
        self,
        key: SigningKey,
        *,
        title: str | None = None,
        body: Mapping[str, Any] | None = None,
        actor: Actor = Actor.HUMAN,
    ) -> str:
        """Start a new journal with its first (``journal.create``) entry; returns its id."""
        journal = new_journal_id()
        genesis_body = {"title": title, "tool": {"name": "provenance", "version": __version__}}
        genesis_body.update(body or {})
        with self._write():
            self._db.execute(
                "INSERT INTO journals (id, title, created, size, head, frontier) VALUES (?, ?, ?, 0, ?, ?)",
                (journal, title, _now().isoformat(), b"", b""),
            )
            self._append_locked(journal, [NewEntry(GENESIS_KIND, genesis_body, actor)], key, True)
        return journal

    def resolve(self, name: str) -> str:
        """A journal id from the id itself or a unique prefix of it (as git does)."""
        if not name or len(name) > 32 or any(c not in "0123456789abcdef" for c in name):
            raise JournalNotFoundError(f"no journal {name[:40]!r} in the store (ids are hex)")
        rows = self._query("SELECT id FROM journals WHERE id >= ? AND id < ? LIMIT 2", (name, name + "g"))
        if not rows:
            raise JournalNotFoundError(f"no journal {name!r} in the store {self.path}")
        if len(rows) > 1:
            raise UsageError(f"journal prefix {name!r} is ambiguous; give more digits")
        return str(rows[0][0])

    def info(self, journal: str) -> JournalInfo:
        rows = self._query(
            "SELECT id, title, created, size, frontier, head, sealed FROM journals WHERE id = ?", (journal,)
        )
        if not rows:
            raise JournalNotFoundError(f"no journal {journal!r} in the store {self.path}")
        jid, title, created, size, frontier, head, sealed = rows[0]
        return JournalInfo(jid, title, created, size, _tree(size, frontier).root(), head, bool(sealed))

    def journals(self) -> list[JournalInfo]:
        ids = self._query("SELECT id FROM journals ORDER BY created, id")
        return [self.info(row[0]) for row in ids]

    # -- appending -----------------------------------------------------------

    def append(
        self,
        journal: str,
        kind: str,
        body: Mapping[str, Any] | None = None,
        *,
        key: SigningKey,
        actor: Actor | str = Actor.TOOL,
        time: _dt.datetime | None = None,
        before_commit: Callable[[SignedEntry], None] | None = None,
    ) -> SignedEntry:
        """Append one signed entry (and a checkpoint covering it); durable on return.

        `before_commit` is called with the entry inside the transaction, before
        the commit (and its fsync): reads through this store already see the
        entry and its checkpoint.  If it raises, nothing is appended.
        """
        items = [NewEntry(kind, body or {}, Actor(actor), time)]
        with self._write():
            signed = self._append_locked(journal, items, key, True)[0]
            if before_commit is not None:
                before_commit(signed)
        return signed

    def append_many(
        self, journal: str, items: Sequence[NewEntry], *, key: SigningKey, sign_entries: bool = False
    ) -> list[SignedEntry]:
        """Append a batch under one transaction, one fsync and one checkpoint.

        The entries of a batch are covered by the checkpoint signed with them
        (and one more every `CHECKPOINT_SPAN` entries); they carry a signature
        of their own only if `sign_entries` is set.
        """
        if not items:
            return []
        with self._write():
            return self._append_locked(journal, items, key, sign_entries)

    def seal(self, journal: str, *, key: SigningKey, reason: str | None = None) -> SignedEntry:
        """Close the journal: nothing may follow a seal."""
        size = self.info(journal).size
        return self.append(
            journal, SEAL_KIND, {"entries": size + 1, "reason": reason}, key=key, actor=Actor.HUMAN
        )

    def _append_locked(
        self, journal: str, items: Sequence[NewEntry], key: SigningKey, sign_entries: bool
    ) -> list[SignedEntry]:
        row = self._db.execute(
            "SELECT size, head, frontier, sealed FROM journals WHERE id = ?", (journal,)
        ).fetchone()
        if row is None:
            raise JournalNotFoundError(f"no journal {journal!r} in the store {self.path}")
        size, head, frontier, sealed = row
        if sealed:
            raise UsageError(f"journal {journal} is sealed; start a new journal")
        tree = _tree(size, frontier)
        prev: bytes | None = head or None
        signed_entries: list[SignedEntry] = []
        rows = []
        notes: list[tuple[str, int, str]] = []
        for item in items:
            if item.kind == GENESIS_KIND and size + len(signed_entries) != 0:
                raise UsageError(f"{GENESIS_KIND} is reserved for the first entry")
            try:
                # journal, seq, prev and signer come from this store and key; only
                # what the caller gave is checked here (the body by its encoding).
                _check_kind(None, None, item.kind)
                entry = _new_entry(
                    journal, tree.size, prev, item.time or _now(), item.actor, item.kind, item.body, key.keyid
                )
                signed = SignedEntry.sign(entry, key, own_signature=sign_entries)
            except (ValueError, TypeError) as exc:
                raise UsageError(f"cannot append {item.kind!r}: {exc}") from None
            tree.append(signed.leaf_hash)
            prev = signed.hash
            signed_entries.append(signed)
            rows.append((journal, entry.seq, signed.hash, entry.kind, key.keyid, signed.to_line()))
            if item.kind == SEAL_KIND and item is not items[-1]:
                raise UsageError("nothing may follow a seal")
            if tree.size % CHECKPOINT_SPAN == 0 or item is items[-1]:
                checkpoint = Checkpoint(origin_for(journal), tree.size, tree.root(), _now()).sign(key)
                notes.append((journal, tree.size, checkpoint.note()))
        sealed_now = signed_entries[-1].entry.kind == SEAL_KIND
        self._db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?)", rows)
        self._db.executemany("INSERT INTO checkpoints VALUES (?, ?, ?)", notes)
        for signed in signed_entries:
            self._index_phashes(journal, signed)
        self._db.execute(
            "UPDATE journals SET size = ?, head = ?, frontier = ?, sealed = ? WHERE id = ?",
            (tree.size, prev, b"".join(tree.stack), int(sealed_now), journal),
        )
        self._remember_key(journal, key.public)
        return signed_entries

    def _index_phashes(self, journal: str, signed: SignedEntry) -> None:
        """Keep the perceptual hashes an entry records, so `find` need not scan every journal.

        Each is one row at the end of `phashes`; its index bands (up to 64
        rows scattered over the index, a page each to write at every commit)
        are added by the next search instead, in `_update_phash_bands`.
        """
        if b'"phash":' not in signed.payload:
            return  # most entries record no image: skip walking their bodies
        from .matching import collect_phashes

        values = dict.fromkeys(value for _, value in collect_phashes(signed.entry.body))
        self._db.executemany(
            "INSERT INTO phashes (journal, seq, phash) VALUES (?, ?, ?)",
            [(journal, signed.entry.seq, value) for value in values],
        )

    def _update_phash_bands(self) -> None:
        """Index the bands of every perceptual hash recorded since the last search.

        A batch at a time, each in its own short transaction (ids only grow and
        writers take turns, so the marker moves forward safely): a long backlog,
        such as a whole store migrated from schema 1, never holds the write lock
        for long nor needs memory beyond one batch.
        """
        from . import phash

        target = self._query("SELECT COALESCE(MAX(id), 0) FROM phashes")[0][0]
        while self._phash_bands_done() < target:  # up to date: no write lock taken
            with self._write():
                last = self._phash_bands_done()
                pending = self._db.execute(
                    "SELECT id, phash FROM phashes WHERE id > ? ORDER BY id LIMIT ?", (last, _INDEX_BATCH)
                ).fetchall()
                if not pending:
                    break
                rows: list[tuple[int, int]] = []
                for rowid, value in pending:
                    try:
                        keys = phash.index_keys(phash.PerceptualHash.from_str(value))
                    except ValueError:
                        continue  # not a hash this version reads: it cannot be found, only skipped
                    rows += [(band, rowid) for band in keys]
                self._db.executemany("INSERT OR IGNORE INTO phash_bands VALUES (?, ?)", rows)
                self._db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('phash_bands', ?)", (str(pending[-1][0]),)
                )

    def _phash_bands_done(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'phash_bands'").fetchone()
        return int(row[0]) if row is not None else 0

    def phash_candidates(self, bands: Sequence[int]) -> list[tuple[str, int, str]]:
        """Recorded images sharing an index band with a suspect: (journal, seq, phash)."""
        self._update_phash_bands()
        found: dict[tuple[str, int, str], None] = {}
        for band in dict.fromkeys(bands):
            for journal, seq, value in self._query(
                "SELECT phashes.journal, phashes.seq, phashes.phash FROM phash_bands "
                "JOIN phashes ON phashes.id = phash_bands.id WHERE phash_bands.band = ?",
                (band,),
            ):
                found[(journal, seq, value)] = None
        return list(found)

    def _remember_key(self, journal: str, public: PublicKey) -> None:
        self._db.execute("INSERT OR IGNORE INTO public_keys VALUES (?, ?)", (public.keyid, public.raw))
        self._db.execute("INSERT OR IGNORE INTO journal_keys VALUES (?, ?)", (journal, public.keyid))

    def add_timestamp(self, journal: str, size: int, token: bytes) -> None:
        """Keep an RFC 3161 token over the note of the checkpoint at `size`."""
        with self._write():
            if self._db.execute(
                "SELECT 1 FROM checkpoints WHERE journal = ? AND size = ?", (journal, size)
            ).fetchone() is None:
                raise UsageError(f"journal {journal} has no checkpoint at size {size}")
            self._db.execute("INSERT OR IGNORE INTO timestamps VALUES (?, ?, ?)", (journal, size, token))

    def put_blob(self, journal: str, data: bytes, media_type: str) -> str:
        """Keep optional content (a thumbnail, a mask) that entries name by hash."""
        blob = BlobRecord(media_type, data)
        with self._write():
            self._db.execute(
                "INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?)", (journal, blob.sha256, media_type, data)
            )
        return blob.sha256

    def blobs(self, journal: str, *, disclosures: bool = False) -> Iterator[BlobRecord]:
        """Optional blobs: thumbnails and masks, or (`disclosures`) the texts kept private."""
        operator = "=" if disclosures else "!="
        for media_type, data in self._cursor(
            f"SELECT media_type, data FROM blobs WHERE journal = ? AND media_type {operator} ? ORDER BY sha256",
            (journal, DISCLOSURE_MEDIA_TYPE),
        ):
            yield BlobRecord(media_type, bytes(data))

    # -- reading -------------------------------------------------------------

    def entries(self, journal: str, start: int = 0) -> Iterator[SignedEntry]:
        for line in self._cursor("SELECT line FROM entries WHERE journal = ? AND seq >= ? ORDER BY seq",
                                 (journal, start)):
            record = parse_line(line[0])
            assert isinstance(record, SignedEntry)
            yield record

    def leaf_hashes(self, journal: str, size: int | None = None) -> list[bytes]:
        """Leaf hashes of the first `size` entries (for inclusion and consistency proofs)."""
        limit = -1 if size is None else size
        return [
            merkle.leaf_hash(bytes(row[0]))
            for row in self._query(
                "SELECT line FROM entries WHERE journal = ? ORDER BY seq LIMIT ?", (journal, limit)
            )
        ]

    def checkpoint(self, journal: str, size: int | None = None) -> Checkpoint:
        """The stored checkpoint at `size` (default: the latest)."""
        if size is None:
            rows = self._query(
                "SELECT note FROM checkpoints WHERE journal = ? ORDER BY size DESC LIMIT 1", (journal,)
            )
        else:
            rows = self._query("SELECT note FROM checkpoints WHERE journal = ? AND size = ?", (journal, size))
        if not rows:
            raise JournalNotFoundError(f"journal {journal} has no checkpoint at size {size}")
        return Checkpoint.from_note(rows[0][0])

    def public_keys(self, journal: str) -> list[PublicKey]:
        rows = self._query(
            "SELECT p.public_key FROM journal_keys j JOIN public_keys p ON p.keyid = j.keyid "
            "WHERE j.journal = ? ORDER BY p.keyid",
            (journal,),
        )
        return [PublicKey(bytes(row[0])) for row in rows]

    def _cursor(self, sql: str, params: Sequence[Any]) -> Iterator[Any]:
        try:
            cursor = self._db.execute(sql, params)
            while rows := cursor.fetchmany(512):
                yield from rows
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {exc}") from None

    # -- export, import, verify ------------------------------------------------

    def export_lines(
        self, journal: str, *, all_checkpoints: bool = False, blobs: bool = True, disclose: bool = False
    ) -> Iterator[bytes]:
        """The portable journal, line by line (each ends in a newline).

        Optional blobs (thumbnails, masks) follow the entries unless `blobs` is off.
        Texts recorded as private (salted commitments) stay out unless `disclose`
        is set; then their disclosure blobs come right after the keys, so a
        reader knows them before the entries that name them.

        Unless `all_checkpoints` is set, only the checkpoints an auditor needs are
        written: the latest, those carrying a timestamp, and those closing an
        ``export`` or ``seal`` entry (image bindings refer to them).  Every entry
        stays covered; the others add nothing a verifier can use.
        """
        info = self.info(journal)
        yield Header(journal).to_line() + b"\n"
        for public in self.public_keys(journal):
            yield KeyRecord(public).to_line() + b"\n"
        if disclose:
            for blob in self.blobs(journal, disclosures=True):
                yield blob.to_line() + b"\n"
        timestamps: dict[int, list[bytes]] = {}
        for size, token in self._query(
            "SELECT size, token FROM timestamps WHERE journal = ? ORDER BY size, token", (journal,)
        ):
            timestamps.setdefault(size, []).append(bytes(token))
        kept = self._kept_checkpoints(journal, info.size, all_checkpoints, timestamps.keys())
        notes = iter(kept)
        next_note = next(notes, None)
        for seq, line in self._cursor("SELECT seq, line FROM entries WHERE journal = ? ORDER BY seq", (journal,)):
            yield bytes(line) + b"\n"
            while next_note is not None and next_note[0] == seq + 1:
                size, note = next_note
                yield Checkpoint.from_note(note).to_line() + b"\n"
                for token in timestamps.get(size, []):
                    yield TimestampRecord(size, token).to_line() + b"\n"
                next_note = next(notes, None)
        if blobs:
            for blob in self.blobs(journal):
                yield blob.to_line() + b"\n"

    def _kept_checkpoints(
        self, journal: str, size: int, everything: bool, stamped: Collection[int]
    ) -> Iterator[tuple[int, str]]:
        """Checkpoints to export, in order.

        Needed: the latest, those carrying a timestamp (their sizes: `stamped`),
        those closing an export or seal entry; and enough others that no run of
        entries longer than `CHECKPOINT_SPAN` goes without one (a verifier then
        never has to check entry signatures one by one).
        """
        rows = self._cursor(
            "SELECT c.size, c.note, (c.size = ? OR e.kind IN ('export', 'seal') "
            # the checkpoint closing a batch of entries without their own signature
            # (an entry line ends with its signatures, then the type)
            f"OR substr(e.line, -{len(_UNSIGNED_LINE_END)}) = ?) "
            "FROM checkpoints c JOIN entries e ON e.journal = c.journal AND e.seq = c.size - 1 "
            "WHERE c.journal = ? ORDER BY c.size",
            (size, _UNSIGNED_LINE_END, journal),
        )
        rows = ((checkpoint_size, note, needed or checkpoint_size in stamped) for checkpoint_size, note, needed in rows)
        last_kept = 0
        current = next(rows, None)
        while current is not None:
            following = next(rows, None)
            checkpoint_size, note, needed = current
            if everything or needed or following is None or following[0] - last_kept > CHECKPOINT_SPAN:
                last_kept = checkpoint_size
                yield checkpoint_size, note
            current = following

    def export(
        self,
        journal: str,
        out: str | Path | IO[bytes],
        *,
        all_checkpoints: bool = False,
        blobs: bool = True,
        disclose: bool = False,
    ) -> None:
        """Write the portable journal file (atomically when given a path)."""
        lines = self.export_lines(journal, all_checkpoints=all_checkpoints, blobs=blobs, disclose=disclose)
        if not isinstance(out, (str, Path)):
            for line in lines:
                out.write(line)
            return
        write_atomic(out, lines, StoreError)

    def verify(self, journal: str, **options: Any) -> Verdict:
        """Verify a stored journal exactly as its exported file would be verified."""
        return verify_lines(self.export_lines(journal, all_checkpoints=True, disclose=True), **options)

    def import_file(self, path: str | Path) -> str:
        """Add a verified portable journal to the store; returns its id.

        The file is read once: each record is verified and stored in the same
        pass, inside one transaction that commits only if the whole journal
        verifies.  A journal already here is extended if the file continues
        it, and refused if the two disagree (a fork).
        """
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by the with block below
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
        with handle, self._write():
            verifier = StreamingVerifier()
            importer: _Importer | None = None
            try:
                for line in iter_file_lines(handle):
                    record = verifier.feed(line)
                    if isinstance(record, Header):
                        importer = _Importer(self, record.journal, str(path))
                    elif importer is not None:
                        importer.add(record, line[:-1])
                verifier.finish()
            except OSError as exc:
                raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
            except VerificationError as exc:
                raise type(exc)(f"{path}: {exc}") from None
            assert importer is not None
            importer.close()
            return importer.journal


class _Importer:
    """Stores the records of one journal file as the verifier accepts them."""

    def __init__(self, store: Store, journal: str, label: str) -> None:
        self.store, self.db, self.journal, self.label = store, store._db, journal, label
        row = self.db.execute("SELECT size, frontier FROM journals WHERE id = ?", (journal,)).fetchone()
        if row is None:
            self.db.execute(
                "INSERT INTO journals (id, title, created, size, head, frontier) VALUES (?, ?, ?, 0, ?, ?)",
                (journal, None, _now().isoformat(), b"", b""),
            )
            self.size, self.tree = 0, merkle.CompactTree()
        else:
            self.size, self.tree = row[0], _tree(row[0], row[1])
        self.keys: dict[str, PublicKey] = {}
        self.head: bytes | None = None
        self.title: str | None = None
        self.sealed = False

    def add(self, record: Record, line: bytes) -> None:
        journal, db = self.journal, self.db
        if isinstance(record, KeyRecord):
            self.keys[record.public.keyid] = record.public
        elif isinstance(record, SignedEntry):
            seq = record.entry.seq
            if seq == 0:
                raw_title = record.entry.body.get("title")
                self.title = raw_title if isinstance(raw_title, str) else None
            if seq < self.size:
                stored = db.execute("SELECT hash FROM entries WHERE journal = ? AND seq = ?", (journal, seq)).fetchone()
                if stored is None or bytes(stored[0]) != record.hash:
                    raise ForkedJournalError(f"it disagrees with the stored journal {journal} at entry {seq} (a fork)")
            else:
                self.tree.append(record.leaf_hash)
                db.execute(
                    "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                    (journal, seq, record.hash, record.entry.kind, record.keyid, line),
                )
                self.store._remember_key(journal, self.keys[record.keyid])
                self.store._index_phashes(journal, record)
            self.head = record.hash
            self.sealed = record.entry.kind == SEAL_KIND
        elif isinstance(record, Checkpoint):
            db.execute("INSERT OR IGNORE INTO checkpoints VALUES (?, ?, ?)", (journal, record.size, record.note()))
            for name, _, _ in record.signatures:
                self.store._remember_key(journal, self.keys[name])
        elif isinstance(record, TimestampRecord):
            db.execute("INSERT OR IGNORE INTO timestamps VALUES (?, ?, ?)", (journal, record.size, record.token))
        elif isinstance(record, BlobRecord):
            db.execute(
                "INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?)",
                (journal, record.sha256, record.media_type, record.data),
            )

    def close(self) -> None:
        if self.tree.size > self.size:
            self.db.execute(
                "UPDATE journals SET size = ?, head = ?, frontier = ?, sealed = ?, "
                "title = COALESCE(title, ?) WHERE id = ?",
                (self.tree.size, self.head, b"".join(self.tree.stack), int(self.sealed), self.title, self.journal),
            )


def _tree(size: int, frontier: bytes) -> merkle.CompactTree:
    frontier = bytes(frontier)
    return merkle.CompactTree(size, [frontier[i : i + 32] for i in range(0, len(frontier), 32)])


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self._path = path

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot lock store {self._path}: {exc}") from None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return
            except sqlite3.Error as error:
                self._db.execute("ROLLBACK")
                raise StoreError(f"cannot commit to store {self._path}: {error}") from None
        self._db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"store {self._path}: {exc}") from None
