"""Labelled traffic simulator: benign populations and harvesting campaigns over real corpora.

Use :func:`simulate` (``distillguard simulate`` on the command line). docs/benchmark.md
describes every population, campaign, data source and the dev/holdout split.
"""

from distillguard.sim.engine import DEFAULT_START, LABEL_COLUMNS, simulate

__all__ = ["simulate", "DEFAULT_START", "LABEL_COLUMNS"]
