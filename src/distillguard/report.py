"""Write the scan report files exactly as shared/spec/report.md names them."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from .schema import ACCOUNTS_COLUMNS, ACTIONS, CLUSTERS_COLUMNS


def rfc3339(ms: pl.Expr) -> pl.Expr:
    """Epoch milliseconds -> RFC 3339 UTC text (empty when null)."""
    return (
        pl.from_epoch(ms, time_unit="ms").dt.replace_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").fill_null("")
    )


def ms_to_rfc3339(ms: int | None) -> str | None:
    if ms is None:
        return None
    d = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    # %Y does not zero-pad years before 1000 on every platform; RFC 3339 needs four digits.
    return f"{d.year:04d}" + d.strftime("-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def accounts_frame(acc: pl.DataFrame) -> pl.DataFrame:
    """The replay's per-account result in ``accounts.csv`` columns and formats."""
    return acc.select(
        "account_id",
        pl.col("score").clip(0.0, 1.0).round(4).alias("score"),
        pl.when(pl.col("level") >= 2).then(pl.lit("true")).otherwise(pl.lit("false")).alias("flagged"),
        pl.col("level").cast(pl.Int64).replace_strict(dict(enumerate(ACTIONS)), return_dtype=pl.String).alias("action"),
        pl.col("cluster_id").fill_null(""),
        rfc3339(pl.col("first_flag")).alias("first_flagged_ts"),
        pl.col("events").cast(pl.Int64),
        pl.col("events_before_flag").cast(pl.Int64),
        pl.col("reasons").fill_null(""),
    ).sort(["score", "account_id"], descending=[True, False])


def clusters_frame(cl: pl.DataFrame) -> pl.DataFrame:
    return cl.select(
        "cluster_id", pl.col("accounts").cast(pl.Int64), pl.col("events").cast(pl.Int64),
        pl.col("score").clip(0.0, 1.0).round(4),
        pl.when(pl.col("flagged")).then(pl.lit("true")).otherwise(pl.lit("false")).alias("flagged"),
        rfc3339(pl.col("first_flagged_ts")).alias("first_flagged_ts"),
        pl.col("reasons").fill_null(""),
    )


def write_report(out_dir: str | Path, acc: pl.DataFrame, clusters: pl.DataFrame, summary: dict) -> dict:
    """Write accounts.csv, clusters.csv and summary.json (quarantine.jsonl is written while reading)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    a = accounts_frame(acc)
    c = clusters_frame(clusters)
    assert a.columns == ACCOUNTS_COLUMNS and c.columns == CLUSTERS_COLUMNS
    a.write_csv(out / "accounts.csv")
    c.write_csv(out / "clusters.csv")
    summary = dict(summary)
    summary.update({
        "accounts": a.height,
        "flagged_accounts": int((a["flagged"] == "true").sum()),
        "clusters": c.height,
        "flagged_clusters": int((c["flagged"] == "true").sum()) if c.height else 0,
        "actions": {k: int(v) for k, v in a.group_by("action").len().iter_rows()},
    })
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
