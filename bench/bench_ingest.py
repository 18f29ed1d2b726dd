"""Throughput benchmark for the ingestion layer.

Builds a 1M-line JSONL exchange log with realistic prompts (GSM8K questions and ShareGPT
first turns from ``shared/data``; a synthetic fallback when those are absent) in a temporary
directory, then reports lines/s, median of 3 runs, for

(a) a bare single-threaded ``orjson.loads`` loop over the lines (the baseline to beat), and
(b) :func:`distillguard.ingest.read_events` (full validation, Arrow output).

Usage::

    python bench/bench_ingest.py [--lines 1000000] [--runs 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from distillguard.ingest import IngestStats, Quarantine, read_events
from distillguard.paths import shared_data_dir


def load_prompts(limit: int = 20000) -> list[str]:
    """Real prompts from shared/data (GSM8K + ShareGPT), or synthetic text if unavailable."""
    prompts: list[str] = []
    data = shared_data_dir()
    if data is not None:
        gsm = data / "gsm8k" / "train.jsonl.gz"
        if gsm.exists():
            with gzip.open(gsm, "rb") as fh:
                prompts += [orjson.loads(line)["question"] for line in fh if line.strip()]
        sg = data / "sharegpt_ml_energy" / "sg_90k_part1_html_cleaned_lang_first_sampled.json.gz"
        if sg.exists():
            with gzip.open(sg, "rb") as fh:
                for conv in json.load(fh):
                    turns = conv.get("conversations") or []
                    if turns and turns[0].get("value"):
                        prompts.append(turns[0]["value"])
    if not prompts:
        rng = random.Random(0)
        words = "the of and to a in is you that it for on with as was are this be at".split()
        prompts = [" ".join(rng.choices(words, k=rng.randint(10, 120))) for _ in range(5000)]
    return prompts[:limit]


def build_log(path: Path, n_lines: int, seed: int = 0) -> int:
    """Write ``n_lines`` exchange records shaped like the spec example; returns bytes written."""
    rng = random.Random(seed)
    prompts = load_prompts()
    models = ["frontier-large", "frontier-mini", "frontier-reasoning"]
    uas = ["openai-python/2.3.0", "anthropic-sdk/0.40", "curl/8.5.0", "Mozilla/5.0"]
    base_ms = 1793525400000  # 2026-11-01T09:30:00Z
    out = bytearray()
    written = 0
    with open(path, "wb") as fh:
        for i in range(n_lines):
            ms = base_ms + i * 37
            secs, frac = divmod(ms, 1000)
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:03d}Z"
            acct = rng.randrange(5000)
            rec = {
                "request_id": f"r-{i:08d}",
                "ts": ts,
                "account_id": f"acct_{acct}",
                "payment_fingerprint": f"pf_{acct % 997:04x}",
                "client_ip": f"203.0.{acct % 256}.{rng.randrange(256)}",
                "asn": 64500 + acct % 50,
                "country": "NL",
                "user_agent": rng.choice(uas),
                "model": rng.choice(models),
                "operation": "chat",
                "temperature": round(rng.random(), 2),
                "n": 1,
                "max_tokens": 4096,
                "prompt": rng.choice(prompts),
                "conversation_id": f"c-{rng.randrange(100000)}",
                "turn": 1,
                "status": 200,
                "finish_reason": "stop",
                "input_tokens": rng.randrange(10, 2000),
                "output_tokens": rng.randrange(10, 4000),
            }
            out += orjson.dumps(rec)
            out += b"\n"
            if len(out) > 1 << 24:
                fh.write(out)
                written += len(out)
                out.clear()
        fh.write(out)
        written += len(out)
    return written


def bench_orjson(path: Path) -> int:
    n = 0
    loads = orjson.loads
    with open(path, "rb") as fh:
        for line in fh:
            loads(line)
            n += 1
    return n


def bench_read_events(path: Path) -> int:
    stats = IngestStats()
    with Quarantine(None) as q:
        n = sum(b.num_rows for b in read_events([str(path)], q, stats))
    assert stats.quarantined == 0, stats
    return n


def timed(fn, path: Path, runs: int) -> tuple[float, float, int]:
    """Median lines/s over ``runs``: wall clock, and per CPU-second of this process."""
    rates, cpu_rates = [], []
    n = 0
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        n = fn(path)
        rates.append(n / (time.perf_counter() - t0))
        cpu_rates.append(n / (time.process_time() - c0))
    return statistics.median(rates), statistics.median(cpu_rates), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None, help="write the log here and keep it")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = (args.keep or Path(tmp)) / "bench_events.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            size = build_log(path, args.lines)
        else:
            size = path.stat().st_size
        print(f"log: {args.lines:,} lines, {size / 1e6:.0f} MB ({size / args.lines:.0f} B/line)")
        print(f"cpus: {len(os.sched_getaffinity(0))}, load average: {os.getloadavg()[0]:.1f}")
        for name, fn in [("orjson loop", bench_orjson), ("read_events", bench_read_events)]:
            rate, cpu_rate, n = timed(fn, path, args.runs)
            print(
                f"{name:>12}: {rate:>10,.0f} lines/s wall, {cpu_rate:>10,.0f} lines per CPU-second"
                f"  ({n:,} lines, median of {args.runs})"
            )


if __name__ == "__main__":
    main()
