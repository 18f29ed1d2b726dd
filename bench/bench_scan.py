#!/usr/bin/env python3
"""Scan throughput, CPU and memory on >= 1M simulated exchanges, against a bare parse.

usage: python3 bench/bench_scan.py [--scale 3.2] [--hours 24] [--runs 3] [--keep DIR]
                                   [--logs distinct,repeated] [--cores 2] [--compare SRC_DIR]

Two logs, one row each (medians over ``--runs``):

- ``distinct`` (the headline): the simulated log with every prompt made unique (a counter
  appended). Real traffic repeats prompts far less than the simulator, whose prompts come from
  bounded corpora, and the scan computes text signals once per distinct text; this row is what
  a real log costs.
- ``repeated``: the simulated log as written (the 1M log: 27 % of its prompts are distinct).

Each scan runs as its own process (``python -c 'scan(...)'``), so its peak RSS, its CPU time
(user + system, the whole process: imports included) and its wall time are its own. The
yardstick is a bare single-threaded ``orjson.loads`` of every line of the same file, in this
process, timed in the same round. Reported per log: exchanges/s (whole process), CPU seconds
and CPU ÷ wall (how many cores the scan keeps busy), and the ratios scan / bare parse in wall
time and in CPU time. CPU time is the steadier number on a shared machine.

``--cores 1,2`` repeats every scan pinned to that many cores (``sched_setaffinity`` before
the child starts, so Polars, Arrow and the reading threads size their pools to it): how the
scan scales. ``--compare SRC_DIR`` also scans with another checkout's ``src`` first on the
path (e.g. ``git archive <commit> src | tar -x -C /tmp/old``), alternating with this one in
each round: side-by-side numbers that share the machine's noise. Results go to stdout and
bench/out/scan.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

SRC = Path(__file__).resolve().parent.parent / "src"


def bare_parse(path: Path) -> tuple[float, float]:
    """(wall s, CPU s) of ``orjson.loads`` over every line, single-threaded."""
    w, c = time.perf_counter(), time.process_time()
    with open(path, "rb") as f:
        for line in f:
            orjson.loads(line)
    return time.perf_counter() - w, time.process_time() - c


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


_CHILD = (
    "import resource, sys, time\n"
    "from distillguard.scan import scan\n"
    "t = time.perf_counter()\n"
    "scan([sys.argv[1]], sys.argv[2], show_progress=False)\n"
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
)


def scan_once(events: Path, out: Path, src: Path, cores: int | None) -> dict:
    """One scan in a child process: wall (process and ``scan()`` alone), CPU, peak RSS."""
    env = dict(os.environ, PYTHONPATH=str(src))
    allowed = sorted(os.sched_getaffinity(0))
    pin = (lambda: os.sched_setaffinity(0, allowed[:cores])) if cores else None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _CHILD, str(events), str(out)], capture_output=True, text=True,
                       env=env, preexec_fn=pin)
    wall = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"scan failed ({src}):\n{r.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # (The peak RSS is the child's own: RUSAGE_CHILDREN's is the largest child so far.)
    scan_s, rss_kb = r.stdout.split()[-2:]
    return {"wall_s": wall, "scan_s": float(scan_s), "cpu_s": cpu, "rss_mb": int(rss_kb) / 1024}


def row(n: int, scans: list[dict], parses: list[tuple[float, float]]) -> dict:
    med = lambda xs: statistics.median(xs)  # noqa: E731
    wall, cpu, scan_s = med([s["wall_s"] for s in scans]), med([s["cpu_s"] for s in scans]), med([s["scan_s"] for s in scans])
    pw, pc = med([p[0] for p in parses]), med([p[1] for p in parses])
    return {
        "exchanges_per_s": round(n / wall), "wall_s": round(wall, 2), "scan_call_s": round(scan_s, 2),
        "cpu_s": round(cpu, 2), "cpu_per_wall": round(cpu / wall, 2),
        "peak_rss_mb": round(max(s["rss_mb"] for s in scans)),
        "bare_parse_wall_s": round(pw, 2), "bare_parse_cpu_s": round(pc, 2),
        "ratio_wall": round(wall / pw, 2), "ratio_cpu": round(cpu / pc, 2),
        "walls_s": [round(s["wall_s"], 2) for s in scans], "cpus_s": [round(s["cpu_s"], 2) for s in scans],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=3.2)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None, help="reuse/keep the simulated traffic here")
    ap.add_argument("--logs", default="distinct,repeated", help="which logs, in order: distinct, repeated")
    ap.add_argument("--cores", default="", help="comma-separated core counts to pin each scan to (default: all)")
    ap.add_argument("--compare", type=Path, default=None, help="another checkout's src/ to scan alternately")
    ap.add_argument("--events", type=Path, default=None, help="scan this JSONL instead of simulating (its distinct copy beside it)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "scan.json")
    a = ap.parse_args()
    if a.events:
        events = a.events
        work = a.keep or Path(tempfile.mkdtemp(prefix="dg-bench-"))
    else:
        work = a.keep or Path(tempfile.mkdtemp(prefix="dg-bench-"))
        events = work / "events.jsonl"
        if not events.exists():
            sys.path.insert(0, str(SRC))
            from distillguard.sim import simulate
            simulate(work, seed=99, hours=a.hours, scale=a.scale, split="holdout")
    work.mkdir(parents=True, exist_ok=True)
    logs = {"repeated": events}
    wanted = [x.strip() for x in a.logs.split(",") if x.strip()]
    if "distinct" in wanted:
        logs["distinct"] = distinct_copy(events, events.parent / (events.stem + "-distinct.jsonl"))
    cores = [int(c) for c in a.cores.split(",") if c] or [None]
    codes = {"this": SRC} | ({"compare": a.compare} if a.compare else {})
    results: dict = {"runs": a.runs, "logs": {}}
    for name in wanted:
        path = logs[name]
        n = sum(1 for _ in open(path, "rb"))
        parses: list[tuple[float, float]] = []
        scans: dict[tuple, list[dict]] = {(c, k): [] for c in cores for k in codes}
        for i in range(a.runs):
            parses.append(bare_parse(path))
            for c in cores:
                for k, src in (codes.items() if i % 2 == 0 else reversed(codes.items())):  # alternate the order
                    scans[(c, k)].append(scan_once(path, work / f"scan-{name}-{k}-{c}-{i}", src, c))
        results["logs"][name] = {"file": str(path), "exchanges": n, "file_mb": round(path.stat().st_size / 1e6, 1),
                                 "rows": {f"{k}" + (f"@{c}cores" if c else ""): row(n, s, parses) for (c, k), s in scans.items()}}
        for label, r in results["logs"][name]["rows"].items():
            print(f"{name:9s} {label:16s} {r['exchanges_per_s']:>9,}/s  wall {r['wall_s']:6.2f} s  CPU {r['cpu_s']:6.2f} s  "
                  f"CPU/wall {r['cpu_per_wall']:.2f}  RSS {r['peak_rss_mb']:,} MB  "
                  f"bare parse {r['bare_parse_wall_s']:.2f} s ({r['bare_parse_cpu_s']:.2f} CPU)  "
                  f"ratio wall {r['ratio_wall']:.2f}  CPU {r['ratio_cpu']:.2f}", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
