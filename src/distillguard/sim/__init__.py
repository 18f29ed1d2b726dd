"""Labelled traffic simulator: benign populations and harvesting campaigns over real corpora.

Use :func:`simulate` (``distillguard simulate`` on the command line). docs/benchmark.md
describes every population, campaign, data source and the dev/holdout split. Benign
populations live in :mod:`~distillguard.sim.benign` (people, services, coding agents,
benchmark runs, homework-tutor products, pass@k evaluations), campaigns in
:mod:`~distillguard.sim.attacks` (from blunt sweeps to agent-trajectory harvesting and
target-only sweeps by accounts that share nothing else), agent tool-call loops in
:mod:`~distillguard.sim.agents`.
"""

from distillguard.sim.engine import DEFAULT_START, LABEL_COLUMNS, simulate

__all__ = ["simulate", "DEFAULT_START", "LABEL_COLUMNS"]
