"""A rich table of an evaluation for the terminal, in score.py's printed precision."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text


def _f(x, digits: int = 3) -> str:
    return "nan" if x is None else f"{x:.{digits}f}"


def _min(seconds) -> str:
    return "—" if seconds is None else f"{seconds / 60.0:.1f} min"


def _min_pair(a, b) -> str:
    """``25.0/75.0 min``: two durations sharing one unit, to keep the column narrow."""
    if a is None or b is None:
        return f"{_min(a)} / {_min(b)}"
    return f"{a / 60.0:.1f}/{b / 60.0:.1f} min"


def render_table(result: dict) -> Table:
    """Per-population rows followed by an overall block.

    Parameters
    ----------
    result : dict
        What :func:`distillguard.evaluate.evaluate` returns.

    Returns
    -------
    rich.table.Table
        Population names are wrapped in :class:`rich.text.Text` so label text is never
        read as console markup.
    """
    t = Table(title="distillguard evaluate", title_justify="left")
    # 28 wide keeps the table within 80 columns for keys up to 28 characters
    # ("target_only_sweep/c35_target"); longer keys fold onto a second line.
    t.add_column("population", min_width=28, overflow="fold")
    t.add_column("kind")
    t.add_column("accounts", justify="right")
    t.add_column("flagged", justify="right")
    t.add_column("rate", justify="right")
    style = {"attack": "red", "benign": "blue", "mixed": "magenta"}
    for p in result["populations"]:
        t.add_row(Text(p["population"]), Text(p["kind"], style=style.get(p["kind"], "")),
                  str(p["accounts"]), str(p["flagged"]), f"{p['rate']:.3f}")
    t.add_section()
    o = result["overall"]
    ttd = result.get("time_to_detect") or {}
    rows = [
        ("recall", _f(o["recall"])),
        ("false-positive rate", _f(o["fpr"], 4)),
        ("precision", _f(o["precision"])),
        ("AUROC", _f(o["auroc"])),
        ("harvest leakage", _f(o["harvest_leakage"])),
        ("benign suspended", str(o["benign_suspended"])),
        ("benign monitor/chall./thr.", "{monitored}/{challenged}/{throttled}".format(**o["benign_by_action"])),
        ("Brier score", _f(o["brier"], 4)),
        ("campaign recall", f"{_f(o['campaign_recall'])} "
                            f"({o['campaigns_detected']}/{o['campaigns']})"),
        ("time to detect median / p90", _min_pair(ttd.get("median_s"), ttd.get("p90_s"))),
        ("attack never flagged", str(o["fn"])),
        ("missing from report", str(result["missing_from_report"]["count"])),
    ]
    for name, value in rows:
        t.add_row(Text(name, style="bold"), "", "", "", Text(value))
    return t
