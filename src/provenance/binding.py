"""Bind journals to images: attach on export, verify an image against its journal.

Exporting an image appends an ``export`` entry that binds the file three ways,
then a signed checkpoint covers it:

* a *hard binding*: SHA-256 over the file with the provenance data itself left
  out (`provenance._formats.binding_hash`), so embedding the journal does not
  change it, but any other byte does;
* a *pixel hash* over the decoded pixels in a canonical form, which holds when
  only metadata changed;
* a *perceptual hash* for matching re-encoded or cropped copies (`provenance.match`).

The journal then travels inside the file (PNG iTXt, JPEG APP11, WebP chunk), in
a sidecar file beside it, or -- for very long journals -- in *compact* form: only
the export entry, the checkpoint covering it and its RFC 6962 inclusion proof,
with a pointer to the full journal.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from PIL import Image, UnidentifiedImageError

from . import _background, _formats, merkle
from ._encoding import b64decode, b64encode, canonical_json, strict_loads
from ._io import native_stderr_captured, write_atomic
from .errors import (
    BadSignatureError,
    BindingError,
    ImageFormatError,
    MalformedDataError,
    NoProvenanceError,
    UsageError,
    VerificationError,
)
from .images import ImageDigest, ImageSource, digest_loaded, load_image, read_image_file
from .journal import (
    FORMAT_NAME,
    FORMAT_VERSION,
    BlobRecord,
    Checkpoint,
    Header,
    KeyRecord,
    SignedEntry,
    origin_for,
    parse_line,
)
from .keys import PublicKey, SigningKey
from .store import Store
from .verify import BlobVisitor, EntryVisitor, Verdict, check_trust_inputs, failure_code, verify_lines

if TYPE_CHECKING:
    from .recorder import Session

__all__ = [
    "EXPORT_KIND",
    "SIDECAR_SUFFIX",
    "AttachResult",
    "ImageVerdict",
    "attach",
    "inspect_image",
    "journal_lines_from_image",
    "save_and_attach",
    "verify_image",
    "verify_image_file",
]

EXPORT_KIND = "export"
SIDECAR_SUFFIX = ".provenance.jsonl"
MODES = ("embed", "sidecar", "compact")
_PROOF_TYPE = "journal-proof"
# Modes Pillow writes to PNG and reads back unchanged, pixel for pixel.
_PNG_EXACT_MODES = frozenset({"RGB", "RGBA", "L", "LA"})


@attrs.frozen
class AttachResult:
    data: bytes  # the image file to write
    sidecar: bytes | None  # the journal file to write beside it, in sidecar mode
    entry: SignedEntry  # the export entry
    format: str


def _file_binding(data: bytes, fmt: str | None) -> str:
    if fmt is None:
        return hashlib.sha256(data).hexdigest()
    return _formats.binding_hash(data).hex()


def _detect(data: bytes) -> str | None:
    try:
        return _formats.detect(data)
    except ImageFormatError:
        return None


# Other raster formats Pillow decodes itself (or through libtiff and libavif),
# for sidecar journals and suspects: never EPS (Ghostscript would run the
# file's PostScript), nor the rarely used parsers of scientific and legacy
# formats, each a surface an image found online could aim at.
OTHER_FORMATS = ("AVIF", "BMP", "GIF", "PPM", "QOI", "TGA", "TIFF")


# Set by the command line, whose errors are one line: libtiff (and libjpeg inside
# TIFF) print diagnostics straight to file descriptor 2 while Pillow decodes.
capture_native_diagnostics = False


def _decode_any(data: bytes, fmt: str | None) -> Image.Image:
    """Decode for the pixel hash: our three formats safely; `OTHER_FORMATS` through Pillow with its bomb guard."""
    if fmt is not None:
        return _formats.decode(data)
    diagnostics: list[str] = []
    quiet = native_stderr_captured() if capture_native_diagnostics else contextlib.nullcontext(diagnostics)
    try:
        with quiet as diagnostics:
            image = Image.open(io.BytesIO(data), formats=OTHER_FORMATS)
            if image.width * image.height > _formats.DEFAULT_MAX_PIXELS:
                raise ImageFormatError("image is too large to decode")
            image.load()
    except ImageFormatError:
        raise
    except UnidentifiedImageError:
        raise ImageFormatError(
            f"cannot decode image: not in a format read here (PNG, JPEG, WebP, {', '.join(OTHER_FORMATS)})"
        ) from None
    except Exception as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        if diagnostics:
            reason += f" ({diagnostics[0][:200]})"
        raise ImageFormatError(f"cannot decode image: {reason}") from None
    return image


def attach(
    data: bytes,
    *,
    store: Store,
    journal: str,
    key: SigningKey,
    mode: str = "embed",
    file_name: str | None = None,
    digest: ImageDigest | None = None,
    source: str | None = None,
) -> AttachResult:
    """Append the export entry that binds `data`, and return the file with the journal attached.

    `digest`, when the caller already holds the hashes of exactly these pixels
    (a lossless save of an image it generated), spares decoding the file.
    `source` is the pixel hash of the recorded candidate this image is.
    """
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}")
    fmt = _detect(data)
    if fmt is None and mode != "sidecar":
        raise UsageError("only PNG, JPEG and WebP can carry an embedded journal; use a sidecar")
    prepared = _formats.prepare(data) if fmt is not None else data
    if digest is None or digest.phash is None:
        # The file hash runs on the background thread while the image decodes.
        with _background.running(_file_binding, prepared, fmt) as file_hash:
            digest = digest_loaded(_decode_any(prepared, fmt), None)
        file_sha256 = file_hash.result()
    else:
        file_sha256 = _file_binding(prepared, fmt)
    binding = {
        "alg": "sha256",
        "file_sha256": file_sha256,
        "excludes": "provenance data" if fmt is not None else "nothing",
        "pixel_sha256": digest.pixel_sha256,
        "phash": digest.phash,
        "width": digest.width,
        "height": digest.height,
        "mode": digest.mode,
    }
    body: dict[str, Any] = {"file": file_name, "format": fmt, "attach": mode, "binding": binding, "source": source}
    if mode == "sidecar":
        entry = store.append(journal, EXPORT_KIND, body, key=key, actor="human")
        return AttachResult(prepared, b"".join(store.export_lines(journal)), entry, fmt or "other")
    assert fmt is not None
    embedded: list[Future[bytes]] = []

    def start_embedding(entry: SignedEntry) -> None:
        # Inside the append's transaction, which the export already sees: the
        # file is compressed and assembled on the background thread while the
        # commit syncs.  It is returned only once the commit has succeeded.
        lines = compact_lines(store, journal, entry) if mode == "compact" else store.export_lines(journal, blobs=False)
        embedded.append(_background.submit(_formats.embed, prepared, b"".join(lines)))

    try:
        entry = store.append(journal, EXPORT_KIND, body, key=key, actor="human", before_commit=start_embedding)
    except BaseException:
        wait(embedded)  # nothing outlives the call, even a failed one
        raise
    return AttachResult(embedded[0].result(), None, entry, fmt)


def compact_lines(store: Store, journal: str, entry: SignedEntry) -> Iterator[bytes]:
    """The compact attachment: export entry, its checkpoint and inclusion proof, a pointer."""
    size = entry.entry.seq + 1
    checkpoint = store.checkpoint(journal, size)
    leaves = store.leaf_hashes(journal, size)
    proof = merkle.inclusion_proof(leaves, entry.entry.seq)
    yield canonical_json(
        {
            "type": _PROOF_TYPE,
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "journal": journal,
            "origin": origin_for(journal),
        }
    ) + b"\n"
    for public in store.public_keys(journal):
        yield KeyRecord(public).to_line() + b"\n"
    yield entry.to_line() + b"\n"
    yield checkpoint.to_line() + b"\n"
    yield canonical_json(
        {"type": "inclusion", "seq": entry.entry.seq, "size": size, "path": [b64encode(h) for h in proof]}
    ) + b"\n"


def save_and_attach(
    session: Session, image: ImageSource, path: Path, *, mode: str = "embed", format: str | None = None,
    quality: int = 92,
) -> Path:
    """Encode `image` (if it is not a file already), attach the session's journal, write it."""
    decoded, data = load_image(image)
    digest = None
    # The recorded image this export is of: hashed as the session holds it,
    # before any conversion the file format needs (e.g. RGBA to RGB for JPEG).
    source_digest = digest_loaded(decoded, None, perceptual=False)
    if data is None:
        fmt = (format or path.suffix.lstrip(".") or "png").lower()
        fmt = {"jpg": "jpeg"}.get(fmt, fmt)
        buffer = io.BytesIO()
        options: dict[str, Any] = {"quality": quality} if fmt in ("jpeg", "webp") else {}
        to_save = decoded
        if fmt == "jpeg" and decoded.mode not in ("RGB", "L", "CMYK"):
            to_save = decoded.convert("RGB")
        to_save.save(buffer, format=fmt.upper(), **options)
        data = buffer.getvalue()
        if fmt == "png" and to_save.mode in _PNG_EXACT_MODES:
            # A PNG holds exactly these pixels: reuse the hashes rather than decode again.
            digest = digest_loaded(to_save, None, perceptual=True)
    source = source_digest.pixel_sha256
    result = attach(
        data, store=session.store, journal=session.journal, key=session.key, mode=mode,
        file_name=path.name, digest=digest, source=source,
    )
    write_file(path, result.data)
    if result.sidecar is not None:
        write_file(sidecar_path(path), result.sidecar)
    return path


def sidecar_path(image_path: Path) -> Path:
    return image_path.with_name(image_path.name + SIDECAR_SUFFIX)


def write_file(path: Path, data: bytes) -> None:
    """Write an output image or journal atomically."""
    write_atomic(path, (data,), UsageError)


# -- verification ----------------------------------------------------------------


@attrs.frozen
class ImageVerdict:
    """The verdict on an image: its journal's verdict and which binding held."""

    journal: Verdict
    binding: str  # "exact-file", "same-pixels" or "none"
    carrier: str  # "embedded", "sidecar", "compact" or "none"
    export_seq: int | None = None
    reason_override: str | None = None
    export: dict[str, Any] | None = None
    # False when only a compact attachment was at hand: its export entry and the
    # signed checkpoint proving it included were checked, no other entry.
    journal_checked: bool = True

    @property
    def status(self) -> str:
        if self.journal.status == "invalid" or self.binding == "none":
            return "invalid"
        return self.journal.status

    @property
    def reason(self) -> str:
        return self.reason_override or self.journal.reason

    @property
    def code(self) -> str:
        """The journal's code, or "not-bound" when the journal is sound but binds another image (or none)."""
        if self.journal.status != "invalid" and self.binding == "none":
            return "not-bound"
        return self.journal.code

    def ok(self) -> bool:
        return self.status != "invalid" and self.journal.ok()

    def to_json(self) -> dict[str, Any]:
        return {
            **self.journal.to_json(),
            "status": self.status,
            "ok": self.ok(),
            "reason": self.reason,
            "code": self.code,
            "binding": self.binding,
            "carrier": self.carrier,
            "export_entry": self.export_seq,
            "journal_checked": self.journal_checked,
        }


def journal_lines_from_image(data: bytes) -> tuple[list[bytes], str] | None:
    """The journal lines an image carries and how ("embedded" or "compact"); None if it carries none."""
    payload = _formats.extract(data)
    if payload is None:
        return None
    lines = payload.splitlines(keepends=True)
    if not lines:
        raise ImageFormatError("the provenance data is empty")
    try:
        first = strict_loads(lines[0])
    except (ValueError, UnicodeDecodeError):
        raise ImageFormatError("the provenance data is not a journal") from None
    carrier = "compact" if isinstance(first, dict) and first.get("type") == _PROOF_TYPE else "embedded"
    return lines, carrier


def _invalid(reason: str, code: str, carrier: str) -> ImageVerdict:
    return ImageVerdict(Verdict("invalid", reason, code), "none", carrier, reason_override=reason)


def verify_image(
    data: bytes,
    *,
    sidecar: bytes | None = None,
    journal_lines: Sequence[bytes] | None = None,
    trusted: Sequence[PublicKey] = (),
    checkpoints: Sequence[Checkpoint] = (),
    tsa_roots: Sequence[bytes] = (),
    thorough: bool = False,
    visitor: EntryVisitor | None = None,
    blob_visitor: BlobVisitor | None = None,
) -> ImageVerdict:
    """Verify the journal an image carries (or its sidecar) and that this file is the one it binds.

    `visitor` and `blob_visitor` see the journal's entries and blobs as
    `verify_lines` reads them (not called when only a compact proof is at hand).
    """
    check_trust_inputs(checkpoints, tsa_roots)  # whatever path the verdict takes below
    fmt = _detect(data)
    try:
        carried = journal_lines_from_image(data) if fmt is not None else None
    except ImageFormatError as exc:
        # A corrupted payload or container is a finding about the evidence: a verdict, not an exception.
        return _invalid(str(exc), "malformed", "none")
    proof: _CompactProof | None = None
    if carried is not None and carried[1] == "compact":
        try:
            proof = _verify_compact(carried[0])
        except VerificationError as exc:
            return _invalid(str(exc), failure_code(exc), "compact")
    if journal_lines is not None:
        lines, carrier = list(journal_lines), "compact" if proof is not None else "given"
        if not lines:  # else a compact proof alone would answer, as if no journal were given
            return _invalid("the journal given is empty", "malformed", carrier)
    elif carried is not None and proof is None:
        lines, carrier = carried
    elif sidecar is not None:
        lines, carrier = sidecar.splitlines(keepends=True), "sidecar"
    elif proof is not None:
        lines, carrier = [], "compact"
    else:
        error = NoProvenanceError("no provenance data in this image (stripped, or never attached)")
        return _invalid(str(error), "no-provenance", "none")

    exports: list[tuple[int, dict[str, Any]]] = []

    def collect(signed: SignedEntry) -> None:
        if signed.entry.kind == EXPORT_KIND:
            exports.append((signed.entry.seq, dict(signed.entry.body)))
        if visitor is not None:
            visitor(signed)

    def blob_seen(record: BlobRecord) -> None:
        if carrier == "embedded":
            # Attach embeds no blobs, and none is signed: one here would be
            # unchecked data riding inside an "exact file" (the binding hash
            # leaves the provenance data out).
            raise MalformedDataError("the embedded journal carries a blob, which attach never writes (data added)")
        if blob_visitor is not None:
            blob_visitor(record)

    if lines:
        held = [*checkpoints, proof.checkpoint] if proof is not None else list(checkpoints)
        verdict = verify_lines(
            lines, trusted=trusted, checkpoints=held, tsa_roots=tsa_roots, thorough=thorough,
            visitor=collect, blob_visitor=blob_seen,
        )
    else:
        assert proof is not None
        verdict = proof.verdict(trusted)
        exports.append((proof.entry.entry.seq, dict(proof.entry.entry.body)))
    if not verdict.valid:
        return ImageVerdict(verdict, "none", carrier)
    if proof is not None:
        exports = [e for e in exports if e[0] == proof.entry.entry.seq]
    result = _check_binding(data, fmt, verdict, carrier, exports)
    return result if lines else attrs.evolve(result, journal_checked=False)


def _check_binding(
    data: bytes, fmt: str | None, verdict: Verdict, carrier: str, exports: list[tuple[int, dict[str, Any]]]
) -> ImageVerdict:
    if not exports:
        reason = "the journal has no export entry binding an image"
        return ImageVerdict(verdict, "none", carrier, reason_override=reason)
    # The exact file first: one hashing pass, no decoding (the common, fast case).
    # (Not overlapped with the journal check: on the background thread it
    # fought that Python loop for the GIL and made verify slower, even for a
    # 1.3 MB PNG.)
    file_hash = _file_binding(data, fmt)
    for seq, body in reversed(exports):
        binding = body.get("binding")
        if isinstance(binding, dict) and binding.get("file_sha256") == file_hash:
            return ImageVerdict(verdict, "exact-file", carrier, seq, export=body)
    try:
        image = _decode_any(data, fmt)
        if getattr(image, "n_frames", 1) != 1:
            # The pixel hash covers one frame, while viewers show the animation
            # (an APNG's frames need not even include the default image).
            raise ImageFormatError("it has several frames, and only the exact file can bind those")
        pixels = _formats.pixel_hash(image).hex()
    except ImageFormatError as exc:
        # Pixels that cannot be decoded are not the recorded ones: no binding holds.
        reason = f"this image is not the one the journal's export entry binds (file differs; {exc})"
        return ImageVerdict(verdict, "none", carrier, reason_override=reason)
    for seq, body in reversed(exports):
        binding = body.get("binding")
        if isinstance(binding, dict) and binding.get("pixel_sha256") == pixels:
            reason = (
                f"same pixels as export entry {seq}, but the file differs (metadata changed or re-saved; "
                "colour profile, gamma and orientation tags are not bound and can change how the pixels look)"
            )
            return ImageVerdict(verdict, "same-pixels", carrier, seq, reason_override=reason, export=body)
    error = BindingError("this image is not the one the journal's export entry binds (file and pixels differ)")
    return ImageVerdict(verdict, "none", carrier, reason_override=str(error))


@attrs.frozen
class _CompactProof:
    journal: str
    keys: dict[str, PublicKey]
    entry: SignedEntry
    checkpoint: Checkpoint
    signers: tuple[str, ...]

    def verdict(self, trusted: Sequence[PublicKey]) -> Verdict:
        pinned = {k.keyid for k in trusted}
        untrusted = tuple(k for k in self.signers if k not in pinned)
        size = self.checkpoint.size
        if not pinned:
            status, reason, code = "untrusted", f"valid (compact): export entry included in {size} signed entries", \
                "unpinned"
        elif untrusted:
            status, reason, code = "untrusted", f"signatures valid but signer {untrusted[0]} is not pinned", \
                "untrusted-signer"
        else:
            status, reason, code = "valid", f"valid (compact): export entry included in {size} signed entries", "ok"
        return Verdict(
            status, reason, code, journal=self.journal, entries=size, root=self.checkpoint.root,
            signers=self.signers, untrusted_signers=untrusted if pinned else self.signers, pinned=bool(pinned),
            checkpoints=1, first_time=self.entry.entry.time, last_time=self.entry.entry.time,
        )


def _verify_compact(lines: Sequence[bytes]) -> _CompactProof:
    """Check a compact attachment: signatures, and the inclusion proof of the export entry."""
    try:
        # One layout and one spelling, as for journal files: a compact attachment must not
        # be rewritable (lines reordered, keys repeated, JSON respelled) without notice.
        if len(lines) < 5 or not all(raw.endswith(b"\n") for raw in lines):
            raise ValueError("expected a header, keys, the export entry, its checkpoint and proof, one a line")
        head = strict_loads(lines[0])
        header = Header(head["journal"])
        if lines[0] != canonical_json(strict_loads(header.to_line()) | {"type": _PROOF_TYPE}) + b"\n":
            raise ValueError("bad compact header")
        *key_lines, entry_line, checkpoint_line, inclusion_line = lines[1:]
        keys: dict[str, PublicKey] = {}
        for raw in key_lines:
            record = _compact_record(raw)
            if not isinstance(record, KeyRecord) or record.public.keyid in keys:
                raise ValueError("expected each signer's key once, after the header")
            keys[record.public.keyid] = record.public
        entry = _compact_record(entry_line)
        checkpoint = _compact_record(checkpoint_line)
        if not isinstance(entry, SignedEntry) or not isinstance(checkpoint, Checkpoint):
            raise ValueError("expected the export entry, then its checkpoint")
        inclusion = strict_loads(inclusion_line)
        if (
            not isinstance(inclusion, dict)
            or set(inclusion) != {"type", "seq", "size", "path"}
            or inclusion["type"] != "inclusion"
            or canonical_json(inclusion) + b"\n" != inclusion_line
        ):
            raise ValueError("bad inclusion proof line")
        seq, size = inclusion["seq"], inclusion["size"]
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in (seq, size)):
            raise ValueError("inclusion proof seq and size must be integers")
        path = [b64decode(h) for h in inclusion["path"]]
        if any(len(h) != 32 for h in path):
            raise ValueError("inclusion proof hashes must be 32 bytes")
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedDataError(f"malformed compact attachment: {exc}") from None
    if entry.entry.journal != header.journal or checkpoint.origin != origin_for(header.journal):
        raise BindingError("compact attachment mixes journals")
    if entry.entry.kind != EXPORT_KIND or seq != entry.entry.seq or size != checkpoint.size:
        raise MalformedDataError("compact attachment does not prove an export entry")
    public = keys.get(entry.keyid)
    if public is None or not entry.signature_valid(public):
        raise BadSignatureError(f"export entry {seq}: signature does not verify")
    signers = checkpoint.signers(keys)
    if not signers or len(signers) != len(checkpoint.signatures):
        raise BadSignatureError(f"checkpoint at size {size}: signature does not verify")
    if entry.keyid not in signers:
        # Attach signs both with one key; a checkpoint by anyone else would let
        # them claim a journal of any size around the entry.
        raise BadSignatureError("the checkpoint proving the export entry is not signed by the entry's signer")
    if not merkle.verify_inclusion(entry.leaf_hash, seq, size, path, checkpoint.root):
        raise BadSignatureError("inclusion proof of the export entry does not verify (entry tampered)")
    if set(keys) - {entry.keyid, *signers}:
        raise MalformedDataError("compact attachment lists a key that signs nothing")
    return _CompactProof(header.journal, keys, entry, checkpoint, tuple(dict.fromkeys([entry.keyid, *signers])))


def _compact_record(raw: bytes) -> Any:
    record = parse_line(raw[:-1])
    if record.to_line() != raw[:-1]:
        raise ValueError("a line is not in canonical form (RFC 8785)")
    return record


def inspect_image(data: bytes) -> dict[str, Any]:
    """What provenance data a file carries, without verifying it."""
    fmt = _formats.detect(data)
    report: dict[str, Any] = {"format": fmt, "chunks": _formats.describe(data)}
    carried = journal_lines_from_image(data)
    if carried is None:
        report["provenance"] = None
        return report
    lines, carrier = carried
    entries = sum(1 for line in lines if b'"type":"entry"' in line)
    journal = None
    with contextlib.suppress(ValueError, AttributeError):
        journal = strict_loads(lines[0]).get("journal")
    report["provenance"] = {"carrier": carrier, "journal": journal, "lines": len(lines), "entries": entries,
                            "bytes": sum(len(line) for line in lines)}
    return report


def verify_image_file(path: str | os.PathLike[str], **options: Any) -> ImageVerdict:
    """`verify_image` for a file on disk; a sidecar journal beside it is used when present."""
    data = read_image_file(path)
    sidecar = sidecar_path(Path(path))
    if "sidecar" not in options and sidecar.is_file():
        options["sidecar"] = read_image_file(sidecar)  # bounded read; a journal, not an image
    return verify_image(data, **options)
