"""Executor-side functions of the Spark engine (kept free of the scoring imports, so each Python
worker starts fast): Arrow schemas as they travel in Spark, the per-file ingest function for
``mapInArrow`` and the per-bucket marks function for ``groupBy().applyInArrow``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import polars as pl
import pyarrow as pa

from ..features.exchange import TextSignalCache, exchange_features, reduction_groups
from ..features.marks import account_ticks
from ..schema import EVENT_SCHEMA

# Spark has no unsigned integers: 64-bit hashes travel as their signed bit pattern, the script
# code as a short, and are restored before ``account_ticks`` (so the keys are identical).
_U64 = ("conv", "h_exact", "h_pre", "h_suf", "b0", "b1", "b2", "ctx0", "ctx1")
_U8 = ("script",)
_ARROW_TYPES = {pa.large_string(): pa.string(), pa.string_view(): pa.string(), pa.uint64(): pa.int64(), pa.uint8(): pa.int16()}
KIND_TICK, KIND_LINK, KIND_ATTR = 0, 1, 2
ROWS_PER_BUCKET = 400_000  # compact rows per applyInArrow group (each group is one Polars frame)


def _spark_arrow(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, _ARROW_TYPES.get(f.type, f.type), nullable=True) for f in schema])


def compact_schema() -> pa.Schema:
    """Arrow schema of the compact rows as they travel in Spark, plus ``_q`` (per-file ingest report)."""
    base = exchange_features(EVENT_SCHEMA.empty_table()).to_arrow().schema
    return _spark_arrow(base).append(pa.field("_q", pa.string()))


def marks_schema(tick_ms: int) -> pa.Schema:
    """Union of the three ``account_ticks`` outputs, tagged by ``_kind``."""
    ticks, links, attrs = _empty_marks(tick_ms)
    fields = [pa.field("_kind", pa.int8())] + list(_spark_arrow(ticks.to_arrow().schema))
    fields += [pa.field("key", pa.string()), pa.field("l_first_ts", pa.int64()), pa.field("org", pa.string())]
    return pa.schema(fields)


def _empty_marks(tick_ms: int):
    df = exchange_features(EVENT_SCHEMA.empty_table()).with_columns(pl.lit(False).alias("new_global"), pl.lit(False).alias("new_item"))
    return account_ticks(df, tick_ms)


def _to_spark_types(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns([pl.col(c).reinterpret(signed=True) for c in _U64] + [pl.col(c).cast(pl.Int16) for c in _U8])


def _from_spark_types(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns([pl.col(c).reinterpret(signed=False) for c in _U64] + [pl.col(c).cast(pl.UInt8) for c in _U8])


def _localize(path: str, tmp: str) -> str:
    """A local copy of an object-store file (``s3://``, ``gs://``, ``hdfs://`` via pyarrow.fs)."""
    if "://" not in path or path.startswith("file://"):
        return path.removeprefix("file://")
    from pyarrow import fs

    filesystem, p = fs.FileSystem.from_uri(path)
    local = os.path.join(tmp, os.path.basename(p))
    with filesystem.open_input_stream(p) as src, open(local, "wb") as dst:
        shutil.copyfileobj(src, dst, 16 << 20)
    return local


def ingest_files(schema: pa.Schema, window=None):
    """mapInArrow function: rows (idx, path) -> compact rows of those files + one ``_q`` row per file.

    ``window`` (``ingest.EventTimeWindow``, pinned by the driver) bounds event time as in the scan."""
    from ..ingest import IngestStats, Quarantine, read_events

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in batches:
            for idx, path in zip(b.column("idx").to_pylist(), b.column("path").to_pylist()):
                tmp = tempfile.mkdtemp(prefix="dg-ingest-")
                try:
                    stats = IngestStats()
                    qpath = os.path.join(tmp, "quarantine.jsonl")
                    local = _localize(path, tmp)
                    # As the local scan: rows grouped per reduction call, text signals of pairs
                    # repeated across the file's groups computed once (exact, bounded).
                    cache = TextSignalCache()
                    with Quarantine(qpath) as q:
                        for batch in reduction_groups(read_events([local], q, stats, window=window)):
                            rows = _to_spark_types(exchange_features(batch, cache)).with_columns(pl.lit(idx, pl.Int32).alias("_source"))
                            t = rows.to_arrow()
                            t = t.append_column("_q", pa.nulls(t.num_rows, pa.string())).cast(schema)
                            yield from t.to_batches()
                    qtext = Path(qpath).read_text(encoding="utf-8")
                    if local != path:
                        qtext = qtext.replace(json.dumps(local)[1:-1], json.dumps(path)[1:-1])
                    meta = {"read": stats.read, "valid": stats.valid, "quarantined": stats.quarantined,
                            "reasons": dict(stats.reasons), "quarantine": qtext}
                    cols = {f.name: pa.nulls(1, f.type) for f in schema}
                    cols["_source"] = pa.array([idx], pa.int32())
                    cols["_q"] = pa.array([json.dumps(meta)], pa.string())
                    yield pa.RecordBatch.from_arrays([cols[f.name] for f in schema], schema=schema)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)

    return run


def marks_per_bucket(tick_ms: int, schema: pa.Schema):
    """applyInArrow function: all compact rows of one bucket of accounts -> tagged marks rows."""

    def run(table: pa.Table) -> pa.Table:
        df = pl.from_arrow(table)
        assert isinstance(df, pl.DataFrame)
        df = _from_spark_types(df.drop("_b"))
        ticks, links, attrs = account_ticks(df, tick_ms)
        out = pl.concat([
            ticks.with_columns(pl.lit(KIND_TICK, pl.Int8).alias("_kind")),
            links.rename({"first_ts": "l_first_ts"}).with_columns(pl.lit(KIND_LINK, pl.Int8).alias("_kind")),
            attrs.with_columns(pl.lit(KIND_ATTR, pl.Int8).alias("_kind")),
        ], how="diagonal_relaxed")
        return out.to_arrow().select(schema.names).cast(schema)

    return run


