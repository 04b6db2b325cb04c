"""Benchmark: what binding a journal to an image costs, next to decoding it and next to C2PA.

For a 1024 x 1024 photo-like procedural image saved as PNG, JPEG (quality 90)
and WebP (lossy, quality 80), with a journal of about 100 entries recorded
through the recording API (one signed entry and one checkpoint per call, as a
session writes them), it measures in one run on this machine:

* Pillow's plain decode (``Image.open(...).load()``) and save of the same
  file: the raw primitives an image tool pays anyway;
* ``binding.attach``: prepare the file, decode it for the pixel and
  perceptual hashes, append and sign the export entry (one SQLite transaction
  with fsync, one checkpoint), export the journal, compress and embed it;
* ``attach(..., digest=...)``: the same when the session already holds the
  image's hashes (no decode), as ``Session.export`` does for a PNG it encoded;
* ``binding.verify_image`` with the signer pinned: extract, verify the
  journal, hash the file with the provenance data left out (exact-file path);
* when ``c2pa-python`` is installed: signing the same image with a manifest
  that carries the same journal as a custom assertion (ES256, an end-entity
  certificate issued by a CA generated here, thumbnail off) and reading it
  back with that CA as the trust anchor.

The figures a target compares (decode, attach, verify, c2pa's sign and read)
are measured in turns, one run of each per round, so that a burst of load from
the rest of a shared machine falls on both sides of a comparison alike.

Targets (reported, never asserted): verify faster than c2pa's read; attach
within c2pa's signing time plus one decode; attach with known hashes within
c2pa's signing time alone.  ``--profile`` prints where attach and verify
spend their time.

Run it as ``python benchmarks/bench_images.py [--repeat N] [--profile]``.
The last line printed is one JSON object nested by format.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import json
import pstats
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import provenance
except ImportError:  # not installed: use the source tree next to this file
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import provenance

from PIL import Image, ImageDraw, ImageFilter, ImageOps

from provenance import _formats, binding, phash
from provenance.images import digest_loaded
from provenance.keys import SigningKey
from provenance.recorder import Session
from provenance.store import Store
from provenance.verify import verify_lines

__all__ = ["main", "photo"]

SIZE = 1024
JOURNAL_ENTRIES = 100
FORMATS: dict[str, tuple[str, str, dict[str, Any]]] = {
    # name: (Pillow format, MIME type, save options)
    "png": ("PNG", "image/png", {}),
    "jpeg": ("JPEG", "image/jpeg", {"quality": 90}),
    "webp": ("WEBP", "image/webp", {"quality": 80}),
}
C2PA_SIGNING_EKU = "1.3.6.1.4.1.62558.2.1"
DOCUMENT_SIGNING_EKU = "1.3.6.1.5.5.7.3.36"


# -- the image ------------------------------------------------------------------------------


def photo(size: int = SIZE, seed: int = 1) -> Image.Image:
    """A photo-like landscape: sky gradient, clouds, ridges, lit shapes and sensor grain.

    Smooth areas, edges and fine noise in photo-like proportions, so that PNG,
    JPEG and WebP files come out at the sizes real photos have.
    """
    rng = random.Random(seed)
    sky = Image.linear_gradient("L").resize((size, size))
    image = ImageOps.colorize(sky, (30, 60, 140), (235, 215, 190))
    clouds = Image.frombytes("L", (16, 16), rng.randbytes(256)).resize((size, size), Image.Resampling.BICUBIC)
    image = Image.composite(Image.new("RGB", (size, size), (250, 250, 250)), image, clouds.point(lambda v: v // 3))
    draw = ImageDraw.Draw(image)
    for layer, colour in enumerate([(70, 90, 110), (50, 80, 60), (30, 50, 30)]):
        y = size * (0.45 + 0.15 * layer)
        points = [(0.0, float(size))]
        for i in range(33):
            y = min(max(y + rng.uniform(-0.04, 0.04) * size, 0.2 * size), 0.98 * size)
            points.append((size * i / 32, y))
        points.append((float(size), float(size)))
        draw.polygon(points, fill=colour)
    for _ in range(12):
        x, y, r = rng.randrange(size), rng.randrange(size // 2, size), rng.randrange(size // 40, size // 10)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(40, 220) for _ in range(3)))
    image = image.filter(ImageFilter.GaussianBlur(1.5))
    grain = Image.frombytes("L", (size, size), rng.randbytes(size * size)).convert("RGB")
    return Image.blend(image, grain, 0.05)


def encode(image: Image.Image, fmt: str) -> bytes:
    pillow_format, _, options = FORMATS[fmt]
    out = io.BytesIO()
    image.save(out, pillow_format, **options)
    return out.getvalue()


# -- journals -------------------------------------------------------------------------------


def record_journal(store: Store, key: SigningKey, final: Image.Image, entries: int = JOURNAL_ENTRIES) -> str:
    """A session of `entries` - 1 entries through the recording API; the export will be the last one."""
    session = Session(store=store, key=key, title="benchmark")
    small = [photo(64, seed) for seed in range(4)]
    session.load_model("tiny-sd", sha256="ab" * 32)
    revision = 0
    while store.info(session.journal).size + 4 <= entries - 2:  # a round adds 4; keep 2 for the end
        revision += 1
        session.set_prompt(f"a valley at dawn, revision {revision}, oil on canvas", "blurry, text")
        session.set_parameters(seed=random.getrandbits(64), steps=20 + revision % 30, guidance=7.5 + revision % 5)
        generation = session.record_generation(small, seeds=list(range(4)))
        session.select(generation.candidates[revision % 4], reason="the light")
    session.record_generation([final], seeds=[1])
    while store.info(session.journal).size < entries - 1:
        session.note("final touch")
    return session.journal


# -- timing ---------------------------------------------------------------------------------


def timed(fn: Callable[[], object], repeat: int, setup: Callable[[], object] | None = None) -> float:
    """Median milliseconds of `fn` over `repeat` runs (after one warm-up), `setup` untimed before each."""
    return in_turns({"fn": (fn, setup)}, repeat)["fn"]


Figure = tuple[Callable[[], object], Callable[[], object] | None]  # (timed call, untimed setup)


def in_turns(figures: dict[str, Figure], repeat: int) -> dict[str, float]:
    """Median milliseconds of each figure, measured in turns: one run of each per round.

    After one warm-up round, `repeat` rounds; a burst of load from the rest of a
    shared machine then falls on the figures compared alike instead of on
    whichever happened to be measured during it.
    """
    samples: dict[str, list[float]] = {name: [] for name in figures}
    for _ in range(repeat + 1):
        for name, (fn, setup) in figures.items():
            if setup is not None:
                setup()
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values[1:]) for name, values in samples.items()}


# -- C2PA -------------------------------------------------------------------------------------


class C2PA:
    """c2pa-python with a CA and a signing certificate made here (no trust list needed offline)."""

    def __init__(self) -> None:
        import c2pa  # the caller checked it is installed

        self.c2pa = c2pa
        chain, private_key, ca = self._certificates()
        # This c2pa-python build only accepts the EKUs listed in trust.trust_config for signing,
        # and the default list lacks the C2PA one: name both EKUs the brief allows.
        settings = {
            "builder": {"thumbnail": {"enabled": False}},  # the thumbnail would dominate signing
            "trust": {"trust_config": f"{C2PA_SIGNING_EKU}\n{DOCUMENT_SIGNING_EKU}\n", "trust_anchors": ca},
        }
        self.context = c2pa.Context(settings=c2pa.Settings.from_dict(settings))
        self.signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, private_key, None))

    @staticmethod
    def _certificates() -> tuple[bytes, bytes, str]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        now = datetime.datetime.now(datetime.UTC)
        validity = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=30))

        def name(common: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                              x509.NameAttribute(NameOID.ORGANIZATION_NAME, "provenance benchmark")])

        def usage(*, sign: bool) -> x509.KeyUsage:
            return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                                 data_encipherment=False, key_agreement=False, key_cert_sign=not sign,
                                 crl_sign=not sign, encipher_only=False, decipher_only=False)

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (
            x509.CertificateBuilder().subject_name(name("benchmark CA")).issuer_name(name("benchmark CA"))
            .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(validity[0]).not_valid_after(validity[1])
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage(sign=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(name("benchmark signer")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(validity[0]).not_valid_after(validity[1])
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(sign=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier(C2PA_SIGNING_EKU)]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        chain = cert.public_bytes(pem) + ca.public_bytes(pem)
        private = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        return chain, private, ca.public_bytes(pem).decode()

    def manifest(self, journal_text: str) -> dict[str, Any]:
        return {
            "claim_generator_info": [{"name": "provenance-benchmark", "version": provenance.__version__}],
            "title": "benchmark",
            "assertions": [
                {"label": "c2pa.actions", "data": {"actions": [{
                    "action": "c2pa.created",
                    "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
                }]}},
                {"label": "org.provenance.journal", "data": {"jsonl": journal_text}},
            ],
        }

    def sign(self, data: bytes, mime: str, manifest: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        self.c2pa.Builder(manifest, context=self.context).sign(self.signer, mime, io.BytesIO(data), out)
        return out.getvalue()

    def read(self, data: bytes, mime: str) -> dict[str, Any]:
        with self.c2pa.Reader(mime, io.BytesIO(data), context=self.context) as reader:
            report: dict[str, Any] = json.loads(reader.json())
        return report


def load_c2pa() -> C2PA | None:
    try:
        import c2pa  # noqa: F401
    except ImportError:
        return None
    return C2PA()


# -- the benchmark ----------------------------------------------------------------------------


def bench_format(fmt: str, image: Image.Image, store: Store, key: SigningKey, c2pa: C2PA | None,
                 repeat: int, profile: bool) -> dict[str, Any]:
    pillow_format, mime, options = FORMATS[fmt]
    data = encode(image, fmt)
    decoded = Image.open(io.BytesIO(data))
    decoded.load()
    digest = digest_loaded(decoded, None)  # what a session holds after recording the image

    def decode() -> None:
        with Image.open(io.BytesIO(data)) as im:
            im.load()

    def save() -> None:
        decoded.save(io.BytesIO(), pillow_format, **options)

    journals: list[str] = []

    def new_journal() -> None:
        journals.append(record_journal(store, key, decoded))
        # Copy the write-ahead log the setup filled into the database, so the timed
        # attach does not pay for that; RESTART (not TRUNCATE) leaves the log file
        # in place to be written over from its start, as in a long session, where
        # SQLite never shrinks it (growing it again would add a metadata sync).
        with sqlite3.connect(store.path) as db:
            db.execute("PRAGMA wal_checkpoint(RESTART)")

    def attach(known: bool) -> binding.AttachResult:
        return binding.attach(data, store=store, journal=journals[-1], key=key, digest=digest if known else None)

    result: dict[str, Any] = {"file_bytes": len(data)}
    result["save_ms"] = timed(save, repeat)
    new_journal()
    signed = attach(False).data
    entries = store.info(journals[-1]).size
    verdict = binding.verify_image(signed, trusted=[key.public])
    assert verdict.status == "valid" and verdict.binding == "exact-file", verdict.reason
    result["journal_entries"] = entries
    result["provenance_bytes"] = len(signed) - len(data)
    # The figures a target compares are measured in turns (see `in_turns`).
    figures: dict[str, Figure] = {
        "decode_ms": (decode, None),
        "attach_ms": (lambda: attach(False), new_journal),
        "attach_known_hashes_ms": (lambda: attach(True), new_journal),
        "verify_ms": (lambda: binding.verify_image(signed, trusted=[key.public]), None),
    }
    result["c2pa_sign_ms"] = result["c2pa_read_ms"] = result["c2pa_bytes"] = None
    if c2pa is not None:
        journal_text = b"".join(store.export_lines(journals[-1], blobs=False)).decode()
        manifest = c2pa.manifest(journal_text)
        c2pa_signed = c2pa.sign(data, mime, manifest)
        report = c2pa.read(c2pa_signed, mime)
        assert report.get("validation_state") == "Trusted", report.get("validation_status")
        result["c2pa_bytes"] = len(c2pa_signed) - len(data)
        figures["c2pa_sign_ms"] = (lambda: c2pa.sign(data, mime, manifest), None)
        figures["c2pa_read_ms"] = (lambda: c2pa.read(c2pa_signed, mime), None)
    result.update(in_turns(figures, repeat))

    result["breakdown"] = breakdown(data, signed, store, journals[-1], key)

    if profile:
        new_journal()
        _profile(f"{fmt}: attach", lambda: attach(False))
        _profile(f"{fmt}: verify", lambda: binding.verify_image(signed, trusted=[key.public]))
    return result


def breakdown(data: bytes, signed: bytes, store: Store, journal: str, key: SigningKey) -> dict[str, float]:
    """The steps of attach and verify timed one by one (median ms), to show where the time goes."""
    prepared = _formats.prepare(data)
    image = _formats.decode(prepared)
    payload = b"".join(store.export_lines(journal, blobs=False))
    lines = payload.splitlines(keepends=True)
    body = {"binding": {"pixel_sha256": "00" * 32, "phash": phash.reference_hash(image).to_str()}}
    steps: dict[str, Callable[[], object]] = {
        # attach
        "prepare": lambda: _formats.prepare(data),
        "decode_checked": lambda: _formats.decode(prepared),  # container validated, then Pillow
        "pixel_hash": lambda: _formats.pixel_hash(image),
        "perceptual_hash": lambda: phash.reference_hash(image),
        "binding_hash": lambda: _formats.binding_hash(prepared),
        "append_export_entry": lambda: store.append(journal, "note", body, key=key, actor="human"),
        "export_journal": lambda: b"".join(store.export_lines(journal, blobs=False)),
        "compress_payload": lambda: zlib.compress(payload, 9),
        "embed": lambda: _formats.embed(prepared, payload),
        # verify
        "extract": lambda: _formats.extract(signed),
        "verify_journal_lines": lambda: verify_lines(lines, trusted=[key.public]),
        "binding_hash_signed": lambda: _formats.binding_hash(signed),
    }
    return {name: timed(fn, 5) for name, fn in steps.items()}


def _profile(label: str, fn: Callable[[], object]) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(5):
        fn()
    profiler.disable()
    print(f"--- profile: {label} (5 runs, by cumulative time) ---")
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(18)


def targets(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, bool | None]]:
    found: list[tuple[str, str, bool | None]] = []
    for fmt, r in results.items():
        if r["c2pa_sign_ms"] is None:
            found.append((fmt, "c2pa-python not installed: no comparison", None))
            continue
        found += [
            (fmt, f"verify {r['verify_ms']:.1f} ms < c2pa read {r['c2pa_read_ms']:.1f} ms",
             r["verify_ms"] < r["c2pa_read_ms"]),
            (fmt, f"attach {r['attach_ms']:.1f} ms <= c2pa sign + decode "
                  f"{r['c2pa_sign_ms'] + r['decode_ms']:.1f} ms",
             r["attach_ms"] <= r["c2pa_sign_ms"] + r["decode_ms"]),
            (fmt, f"attach with known hashes {r['attach_known_hashes_ms']:.1f} ms <= c2pa sign "
                  f"{r['c2pa_sign_ms']:.1f} ms",
             r["attach_known_hashes_ms"] <= r["c2pa_sign_ms"]),
        ]
    return found


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=11, help="timed runs per figure (median; default 11)")
    parser.add_argument("--profile", action="store_true", help="print cProfile summaries of attach and verify")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    image = photo()
    c2pa = load_c2pa()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as directory:
        store = Store(Path(directory) / "store.db")
        key = SigningKey.generate()
        try:
            for fmt in FORMATS:
                results[fmt] = bench_format(fmt, image, store, key, c2pa, args.repeat, args.profile)
        finally:
            store.close()

    c2pa_version = getattr(c2pa.c2pa, "__version__", "?") if c2pa is not None else "not installed"
    print(f"Binding a ~{JOURNAL_ENTRIES}-entry journal to a {SIZE}x{SIZE} photo-like image "
          f"(median of {args.repeat} runs; c2pa-python {c2pa_version})")
    print()
    columns = ["decode_ms", "save_ms", "attach_ms", "attach_known_hashes_ms", "verify_ms", "c2pa_sign_ms",
               "c2pa_read_ms"]
    print(f"{'':<6}{'file kB':>9}" + "".join(f"{c.removesuffix('_ms'):>22}" for c in columns))
    for fmt, r in results.items():
        cells = "".join(f"{'-' if r[c] is None else f'{r[c]:.1f} ms':>22}" for c in columns)
        print(f"{fmt:<6}{r['file_bytes'] / 1000:>9.0f}{cells}")
    print()
    for fmt, r in results.items():
        c2pa_bytes = "-" if r["c2pa_bytes"] is None else f"{r['c2pa_bytes']:,}"
        print(f"{fmt}: journal of {r['journal_entries']} entries adds {r['provenance_bytes']:,} bytes "
              f"embedded; the C2PA manifest with the same journal adds {c2pa_bytes} bytes")
    print()
    print("Where the time goes (median ms of each step on its own):")
    steps = list(next(iter(results.values()))["breakdown"])
    print(f"{'':<22}" + "".join(f"{fmt:>10}" for fmt in results))
    for step in steps:
        print(f"{step:<22}" + "".join(f"{r['breakdown'][step]:>10.2f}" for r in results.values()))
    print()
    print("Targets (reported, not asserted):")
    for fmt, text, ok in targets(results):
        state = "n/a" if ok is None else "met" if ok else "MISSED"
        print(f"  [{state}] {fmt}: {text}")
    print(f"Total time {time.perf_counter() - started:.1f} s.")
    summary = {fmt: _rounded(r) for fmt, r in results.items()}
    print(json.dumps(summary))
    return results


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return round(value, 3) if isinstance(value, float) else value


if __name__ == "__main__":
    main()
