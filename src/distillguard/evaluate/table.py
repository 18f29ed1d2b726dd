"""The terminal view of an evaluation, in score.py's printed precision.

Two blocks: one row per population (five narrow columns), then one ``metric  value`` row per
overall measure (:func:`overall_rows`; add a row there and both layouts show it). Both fit 80
columns; ``plain=True`` gives box-free aligned text for pipes, CI logs and files.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

POPULATION_COLUMNS = ("population", "kind", "accounts", "flagged", "rate")
KIND_STYLE = {"attack": "red", "benign": "blue", "mixed": "magenta"}


def _f(x, digits: int = 3) -> str:
    return "nan" if x is None else f"{x:.{digits}f}"


def _min(seconds) -> str:
    return "—" if seconds is None else f"{seconds / 60.0:.1f} min"


def population_rows(result: dict) -> list[tuple[str, str, str, str, str]]:
    """One ``(population, kind, accounts, flagged, rate)`` row per population."""
    return [(p["population"], p["kind"], str(p["accounts"]), str(p["flagged"]), f"{p['rate']:.3f}")
            for p in result["populations"]]


def _min_pair(a, b) -> str:
    """``25.0/75.0 min``: two durations sharing one unit, to keep the column narrow."""
    if a is None or b is None:
        return f"{_min(a)} / {_min(b)}"
    return f"{a / 60.0:.1f}/{b / 60.0:.1f} min"


def overall_rows(result: dict) -> list[tuple[str, str]]:
    """``(metric, value)`` rows of the overall block, in display order."""
    o = result["overall"]
    ttd = result.get("time_to_detect") or {}
    return [
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
        ("attack accounts never flagged", str(o["fn"])),
        ("missing from report", str(result["missing_from_report"]["count"])),
    ]


def render_plain(result: dict) -> str:
    """Aligned text without box characters (for pipes, logs and files)."""
    pops = population_rows(result)
    w0 = max([len(POPULATION_COLUMNS[0])] + [len(r[0]) for r in pops])
    lines = ["  ".join([POPULATION_COLUMNS[0].ljust(w0), "kind".ljust(6)] + [c.rjust(8) for c in POPULATION_COLUMNS[2:]])]
    for r in pops:
        lines.append("  ".join([r[0].ljust(w0), r[1].ljust(6)] + [v.rjust(8) for v in r[2:]]))
    lines.append("")
    rows = overall_rows(result)
    w1 = max(len(n) for n, _ in rows)
    lines += [f"{n.ljust(w1)}  {v}" for n, v in rows]
    return "\n".join(lines)


def render_table(result: dict, *, plain: bool = False):
    """The evaluation as a renderable for ``rich.console.Console.print``.

    Parameters
    ----------
    result : dict
        What :func:`distillguard.evaluate.evaluate` returns.
    plain : bool
        Box-free aligned text (a :class:`rich.text.Text`) instead of tables.

    Returns
    -------
    rich.console.Group or rich.text.Text
        Population names are wrapped in :class:`rich.text.Text` so label text is never
        read as console markup.
    """
    if plain:
        return Text(render_plain(result))
    pops = Table(title="distillguard evaluate", title_justify="left")
    pops.add_column("population", overflow="fold", max_width=36)
    pops.add_column("kind")
    for name in POPULATION_COLUMNS[2:]:
        pops.add_column(name, justify="right")
    for r in population_rows(result):
        pops.add_row(Text(r[0]), Text(r[1], style=KIND_STYLE.get(r[1], "")), *r[2:])
    overall = Table(show_header=True)
    overall.add_column("overall", style="bold", no_wrap=True)
    overall.add_column("value", justify="right", no_wrap=True)
    for name, value in overall_rows(result):
        overall.add_row(Text(name), Text(value))
    return Group(pops, overall)
