"""``run_spark_scan``: the scan of ``distillguard.scan`` with the heavy steps in Apache Spark.

Same functions as the local engine, applied by Spark instead of by ``pipeline.prepare``:

1. ``mapInArrow`` over the input files (one task per file): ``ingest.read_events`` validates the
   file (bad records are returned to the driver and written to ``quarantine.jsonl``) and
   ``features.exchange.exchange_features`` reduces its batches, grouped as the local scan groups
   them (``reduction_groups``, one ``TextSignalCache`` per task), to compact rows.
2. Spark SQL: duplicate ``request_id``s dropped (first in ``(_source, _line)`` order wins) and
   ``new_global`` (first ``ts`` of each prompt hash in the whole log), both as narrow aggregates
   joined back to the rows.
3. ``groupBy(bucket).applyInArrow``: ``features.marks.account_ticks`` per hash bucket of accounts
   -> tick sums, link rows and account attributes.
4. ``replay.replay`` on the driver over the collected tick sums (one row per active
   account-tick, ~2-3 orders of magnitude smaller than the log) and link rows; it scores the
   accounts and the per-epoch clusters and gives the final clusters, as in the local engine.
   ``report.write_report`` writes the same files.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import polars as pl
import pyarrow as pa

from ..features.marks import FIRST_SEEN_KEYS, ITEM_NEW_BANDS
from ..ingest import EventTimeWindow
from ..replay import ReplayConfig, empty_result, replay
from ..report import ms_to_rfc3339, write_report
from ..scoring.model import AccountModel
from ..scoring.policy import Policy
from ..scoring.rules import load_rules
from .tasks import KIND_ATTR, KIND_LINK, KIND_TICK, ROWS_PER_BUCKET, _empty_marks, compact_schema, ingest_files, marks_per_bucket, marks_schema

# Exchanges whose per-tick sums make one replay chunk on the driver (~1M tick rows).
EXCHANGES_PER_REPLAY_CHUNK = 2_000_000

# ---------------------------------------------------------------- driver


def expand(inputs: Sequence[str]) -> list[str]:
    """Local files/globs/dirs as ``ingest.expand_inputs``; object-store URIs (files or prefixes) listed with pyarrow.fs."""
    from ..ingest import expand_inputs

    local = [p for p in inputs if "://" not in p or p.startswith("file://")]
    out = expand_inputs([p.removeprefix("file://") for p in local]) if local else []
    for uri in (p for p in inputs if "://" in p and not p.startswith("file://")):
        from pyarrow import fs

        filesystem, path = fs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(path)
        scheme = uri.split("://", 1)[0]
        if info.type == fs.FileType.Directory:
            sel = filesystem.get_file_info(fs.FileSelector(path, recursive=True))
            ok = (".jsonl", ".ndjson", ".json", ".parquet", ".csv", ".gz", ".zst")
            out += sorted(f"{scheme}://{f.path}" for f in sel if f.type == fs.FileType.File and f.path.endswith(ok))
        elif info.type == fs.FileType.File:
            out.append(uri)
        else:
            raise FileNotFoundError(f"input not found: {uri!r}")
    return out


def get_session(master: str | None = "local[2]", conf: dict | None = None, app_name: str = "distillguard-scan"):
    """A SparkSession; ``master=None`` keeps whatever ``spark-submit`` configured."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    b = SparkSession.builder.appName(app_name)
    if master:
        b = b.master(master)
        cores = 1
        if master.startswith("local["):
            inner = master[6:-1]
            cores = (os.cpu_count() or 1) if inner == "*" else int(inner.split(",")[0])
        b = b.config("spark.sql.shuffle.partitions", str(max(2, 2 * cores))).config("spark.ui.enabled", "false")
        b = b.config("spark.driver.memory", os.environ.get("DISTILLGUARD_SPARK_DRIVER_MEMORY", "4g"))
    b = b.config("spark.sql.execution.arrow.pyspark.enabled", "true").config("spark.ui.showConsoleProgress", "false")
    # One Spark task per core: a Python worker's Polars/Arrow pools would otherwise each take every
    # core of the machine (oversubscription on an executor running several tasks).
    for var in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS"):
        b = b.config(f"spark.executorEnv.{var}", os.environ.get(var, "1"))
    b = b.config("spark.sql.session.timeZone", "UTC")
    for k, v in (conf or {}).items():
        b = b.config(k, str(v))
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("DISTILLGUARD_SPARK_LOG_LEVEL", "ERROR"))
    return spark


def _publish(local: Path, out_uri: str) -> None:
    from pyarrow import fs

    filesystem, base = fs.FileSystem.from_uri(out_uri)
    filesystem.create_dir(base, recursive=True)
    for f in local.iterdir():
        with open(f, "rb") as src, filesystem.open_output_stream(f"{base.rstrip('/')}/{f.name}") as dst:
            shutil.copyfileobj(src, dst, 16 << 20)


def run_spark_scan(inputs: Sequence[str], out_dir: str | Path, *, master: str | None = "local[2]", tick_ms: int = 60_000,
                   rules_dir: str | Path | None = None, model_path: str | Path | None = None,
                   policy_path: str | Path | None = None, config: ReplayConfig | None = None,
                   buckets: int | None = None, spark=None, conf: dict | None = None,
                   marks_out: str | None = None, timings: dict | None = None, event_window=None) -> dict:
    """Scan exchange logs with Spark and write the report files (same as ``scan.scan``) into ``out_dir``.

    Parameters
    ----------
    inputs : local files/globs/dirs, or object-store URIs (``s3://bucket/prefix/``) of JSONL/Parquet/CSV logs.
        Each file is one ingest task: split big logs into many files (the usual part-file layout).
    out_dir : local directory or object-store URI for accounts.csv, clusters.csv, quarantine.jsonl, summary.json.
    master : Spark master for a new session (``local[2]``, ``spark://...``, ``yarn``); ``None`` uses the
        session that ``spark-submit`` configured.
    tick_ms : decision tick (overrides ``config.tick_ms``).
    buckets : applyInArrow groups of accounts; default one per ~400k valid exchanges (at least the
        shuffle partitions).
    spark : an existing SparkSession to use (it is not stopped).
    conf : extra Spark settings for a new session.
    marks_out : optional Parquet location for the per-(account, tick) sums and link rows.
    timings : optional dict that receives seconds per stage.
    event_window : ``ingest.EventTimeWindow`` (default the scan's): pinned on the driver, so every
        task applies the same bounds.

    Returns
    -------
    The summary dict written to summary.json (``engine: "spark"`` added).
    """
    from pyspark.sql import functions as F

    t0 = time.time()
    tm = timings if timings is not None else {}
    cfg = config or ReplayConfig()
    if tick_ms != cfg.tick_ms:
        cfg = ReplayConfig(**{**cfg.__dict__, "tick_ms": tick_ms})
    paths = expand(inputs)
    rules = load_rules(rules_dir)
    model = AccountModel.from_json(model_path)
    policy = Policy.from_yaml(policy_path) if policy_path else Policy()
    remote_out = "://" in str(out_dir) and not str(out_dir).startswith("file://")
    out = Path(tempfile.mkdtemp(prefix="dg-out-")) if remote_out else Path(str(out_dir).removeprefix("file://"))
    out.mkdir(parents=True, exist_ok=True)

    own_session = spark is None
    local_tmp: str | None = None
    spark = spark or get_session(master, conf)
    tm["session"] = time.time() - t0
    try:
        # 1. ingest + exchange features, one task per file.
        cschema = compact_schema()
        files = spark.createDataFrame([(i, p) for i, p in enumerate(paths)], "idx int, path string")
        files = files.repartitionByRange(max(1, len(paths)), "idx")  # one file per task
        window = (event_window or EventTimeWindow.for_scan()).pinned()
        ex = files.mapInArrow(ingest_files(cschema, window), _struct(cschema)).persist()
        metas = sorted((r["_source"], json.loads(r["_q"])) for r in ex.filter(F.col("_q").isNotNull()).select("_source", "_q").collect())
        tm["ingest"] = time.time() - t0 - tm["session"]
        read = sum(m["read"] for _, m in metas)
        valid_in = sum(m["valid"] for _, m in metas)
        reasons: dict[str, int] = {}
        for _, m in metas:
            for k, v in m["reasons"].items():
                reasons[k] = reasons.get(k, 0) + v
        with open(out / "quarantine.jsonl", "w", encoding="utf-8") as qf:
            for _, m in metas:
                qf.write(m["quarantine"])

        # 2. de-dup (first in file/line order wins) and first occurrence of each prompt in the log.
        t1 = time.time()
        # Narrow aggregates joined back instead of windows over the full rows: a window sorts every
        # compact row by its key; the aggregates are one small row per repeated request id (rare)
        # and per prompt hash, which Spark's adaptive execution broadcasts while they are small.
        rows = ex.filter(F.col("_q").isNull()).drop("_q")
        first = (rows.groupBy("request_id").agg(F.count(F.lit(1)).alias("_n"), F.min(F.struct("_source", "_line")).alias("_f"))
                 .filter(F.col("_n") > 1).select("request_id", F.col("_f._source").alias("_fs"), F.col("_f._line").alias("_fl")))
        rows = (rows.join(first, "request_id", "left")
                .filter(F.col("_fs").isNull() | ((F.col("_source") == F.col("_fs")) & (F.col("_line") == F.col("_fl"))))
                .drop("_fs", "_fl"))
        # First time of each prompt hash and of each MinHash band (``marks.first_seen_marks``).
        hits = []
        for k in FIRST_SEEN_KEYS:
            firsts = rows.filter(F.col(k).isNotNull()).groupBy(k).agg(F.min("ts").alias(f"_t_{k}"))
            rows = rows.join(firsts, k, "left")
            hits.append(F.coalesce(F.col(f"_t_{k}") == F.col("ts"), F.lit(False)))
        bands_new = sum(F.when(h, 1).otherwise(0) for h in hits[1:])
        rows = rows.withColumn("new_global", hits[0]).withColumn(
            "new_item", F.when(F.col("b0").isNull(), hits[0]).otherwise(F.col("h_exact").isNotNull() & (bands_new >= ITEM_NEW_BANDS))
        ).drop(*[f"_t_{k}" for k in FIRST_SEEN_KEYS])
        nb = buckets or max(int(spark.conf.get("spark.sql.shuffle.partitions")), -(-valid_in // ROWS_PER_BUCKET))
        rows = rows.withColumn("_b", F.pmod(F.xxhash64("account_id"), F.lit(nb)))

        # 3. account marks per bucket.
        mschema = marks_schema(cfg.tick_ms)
        tick_cols = [f.name for f in _empty_marks(cfg.tick_ms)[0].to_arrow().schema]
        marks = rows.groupBy("_b").applyInArrow(marks_per_bucket(cfg.tick_ms, mschema), _struct(mschema)).persist()
        ticks_df = marks.filter(F.col("_kind") == KIND_TICK).select(*tick_cols)
        links_df = marks.filter(F.col("_kind") == KIND_LINK).select("account_id", "key", F.col("l_first_ts").alias("first_ts"))
        attrs_df = marks.filter(F.col("_kind") == KIND_ATTR).select("account_id", "org")
        links = _collect(links_df).sort(["account_id", "key"])
        attrs = _collect(attrs_df).sort("account_id")
        if marks_out:
            links_df.write.mode("overwrite").parquet(marks_out.rstrip("/") + "/links")
        # The per-tick sums are the big output (~ one row per account-minute): they go to Parquet in
        # chunks of whole accounts that the driver's replay reads one at a time, never all at once
        # (and never through the driver's result-size limit).
        tick_dir = (marks_out.rstrip("/") + "/ticks") if marks_out else None
        if tick_dir is None and spark.sparkContext.master.startswith("local"):
            local_tmp = tempfile.mkdtemp(prefix="dg-ticks-")
            tick_dir = local_tmp
        agg = ticks_df.agg(F.sum("n").alias("n"), F.min("first_ts").alias("t0"), F.max("last_ts").alias("t1")).collect()[0]
        kept = int(agg["n"] or 0)
        t_min = int(agg["t0"]) if agg["t0"] is not None else None
        t_max = int(agg["t1"]) if agg["t1"] is not None else None
        if tick_dir is not None:
            nchunks = max(1, -(-kept // EXCHANGES_PER_REPLAY_CHUNK))
            chunked = ticks_df.withColumn("_c", F.pmod(F.xxhash64("account_id"), F.lit(nchunks)))
            chunked.write.mode("overwrite").partitionBy("_c").parquet(tick_dir)
            present = sorted(r["_c"] for r in chunked.select("_c").distinct().collect())
            tick_parts = [pl.scan_parquet(f"{tick_dir}/_c={k}/*.parquet", hive_partitioning=False) for k in present]
        else:  # a cluster without a shared marks location: collect (bounded by spark.driver.maxResultSize)
            tick_parts = [_collect(ticks_df)]
        ex.unpersist()
        tm["marks"] = time.time() - t1

        marks.unpersist()

        # 4. replay on the driver; it also gives the final clusters (the link rows are collected
        # for it anyway: components over them with scipy cost far less than rounds of Spark joins).
        t3 = time.time()
        if kept:
            acc, clusters = replay(tick_parts, links, attrs, model, rules, policy, cfg)
        else:
            acc, clusters = empty_result()
        tm["replay"] = time.time() - t3
    finally:
        if own_session:
            spark.stop()
        if local_tmp:
            shutil.rmtree(local_tmp, ignore_errors=True)

    summary = {
        "records_read": read,
        "valid": kept,
        "quarantined": read - valid_in,
        "duplicates_dropped": int(valid_in - kept),
        "quarantine_reasons": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "event_time_start": ms_to_rfc3339(t_min),
        "event_time_end": ms_to_rfc3339(t_max),
        "inputs": [p if "://" in p else str(Path(p).resolve()) for p in paths],
        "tick_seconds": cfg.tick_ms / 1000,
        "rules": [r.id for r in rules],
        "model": (model.meta or {}).get("version", "unversioned"),
        "engine": "spark",
    }
    summary["wall_seconds"] = round(time.time() - t0, 3)
    summary = write_report(out, acc, clusters, summary)
    summary["wall_seconds"] = round(time.time() - t0, 3)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if remote_out:
        _publish(out, str(out_dir))
        shutil.rmtree(out, ignore_errors=True)
    return summary


def _struct(schema: pa.Schema):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def _collect(df) -> pl.DataFrame:
    t = df.toArrow()
    t = t.cast(pa.schema([pa.field(f.name, pa.large_string() if f.type == pa.string() else f.type) for f in t.schema]))
    out = pl.from_arrow(t)
    assert isinstance(out, pl.DataFrame)
    return out
