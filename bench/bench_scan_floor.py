#!/usr/bin/env python3
"""The lowest scan / bare-parse ratio this design can reach, measured part by part.

usage: python3 bench/bench_scan_floor.py --log EVENTS.jsonl [--runs 3] [--summary SCAN/summary.json] [--out F]

``bench_scan.py`` reports the whole scan against a bare single-threaded orjson parse. This
script asks how far that ratio can fall at all, by timing on the same file and the scan's own
8 MB blocks, each single-threaded (CPU seconds of this process, medians over ``--runs``):

- ``bare``: ``orjson.loads`` per line, the yardstick;
- ``arrow_json``: ``pyarrow.json.read_json`` with the event schema, nothing else: the fastest
  strict columnar JSON parser among the project's dependencies (Polars' NDJSON reader is
  faster but not strict: it turns a number, an object or an array in a string field into text,
  and keeps the first of two duplicate keys where the reference validator keeps the last);
- ``strict_parse``: the scan's validator (``JsonBlockParser``: screens, Arrow, conformance
  checks, timestamp parsing), what every record must go through to be quarantined exactly;
- ``exchange_features``: the per-exchange reduction of the parsed rows (``exchange_features``
  with the scan's text-signal cache, in the scan's 65,536-row groups).

With ``--summary`` (a scan's ``summary.json`` of the same file) the stages after reading
(de-duplication, marks, replay; they need every row of an account, so they cannot start
before reading ends) are added, and the floor is

    (strict_parse + exchange_features) / cores + stages after reading,

the wall time of a scan whose reading is perfectly parallel on ``cores`` cores. Its ratio to
``bare`` is a lower bound for ``bench_scan.py``'s ratio on this code, when both are timed in the
same stretch (the bare parse's own speed drifts most). Numbers go to stdout and ``--out``
(default bench/out/scan-floor.json).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.json as pj

from distillguard.features.exchange import TextSignalCache, exchange_features
from distillguard.ingest.jsonl_block import ARROW_BLOCK, JsonBlockParser
from distillguard.ingest.reader import BLOCK_BYTES
from distillguard.ingest.records import MAX_LINE_BYTES
from distillguard.ingest.streams import LineBlock, iter_chunks, iter_line_blocks
from distillguard.pipeline import REDUCE_ROWS
from distillguard.schema import FIELD_KINDS

READ_STAGE = "reading + exchange signals"
_RAW_TYPES = {"str": pa.string(), "int": pa.int64(), "num": pa.float64(), "bool": pa.bool_(), "ts": pa.string()}


def blocks(path: Path) -> list[bytes]:
    """The file's blocks of whole lines, cut by the scan's own reader (lines it rejects unparsed,
    such as over-long ones, are left out as the scan quarantines them)."""
    items = iter_line_blocks(iter_chunks(str(path), None), block_bytes=BLOCK_BYTES, max_line=MAX_LINE_BYTES)
    return [it.data for it in items if isinstance(it, LineBlock)]


def cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def bare(path: Path) -> float:
    def run():
        with open(path, "rb") as f:
            for line in f:
                try:  # (free when nothing is raised: a bad line costs only its own attempt)
                    orjson.loads(line)
                except orjson.JSONDecodeError:
                    pass
    return cpu(run)


def arrow_json(data: list[bytes]) -> float:
    opts = pj.ParseOptions(explicit_schema=pa.schema([(n, _RAW_TYPES[k]) for n, k in FIELD_KINDS.items()]),
                           unexpected_field_behavior="ignore")
    ropts = pj.ReadOptions(use_threads=False, block_size=ARROW_BLOCK)

    def run():
        for b in data:
            try:
                pj.read_json(io.BytesIO(b), read_options=ropts, parse_options=opts)
            except pa.ArrowInvalid:
                pass  # a block with a bad line: Arrow gives up on it (the validator bisects)
    return cpu(run)


def strict_and_features(data: list[bytes]) -> tuple[float, float, int]:
    parser = JsonBlockParser(use_threads=False)
    tables = []
    t0 = time.process_time()
    for b in data:
        tables.append(parser.parse(b).table)
    parse_s = time.process_time() - t0
    rows = sum(t.num_rows for t in tables)
    cache = TextSignalCache(seed=0)
    groups, group, n = [], [], 0
    for t in tables:
        group.append(t)
        n += t.num_rows
        if n >= REDUCE_ROWS:
            groups.append(pa.concat_tables(group))
            group, n = [], 0
    if group:
        groups.append(pa.concat_tables(group))
    feat_s = cpu(lambda: [exchange_features(g, cache) for g in groups])
    return parse_s, feat_s, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--summary", type=Path, default=None, help="summary.json of a scan of the same log")
    ap.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "scan-floor.json")
    a = ap.parse_args()
    data = blocks(a.log)
    res: dict[str, list[float]] = {"bare": [], "arrow_json": [], "strict_parse": [], "exchange_features": []}
    rows = 0
    for _ in range(a.runs):
        res["bare"].append(bare(a.log))
        res["arrow_json"].append(arrow_json(data))
        p, f, rows = strict_and_features(data)
        res["strict_parse"].append(p)
        res["exchange_features"].append(f)
    med = {k: round(statistics.median(v), 2) for k, v in res.items()}
    # Ratios from the unrounded medians: a small log parses in under 5 ms, which rounds to 0.
    bare_s = max(statistics.median(res["bare"]), 1e-9)
    out = {"log": str(a.log), "mb": round(sum(map(len, data)) / 1e6, 1), "rows": rows, "runs": a.runs,
           "cores": a.cores, "cpu_s_median": med,
           "times_bare": {k: round(statistics.median(v) / bare_s, 2) for k, v in res.items()}}
    parse_floor = med["strict_parse"] / a.cores
    out["floor_parse_only_s"] = round(parse_floor, 2)
    out["floor_read_stage_s"] = round((med["strict_parse"] + med["exchange_features"]) / a.cores, 2)
    if a.summary:
        stages = json.loads(a.summary.read_text())["stage_seconds"]
        after = round(sum(v for k, v in stages.items() if k != READ_STAGE), 2)
        out["after_reading_s"] = after
        out["scan_read_stage_s"] = stages.get(READ_STAGE)
        out["floor_s"] = round(out["floor_read_stage_s"] + after, 2)
        out["floor_ratio"] = round(out["floor_s"] / bare_s, 2)
        out["floor_ratio_features_free"] = round((parse_floor + after) / bare_s, 2)
    print(json.dumps(out, indent=2))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
