"""Benchmark: how fast does `provenance` append, export and verify journals?

Everything runs in one process tree, in a temporary directory (the store and
``PROVENANCE_HOME`` both live there), and every figure is printed next to the
raw primitive it is built on, measured in the same run on the same machine:

* raw Ed25519 sign and verify per second (`cryptography`) over a real
  checkpoint body, SHA-256 throughput, and the rate of small write + fdatasync;
* ``Store.append``: one entry per transaction (WAL, ``synchronous=FULL``, one
  fsync and one signed checkpoint per append), with realistic ~300-byte
  bodies (prompts, floats, 64-bit seeds);
* ``Store.append_many`` in batches of 100 and of 1000 (one transaction, one
  fsync and one checkpoint per batch); the batch-1000 figure is the build of
  the large journal below;
* ``Store.export`` of that journal (``--entries``, default 100,000) to a file,
  and ``verify_file`` on it in a fresh subprocess, so that its peak RSS is the
  verifier's own (the child's RSS right after its imports is reported too),
  in the default mode and with ``thorough=True``; the same journal exported
  with ``all_checkpoints=True`` is verified as well, for comparison.

Ratios are also given by CPU time, which a busy (shared) machine distorts less
than the wall clock.  ``--quick`` (2,000 entries) is a smoke test: it is too
short to show effects that appear only past 4,096 entries between checkpoints.

Targets (reported, never asserted): batched append >= 0.5 x raw sign rate;
verification >= raw verify rate; verifier memory flat in the journal length
(< 100 MB for 100k entries).

Run it as ``python benchmarks/bench_journal.py [--entries N] [--quick]``.
The last line printed is one JSON object with the headline numbers.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import provenance
except ImportError:  # not installed: use the source tree next to this file
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import provenance

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance._encoding import canonical_json, encode_value
from provenance.journal import ENTRY_PAYLOAD_TYPE, Checkpoint, origin_for, pae
from provenance.keys import SigningKey
from provenance.store import NewEntry, Store

__all__ = ["main", "make_bodies"]

TARGET_BATCH_VS_SIGN = 0.5
TARGET_VERIFY_VS_RAW = 1.0
TARGET_VERIFY_RSS_MB = 100.0


# --- helpers --------------------------------------------------------------------------


def rate(fn: Callable[[], object], seconds: float, *, chunk: int = 64) -> tuple[float, float]:
    """Calls per second of `fn` by wall clock and by this process's CPU time, over about `seconds`."""
    fn()  # warm up
    done = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    while True:
        for _ in range(chunk):
            fn()
        done += chunk
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed, done / max(time.process_time() - cpu_start, 1e-9)


_PROMPT_WORDS = (
    "a watercolor painting of lighthouse at dusk over stormy sea with seagulls soft golden light "
    "portrait old fisherman weathered face dramatic rim lighting 35mm film grain cinematic "
    "isometric city blocks neon signs rain reflections cyberpunk alley steam market stalls "
    "botanical illustration fern leaves ink wash muted palette highly detailed octane render "
    "misty forest clearing deer morning fog volumetric rays ultra wide landscape"
)
_WORDS = tuple(_PROMPT_WORDS.split())
_NEGATIVE = (
    "blurry, low quality, jpeg artifacts, extra fingers, watermark",
    "text, signature, deformed hands, oversaturated",
    "lowres, bad anatomy, cropped, worst quality",
)
_MODELS = ("sdxl-base-1.0", "sd-1.5", "flux.1-dev", "playground-v2.5")
_SAMPLERS = ("euler_a", "dpmpp_2m_karras", "ddim", "heun")


def make_bodies(count: int, seed: str = "bench-journal") -> list[dict[str, Any]]:
    """Deterministic generation-step bodies of about 300 canonical bytes each."""
    rng = random.Random(seed)
    bodies = []
    for _ in range(count):
        bodies.append(
            {
                "prompt": " ".join(rng.choices(_WORDS, k=rng.randint(10, 16))),
                "negative_prompt": rng.choice(_NEGATIVE),
                "model": rng.choice(_MODELS),
                "sampler": rng.choice(_SAMPLERS),
                "seed": rng.getrandbits(64),  # usually above 2**53: tagged as {"$int": ...}
                "steps": rng.randint(20, 50),
                "guidance_scale": round(rng.uniform(3.0, 12.0), 1),
                "strength": round(rng.random(), 3),
                "width": 1024,
                "height": rng.choice((768, 1024, 1344)),
            }
        )
    return bodies


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


# --- the verifier child ---------------------------------------------------------------


# Run with `python -c` in a fresh interpreter that imports only what a verifier
# needs, so that its RSS after imports is a verifier's baseline and its peak is
# the verifier's own.  argv: journal file, trusted public key PEM, "1" for thorough.
_CHILD = """
import json, resource, sys, time
from pathlib import Path

def rss_kb(field):
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0

from provenance.keys import load_public_key
from provenance.verify import verify_file

path, pem, thorough = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
trusted = [load_public_key(Path(pem).read_bytes())]
baseline_rss, baseline_hwm = rss_kb("VmRSS"), rss_kb("VmHWM")
start, cpu_start = time.perf_counter(), time.process_time()
verdict = verify_file(path, trusted=trusted, thorough=thorough)
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
print(json.dumps({
    "seconds": elapsed,
    "cpu_seconds": cpu,
    "status": verdict.status,
    "code": verdict.code,
    "reason": verdict.reason,
    "entries": verdict.entries,
    "checkpoints": verdict.checkpoints,
    "baseline_rss_kb": baseline_rss,
    "baseline_hwm_kb": baseline_hwm,
    "peak_hwm_kb": rss_kb("VmHWM"),
    "self_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
}))
"""


def run_verifier(path: Path, pem: Path, thorough: bool) -> dict[str, Any]:
    """Verify in a subprocess; its rusage is collected with wait4, so it is its own."""
    command = [sys.executable, "-c", _CHILD, str(path), str(pem), "1" if thorough else "0"]
    env = dict(os.environ)
    src = str(Path(provenance.__file__).resolve().parents[1])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    wall = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    output = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - wall
    if proc.returncode != 0:
        raise RuntimeError(f"verifier child failed with exit code {proc.returncode}")
    result: dict[str, Any] = json.loads(output.decode().strip().splitlines()[-1])
    result["wait4_maxrss_kb"] = usage.ru_maxrss  # KiB on Linux
    result["wall_seconds"] = wall
    result["user_seconds"] = usage.ru_utime
    result["sys_seconds"] = usage.ru_stime
    return result


# --- the benchmark --------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=None, help="journal length to export and verify (100000)")
    parser.add_argument("--quick", action="store_true", help="a small, fast run (CI smoke test: 2,000 entries)")
    parser.add_argument(
        "--no-all-checkpoints",
        action="store_true",
        help="skip verifying the all_checkpoints=True export (saves about a third of the verification time)",
    )
    args = parser.parse_args(argv)

    entries = args.entries if args.entries is not None else (2_000 if args.quick else 100_000)
    if entries < 2:
        parser.error("--entries must be at least 2")
    primitive_s = 0.25 if args.quick else 1.0
    append_s = 0.5 if args.quick else 2.0
    batch100_s = 0.5 if args.quick else 1.5
    began = time.perf_counter()
    results: dict[str, Any] = {}
    notes: list[str] = []
    load_start = os.getloadavg()[0]

    print(
        f"provenance {provenance.__version__}, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, {'quick' if args.quick else 'full'} run, {entries:,} journal entries",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="provenance-bench-") as tmp:
        home = Path(tmp)
        os.environ["PROVENANCE_HOME"] = str(home)  # nothing touches the real data directory
        key = SigningKey.generate("bench")
        pem = home / "bench.pub.pem"
        pem.write_text(key.public.to_pem())
        bodies = make_bodies(1000)
        body_mean = statistics.fmean(len(canonical_json(encode_value(b))) for b in bodies)

        # -- raw primitives ---------------------------------------------------------
        private = Ed25519PrivateKey.generate()
        public = private.public_key()
        now = datetime.datetime.now(datetime.UTC)
        checkpoint_body = Checkpoint(origin_for("0" * 32), entries, hashlib.sha256(b"root").digest(), now).body()
        signature = private.sign(checkpoint_body)

        def raw_ed25519() -> tuple[tuple[float, float], tuple[float, float]]:
            sign = rate(lambda: private.sign(checkpoint_body), primitive_s)
            verify = rate(lambda: public.verify(signature, checkpoint_body), primitive_s)
            return sign, verify

        (raw_sign_0, raw_sign_cpu_0), (raw_verify_0, raw_verify_cpu_0) = raw_ed25519()

        with Store(home / "sample.sqlite") as sample_store:
            sample_journal = sample_store.create_journal(key, title="sample")
            sample = sample_store.append(sample_journal, "generate", bodies[0], key=key)
        payload = sample.payload
        entry_pae = pae(ENTRY_PAYLOAD_TYPE, payload)
        entry_sig = private.sign(entry_pae)
        raw_sign_entry, _ = rate(lambda: private.sign(entry_pae), primitive_s / 2)
        raw_verify_entry, _ = rate(lambda: public.verify(entry_sig, entry_pae), primitive_s / 2)

        mib = os.urandom(1 << 20)
        sha_bulk, _ = rate(lambda: hashlib.sha256(mib).digest(), primitive_s, chunk=4)
        sha_entry, _ = rate(lambda: hashlib.sha256(payload).digest(), primitive_s / 2, chunk=256)
        results["raw_sha256_mb_per_s"] = sha_bulk * (1 << 20) / 1e6
        results["raw_sha256_entry_per_s"] = sha_entry

        block = os.urandom(4096)
        fd = os.open(home / "fsync-probe", os.O_WRONLY | os.O_CREAT, 0o600)
        try:

            def write_fsync() -> None:  # what a SQLite WAL commit ends with
                os.pwrite(fd, block, 0)
                os.fdatasync(fd)

            raw_fsync, _ = rate(write_fsync, primitive_s, chunk=8)
        finally:
            os.close(fd)
        results["raw_fsync_per_s"] = raw_fsync
        print(f"  raw primitives done ({time.perf_counter() - began:.1f} s)", flush=True)

        store = Store(home / "store.sqlite")
        try:  # a private attribute: read it, but do not let it break the benchmark
            journal_mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
            synchronous = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                store._db.execute("PRAGMA synchronous").fetchone()[0], "?"
            )
        except Exception:
            journal_mode, synchronous = "?", "?"
        durability = f"journal_mode={journal_mode}, synchronous={synchronous}, one fsync per append"
        results["durability"] = durability

        # -- per-entry commit -------------------------------------------------------
        journal = store.create_journal(key, title="per-entry appends")
        for body in bodies[:5]:  # warm up
            store.append(journal, "generate", body, key=key)
        latencies: list[float] = []
        start, cpu_start = time.perf_counter(), time.process_time()
        while True:
            t0 = time.perf_counter()
            store.append(journal, "generate", bodies[len(latencies) % len(bodies)], key=key)
            t1 = time.perf_counter()
            latencies.append(t1 - t0)
            if t1 - start >= append_s and len(latencies) >= 20:
                break
        append_per_s = len(latencies) / (time.perf_counter() - start)
        append_cpu_ms = (time.process_time() - cpu_start) / len(latencies) * 1e3
        latencies.sort()
        p50 = latencies[len(latencies) // 2] * 1e3
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3
        results["append_per_s"] = append_per_s
        results["append_p50_ms"] = p50
        results["append_p99_ms"] = p99
        results["append_cpu_ms"] = append_cpu_ms
        print(f"  per-entry appends done ({time.perf_counter() - began:.1f} s)", flush=True)

        # -- batches of 100 ---------------------------------------------------------
        journal100 = store.create_journal(key, title="batches of 100")
        store.append_many(journal100, [NewEntry("generate", bodies[j]) for j in range(100)], key=key)  # warm up
        done = 0
        start = time.perf_counter()
        while True:
            batch = [NewEntry("generate", bodies[(done + j) % len(bodies)]) for j in range(100)]
            store.append_many(journal100, batch, key=key)
            done += 100
            if time.perf_counter() - start >= batch100_s:
                break
        batch100_per_s = done / (time.perf_counter() - start)
        results["append_batched_100_per_s"] = batch100_per_s
        print(f"  batches of 100 done ({time.perf_counter() - began:.1f} s)", flush=True)

        # -- the large journal, in batches of 1000 (the batch-1000 measurement) ------
        big = store.create_journal(key, title=f"{entries} entries")
        remaining = entries - 1  # the journal.create entry is the first
        batch_times: list[tuple[int, float]] = []
        build_start, build_cpu = time.perf_counter(), time.process_time()
        while remaining > 0:
            n = min(1000, remaining)
            batch = [NewEntry("generate", bodies[(remaining - j) % len(bodies)]) for j in range(n)]
            t0 = time.perf_counter()
            store.append_many(big, batch, key=key)
            batch_times.append((n, time.perf_counter() - t0))
            remaining -= n
        build_s = time.perf_counter() - build_start
        batch1000_cpu_per_s = (entries - 1) / max(time.process_time() - build_cpu, 1e-9)
        batch1000_per_s = sum(n for n, _ in batch_times) / sum(t for _, t in batch_times)
        results["append_batched_per_s"] = batch1000_per_s
        tenth = max(1, len(batch_times) // 10)
        first_rate = sum(n for n, _ in batch_times[:tenth]) / sum(t for _, t in batch_times[:tenth])
        last_rate = sum(n for n, _ in batch_times[-tenth:]) / sum(t for _, t in batch_times[-tenth:])
        print(f"  {entries:,}-entry journal built in {build_s:.1f} s ({time.perf_counter() - began:.1f} s)", flush=True)

        # -- export -----------------------------------------------------------------
        exported = home / "journal.jsonl"
        start = time.perf_counter()
        store.export(big, exported)
        export_s = time.perf_counter() - start
        dense: Path | None = None
        if not args.no_all_checkpoints:
            dense = home / "journal-all-checkpoints.jsonl"
            store.export(big, dense, all_checkpoints=True)
        store.close()
        file_bytes = exported.stat().st_size
        file_mb = file_bytes / 1e6
        with exported.open("rb") as handle:
            checkpoints_in_file = sum(1 for line in handle if line.startswith(b'{"note":'))
        results["journal_entries"] = entries
        results["journal_file_mb"] = file_mb
        results["journal_checkpoints"] = checkpoints_in_file
        results["export_entries_per_s"] = entries / export_s
        print(f"  export done ({time.perf_counter() - began:.1f} s)", flush=True)

        # -- verification in fresh subprocesses ---------------------------------------
        plan = [("default", exported, False), ("thorough", exported, True)]
        if dense is not None:
            plan.append(("all_checkpoints", dense, False))
        runs: dict[str, dict[str, Any]] = {}
        for label, path, thorough in plan:
            r = runs[label] = run_verifier(path, pem, thorough)
            print(
                f"  verify ({label}) done: {r['status']}/{r['code']}, {r['seconds']:.1f} s "
                f"({time.perf_counter() - began:.1f} s)",
                flush=True,
            )
            if r["entries"] != entries or r["status"] != "valid":
                notes.append(f"verify ({label}) gave {r['status']} ({r['code']}): {r['reason']}")

        # The machine may be shared: measure the raw rates again; ratios use the mean.
        (raw_sign_1, raw_sign_cpu_1), (raw_verify_1, raw_verify_cpu_1) = raw_ed25519()

    raw_sign = (raw_sign_0 + raw_sign_1) / 2
    raw_verify = (raw_verify_0 + raw_verify_1) / 2
    raw_sign_cpu = (raw_sign_cpu_0 + raw_sign_cpu_1) / 2
    raw_verify_cpu = (raw_verify_cpu_0 + raw_verify_cpu_1) / 2
    results["raw_sign_per_s"] = raw_sign
    results["raw_verify_per_s"] = raw_verify
    results["raw_sign_cpu_per_s"] = raw_sign_cpu
    results["raw_verify_cpu_per_s"] = raw_verify_cpu
    results["raw_message_bytes"] = len(checkpoint_body)
    results["append_batched_cpu_per_s"] = batch1000_cpu_per_s

    def verify_rate(label: str, cpu: bool = False) -> float:
        return float(runs[label]["entries"] / runs[label]["cpu_seconds" if cpu else "seconds"])

    def peak_mb(label: str) -> float:
        return float(max(runs[label]["peak_hwm_kb"], runs[label]["wait4_maxrss_kb"])) / 1024

    v_default, v_thorough = verify_rate("default"), verify_rate("thorough")
    baseline_mb = runs["default"]["baseline_rss_kb"] / 1024
    results["verify_entries_per_s"] = v_default
    results["verify_thorough_entries_per_s"] = v_thorough
    results["verify_cpu_entries_per_s"] = verify_rate("default", cpu=True)
    results["verify_peak_rss_mb"] = peak_mb("default")
    results["verify_baseline_rss_mb"] = baseline_mb
    results["verify_thorough_peak_rss_mb"] = peak_mb("thorough")
    if "all_checkpoints" in runs:
        results["verify_all_checkpoints_entries_per_s"] = verify_rate("all_checkpoints")
        results["verify_all_checkpoints_peak_rss_mb"] = peak_mb("all_checkpoints")
    results["verify_mb_per_s"] = file_mb / runs["default"]["seconds"]
    results["verify_status"] = runs["default"]["status"]
    results["elapsed_s"] = time.perf_counter() - began
    results["loadavg_1m_end"] = os.getloadavg()[0]

    # -- report ---------------------------------------------------------------------
    def vs(value: float, raw: float, value_cpu: float, raw_cpu: float, what: str) -> str:
        return f"{value / raw:.3f} x raw {what} (by CPU time {value_cpu / raw_cpu:.3f})"

    rows: list[tuple[str, str, str, str]] = [  # (what, value, unit, comparison)
        ("Raw primitives (this run; Ed25519 measured at start and at end, ratios use the mean)", "", "", ""),
        (
            f"  Ed25519 sign, {len(checkpoint_body)}-byte checkpoint body",
            fmt_rate(raw_sign),
            "/s",
            f"start {raw_sign_0:,.0f}, end {raw_sign_1:,.0f}; by CPU time {raw_sign_cpu:,.0f}",
        ),
        (
            f"  Ed25519 verify, {len(checkpoint_body)}-byte checkpoint body",
            fmt_rate(raw_verify),
            "/s",
            f"start {raw_verify_0:,.0f}, end {raw_verify_1:,.0f}; by CPU time {raw_verify_cpu:,.0f}",
        ),
        (
            f"  Ed25519 sign, {len(entry_pae)}-byte entry PAE",
            fmt_rate(raw_sign_entry),
            "/s",
            f"{raw_sign_entry / raw_sign_0:.2f} x checkpoint-body sign (start)",
        ),
        (
            f"  Ed25519 verify, {len(entry_pae)}-byte entry PAE",
            fmt_rate(raw_verify_entry),
            "/s",
            f"{raw_verify_entry / raw_verify_0:.2f} x checkpoint-body verify (start)",
        ),
        ("  SHA-256, 1 MiB buffers", f"{results['raw_sha256_mb_per_s']:,.0f}", "MB/s", ""),
        (
            f"  SHA-256, one {len(payload)}-byte entry payload",
            fmt_rate(sha_entry),
            "/s",
            f"{sha_entry / raw_verify:,.0f} x raw verify",
        ),
        ("  4 KiB pwrite + fdatasync (same filesystem)", fmt_rate(raw_fsync), "/s", ""),
        ("Append (Store, realistic bodies)", "", "", ""),
        (
            f"  append, per-entry commit ({synchronous}, 1 fsync/append)",
            fmt_rate(append_per_s),
            "/s",
            f"{append_per_s / raw_fsync:.2f} x raw fsync, {append_per_s / raw_sign:.3f} x raw sign",
        ),
        (
            "    latency p50 / p99",
            f"{p50:.2f} / {p99:.2f}",
            "ms",
            f"CPU {append_cpu_ms:.2f} ms/append: the rest is waiting (fsync, then a CPU)",
        ),
        (
            "  append_many, batches of 100",
            fmt_rate(batch100_per_s),
            "/s",
            f"{batch100_per_s / raw_sign:.3f} x raw sign",
        ),
        (
            "  append_many, batches of 1000",
            fmt_rate(batch1000_per_s),
            "/s",
            vs(batch1000_per_s, raw_sign, batch1000_cpu_per_s, raw_sign_cpu, "sign")
            + f"; target >= {TARGET_BATCH_VS_SIGN}",
        ),
        (f"    first / last {tenth} batch(es) of the build", f"{first_rate:,.0f} / {last_rate:,.0f}", "/s", ""),
        ("Export", "", "", ""),
        (f"  Store.export, {entries:,} entries", fmt_rate(entries / export_s), "entries/s", f"{export_s:.2f} s"),
        (
            "  file size",
            f"{file_mb:,.1f}",
            "MB",
            f"{file_bytes / entries:,.0f} B/entry; body ~{body_mean:.0f} B, payload {len(payload)} B",
        ),
        ("  checkpoints in the file", f"{checkpoints_in_file:,}", "", ""),
        ("Verify (verify_file in a fresh subprocess, key pinned)", "", "", ""),
        (
            "  default",
            fmt_rate(v_default),
            "entries/s",
            vs(v_default, raw_verify, verify_rate("default", True), raw_verify_cpu, "verify")
            + f"; target >= {TARGET_VERIFY_VS_RAW}",
        ),
        (
            "  thorough=True (every entry signature)",
            fmt_rate(v_thorough),
            "entries/s",
            vs(v_thorough, raw_verify, verify_rate("thorough", True), raw_verify_cpu, "verify"),
        ),
    ]
    if "all_checkpoints" in runs:
        rows.append(
            (
                f"  default, all_checkpoints=True export ({runs['all_checkpoints']['checkpoints']:,} checkpoints)",
                fmt_rate(verify_rate("all_checkpoints")),
                "entries/s",
                vs(
                    verify_rate("all_checkpoints"),
                    raw_verify,
                    verify_rate("all_checkpoints", True),
                    raw_verify_cpu,
                    "verify",
                ),
            )
        )
    rows += [
        ("  verify throughput, default", f"{results['verify_mb_per_s']:.1f}", "MB/s", ""),
        ("  child RSS after imports (baseline)", f"{baseline_mb:.1f}", "MB", ""),
        (
            "  verifier peak RSS, default",
            f"{peak_mb('default'):.1f}",
            "MB",
            f"+{peak_mb('default') - baseline_mb:.1f} MB over baseline; target < {TARGET_VERIFY_RSS_MB:.0f} MB",
        ),
        ("  verifier peak RSS, thorough", f"{peak_mb('thorough'):.1f}", "MB", ""),
    ]
    if "all_checkpoints" in runs:
        rows.append(("  verifier peak RSS, all_checkpoints export", f"{peak_mb('all_checkpoints'):.1f}", "MB", ""))

    width = max(len(r[0]) for r in rows if r[1]) + 2
    vwidth = max(len(r[1]) for r in rows) + 1
    print()
    print(f"Durability of Store.append: {durability}.")
    print(
        f"Bodies: ~{body_mean:.0f} bytes of canonical JSON (prompt, negative prompt, model, sampler, "
        f"64-bit seed, floats); signed entry payload {len(payload)} B."
    )
    print(
        f"Load average (1 min) at start {load_start:.2f}, at end {results['loadavg_1m_end']:.2f} "
        f"on {os.cpu_count()} CPUs (ratios by CPU time are the less load-sensitive ones)."
    )
    print()
    for what, value, unit, comparison in rows:
        if not value:
            print(what)
        else:
            print(f"{what:<{width}}{value:>{vwidth}} {unit:<10} {comparison}".rstrip())
    print()
    checks = [
        (
            f"batched append (1000) >= {TARGET_BATCH_VS_SIGN} x raw sign",
            batch1000_per_s / raw_sign >= TARGET_BATCH_VS_SIGN,
            f"{batch1000_per_s / raw_sign:.3f}",
        ),
        (
            "verification >= raw verify",
            v_default / raw_verify >= TARGET_VERIFY_VS_RAW,
            f"{v_default / raw_verify:.2f}",
        ),
        (
            f"verifier peak RSS < {TARGET_VERIFY_RSS_MB:.0f} MB",
            peak_mb("default") < TARGET_VERIFY_RSS_MB,
            f"{peak_mb('default'):.1f} MB",
        ),
    ]
    results["targets_met"] = {name: ok for name, ok, _ in checks}
    print("Targets (reported, not asserted):")
    for name, ok, value in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {name}: {value}")
    for note in notes:
        print(f"  note: {note}")
    print(f"Total time {results['elapsed_s']:.1f} s.")
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
