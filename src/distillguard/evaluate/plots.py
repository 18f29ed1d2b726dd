"""Charts of an evaluation as inline SVG strings (matplotlib, no pyplot global state).

Labels shown in the charts come from the labels file and are attacker-influenced: text is
drawn as glyph paths (``svg.fonttype = path``), so no label text reaches the SVG markup
except inside XML comments that matplotlib escapes, and mathtext is disabled so a ``$`` in
a campaign name cannot break rendering.
"""

from __future__ import annotations

import io

import matplotlib
import matplotlib.ticker
import numpy as np
import polars as pl

_RC = {
    "svg.fonttype": "path",
    "text.parse_math": False,
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
BENIGN_COLOR = "#4c78a8"
ATTACK_COLOR = "#e45756"
MAX_BARS = 60  # per group; beyond this a bar chart is unreadable
MAX_LABEL = 48


def _style(name: str):
    """Chart style; ``name`` salts SVG ids so several inline charts never share an id."""
    return matplotlib.rc_context({**_RC, "svg.hashsalt": f"dg-{name}"})


def _figure(width: float, height: float):
    """A Figure on the Agg canvas (no pyplot: nothing global, no GUI backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _svg(fig) -> str:
    """Serialise a figure to an ``<svg>`` element (no XML prolog, no timestamp).

    Call inside :func:`_style` so the SVG settings apply.
    """
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def _empty(name: str, message: str) -> str:
    with _style(name):
        fig = _figure(6.0, 1.2)
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, message, ha="center", va="center", color="#666")
        return _svg(fig)


def roc_svg(y: np.ndarray, scores: np.ndarray, auroc: float | None,
            fpr: float, recall: float) -> str:
    """ROC curve of the end-of-log score, with the flag decision's operating point.

    Parameters
    ----------
    y : numpy.ndarray
        1 for attack accounts, 0 otherwise.
    scores : numpy.ndarray
        ``score`` from accounts.csv (0 for accounts missing from the report).
    auroc : float or None
        Area under the curve, shown in the legend.
    fpr, recall : float
        The flagged/unflagged decision as a point.
    """
    from sklearn.metrics import roc_curve

    if auroc is None:
        return _empty("roc", "ROC undefined: labels hold only one class")
    x, t, _ = roc_curve(y, scores)
    with _style("roc"):
        fig = _figure(4.6, 4.2)
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="#999", label="chance")
        ax.plot(x, t, lw=1.8, color=ATTACK_COLOR, label=f"score (AUROC {auroc:.3f})")
        ax.scatter([fpr], [recall], s=36, color="black", zorder=3, label="flag decision")
        ax.set_xlabel("false-positive rate (benign accounts)")
        ax.set_ylabel("recall (attack accounts)")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.legend(loc="lower right", frameon=False)
        return _svg(fig)


def _bars(ax, df: pl.DataFrame, color: str, title: str) -> None:
    labels = [_short(p) for p in df["population"].to_list()]
    ypos = np.arange(len(labels))
    ax.barh(ypos, df["rate"].to_numpy(), color=color, height=0.7)
    ax.set_yticks(ypos, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)
    ax.set_title(title, loc="left", fontsize=9)
    for i, (r, n) in enumerate(zip(df["rate"].to_list(), df["accounts"].to_list())):
        ax.text(min(r, 1.0) + 0.01, i, f"{r:.3f} (n={n})", va="center", fontsize=7)


def flag_rate_svg(pops: pl.DataFrame) -> str:
    """Flag rate per population: benign hard negatives and attack groups in separate panels.

    Parameters
    ----------
    pops : polars.DataFrame
        ``population, kind, accounts, rate`` (see ``metrics.populations``); ``mixed``
        populations are drawn with the attacks.
    """
    if pops.is_empty():
        return _empty("rates", "no labelled accounts")
    groups = []
    benign = pops.filter(pl.col("kind") == "benign")
    attack = pops.filter(pl.col("kind") != "benign")
    for df, color, title in (
        (benign, BENIGN_COLOR, "benign populations: flag rate = false-positive rate"),
        (attack, ATTACK_COLOR, "attack populations / campaigns: flag rate = recall"),
    ):
        if df.height:
            if df.height > MAX_BARS:  # keep the largest, say so in the title
                df = df.sort("accounts", descending=True).head(MAX_BARS).sort("population")
                title += f" (largest {MAX_BARS} shown)"
            groups.append((df, color, title))
    heights = [g[0].height + 1.5 for g in groups]
    with _style("rates"):
        fig = _figure(7.5, 0.9 + 0.22 * sum(heights))
        axes = fig.subplots(len(groups), 1, height_ratios=heights, sharex=True, squeeze=False)
        for ax, (df, color, title) in zip(axes[:, 0], groups):
            _bars(ax, df, color, title)
        axes[-1, 0].set_xlabel("share of accounts flagged")
        return _svg(fig)


def ttd_svg(ttd_s: np.ndarray, median_s: float | None, p90_s: float | None,
            never_flagged: int) -> str:
    """Histogram of time-to-detect in minutes on a log axis.

    Parameters
    ----------
    ttd_s : numpy.ndarray
        Seconds from attack-phase start to first flag, already clipped at 0.
    median_s, p90_s : float or None
        Marked as vertical lines.
    never_flagged : int
        Attack accounts never flagged (shown in the title: they have no time).
    """
    if len(ttd_s) == 0:
        return _empty("ttd", f"no attack account was flagged ({never_flagged} never flagged)")
    floor = 1.0 / 60.0  # 1 s: zero delays (flagged at or before the start) land in the first bin
    minutes = np.maximum(ttd_s / 60.0, floor)
    hi = max(float(minutes.max()), floor * 10.0)
    bins = np.logspace(np.log10(floor), np.log10(hi * 1.01), 30)
    with _style("ttd"):
        fig = _figure(7.0, 3.2)
        ax = fig.add_subplot()
        ax.hist(minutes, bins=bins, color=ATTACK_COLOR, alpha=0.85)
        ax.set_xscale("log")
        # Plain numbers: the default log labels are mathtext, which _RC turns off.
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        for v, name, ls in ((median_s, "median", "-"), (p90_s, "p90", "--")):
            if v is not None:
                ax.axvline(max(v / 60.0, floor), color="black", ls=ls, lw=1,
                           label=f"{name} {v / 60.0:.1f} min")
        ax.set_xlabel("minutes from attack-phase start to first flag (log scale; ≤1 s in first bin)")
        ax.set_ylabel("attack accounts")
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_title(f"{len(ttd_s)} detected, {never_flagged} never flagged", loc="left", fontsize=9)
        ax.legend(frameon=False)
        return _svg(fig)


def leakage_timeline_svg(phase: pl.DataFrame | None, bins: int = 200) -> str:
    """Cumulative attack-phase exchanges over event time, stacked before/after first flag.

    Parameters
    ----------
    phase : polars.DataFrame or None
        ``ts_us, before`` per attack-phase exchange (``metrics.attack_phase_events``).
    bins : int
        Time resolution of the curve.
    """
    if phase is None:
        return _empty("leak", "no exchange log available: leakage not computed")
    if phase.is_empty():
        return _empty("leak", "no attack-phase exchanges in the log")
    ts = phase["ts_us"].to_numpy()
    before = phase["before"].to_numpy()
    edges = np.linspace(ts.min(), ts.max() + 1, bins + 1)
    served_before = np.cumsum(np.histogram(ts[before], edges)[0])
    served_after = np.cumsum(np.histogram(ts[~before], edges)[0])
    x = edges[1:].astype("int64").astype("datetime64[us]")
    with _style("leak"):
        fig = _figure(7.0, 3.2)
        ax = fig.add_subplot()
        ax.stackplot(x, served_before, served_after, colors=[ATTACK_COLOR, "#bab0ac"],
                     labels=["served before first flag (leaked)", "after first flag"])
        ax.set_ylabel("attack-phase exchanges (cumulative)")
        ax.set_xlabel("event time (UTC)")
        ax.legend(loc="upper left", frameon=False)
        fig.autofmt_xdate()
        return _svg(fig)


def reliability_svg(calib: dict) -> str:
    """Reliability diagram: attack share against mean score per score bin.

    Parameters
    ----------
    calib : dict
        :func:`distillguard.evaluate.metrics.calibration`'s result. Marker area grows with
        the bin's account count (log scale), so a bin of three accounts does not read like
        one of three thousand.
    """
    rows = calib.get("bins") or []
    if not rows:
        return _empty("reliability", "no scored accounts")
    x = np.array([r["mean_score"] for r in rows], dtype=float)
    y = np.array([r["attack_rate"] for r in rows], dtype=float)
    n = np.array([r["accounts"] for r in rows], dtype=float)
    with _style("reliability"):
        fig = _figure(4.6, 4.2)
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="#999", label="perfectly calibrated")
        ax.plot(x, y, lw=1.2, color=ATTACK_COLOR)
        ax.scatter(x, y, s=12 + 18 * np.log10(n + 1), color=ATTACK_COLOR, zorder=3,
                   label=f"score bins (Brier {calib['brier']:.4f})")
        ax.set_xlabel("mean score in bin")
        ax.set_ylabel("share of attack accounts in bin")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.legend(loc="upper left", frameon=False)
        return _svg(fig)
