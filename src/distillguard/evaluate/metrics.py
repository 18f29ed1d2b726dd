"""Detection metrics of a scan against labels, as pure functions over polars frames.

The definitions are those of ``shared/tools/score.py`` (the independent scorer):

* an account is *attack* when its label is exactly ``attack``; every other label is benign;
* a labelled account missing from ``accounts.csv`` counts as unflagged with score 0;
* the population key is ``population`` or ``population/campaign`` when a campaign is set;
* recall, false-positive rate and precision divide by ``max(1, denominator)``;
* harvest leakage = attack-phase exchanges with ``ts <= first_flagged_ts`` (or never
  flagged) / all attack-phase exchanges, where the attack phase is ``ts >= attack_start_ts``
  (all of the account's exchanges when no start is given).

Everything here is vectorised; the only inputs are frames, so it is testable without files.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

from distillguard.evaluate.load import parse_ts_us

_TRUE = ["1", "true", "yes", "t"]  # score.py's truthy()
US_PER_S = 1_000_000
# Graded actions of shared/spec/report.md, weakest first; "none" also stands for accounts
# missing from the report. An account's action is the strongest it reached.
ACTIONS = ("none", "monitor", "challenge", "throttle", "suspend")
# Past-tense names used as keys and column headers for benign accounts per action.
ACTION_NAMES = {"monitor": "monitored", "challenge": "challenged", "throttle": "throttled", "suspend": "suspended"}
CALIBRATION_BINS = 10


def _ratio(num: int, den: int) -> float:
    """``num / max(1, den)``: score.py's convention for empty denominators."""
    return num / max(1, den)


def _fmt_us(col: str) -> pl.Expr:
    """Epoch-microsecond column as RFC 3339 UTC text with millisecond precision."""
    return (pl.col(col).cast(pl.Datetime("us", "UTC"))
            .dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"))


def join_accounts(labels: pl.DataFrame, report: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """Attach each labelled account's scan outcome.

    Parameters
    ----------
    labels : polars.DataFrame
        Text columns ``account_id, label, population, campaign, attack_start_ts``.
    report : polars.DataFrame
        Text columns ``account_id, score, flagged, first_flagged_ts, action`` from accounts.csv.

    Returns
    -------
    accounts : polars.DataFrame
        One row per labelled account: ``account_id, label, population, campaign, key,
        is_attack, in_report, flagged, score, first_us, start_us, action`` (times in epoch
        µs; ``action`` is one of :data:`ACTIONS`, ``none`` when the account is missing from
        the report, or ``unknown`` when the report gives no recognised action).
    warnings : list of str
        Problems worth showing (unparsable timestamps), never fatal.
    """
    warnings: list[str] = []
    first_us, bad_first = parse_ts_us(report["first_flagged_ts"])
    start_us, bad_start = parse_ts_us(labels["attack_start_ts"])
    if bad_first:
        warnings.append(f"{bad_first} unparsable first_flagged_ts value(s) in accounts.csv")
    if bad_start:
        warnings.append(f"{bad_start} unparsable attack_start_ts value(s) in the labels")
    if "action" not in report.columns:  # a report frame built without the column
        report = report.with_columns(pl.lit("", dtype=pl.String).alias("action"))
    rep = report.select(
        "account_id",
        pl.col("flagged").str.strip_chars().str.to_lowercase().is_in(_TRUE).alias("flagged"),
        # float(r.get("score") or 0): an empty or absent score is 0.
        pl.col("score").cast(pl.Float64, strict=False).fill_null(0.0).fill_nan(0.0).alias("score"),
        first_us.alias("first_us"),
        pl.lit(True).alias("in_report"),
        pl.col("action").str.strip_chars().str.to_lowercase().alias("action"),
    )
    campaign = pl.col("campaign")
    df = (
        labels.with_columns(start_us.alias("start_us"))
        .join(rep, on="account_id", how="left", maintain_order="left")
        .with_columns(
            pl.col("flagged").fill_null(False),
            pl.col("score").fill_null(0.0),
            pl.col("in_report").fill_null(False),
            pl.when(pl.col("action").is_null()).then(pl.lit("none"))
            .when(pl.col("action").is_in(ACTIONS)).then(pl.col("action"))
            .otherwise(pl.lit("unknown"))
            .alias("action"),
            (pl.col("label") == "attack").alias("is_attack"),
            pl.when(campaign != "")
            .then(pl.col("population") + "/" + campaign)
            .otherwise(pl.col("population"))
            .alias("key"),
        )
    )
    return df, warnings


def classification(acc: pl.DataFrame) -> dict:
    """Account-level confusion counts, recall, FPR, precision and AUROC.

    Parameters
    ----------
    acc : polars.DataFrame
        Output of :func:`join_accounts`.

    Returns
    -------
    dict
        ``accounts, attack_accounts, benign_accounts, flagged, tp, fp, fn, tn, recall, fpr,
        precision, auroc`` (``auroc`` is None when one class is absent).
    """
    c = acc.select(
        tp=(pl.col("is_attack") & pl.col("flagged")).sum(),
        fn=(pl.col("is_attack") & ~pl.col("flagged")).sum(),
        fp=(~pl.col("is_attack") & pl.col("flagged")).sum(),
        tn=(~pl.col("is_attack") & ~pl.col("flagged")).sum(),
    ).row(0, named=True)
    tp, fn, fp, tn = (int(c[k]) for k in ("tp", "fn", "fp", "tn"))
    y = acc["is_attack"].to_numpy()
    auroc = None
    if 0 < y.sum() < len(y):
        # roc_auc_score gives tied scores half credit: the same as score.py's average ranks.
        auroc = float(roc_auc_score(y, acc["score"].to_numpy()))
    return {
        "accounts": acc.height,
        "attack_accounts": tp + fn,
        "benign_accounts": fp + tn,
        "flagged": tp + fp,
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "recall": _ratio(tp, tp + fn),
        "fpr": _ratio(fp, fp + tn),
        "precision": _ratio(tp, tp + fp),
        "auroc": auroc,
    }


def populations(acc: pl.DataFrame) -> pl.DataFrame:
    """Flag rate per population key, sorted by key like score.py.

    Returns
    -------
    polars.DataFrame
        ``population, kind, accounts, attack_accounts, flagged, rate`` where ``kind`` is
        ``attack`` (all accounts attack), ``benign`` (none) or ``mixed``.
    """
    return (
        acc.group_by("key")
        .agg(
            accounts=pl.len(),
            attack_accounts=pl.col("is_attack").sum(),
            flagged=pl.col("flagged").sum(),
        )
        .with_columns(
            (pl.col("flagged") / pl.col("accounts")).alias("rate"),
            pl.when(pl.col("attack_accounts") == pl.col("accounts")).then(pl.lit("attack"))
            .when(pl.col("attack_accounts") == 0).then(pl.lit("benign"))
            .otherwise(pl.lit("mixed"))
            .alias("kind"),
        )
        .rename({"key": "population"})
        .select("population", "kind", "accounts", "attack_accounts", "flagged", "rate")
        .sort("population")
    )


def benign_rates(acc: pl.DataFrame) -> pl.DataFrame:
    """False-positive rate of every benign (hard-negative) population separately.

    Returns
    -------
    polars.DataFrame
        ``population, accounts, flagged, rate, monitored, challenged, throttled, suspended``
        over benign accounts only, by key (the last four count the strongest action reached).
    """
    return (
        acc.filter(~pl.col("is_attack"))
        .group_by("key")
        .agg(
            accounts=pl.len(),
            flagged=pl.col("flagged").sum(),
            **{name: (pl.col("action") == a).sum() for a, name in ACTION_NAMES.items()},
        )
        .with_columns((pl.col("flagged") / pl.col("accounts")).alias("rate"))
        .rename({"key": "population"})
        .select("population", "accounts", "flagged", "rate", *ACTION_NAMES.values())
        .sort("population")
    )


def action_counts(acc: pl.DataFrame) -> dict:
    """Accounts per strongest action reached, for benign and for attack accounts.

    Returns
    -------
    dict
        ``{"benign": {action: n}, "attack": {action: n}}`` over :data:`ACTIONS` plus
        ``unknown`` (a report without a recognised ``action`` value).
    """
    out = {}
    for kind, mask in (("benign", ~pl.col("is_attack")), ("attack", pl.col("is_attack"))):
        counts = dict(acc.filter(mask).group_by("action").len().iter_rows())
        out[kind] = {a: int(counts.get(a, 0)) for a in (*ACTIONS, "unknown")}
    return out


def calibration(acc: pl.DataFrame, bins: int = CALIBRATION_BINS) -> dict:
    """Brier score and reliability table of the account scores against the labels.

    The score is read as the probability that the account harvests. Scores outside [0, 1]
    are clipped (and counted), so a report that breaks the contract still gets a number.

    Parameters
    ----------
    acc : polars.DataFrame
        Output of :func:`join_accounts` (missing accounts score 0, as everywhere here).
    bins : int
        Equal-width score bins of the reliability table.

    Returns
    -------
    dict
        ``brier`` (mean squared gap between score and label; None without accounts),
        ``ece`` (expected calibration error: bin-size-weighted mean |mean score − attack
        share|), ``clipped`` and ``bins``: one row per non-empty bin with ``lo, hi,
        accounts, attack, mean_score, attack_rate``.
    """
    if acc.height == 0:
        return {"brier": None, "ece": None, "clipped": 0, "bins": []}
    raw = acc["score"].to_numpy().astype(float)
    p = np.clip(raw, 0.0, 1.0)
    y = acc["is_attack"].to_numpy().astype(int)
    brier = float(np.mean((p - y) ** 2))  # the Brier score of 0/1 labels
    idx = np.minimum((p * bins).astype(int), bins - 1)
    table = (
        pl.DataFrame({"bin": idx, "score": p, "attack": y})
        .group_by("bin")
        .agg(accounts=pl.len(), attack=pl.col("attack").sum(), mean_score=pl.col("score").mean())
        .with_columns(
            (pl.col("attack") / pl.col("accounts")).alias("attack_rate"),
            (pl.col("bin") / bins).round(6).alias("lo"),
            ((pl.col("bin") + 1) / bins).round(6).alias("hi"),
        )
        .sort("bin")
        .select("lo", "hi", "accounts", "attack", "mean_score", "attack_rate")
    )
    ece = float(
        (table["accounts"] * (table["mean_score"] - table["attack_rate"]).abs()).sum() / acc.height
    )
    return {
        "brier": brier,
        "ece": ece,
        "clipped": int(((raw < 0) | (raw > 1)).sum()),
        "bins": table.to_dicts(),
    }


def attack_frame(acc: pl.DataFrame, events: pl.DataFrame | None) -> pl.DataFrame:
    """Attack accounts with the start of their attack phase.

    Parameters
    ----------
    acc : polars.DataFrame
        Output of :func:`join_accounts`.
    events : polars.DataFrame or None
        ``account_id, ts_ms`` (de-duplicated); without it only ``attack_start_ts`` is known.

    Returns
    -------
    polars.DataFrame
        ``account_id, population, campaign, flagged, first_us, start_us, seen_us,
        phase_start_us, ttd_s`` where ``seen_us`` is the first exchange in the log and
        ``ttd_s`` = first flag − phase start in seconds (flagged accounts with a known start).
    """
    att = acc.filter(pl.col("is_attack")).select(
        "account_id", "population", "campaign", "flagged", "first_us", "start_us")
    if events is not None:
        seen = (
            events.join(att.select("account_id"), on="account_id", how="semi")
            .group_by("account_id")
            .agg((pl.col("ts_ms").min() * 1000).alias("seen_us"))
        )
        att = att.join(seen, on="account_id", how="left", maintain_order="left")
    else:
        att = att.with_columns(pl.lit(None, dtype=pl.Int64).alias("seen_us"))
    return att.with_columns(
        pl.coalesce("start_us", "seen_us").alias("phase_start_us")
    ).with_columns(
        pl.when(pl.col("flagged"))
        .then((pl.col("first_us") - pl.col("phase_start_us")) / US_PER_S)
        .alias("ttd_s")
    )


def attack_phase_events(att: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """Attack-phase exchanges and whether each was served before the account's first flag.

    Parameters
    ----------
    att : polars.DataFrame
        Output of :func:`attack_frame`.
    events : polars.DataFrame
        ``account_id, ts_ms``.

    Returns
    -------
    polars.DataFrame
        ``account_id, campaign, ts_us, before`` for every attack-phase exchange.
    """
    ts_us = pl.col("ts_ms") * 1000
    return (
        events.join(att.select("account_id", "campaign", "start_us", "first_us"),
                    on="account_id", how="inner")
        .filter(pl.col("start_us").is_null() | (ts_us >= pl.col("start_us")))
        .select(
            "account_id", "campaign",
            ts_us.alias("ts_us"),
            # first_flagged_ts alone decides, as in score.py (not the flagged column).
            (pl.col("first_us").is_null() | (ts_us <= pl.col("first_us"))).alias("before"),
        )
    )


def leakage(phase: pl.DataFrame, duplicates: int) -> dict:
    """Harvest leakage over attack-phase exchanges (see module docstring)."""
    total = phase.height
    before = int(phase["before"].sum()) if total else 0
    return {
        "attack_phase_exchanges": total,
        "served_before_flag": before,
        "harvest_leakage": _ratio(before, total),
        "duplicates_dropped": duplicates,
    }


def time_to_detect(att: pl.DataFrame) -> dict:
    """Summary of first flag − attack-phase start over flagged attack accounts.

    Detection before the attack phase began (a turncoat already flagged while benign)
    counts as zero delay: the harvest never ran unflagged.

    Returns
    -------
    dict
        ``flagged, never_flagged, measured, unmeasured, flagged_before_attack_phase,
        median_s, p90_s, mean_s, median_min, p90_min`` (statistics None when nothing was detected).
    """
    known = att.filter(pl.col("ttd_s").is_not_null())
    ttd = known["ttd_s"].clip(lower_bound=0.0).to_numpy()
    flagged = int(att["flagged"].sum())
    med = p90 = mean = None
    if len(ttd):
        med, p90 = (float(v) for v in np.quantile(ttd, [0.5, 0.9]))
        mean = float(ttd.mean())
    return {
        "flagged": flagged,
        "never_flagged": att.height - flagged,
        "measured": int(len(ttd)),
        # flagged but no phase start (no attack_start_ts, no exchange in the log) or no flag time
        "unmeasured": flagged - int(len(ttd)),
        "flagged_before_attack_phase": int((known["ttd_s"] < 0).sum()),
        "median_s": med,
        "p90_s": p90,
        "mean_s": mean,
        "median_min": None if med is None else med / 60.0,
        "p90_min": None if p90 is None else p90 / 60.0,
    }


def campaigns(att: pl.DataFrame, phase: pl.DataFrame | None) -> pl.DataFrame:
    """Per-campaign outcome; a campaign is detected when more than half its accounts are flagged.

    Parameters
    ----------
    att : polars.DataFrame
        Output of :func:`attack_frame` (attack accounts with an empty campaign are left out).
    phase : polars.DataFrame or None
        Output of :func:`attack_phase_events`, for per-campaign leakage.

    Returns
    -------
    polars.DataFrame
        ``campaign, population, accounts, flagged, rate, detected, attack_start_us,
        first_flag_us, median_ttd_s`` and, with events, ``attack_phase_exchanges,
        served_before_flag, harvest_leakage``; sorted by campaign.
    """
    c = (
        att.filter(pl.col("campaign") != "")
        .group_by("campaign")
        .agg(
            pl.col("population").mode().sort().first().alias("population"),
            accounts=pl.len(),
            flagged=pl.col("flagged").sum(),
            attack_start_us=pl.col("phase_start_us").min(),
            first_flag_us=pl.col("first_us").filter(pl.col("flagged")).min(),
            median_ttd_s=pl.col("ttd_s").clip(lower_bound=0.0).median(),
        )
        .with_columns(
            (pl.col("flagged") / pl.col("accounts")).alias("rate"),
            (pl.col("flagged") * 2 > pl.col("accounts")).alias("detected"),
        )
    )
    if phase is not None:
        leak = (
            phase.filter(pl.col("campaign") != "")
            .group_by("campaign")
            .agg(attack_phase_exchanges=pl.len(), served_before_flag=pl.col("before").sum())
        )
        c = c.join(leak, on="campaign", how="left").with_columns(
            pl.col("attack_phase_exchanges").fill_null(0),
            pl.col("served_before_flag").fill_null(0),
        ).with_columns(
            (pl.col("served_before_flag")
             / pl.max_horizontal(pl.col("attack_phase_exchanges"), pl.lit(1))).alias("harvest_leakage")
        )
    cols = ["campaign", "population", "accounts", "flagged", "rate", "detected",
            "attack_start_us", "first_flag_us", "median_ttd_s"]
    if phase is not None:
        cols += ["attack_phase_exchanges", "served_before_flag", "harvest_leakage"]
    return c.select(cols).sort("campaign")


def campaign_records(camp: pl.DataFrame) -> list[dict]:
    """Campaign rows for JSON: times as RFC 3339 strings."""
    return camp.with_columns(
        _fmt_us("attack_start_us").alias("attack_start"),
        _fmt_us("first_flag_us").alias("first_flagged_ts"),
    ).drop("attack_start_us", "first_flag_us").to_dicts()


def clean(obj):
    """Replace NaN/inf with None recursively so the result is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.generic):
        return clean(obj.item())
    return obj
