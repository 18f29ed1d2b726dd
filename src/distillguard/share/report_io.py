"""Read a scan's accounts.csv / clusters.csv into typed frames (shared/spec/report.md)."""

from __future__ import annotations

from pathlib import Path

import polars as pl


def _ms_expr(col: str) -> pl.Expr:
    c = pl.col(col).cast(pl.String).fill_null("")
    return (
        pl.when(c == "").then(None)
        .otherwise(c.str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_zone="UTC", strict=False).dt.epoch("ms"))
        .cast(pl.Int64)
    )


def typed_accounts(df: pl.DataFrame) -> pl.DataFrame:
    """accounts.csv columns with types: flagged bool, first_flag_ms Int64, cluster_id '' for none."""
    return df.with_columns(
        pl.col("account_id").cast(pl.String),
        pl.col("score").cast(pl.Float64),
        pl.col("flagged").cast(pl.String).str.to_lowercase().eq("true").fill_null(False).alias("flagged"),
        pl.col("action").cast(pl.String).fill_null("none"),
        pl.col("cluster_id").cast(pl.String).fill_null(""),
        _ms_expr("first_flagged_ts").alias("first_flag_ms"),
        pl.col("events").cast(pl.Int64),
        pl.col("events_before_flag").cast(pl.Int64),
        pl.col("reasons").cast(pl.String).fill_null(""),
    )


def read_accounts(scan_dir: str | Path) -> pl.DataFrame:
    return typed_accounts(pl.read_csv(Path(scan_dir) / "accounts.csv", infer_schema=False))


def read_clusters(scan_dir: str | Path) -> pl.DataFrame:
    p = Path(scan_dir) / "clusters.csv"
    if not p.exists():
        return pl.DataFrame(schema={"cluster_id": pl.String, "accounts": pl.Int64, "events": pl.Int64, "score": pl.Float64,
                                    "flagged": pl.Boolean, "first_flag_ms": pl.Int64, "reasons": pl.String})
    df = pl.read_csv(p, infer_schema=False)
    return df.with_columns(
        pl.col("cluster_id").cast(pl.String).fill_null(""),
        pl.col("accounts").cast(pl.Int64), pl.col("events").cast(pl.Int64), pl.col("score").cast(pl.Float64),
        pl.col("flagged").cast(pl.String).str.to_lowercase().eq("true").fill_null(False).alias("flagged"),
        _ms_expr("first_flagged_ts").alias("first_flag_ms"),
        pl.col("reasons").cast(pl.String).fill_null(""),
    )
