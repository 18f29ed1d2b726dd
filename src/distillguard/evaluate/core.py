"""``distillguard evaluate``: score a scan against held-out labels, write JSON and HTML."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from distillguard.evaluate import load, metrics

MAX_EXAMPLES = 20


@dataclass
class Evaluation:
    """An evaluation: the JSON-ready ``result`` and the frames the charts are drawn from."""

    result: dict
    accounts: pl.DataFrame
    attack: pl.DataFrame
    phase: pl.DataFrame | None
    populations: pl.DataFrame


def _result_line(o: dict) -> str:
    """score.py's ``RESULT`` line (without the prefix), None printed as ``nan``, followed by
    ``benign_suspended=N``: the headline count score.py does not print."""
    f = lambda x, d=3: "nan" if x is None else f"{x:.{d}f}"  # noqa: E731
    return (f"recall={f(o['recall'])} fpr={f(o['fpr'], 4)} precision={f(o['precision'])} "
            f"auroc={f(o['auroc'])} leak={f(o['harvest_leakage'])} "
            f"benign_suspended={o['benign_suspended']}")


def compute(labels: pl.DataFrame, report: pl.DataFrame, events: pl.DataFrame | None = None,
            *, duplicates: int = 0, summary: dict | None = None) -> Evaluation:
    """Compute every metric from in-memory frames (no files).

    Parameters
    ----------
    labels : polars.DataFrame
        Text columns of LABELS.csv (see :func:`load.read_labels`).
    report : polars.DataFrame
        Text columns of accounts.csv (see :func:`load.read_report`).
    events : polars.DataFrame or None
        ``account_id, ts_ms`` of the log the scan read, already de-duplicated; None makes
        leakage and time-to-detect null.
    duplicates : int
        Duplicate rows dropped from ``events`` (echoed).
    summary : dict or None
        The scan's summary.json (echoed).

    Returns
    -------
    Evaluation
    """
    acc, warnings = metrics.join_accounts(labels, report)
    cls = metrics.classification(acc)
    pops = metrics.populations(acc)
    att = metrics.attack_frame(acc, events)
    if events is None:
        # Without the log only turncoats have a known start: a biased sample, so no delays.
        att = att.with_columns(pl.lit(None, dtype=pl.Float64).alias("ttd_s"))
    phase = None if events is None else metrics.attack_phase_events(att, events)
    camp = metrics.campaigns(att, phase)
    leak = None if phase is None else metrics.leakage(phase, duplicates)
    n_camp, n_det = camp.height, int(camp["detected"].sum())
    missing = acc.filter(~pl.col("in_report"))
    actions = metrics.action_counts(acc)
    calib = metrics.calibration(acc)
    overall = {
        **cls,
        "benign_suspended": actions["benign"]["suspend"],
        "benign_by_action": {name: actions["benign"][a] for a, name in metrics.ACTION_NAMES.items()},
        "brier": calib["brier"],
        "harvest_leakage": None if leak is None else leak["harvest_leakage"],
        "campaigns": n_camp,
        "campaigns_detected": n_det,
        "campaign_recall": n_det / n_camp if n_camp else None,
    }
    result = {
        "overall": overall,
        "result_line": _result_line(overall),
        "populations": pops.drop("attack_accounts").to_dicts(),
        "benign_populations": metrics.benign_rates(acc).to_dicts(),
        "actions": actions,
        "calibration": calib,
        "campaigns": metrics.campaign_records(camp),
        "time_to_detect": None if events is None else metrics.time_to_detect(att),
        "leakage": leak,
        "missing_from_report": {
            "count": missing.height,
            "attack": int(missing["is_attack"].sum()),
            "benign": int((~missing["is_attack"]).sum()),
            "examples": missing["account_id"].head(MAX_EXAMPLES).to_list(),
        },
        "unlabelled_in_report": report.join(labels, on="account_id", how="anti").height,
        "scan_summary": summary or {},
        "warnings": warnings,
    }
    return Evaluation(metrics.clean(result), acc, att, phase, pops)


def charts(ev: Evaluation) -> dict[str, str]:
    """The report's inline SVG charts."""
    from distillguard.evaluate import plots

    o = ev.result["overall"]
    ttd = ev.result["time_to_detect"] or {}
    ttd_s = ev.attack["ttd_s"].drop_nulls().clip(lower_bound=0.0).to_numpy()
    return {
        "roc": plots.roc_svg(ev.accounts["is_attack"].to_numpy().astype(int),
                             ev.accounts["score"].to_numpy(), o["auroc"], o["fpr"], o["recall"]),
        "rates": plots.flag_rate_svg(ev.populations),
        "ttd": plots.ttd_svg(ttd_s, ttd.get("median_s"), ttd.get("p90_s"), o["fn"]),
        "leak": plots.leakage_timeline_svg(ev.phase),
        "reliability": plots.reliability_svg(ev.result["calibration"]),
    }


def evaluate(labels_csv: str | Path, scan_dir: str | Path, *,
             events: str | Path | Sequence[str] | None = None,
             out_dir: str | Path | None = None) -> dict:
    """Evaluate a scan output directory against held-out labels.

    Agrees with ``shared/tools/score.py`` on per-population flag rates, recall,
    false-positive rate, precision, AUROC and harvest leakage, and adds per-benign-population
    false-positive rates, benign accounts per action (``benign_suspended`` is a headline
    figure), calibration of the scores (Brier score, reliability table), campaign-level
    recall, time-to-detect and a coverage check.

    Parameters
    ----------
    labels_csv : str or Path
        ``account_id,label,population,campaign,attack_start_ts``.
    scan_dir : str or Path
        A ``distillguard scan`` output directory (accounts.csv, summary.json).
    events : str, Path, sequence of str, or None
        The log the scan read. When None, the paths in ``summary.json``'s ``inputs`` are
        used; when those are missing too, leakage and time-to-detect are null.
    out_dir : str or Path or None
        Where ``evaluation.json`` and ``report.html`` go (default ``SCAN_DIR/eval``).

    Returns
    -------
    dict
        The content of ``evaluation.json``.
    """
    scan_dir = Path(scan_dir)
    accounts_csv = scan_dir / "accounts.csv"
    if not accounts_csv.exists():
        raise FileNotFoundError(f"{accounts_csv} not found: is {scan_dir} a scan output directory?")
    labels = load.read_labels(labels_csv)
    report = load.read_report(accounts_csv)
    summary = load.read_summary(scan_dir / "summary.json")
    paths, note = load.event_paths(events, summary, scan_dir)
    ev_df, dups = load.load_events(paths) if paths else (None, 0)
    ev = compute(labels, report, ev_df, duplicates=dups, summary=summary)
    ev.result = {
        "inputs": {"labels": str(labels_csv), "scan_dir": str(scan_dir), "events": paths,
                   "events_note": note},
        **ev.result,
    }
    out = Path(out_dir) if out_dir is not None else scan_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(
        json.dumps(ev.result, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
        encoding="utf-8")
    from distillguard.evaluate.report_html import render_html

    (out / "report.html").write_text(render_html(ev.result, charts(ev)), encoding="utf-8")
    return ev.result
