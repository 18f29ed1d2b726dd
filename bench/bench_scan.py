#!/usr/bin/env python3
"""Scan throughput and memory on >= 1M simulated exchanges (with prompts).

usage: python3 bench/bench_scan.py [--scale 3.2] [--hours 24] [--runs 3] [--keep DIR] [--distinct-prompts]

Reports, as medians over --runs: exchanges/s of `distillguard scan` (in a child process, so its
peak RSS is measured alone), the peak RSS, a bare single-threaded orjson parse of the same JSONL
(lines/s), and the ratio scan time / parse time. Numbers go to stdout and bench/out/scan.json.

The simulator draws prompts from bounded corpora, so its logs repeat prompts more than real
traffic may (the 1M log: 27 % of its prompts are distinct), and the scan computes text signals
once per distinct text in a group of rows. ``--distinct-prompts`` measures the worst case
instead: a copy of the log where every prompt is made unique (a counter appended), written to
bench/out/scan-distinct.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson


def bare_parse(path: Path) -> float:
    t = time.perf_counter()
    n = 0
    with open(path, "rb") as f:
        for line in f:
            orjson.loads(line)
            n += 1
    return time.perf_counter() - t


def distinct_copy(src: Path, dst: Path) -> Path:
    """``src`` with a counter appended to every prompt (no two prompts alike); made once."""
    if dst.exists():
        return dst
    tmp = dst.with_suffix(".tmp")
    with open(src, "rb") as f, open(tmp, "wb") as out:
        for i, line in enumerate(f):
            rec = orjson.loads(line)
            if isinstance(rec.get("prompt"), str):
                rec["prompt"] += f"\n\n(#{i})"
            out.write(orjson.dumps(rec) + b"\n")
    tmp.rename(dst)
    return dst


def scan_once(events: Path, out: Path) -> tuple[float, float]:
    code = (
        "import resource, sys, time\n"
        "from distillguard.scan import scan\n"
        "t = time.perf_counter()\n"
        f"scan([{str(events)!r}], {str(out)!r}, show_progress=False)\n"
        "dt = time.perf_counter() - t\n"
        "print(dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    dt, rss_kb = r.stdout.split()[-2:]
    return float(dt), int(rss_kb) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=3.2)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None, help="reuse/keep the simulated traffic here")
    ap.add_argument("--distinct-prompts", action="store_true", help="scan a copy with every prompt made unique")
    a = ap.parse_args()
    work = a.keep or Path(tempfile.mkdtemp(prefix="dg-bench-"))
    events = work / "events.jsonl"
    if not events.exists():
        from distillguard.sim import simulate
        simulate(work, seed=99, hours=a.hours, scale=a.scale, split="holdout")
    if a.distinct_prompts:
        events = distinct_copy(events, work / "events-distinct.jsonl")
    n = sum(1 for _ in open(events, "rb"))
    size_mb = events.stat().st_size / 1e6
    parse, scan_t, rss = [], [], []
    for i in range(a.runs):
        parse.append(bare_parse(events))
        dt, mb = scan_once(events, work / f"scan-{i}")
        scan_t.append(dt)
        rss.append(mb)
    res = {
        "exchanges": n, "file_mb": round(size_mb, 1), "runs": a.runs,
        "scan_s_median": round(statistics.median(scan_t), 2),
        "scan_exchanges_per_s": round(n / statistics.median(scan_t)),
        "peak_rss_mb_median": round(statistics.median(rss)),
        "bare_orjson_parse_s_median": round(statistics.median(parse), 2),
        "bare_orjson_lines_per_s": round(n / statistics.median(parse)),
        "scan_to_parse_ratio": round(statistics.median(scan_t) / statistics.median(parse), 2),
    }
    print(json.dumps(res, indent=2))
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    res["distinct_prompts"] = a.distinct_prompts
    (out / ("scan-distinct.json" if a.distinct_prompts else "scan.json")).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
