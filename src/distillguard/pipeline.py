"""From log files to per-(account, tick) sums and link rows: the scan's bounded-memory path.

1. Each record batch is reduced to compact exchange rows (``features.exchange``) and spilled as
   Parquet, split into hash buckets of accounts: every per-account computation then needs one
   bucket at a time, which bounds memory by the bucket size, not the log size.
2. One global pass in DuckDB (memory-limited, spills to disk) over a few narrow columns finds
   duplicate ``request_id``s (first occurrence in file/line order wins) and the first time each
   prompt, and each of its MinHash bands, appears anywhere in the log.
3. Each bucket goes through ``features.marks.account_ticks`` (Polars) — the engine-neutral step.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import duckdb
import polars as pl
import pyarrow as pa

from .features.exchange import REDUCE_ROWS, TextSignalCache, exchange_features, reduction_groups  # noqa: F401 (REDUCE_ROWS: benches)
from .features.marks import FIRST_SEEN_KEYS, account_ticks, first_seen_marks
from .ingest import EventTimeWindow, IngestStats, Quarantine, read_events

# Input bytes per account bucket. Buckets bound the marks' memory, and smaller ones are also
# faster to mark (sorts and hash tables of ~120k rows stay in cache, and the two mark workers
# balance better): 125 MB marked the 1M log ~25 % faster than 500 MB, 62 MB no faster again.
BUCKET_BYTES_OF_INPUT = 125_000_000
# Below this much input one bucket: each bucket has fixed costs (its files, its marks' and its
# replay chunk's planning), which outweigh the gain on a small log (a 273 MB log: 3 buckets were
# ~5 % slower than 1).
SINGLE_BUCKET_BYTES = 300_000_000
# Reduced rows held before they are written out (~100-260 B each): bounds the buffer, and keeps
# the spill at about one file per bucket per this many rows (at least ``FLUSH_ROWS_PER_BUCKET``
# rows a bucket on average, so that a log with many buckets does not leave thousands of tiny files).
SPILL_FLUSH_ROWS = 400_000
FLUSH_ROWS_PER_BUCKET = 10_000
MARK_WORKERS = 2  # buckets marked at once


@dataclass
class Prepared:
    tick_parts: list  # per-bucket (account, tick) sums: DataFrames, or LazyFrames over spilled Parquet
    links: pl.DataFrame
    attrs: pl.DataFrame
    valid: int
    t_min: int | None
    t_max: int | None

    @property
    def ticks(self) -> pl.DataFrame:
        """All per-(account, tick) sums in one frame (small logs; the scan streams ``tick_parts``)."""
        if not self.tick_parts:
            return pl.DataFrame()
        return pl.concat([p.collect() if isinstance(p, pl.LazyFrame) else p for p in self.tick_parts], how="vertical_relaxed")


def n_buckets(paths: Sequence[str]) -> int:
    """Buckets from the input size (compressed inputs count 6x: ~their unpacked size)."""
    size = 0
    for p in paths:
        s = Path(p).stat().st_size
        size += s * (6 if p.endswith((".gz", ".zst", ".parquet")) else 1)
    if size <= SINGLE_BUCKET_BYTES:
        return 1
    return min(256, math.ceil(size / BUCKET_BYTES_OF_INPUT))  # >= 3 past the single-bucket floor


def spill_exchanges(paths: Sequence[str], spill: Path, quarantine: Quarantine, stats: IngestStats, buckets: int,
                    progress: Callable[[int], None] | None = None, workers: int = 2,
                    window: EventTimeWindow | None = None) -> int:
    """Read, validate and reduce every batch; write compact rows to ``spill/b<k>/``. Returns files written.

    Reading batches are grouped to ``REDUCE_ROWS`` rows per reduction (``reduction_groups``); reduction runs in a small
    thread pool while the next batches are parsed: Polars and Arrow release the GIL, and one
    group at a time leaves a core idle. At most ``2 * workers`` groups are in flight, which
    bounds memory. Reduced rows are buffered and written about every ``SPILL_FLUSH_ROWS`` rows
    (``FLUSH_ROWS_PER_BUCKET`` per bucket when that is more), one file per bucket: a file per
    batch and bucket would leave tens of thousands of tiny files on a large log, and the global
    pass over them costs several GB and minutes in file metadata alone.
    """
    for k in range(buckets):
        (spill / f"b{k}").mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    # Text signals of pairs repeated across groups are computed once (exact; bounded memory).
    cache = TextSignalCache()
    buffers: dict[int, list[pl.DataFrame]] = {}
    state = {"rows": 0, "files": 0}
    flush_rows = max(SPILL_FLUSH_ROWS, FLUSH_ROWS_PER_BUCKET * buckets)

    def write(take: dict[int, list[pl.DataFrame]], first_file: int) -> None:
        # Uncompressed, no statistics: the files are read back once, by this process (LZ4 and
        # statistics cost ~40 ms a 70k-row group to save ~30 % of temporary disk).
        for i, (k, parts) in enumerate(sorted(take.items())):
            pl.concat(parts).write_parquet(spill / f"b{k}" / f"part-{first_file + i:06d}.parquet", compression="uncompressed", statistics=False)

    def take_all() -> tuple[dict[int, list[pl.DataFrame]], int]:
        """(the buffers, their first file number); under the lock."""
        take = dict(buffers)
        buffers.clear()
        state["rows"] = 0
        first = state["files"]
        state["files"] += len(take)
        return take, first

    def reduce(batch) -> None:
        rows = exchange_features(batch, cache)
        if buckets == 1:
            parts = {0: rows}
        else:
            rows = rows.with_columns((pl.col("account_id").hash(seed=11) % buckets).alias("_b"))
            parts = {int(k): part.drop("_b") for (k,), part in rows.partition_by("_b", as_dict=True).items()}
        take = None
        with lock:
            for k, part in parts.items():
                buffers.setdefault(k, []).append(part)
            state["rows"] += rows.height
            if state["rows"] >= flush_rows:
                take = take_all()
        if take is not None:
            write(*take)

    pending: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for table in reduction_groups(read_events(paths, quarantine, stats, progress=progress, window=window)):
            pending.append(pool.submit(reduce, table))
            while len(pending) >= 2 * workers:
                pending.popleft().result()
        while pending:
            pending.popleft().result()
    write(*take_all())
    return state["files"]


def global_pass(spill: Path, memory_limit: str) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """(duplicate rows to drop as (_source, _line), first ts of each prompt hash and of each
    MinHash band, by key column) across all buckets."""
    con = duckdb.connect()
    try:
        con.execute(f"SET memory_limit='{memory_limit}'")
        con.execute(f"SET temp_directory='{spill / 'duckdb-tmp'}'")
        con.execute("SET preserve_insertion_order=false")
        src = f"read_parquet('{spill}/b*/*.parquet', union_by_name=true)"
        dups = pl.from_arrow(con.sql(f"""
            WITH ex AS (SELECT request_id, _source, _line FROM {src}),
                 d AS (SELECT request_id FROM ex GROUP BY request_id HAVING count(*) > 1)
            SELECT _source, _line FROM (
                SELECT _source, _line, row_number() OVER (PARTITION BY request_id ORDER BY _source, _line) AS rn
                FROM ex SEMI JOIN d USING (request_id)) WHERE rn > 1""").to_arrow_table())
        con.register("dups_t", dups.to_arrow())
        # The narrow key columns of the de-duplicated rows, read once for the four aggregates.
        cols = ", ".join(FIRST_SEEN_KEYS)
        con.execute(f"""CREATE TEMP TABLE keys AS SELECT {cols}, ts FROM (SELECT {cols}, ts, _source, _line FROM {src})
                        ANTI JOIN dups_t USING (_source, _line)""")
        firsts = {k: pl.from_arrow(con.sql(f"SELECT {k}, min(ts) AS t0 FROM keys WHERE {k} IS NOT NULL GROUP BY {k}").to_arrow_table())
                  for k in FIRST_SEEN_KEYS}
    finally:
        con.close()
    return dups, firsts  # type: ignore[return-value]


def prepare(paths: Sequence[str], spill: Path, quarantine: Quarantine, stats: IngestStats, *, tick_ms: int,
            memory_limit: str = "1GB", read_progress: Callable[[int], None] | None = None,
            stage_progress: Callable[[str, float], None] | None = None,
            window: EventTimeWindow | None = None) -> Prepared:
    """Run steps 1-3 and return the per-(account, tick) sums, link rows and account attributes.

    ``window`` bounds event time by policy (records outside it are quarantined as ``ts_out_of_range``).
    """
    say = stage_progress or (lambda s, f: None)
    buckets = n_buckets(paths)
    spill_exchanges(paths, spill, quarantine, stats, buckets, read_progress, window=window)
    bucket_dirs = [spill / f"b{k}" for k in range(buckets) if any((spill / f"b{k}").glob("*.parquet"))]
    if not bucket_dirs:
        empty = pl.DataFrame()
        return Prepared([], empty, empty, 0, None, None)
    say("de-duplicating", 0.0)
    dups, firsts = global_pass(spill, memory_limit)
    say("account marks", 0.0)

    def mark_bucket(i: int, d: Path) -> tuple:
        df = pl.read_parquet(d / "*.parquet")
        if dups.height:
            df = df.join(dups, on=["_source", "_line"], how="anti")
        df = first_seen_marks(df, firsts)
        span = (df.height, df["ts"].min(), df["ts"].max()) if df.height else (0, None, None)
        t, lk, at = account_ticks(df, tick_ms)
        del df
        if len(bucket_dirs) > 1:
            # Spilled: the replay reads one bucket's sums at a time, so they never all sit in memory.
            path = spill / f"ticks-{i}.parquet"
            t.write_parquet(path, compression="lz4")
            t = pl.scan_parquet(path)
        return t, lk, at, span

    ticks, links, attrs = [], [], []
    valid, t_min, t_max = 0, None, None
    # Two buckets at a time: Polars keeps only ~1.5 cores busy on one bucket's marks, and two
    # buckets' rows still fit the memory target (a bucket is ~125 MB of input).
    with ThreadPoolExecutor(max_workers=MARK_WORKERS) as pool:
        for i, (t, lk, at, (n, lo, hi)) in enumerate(pool.map(mark_bucket, range(len(bucket_dirs)), bucket_dirs)):
            say("account marks", (i + 1) / len(bucket_dirs))
            valid += n
            if n:
                t_min = lo if t_min is None else min(t_min, lo)
                t_max = hi if t_max is None else max(t_max, hi)
            ticks.append(t), links.append(lk), attrs.append(at)
    return Prepared(ticks, pl.concat(links), pl.concat(attrs), valid, t_min, t_max)
