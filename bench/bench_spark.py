#!/usr/bin/env python3
"""Spark engine scan time at 1M (and optionally 10M) exchanges: local[1] vs local[2], plus a projection.

usage: python3 bench/bench_spark.py [--scale 3.2] [--hours 24] [--parts 8] [--masters local[1] local[2]]
                                    [--events FILE] [--local] [--keep DIR]

Each Spark task runs with one Polars/Arrow thread (the engine's default) and the driver with as many
threads as the master has cores, so local[1] is one core and local[2] two.

Simulates a log (same defaults as bench_scan.py: ~1M exchanges), splits it into --parts JSONL files
(one ingest task each, like part files on object storage), and runs ``run_spark_scan`` in a child
process per master (so each gets a fresh JVM; session start-up is reported separately). With
--local it also times the local engine on the same files. Per-core rate = exchanges / (scan time
without start-up) / cores; the projection to 1e9 exchanges/day uses the local[2] rate. Numbers go to
stdout and bench/out/spark.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
from distillguard.spark.engine import run_spark_scan
tm = {}
t = time.perf_counter()
s = run_spark_scan(json.loads(sys.argv[1]), sys.argv[2], master=sys.argv[3], timings=tm)
print(json.dumps({"wall_s": time.perf_counter() - t, "valid": s["valid"], "timings": tm}))
"""

LOCAL = r"""
import json, sys, time
from distillguard.scan import scan
t = time.perf_counter()
s = scan(json.loads(sys.argv[1]), sys.argv[2], show_progress=False)
print(json.dumps({"wall_s": time.perf_counter() - t, "valid": s["valid"]}))
"""


def split(events: Path, parts: int, out: Path) -> list[str]:
    lines = sum(1 for _ in open(events, "rb"))
    per = math.ceil(lines / parts)
    paths, fh, k = [], None, 0
    with open(events, "rb") as f:
        for i, line in enumerate(f):
            if i % per == 0:
                if fh:
                    fh.close()
                p = out / f"part-{k:04d}.jsonl"
                paths.append(str(p))
                fh = open(p, "wb")
                k += 1
            fh.write(line)
    if fh:
        fh.close()
    return paths


def child(code: str, *args: str, threads: int | None = None) -> dict:
    env = dict(os.environ)
    if threads:  # the driver's own work (the replay) gets as many threads as the master has cores
        env["POLARS_MAX_THREADS"] = str(threads)
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError(r.stderr[-4000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=3.2)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--parts", type=int, default=8)
    ap.add_argument("--masters", nargs="+", default=["local[1]", "local[2]"])
    ap.add_argument("--events", default=None, help="use this JSONL instead of simulating")
    ap.add_argument("--local", action="store_true", help="also time the local engine")
    ap.add_argument("--keep", default=None)
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "spark.json"))
    a = ap.parse_args()

    work = Path(a.keep or tempfile.mkdtemp(prefix="dg-bench-spark-"))
    work.mkdir(parents=True, exist_ok=True)
    events = Path(a.events) if a.events else work / "sim" / "events.jsonl"
    if not events.exists():
        from distillguard.sim import simulate

        t = time.perf_counter()
        simulate(work / "sim", seed=11, hours=a.hours, scale=a.scale)
        print(f"simulated in {time.perf_counter() - t:.0f}s", flush=True)
    (work / "parts").mkdir(exist_ok=True)
    paths = sorted(str(p) for p in (work / "parts").glob("part-*.jsonl")) or split(events, a.parts, work / "parts")
    res: dict = {"file_mb": round(sum(Path(p).stat().st_size for p in paths) / 1e6, 1), "parts": len(paths), "runs": {}}
    for m in a.masters:
        cores = int(m[6:-1])
        r = child(CHILD, json.dumps(paths), str(work / f"out-{m}"), m, threads=cores)
        body = r["wall_s"] - r["timings"].get("session", 0.0)
        r.update(cores=cores, scan_s_without_startup=round(body, 1), exchanges_per_s_per_core=round(r["valid"] / body / cores))
        res["runs"][m] = r
        res["exchanges"] = r["valid"]
        print(m, json.dumps(r), flush=True)
    if a.local:
        r = child(LOCAL, json.dumps(paths), str(work / "out-local"))
        res["runs"]["local-engine"] = r
        print("local engine", json.dumps(r), flush=True)
    ms = [m for m in a.masters if m in res["runs"]]
    if len(ms) >= 2:
        r1, r2 = res["runs"][ms[0]], res["runs"][ms[-1]]
        res["speedup"] = round(r1["scan_s_without_startup"] / r2["scan_s_without_startup"], 2)
    best = res["runs"][ms[-1]]
    rate = best["exchanges_per_s_per_core"]
    per_day = 1e9
    core_s = per_day / rate
    res["projection_1e9_per_day"] = {
        "per_core_rate_used": rate,
        "core_hours_per_day": round(core_s / 3600, 1),
        "cores_for_24h_batch": math.ceil(core_s / 86400),
        "cores_for_1h_batch": math.ceil(core_s / 3600),
        "note": "linear in exchanges; driver replay (tick sums) not included in the executor cores",
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
