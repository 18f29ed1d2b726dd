"""Apache Spark engine for ``distillguard scan`` (optional extra ``distillguard[spark]``).

``run_spark_scan`` runs the local engine's engine-neutral functions (``read_events``,
``exchange_features``, ``account_ticks``) in Spark and replays the collected per-(account, tick)
sums on the driver, which also gives the final clusters as the local engine does.
See docs/spark.md.
"""

from __future__ import annotations


def run_spark_scan(*args, **kwargs) -> dict:  # lazy: importing distillguard.spark must not need pyspark
    from .engine import run_spark_scan as _run

    return _run(*args, **kwargs)


__all__ = ["run_spark_scan"]
