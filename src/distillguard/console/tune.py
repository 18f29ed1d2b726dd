"""``distillguard tune``: analyst decisions -> training labels -> refit of the learned layer.

Decisions in the console store become labels (``confirm`` / upheld appeal = attack,
``false_positive`` / lifted appeal = benign, ``inconclusive`` = not used; a cluster decision
labels its members unless a member has a later decision of its own). They are fed to the same
``train.labeled_snapshots`` + ``scoring.model.fit`` path as ``distillguard train``, optionally
together with a benchmark ``labels.csv`` (analyst labels win). The report compares the current
and the refitted model on the labelled accounts (AUROC, recall, false-positive rate, precision at
the challenge threshold, and at the refitted threshold), and the new model is written only with
``apply=True``.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl

from .store import Store


def analyst_labels(store: Store) -> pl.DataFrame:
    rows = [(a, r["label"]) for a, r in store.latest_labels().items() if r.get("label") in ("attack", "benign")]
    return pl.DataFrame(rows, schema={"account_id": pl.String, "label": pl.String}, orient="row")


def _metrics(acc: pl.DataFrame, col: str, thr: float) -> dict:
    from sklearn.metrics import roc_auc_score

    y = (acc["label"] == "attack").to_numpy()
    p = acc[col].to_numpy()
    hit = p >= thr
    tp, fp = int((hit & y).sum()), int((hit & ~y).sum())
    pos, neg = int(y.sum()), int((~y).sum())
    return {"threshold": round(thr, 4), "auroc": float(roc_auc_score(y, p)) if 0 < pos < len(y) else None,
            "recall": tp / pos if pos else None, "fpr": fp / neg if neg else None,
            "precision": tp / (tp + fp) if tp + fp else None, "attack": pos, "benign": neg}


def _best_threshold(acc: pl.DataFrame, col: str) -> float:
    """Threshold maximising F1 on the labelled accounts (ties: the higher, fewer false positives)."""
    y = (acc["label"] == "attack").to_numpy()
    p = acc[col].to_numpy()
    best, best_f1 = 0.6, -1.0
    for t in np.round(np.arange(0.30, 0.96, 0.01), 2):
        hit = p >= t
        tp = (hit & y).sum()
        f1 = 2 * tp / (hit.sum() + y.sum()) if hit.sum() + y.sum() else 0.0
        if f1 >= best_f1:
            best, best_f1 = float(t), f1
    return best


def tune(store_path: str | Path, events: Sequence[str] | None, out_model: str | Path, *, apply: bool = False,
         base_labels: str | Path | None = None, C: float = 0.05) -> dict:
    """Refit from the store's analyst labels; return before/after metrics; write only if ``apply``."""
    from ..features.account import FEATURES
    from ..replay import ReplayConfig
    from ..scoring.model import AccountModel, fit
    from ..scoring.policy import Policy
    from ..train import labeled_snapshots

    store = Store(store_path)
    try:
        lab = analyst_labels(store)
        inputs = list(events) if events else json.loads(store.meta("inputs", "[]") or "[]")
        summary = json.loads(store.meta("summary", "{}") or "{}")
    finally:
        store.close()
    n_analyst = lab.height
    lab = lab.with_columns(pl.lit("analyst").alias("population"), pl.lit("").alias("campaign"), pl.lit("").alias("attack_start_ts"))
    if base_labels:
        base = pl.read_csv(base_labels, infer_schema=False).select("account_id", "label", "population", "campaign", "attack_start_ts")
        base = base.filter(~pl.col("account_id").is_in(lab["account_id"].to_list()))
        lab = pl.concat([lab, base.with_columns(pl.col("campaign").fill_null(""), pl.col("attack_start_ts").fill_null(""))])
    if lab.filter(pl.col("label") == "attack").height == 0 or lab.filter(pl.col("label") == "benign").height == 0:
        raise ValueError(f"need at least one attack and one benign label to refit ({n_analyst} analyst labels so far)")
    if not inputs or not all(Path(p).exists() for p in inputs):
        raise ValueError(f"the labelled log is not available: {inputs}")
    cfg = ReplayConfig(tick_ms=int(float(summary.get("tick_seconds", 60)) * 1000))
    with tempfile.TemporaryDirectory(prefix="distillguard-tune-") as tmp:
        csv = Path(tmp) / "labels.csv"
        lab.write_csv(csv)
        df = labeled_snapshots(inputs, csv, cfg)
    if df.height == 0:
        raise ValueError("no labelled account appears in the log")
    cum = df.select([pl.col("x_" + f).alias(f) for f in FEATURES] + ["y", "w"])
    win = df.filter(pl.col("w_n") >= cfg.min_window_events).select([pl.col("w_x_" + f).alias(f) for f in FEATURES] + ["y", "w"])
    both = pl.concat([cum, win])
    y = both["y"].to_numpy()
    if y.min() == y.max():
        raise ValueError("the labelled snapshots hold a single class")
    w = both["w"].to_numpy()
    old = AccountModel.from_json()
    new = fit(both.select(FEATURES).to_numpy().astype(float), y, sample_weight=w / w.mean(), C=C, meta={
        "version": datetime.now(timezone.utc).strftime("lr-tuned-%Y%m%d%H%M"), "trained_on": list(inputs),
        "analyst_labels": n_analyst, "base_labels": str(base_labels) if base_labels else None,
        "rows": int(len(y)), "positives": int(y.sum()), "previous": (old.meta or {}).get("version")})

    def per_account(model: AccountModel) -> np.ndarray:
        pc = model.predict_proba(df, "x_")
        pw = np.where(df["w_n"].to_numpy() >= cfg.min_window_events, model.predict_proba(df, "w_x_"), 0.0)
        return np.maximum(pc, pw)

    acc = (df.select("account_id", "label").with_columns(pl.Series("p_old", per_account(old)), pl.Series("p_new", per_account(new)))
           .group_by("account_id").agg(pl.col("label").first(), pl.col("p_old").max(), pl.col("p_new").max()))
    thr0 = Policy().challenge
    thr1 = _best_threshold(acc, "p_new")
    new.meta["challenge_threshold"] = thr1
    res = {
        "labels": {"analyst": n_analyst, "total": lab.height, "in_log": acc.height},
        "before": _metrics(acc, "p_old", thr0), "after": _metrics(acc, "p_new", thr0), "after_tuned_threshold": _metrics(acc, "p_new", thr1),
        "threshold": {"before": thr0, "after": thr1},
        "changed": [{"feature": f, "before": float(a), "after": float(b)} for f, a, b in zip(FEATURES, old.coef, new.coef) if abs(a - b) > 1e-6],
        "out_model": str(out_model), "applied": False,
    }
    if apply:
        new.to_json(out_model)
        Path(out_model).with_suffix(".policy.yaml").write_text(f"# from distillguard tune ({n_analyst} analyst labels)\nthresholds:\n  challenge: {thr1}\n")
        res["applied"] = True
        res["out_policy"] = str(Path(out_model).with_suffix(".policy.yaml"))
    return res


def format_report(res: dict) -> str:
    def f(v):
        return "—" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    lines = [f"labels: {res['labels']['analyst']} from analysts, {res['labels']['total']} in all, {res['labels']['in_log']} accounts in the log",
             f"{'metric':<12}{'before':>10}{'after':>10}{'after@thr':>11}"]
    for k in ("auroc", "recall", "fpr", "precision"):
        lines.append(f"{k:<12}{f(res['before'][k]):>10}{f(res['after'][k]):>10}{f(res['after_tuned_threshold'][k]):>11}")
    lines.append(f"challenge threshold: {res['threshold']['before']} -> {res['threshold']['after']}")
    for c in res["changed"]:
        lines.append(f"  {c['feature']:<16}{c['before']:+.3f} -> {c['after']:+.3f}")
    lines.append(("written: " + res["out_model"]) if res["applied"] else "(dry run)")
    return "\n".join(lines)
