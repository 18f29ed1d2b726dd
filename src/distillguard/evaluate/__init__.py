"""Evaluate a scan against held-out labels (``distillguard evaluate``).

>>> from distillguard.evaluate import evaluate, render_table
>>> result = evaluate("labels.csv", "scan-out", events="events.jsonl")  # doctest: +SKIP
>>> rich.print(render_table(result))  # doctest: +SKIP

Metrics agree with the independent scorer ``shared/tools/score.py``; see
:mod:`distillguard.evaluate.metrics` for the definitions.
"""

from distillguard.evaluate.core import Evaluation, compute, evaluate
from distillguard.evaluate.table import render_table

__all__ = ["Evaluation", "compute", "evaluate", "render_table"]
