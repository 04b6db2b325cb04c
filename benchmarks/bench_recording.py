"""Benchmark: what does recording add to a pipeline call, and where does the time go?

Everything runs in one process, in a temporary directory (the store and
``PROVENANCE_HOME`` both live there), on one torch thread, and every figure is
printed next to the raw primitive it is built on, measured in the same run:

* **tiny pipeline, 64x64** -- one call of the tiny random-weight Stable
  Diffusion pipeline (`provenance.integrations._tiny`), wrapped with
  `provenance.integrations.diffusers.record`.  The pipeline's own time is taken
  *inside* the wrapper (a timing subclass around ``__call__``), so the
  overhead is measured per call, not as a difference of two noisy medians;
* **1024x1024 output** -- by default a minimal pipeline-like callable (same
  ``__call__`` conventions, a ``scheduler``) that returns a ready-made
  1024x1024 RGB PIL image, so the figure is the recorder's alone; with
  ``--full-size`` the tiny pipeline itself is also run at height=width=1024;
* the raw primitives: SHA-256 of the same 1024x1024 pixels (3 MiB, already
  in memory), Pillow's ``tobytes``, one Ed25519 signature, one small write +
  fsync in the same directory;
* where the time goes inside the wrapped calls, by instrumenting the real
  functions while they run: pixel hash, perceptual hash, entry and checkpoint
  signing, the SQLite commit (WAL fsync), everything else;
* thumbnails (off by default in `Session`), measured apart.

Targets (reported, never asserted): recording adds < 5 ms per call, plus per
1024x1024 output at most 3x the raw SHA-256 time of its pixels.

Run it as ``python benchmarks/bench_recording.py [--calls N] [--quick] [--full-size]``.
The last line printed is one JSON object with the headline numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Never reach a model hub (huggingface_hub reads this at import).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

try:
    import provenance
except ImportError:  # not installed: use the source tree next to this file
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import provenance

from PIL import Image

from provenance import _formats, images, phash, recorder, store
from provenance.integrations import diffusers as integration
from provenance.journal import Checkpoint, SignedEntry
from provenance.keys import SigningKey

__all__ = ["main"]

TARGET_FIXED_MS = 5.0
TARGET_PER_1024_VS_SHA = 3.0
BIG = 1024


# --- timing helpers ----------------------------------------------------------------------


def best_and_median(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(min, median) wall time of `fn` in ms, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return min(times), statistics.median(times)


@contextlib.contextmanager
def replaced(owner: Any, name: str, value: Any) -> Iterator[None]:
    original = owner.__dict__[name]
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


class Profile:
    """Wall time of instrumented functions, per wrapped call, while a block runs."""

    def __init__(self) -> None:
        self.call = 0  # which wrapped call is running (set by the caller)
        self.ms: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        self.count: dict[str, int] = defaultdict(int)
        self.faults: dict[str, int] = defaultdict(int)  # minor page faults, summed over the calls
        self._depth: dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def patch(self, owner: Any, name: str, label: str) -> Iterator[None]:
        original = owner.__dict__[name]
        function = original.__func__ if isinstance(original, (classmethod, staticmethod)) else original

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            # Recursive functions (_to_record) are timed at the outermost call only.
            self._depth[label] += 1
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self._depth[label] -= 1
                if not self._depth[label]:
                    self.ms[label][self.call] += (time.perf_counter() - start) * 1000
                    self.count[label] += 1
                    self.faults[label] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults

        replacement: Any = classmethod(timed) if isinstance(original, classmethod) else timed
        setattr(owner, name, replacement)
        try:
            yield
        finally:
            setattr(owner, name, original)

    @contextlib.contextmanager
    def instrument(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for owner, name, label in (
                (_formats, "pixel_hash", "pixel hash (SHA-256 of canonical pixels)"),
                (phash, "reference_hash", "perceptual hash (reference_hash)"),
                (images, "make_thumbnail", "thumbnail (WebP encode)"),
                (SignedEntry, "sign", "sign entry (Ed25519 + canonical JSON)"),
                (Checkpoint, "sign", "sign checkpoint (Ed25519)"),
                (store._Transaction, "__exit__", "SQLite commit (WAL fsync)"),
                (store.Store, "_append_locked", "append: build + sign + insert"),
                (integration, "_to_record", "describe call arguments + scheduler"),
                (integration, "_is_fresh", "generator freshness check"),
                (integration, "_output_images", "collect output images"),
            ):
                if name in owner.__dict__:  # tolerate a module that has moved on
                    stack.enter_context(self.patch(owner, name, label))
            yield

    def per_call(self, calls: int) -> dict[str, float]:
        """Median over the calls of each part's time in that call (0 where it did not run)."""
        return {label: statistics.median([by_call.get(i, 0.0) for i in range(calls)])
                for label, by_call in self.ms.items()}


# --- pipelines ------------------------------------------------------------------------------


class _Output:
    def __init__(self, pictures: list[Image.Image]) -> None:
        self.images = pictures


class _Scheduler:
    def __init__(self) -> None:
        self.config = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085}


class FakePipeline:
    """A pipeline-like callable returning a ready-made picture: the recorder's cost alone."""

    def __init__(self, picture: Image.Image) -> None:
        self.picture = picture
        self.scheduler = _Scheduler()
        self.components: dict[str, Any] = {}
        self.inner_ms: list[float] = []

    def __call__(
        self,
        prompt: str | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 30,
        guidance_scale: float = 7.5,
        negative_prompt: str | None = None,
        num_images_per_prompt: int = 1,
        generator: Any = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> Any:
        start = time.perf_counter()
        result = _Output([self.picture] * num_images_per_prompt)
        self.inner_ms.append((time.perf_counter() - start) * 1000)
        return result if return_dict else (result.images, None)


def timed_pipeline(pipe: Any) -> list[float]:
    """Make `pipe` note how long each of its own calls takes (inside any wrapper)."""
    cls = type(pipe)
    original = cls.__call__
    inner: list[float] = []

    @functools.wraps(original)
    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            inner.append((time.perf_counter() - start) * 1000)

    # Same name: the recorder derives the mode from the class name.
    pipe.__class__ = type(cls.__name__, (cls,), {"__call__": __call__})
    return inner


def streamed_sha256(image: Image.Image, digest: Any = None) -> bytes:
    """SHA-256 of ``image.tobytes()`` without building it: Pillow's raw encoder, chunk by chunk.

    What `tobytes` does internally, minus the join; measured as a possible
    pixel-hash implementation (no 3-4 MiB temporary copies, so no page faults).
    """
    digest = digest or hashlib.sha256()
    encoder = Image._getencoder(image.mode, "raw", image.mode)  # type: ignore[attr-defined]
    encoder.setimage(image.im, (0, 0, *image.size))
    try:
        while True:
            _, status, data = encoder.encode(max(65536, image.width * 4))
            digest.update(data)
            if status:
                break
    finally:
        encoder.cleanup()
    return digest.digest()


def streamed_pixel_hash(image: Image.Image) -> bytes:
    """`provenance._formats.pixel_hash`, same bytes hashed, with the pixels streamed (see above)."""
    from provenance._formats import _decode

    digest = hashlib.sha256(image.mode.encode("ascii") + b"\x00" + struct.pack(">II", *image.size))
    for block in (_decode._palette_block(image), _decode._transparency_block(image)):
        digest.update(struct.pack(">I", len(block)) + block)
    if image.width and image.height:
        image.load()
        streamed_sha256(image, digest)
    return digest.digest()


def noise_picture(size: int, seed: int = 0) -> Image.Image:
    return Image.frombytes("RGB", (size, size), random.Random(seed).randbytes(size * size * 3))


# --- measurements -----------------------------------------------------------------------------


def measure_wrapped(
    pipe: Any, inner: list[float], session: recorder.Session, calls: int, kwargs: dict[str, Any]
) -> tuple[list[float], list[float], Profile]:
    """Per call: total wrapped time and the pipeline's own time; plus where the rest went."""
    import torch

    wrapped = integration.RecordedPipeline(pipe, session)
    wrapped(**kwargs, generator=torch.Generator("cpu").manual_seed(0))  # warm up
    inner.clear()
    totals: list[float] = []
    profile = Profile()
    with profile.instrument():
        for i in range(calls):
            profile.call = i
            start = time.perf_counter()
            wrapped(**kwargs, generator=torch.Generator("cpu").manual_seed(i))
            totals.append((time.perf_counter() - start) * 1000)
    return totals, list(inner), profile


def page_faults(fn: Callable[[], object], repeat: int = 10) -> float:
    """Median minor page faults per call: fresh memory the kernel has to map (and zero)."""
    counts = []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        fn()
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return statistics.median(counts)


def overhead(totals: list[float], inner: list[float], *, best: bool = False) -> float:
    added = [t - i for t, i in zip(totals, inner, strict=True)]
    return min(added) if best else statistics.median(added)


def print_profile(title: str, profile: Profile, calls: int, total_overhead: float) -> dict[str, float]:
    parts = profile.per_call(calls)
    print(f"\n  where the recorder's time goes ({title}; median ms per call over {calls} calls; "
          "runs per call; minor page faults per call)")
    for label in sorted(parts, key=lambda k: -parts[k]):
        print(f"    {label:<42} {parts[label]:8.3f}   x{profile.count[label] / calls:<4g} "
              f"{profile.faults[label] / calls:7.0f} faults")
    print(f"    {'total overhead (median)':<42} {total_overhead:8.3f}")
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30, help="wrapped calls per measurement (default 30)")
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    parser.add_argument("--full-size", action="store_true", help="also run the tiny pipeline at 1024x1024")
    args = parser.parse_args(argv)
    calls = 5 if args.quick else args.calls

    import torch

    torch.set_num_threads(1)
    from provenance.integrations._tiny import build_tiny_pipeline

    tmp = Path(tempfile.mkdtemp(prefix="bench-recording-"))
    os.environ["PROVENANCE_HOME"] = str(tmp / "home")
    key = SigningKey.from_seed(bytes([9]) * 32, "bench")
    db = store.Store(tmp / "store.sqlite")
    print(f"provenance {provenance.__version__} recording benchmark; {calls} calls per figure; "
          f"torch {torch.__version__} on {torch.get_num_threads()} thread; store in {tmp}")

    # -- raw primitives, same run --------------------------------------------------------
    big = noise_picture(BIG)
    raw = big.tobytes()
    raw_sha_best, raw_sha = best_and_median(lambda: hashlib.sha256(raw).digest(), max(calls, 20))
    _, tobytes_ms = best_and_median(big.tobytes, max(calls, 20))
    _, pixel_hash_ms = best_and_median(lambda: _formats.pixel_hash(big), max(calls, 20))
    assert streamed_sha256(big) == hashlib.sha256(raw).digest()
    _, streamed_ms = best_and_median(lambda: streamed_sha256(big), max(calls, 20))
    faults_pixel = page_faults(lambda: _formats.pixel_hash(big))
    faults_streamed = page_faults(lambda: streamed_pixel_hash(big))
    _, copy_sha_ms = best_and_median(lambda: hashlib.sha256(big.tobytes()).digest(), max(calls, 20))
    _, phash_ms = best_and_median(lambda: phash.reference_hash(big), max(calls, 10))
    small = noise_picture(64, 2)
    _, phash_small_ms = best_and_median(lambda: phash.reference_hash(small), max(calls, 10))
    _, digest_ms = best_and_median(lambda: images.digest_loaded(big, None), max(calls, 10))
    _, thumb_ms = best_and_median(lambda: images.make_thumbnail(big), max(calls, 10))
    _, sign_ms = best_and_median(lambda: key.sign(b"x" * 2048), 200)
    fsync_file = tmp / "fsync.probe"

    def write_fsync() -> None:
        with open(fsync_file, "wb") as handle:
            handle.write(b"x" * 4096)
            handle.flush()
            os.fsync(handle.fileno())

    _, fsync_ms = best_and_median(write_fsync, 20)
    print("\nraw primitives and per-image work (1024x1024 RGB, 3 MiB; median ms)")
    rows = [
        ("SHA-256 of the raw pixels (raw primitive)", raw_sha),
        ("Pillow tobytes()", tobytes_ms),
        ("SHA-256 of tobytes() (one full copy)", copy_sha_ms),
        ("pixel hash (_formats.pixel_hash)", pixel_hash_ms),
        ("raw encoder streamed into SHA-256 (a fix?)", streamed_ms),
        ("perceptual hash (phash.reference_hash)", phash_ms),
        ("perceptual hash of a 64x64 image", phash_small_ms),
        ("digest: pixel + perceptual hash", digest_ms),
        ("thumbnail (128 px WebP)", thumb_ms),
        ("Ed25519 sign, 2 KiB (raw primitive)", sign_ms),
        ("4 KiB write + fsync (raw primitive)", fsync_ms),
    ]
    for label, value in rows:
        ratio = f"{value / raw_sha:6.1f}x SHA" if "SHA" in label or "hash" in label or "digest" in label else ""
        print(f"  {label:<44} {value:8.3f}   {ratio}")
    print(f"  minor page faults per call, in this tight loop: pixel hash {faults_pixel:.0f}, streamed "
          f"{faults_streamed:.0f} (inside the wrapped calls below they can be thousands: see there)")

    # -- the tiny pipeline, 64x64 ------------------------------------------------------------------
    build_start = time.perf_counter()
    tiny = build_tiny_pipeline("txt2img")
    build_ms = (time.perf_counter() - build_start) * 1000
    inner = timed_pipeline(tiny)
    session = recorder.Session(title="bench", store=db, key=key)
    record_start = time.perf_counter()
    integration.record(tiny, session)  # model identity: hashed once, on wrapping
    identity_ms = (time.perf_counter() - record_start) * 1000
    tiny_kwargs = {"prompt": "a harbour at dusk", "num_inference_steps": 2}
    totals, inner_ms, tiny_profile = measure_wrapped(tiny, inner, session, calls, tiny_kwargs)
    record_overhead = overhead(totals, inner_ms)
    record_overhead_best = overhead(totals, inner_ms, best=True)
    tiny_call = statistics.median(inner_ms)
    print(f"\ntiny pipeline (64x64, 2 steps, 1 image): built in {build_ms:.0f} ms; record() "
          f"(model identity: state-dict hashes) {identity_ms:.1f} ms, once")
    print(f"  pipeline call itself (median)              {tiny_call:8.2f} ms")
    print(f"  recording overhead per call (median)       {record_overhead:8.2f} ms   "
          f"({100 * record_overhead / tiny_call:.1f}% of the call; best {record_overhead_best:.2f} ms; "
          f"target < {TARGET_FIXED_MS:.0f} ms)")
    tiny_parts = print_profile("tiny, thumbnails off", tiny_profile, calls, record_overhead)

    thumbs = recorder.Session(title="bench thumbnails", store=db, key=key, thumbnails=True)
    totals_t, inner_t, _ = measure_wrapped(tiny, inner, thumbs, calls, tiny_kwargs)
    thumb_overhead = overhead(totals_t, inner_t)
    print(f"  with thumbnails on: overhead {thumb_overhead:.2f} ms per call "
          f"(+{thumb_overhead - record_overhead:.2f} ms: WebP encode + one more transaction for the blob)")

    # -- one 1024x1024 output ---------------------------------------------------------------------
    fake_small, fake_big = FakePipeline(noise_picture(64, 1)), FakePipeline(big)
    small_totals, _, _ = measure_wrapped(fake_small, fake_small.inner_ms, session, calls, {"prompt": "p"})
    fixed_fake = overhead(small_totals, fake_small.inner_ms[-calls:])
    big_totals, _, big_profile = measure_wrapped(fake_big, fake_big.inner_ms, session, calls, {"prompt": "p"})
    overhead_1024 = overhead(big_totals, fake_big.inner_ms[-calls:])
    per_1024 = overhead_1024 - fixed_fake
    big_parts = big_profile.per_call(calls)
    hash_1024 = big_parts.get("pixel hash (SHA-256 of canonical pixels)", 0.0) + big_parts.get(
        "perceptual hash (reference_hash)", 0.0
    )
    print("\none call with a 1024x1024 output (pipeline-like callable returning a ready-made PIL image)")
    print(f"  recording overhead, 64x64 output           {fixed_fake:8.2f} ms")
    print(f"  recording overhead, 1024x1024 output       {overhead_1024:8.2f} ms")
    print(f"  added by the 1024x1024 output              {per_1024:8.2f} ms   "
          f"= {per_1024 / raw_sha:.1f}x raw SHA-256 ({raw_sha:.2f} ms); target <= {TARGET_PER_1024_VS_SHA:.0f}x")
    print(f"  of which hashing (pixel + perceptual)      {hash_1024:8.2f} ms")
    print_profile("1024x1024 output, thumbnails off", big_profile, calls, overhead_1024)
    thumb_session = recorder.Session(title="bench 1024 thumbnails", store=db, key=key, thumbnails=True)
    big_t, _, _ = measure_wrapped(fake_big, fake_big.inner_ms, thumb_session, max(5, calls // 3), {"prompt": "p"})
    overhead_1024_thumb = overhead(big_t, fake_big.inner_ms[-max(5, calls // 3):])
    print(f"  with thumbnails on: overhead {overhead_1024_thumb:.2f} ms per call (thumbnail {thumb_ms:.2f} ms)")
    # The same two measurements with the pixel hash streamed (identical digests, checked first).
    assert streamed_pixel_hash(big) == _formats.pixel_hash(big)
    assert streamed_pixel_hash(fake_small.picture) == _formats.pixel_hash(fake_small.picture)
    with replaced(_formats, "pixel_hash", streamed_pixel_hash):
        s_small, _, _ = measure_wrapped(fake_small, fake_small.inner_ms, session, calls, {"prompt": "p"})
        s_big, _, _ = measure_wrapped(fake_big, fake_big.inner_ms, session, calls, {"prompt": "p"})
    per_1024_streamed = overhead(s_big, fake_big.inner_ms[-calls:]) - overhead(s_small, fake_small.inner_ms[-calls:])
    print(f"  with the pixel hash streamed instead:      {per_1024_streamed:8.2f} ms added by the 1024x1024 output "
          f"(= {per_1024_streamed / raw_sha:.1f}x raw SHA-256)")

    full: dict[str, float] = {}
    if args.full_size:
        print("\nthe tiny pipeline itself at 1024x1024 (1 step, 1 image)")
        big_kwargs = {"prompt": "a harbour", "num_inference_steps": 1, "height": BIG, "width": BIG}
        totals_f, inner_f, _ = measure_wrapped(tiny, inner, session, 3, big_kwargs)
        full = {"tiny_1024_call_ms": statistics.median(inner_f), "tiny_1024_overhead_ms": overhead(totals_f, inner_f)}
        print(f"  pipeline call itself (median of 3)         {full['tiny_1024_call_ms']:8.1f} ms")
        print(f"  recording overhead per call                {full['tiny_1024_overhead_ms']:8.2f} ms")

    fixed_ok = record_overhead < TARGET_FIXED_MS
    per_ok = per_1024 <= TARGET_PER_1024_VS_SHA * raw_sha
    # On a busy machine medians stretch; the best-case ratio is the one contention cannot flatter.
    per_1024_best = overhead(big_totals, fake_big.inner_ms[-calls:], best=True) - overhead(
        small_totals, fake_small.inner_ms[-calls:], best=True)
    print(f"\ntargets: fixed overhead {record_overhead:.2f} ms (best {record_overhead_best:.2f}) < "
          f"{TARGET_FIXED_MS:.0f} ms: {'met' if fixed_ok else 'MISSED'}; per 1024x1024 output {per_1024:.2f} ms <= "
          f"{TARGET_PER_1024_VS_SHA:.0f} x {raw_sha:.2f} ms: {'met' if per_ok else 'MISSED'} "
          f"(best cases: {per_1024_best:.2f} ms = {per_1024_best / raw_sha_best:.1f}x {raw_sha_best:.2f} ms)")
    if not per_ok:
        in_call = {"pixel hash": big_parts.get("pixel hash (SHA-256 of canonical pixels)", 0.0),
                   "perceptual hash": big_parts.get("perceptual hash (reference_hash)", 0.0)}
        worst = max(in_call, key=lambda k: in_call[k])
        print(f"  per 1024x1024 output, in the wrapped call: pixel hash {in_call['pixel hash']:.2f} ms, perceptual "
              f"hash {in_call['perceptual hash']:.2f} ms; budget {TARGET_PER_1024_VS_SHA * raw_sha:.2f} ms; "
              f"the larger part is the {worst}")
        if in_call["pixel hash"] > 1.5 * raw_sha:
            print(f"  pixel hash: it copies the image in 4 MiB strips (crop + tobytes) before hashing; streaming "
                  f"Pillow's raw encoder into SHA-256 measured {streamed_ms:.2f} ms ({streamed_ms / raw_sha:.1f}x "
                  f"raw SHA-256) with no large temporary buffers")
        sized = phash_ms - phash_small_ms
        if sized > raw_sha:
            print(f"  perceptual hash, the part that grows with the image: {sized:.2f} ms (1024 px {phash_ms:.2f} - "
                  f"64 px {phash_small_ms:.2f}): luma conversion at full size, then a BOX resize to 128 px; "
                  "Image.reduce() by the integer factor first (or draft() for JPEG), then convert, cuts it")
    if not fixed_ok:
        top = sorted((k for k in tiny_parts if not k.startswith("append")), key=lambda k: -tiny_parts[k])[:2]
        print("  the fixed cost is mostly " + " and ".join(f"{k}: {tiny_parts[k]:.2f} ms" for k in top))
        if tiny_parts.get("perceptual hash (reference_hash)", 0.0) > 1.0:
            print(f"  perceptual hash: {phash_small_ms:.2f} ms even for a 64x64 image (48 BOX resizes of 16 "
                  "regions x 3 planes and the DCT, in Pillow, per candidate)")
        if tiny_parts.get("SQLite commit (WAL fsync)", 0.0) > 1.0:
            print(f"  SQLite commit: one WAL fsync per entry (raw fsync here {fsync_ms:.2f} ms), the price of "
                  "'durable on return'; it is one fsync per call already, and the perceptual-hash index is "
                  "written by searches, not here")
    db.close()
    shutil.rmtree(tmp, ignore_errors=True)  # the store and key of this run: nothing worth keeping
    summary = {
        "record_overhead_ms": round(record_overhead, 3),
        "record_overhead_best_ms": round(record_overhead_best, 3),
        "hash_1024_ms": round(hash_1024, 3),
        "raw_sha256_1024_ms": round(raw_sha, 3),
        "raw_sha256_1024_best_ms": round(raw_sha_best, 3),
        "overhead_1024_ms": round(overhead_1024, 3),
        "per_1024_output_ms": round(per_1024, 3),
        "per_1024_vs_raw_sha256": round(per_1024 / raw_sha, 2),
        "per_1024_best_vs_raw_sha256_best": round(per_1024_best / raw_sha_best, 2),
        "phash_64_ms": round(phash_small_ms, 3),
        "pixel_hash_1024_ms": round(pixel_hash_ms, 3),
        "pixel_hash_in_call_1024_ms": round(big_parts.get("pixel hash (SHA-256 of canonical pixels)", 0.0), 3),
        "phash_in_call_1024_ms": round(big_parts.get("perceptual hash (reference_hash)", 0.0), 3),
        "streamed_sha256_1024_ms": round(streamed_ms, 3),
        "per_1024_output_streamed_ms": round(per_1024_streamed, 3),
        "pixel_hash_page_faults_in_call": round(
            big_profile.faults.get("pixel hash (SHA-256 of canonical pixels)", 0) / calls),
        "phash_1024_ms": round(phash_ms, 3),
        "thumbnail_1024_ms": round(thumb_ms, 3),
        "thumbnails_overhead_ms": round(thumb_overhead, 3),
        "tiny_call_ms": round(tiny_call, 3),
        "sqlite_commit_ms": round(tiny_parts.get("SQLite commit (WAL fsync)", 0.0), 3),
        "sign_entry_ms": round(tiny_parts.get("sign entry (Ed25519 + canonical JSON)", 0.0), 3),
        "sign_checkpoint_ms": round(tiny_parts.get("sign checkpoint (Ed25519)", 0.0), 3),
        "fsync_ms": round(fsync_ms, 3),
        "model_identity_ms": round(identity_ms, 3),
        "target_fixed_met": fixed_ok,
        "target_per_1024_met": per_ok,
        **{k: round(v, 3) for k, v in full.items()},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
