"""``distillguard train``: refit the learned layer from labeled traffic.

Labels come from the simulator's dev split (never the holdout split the benchmark reports on)
or from analysts' decisions. Each account weighs the same whatever its volume, so a handful of
very busy accounts cannot dominate the fit; cumulative and trailing-window snapshots are both
training rows because the model scores both at run time.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Sequence

import polars as pl

from .features.account import FEATURES
from .ingest import IngestStats, Quarantine, expand_inputs
from .pipeline import prepare
from .replay import ReplayConfig, account_snapshots
from .scoring.model import AccountModel, fit


def labeled_snapshots(inputs: Sequence[str], labels_csv: str | Path, cfg: ReplayConfig | None = None) -> pl.DataFrame:
    """Snapshots of every account with ``y`` (1 = attack phase) and a per-account weight ``w``."""
    cfg = cfg or ReplayConfig()
    spill = Path(tempfile.mkdtemp(prefix="distillguard-train-"))
    try:
        with Quarantine(None) as q:
            prep = prepare(expand_inputs(inputs), spill, q, IngestStats(), tick_ms=cfg.tick_ms)
        snaps = account_snapshots(prep.ticks, cfg)
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    lab = pl.read_csv(labels_csv, schema_overrides={"attack_start_ts": pl.String, "campaign": pl.String})
    lab = lab.with_columns(
        pl.col("attack_start_ts").fill_null("").map_elements(
            lambda s: int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000) if s else None, return_dtype=pl.Int64
        ).alias("start_ms")
    )
    df = snaps.join(lab.select("account_id", "label", "start_ms", "population"), on="account_id", how="inner")
    df = df.with_columns(
        ((pl.col("label") == "attack") & (pl.col("start_ms").is_null() | (pl.col("tick") >= pl.col("start_ms")))).cast(pl.Int8).alias("y")
    )
    # Rows of a turncoat before it turned are neither clean negatives nor positives: drop them.
    df = df.filter(~((pl.col("label") == "attack") & (pl.col("y") == 0)))
    return df.with_columns((1.0 / pl.len().over("account_id")).alias("w"))


def train(inputs: Sequence[str], labels_csv: str | Path, out: str | Path, *, C: float = 0.05, version: str | None = None) -> AccountModel:
    """Fit the sign-constrained logistic model on labeled traffic and write it to ``out``."""
    cfg = ReplayConfig()
    df = labeled_snapshots(inputs, labels_csv, cfg)
    cum = df.select([pl.col("x_" + f).alias(f) for f in FEATURES] + ["y", "w"])
    win = df.filter(pl.col("w_n") >= cfg.min_window_events).select([pl.col("w_x_" + f).alias(f) for f in FEATURES] + ["y", "w"])
    both = pl.concat([cum, win])
    X = both.select(FEATURES).to_numpy().astype(float)
    y = both["y"].to_numpy()
    w = both["w"].to_numpy()
    model = fit(X, y, sample_weight=w / w.mean(), C=C, meta={
        "version": version or datetime.utcnow().strftime("lr-%Y%m%d%H%M"),
        "trained_on": [str(p) for p in inputs], "rows": int(len(y)), "positives": int(y.sum()),
    })
    p = model.predict_proba(both.select([pl.col(f).alias("x_" + f) for f in FEATURES]))
    from sklearn.metrics import roc_auc_score
    model.meta["train_auroc"] = float(roc_auc_score(y, p, sample_weight=w))
    model.to_json(out)
    return model
