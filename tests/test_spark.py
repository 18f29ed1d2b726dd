"""Spark engine: parity with the local engine (flags, first flag, events before flag, clusters).

Skipped when pyspark (extra ``distillguard[spark]``) or a Java runtime is missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import polars as pl
import pytest

_reason = None
if importlib.util.find_spec("pyspark") is None or importlib.util.find_spec("pandas") is None:
    _reason = "pyspark / pandas not installed (pip install 'distillguard[spark]')"
elif not (shutil.which("java") or os.environ.get("JAVA_HOME")):
    _reason = "no Java runtime (java on PATH or JAVA_HOME) for Spark"
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")


@pytest.fixture(scope="module")
def spark():
    from distillguard.spark.engine import get_session

    s = get_session("local[2]")
    yield s
    s.stop()


def test_spark_scan_parity(tmp_path, spark):
    from distillguard.scan import scan
    from distillguard.sim import simulate
    from distillguard.spark import run_spark_scan

    simulate(tmp_path / "sim", seed=3, hours=3, scale=0.2)
    log = str(tmp_path / "sim" / "events.jsonl")
    with open(log, "rb") as f:
        head = [next(f) for _ in range(5)]
    with open(log, "ab") as f:  # duplicate request_ids (the later copies are dropped) and a bad record
        f.writelines(head)
        f.write(b'{"not": "an exchange"}\n')
    s_loc = scan([log], tmp_path / "local", show_progress=False)
    s_spk = run_spark_scan([log], tmp_path / "spark", spark=spark)

    a = pl.read_csv(tmp_path / "local" / "accounts.csv", infer_schema=False)
    b = pl.read_csv(tmp_path / "spark" / "accounts.csv", infer_schema=False)
    assert sorted(a["account_id"]) == sorted(b["account_id"])
    j = a.join(b, on="account_id", suffix="_s")
    for col in ("flagged", "action", "first_flagged_ts", "events", "events_before_flag", "cluster_id"):
        diff = j.filter(pl.col(col).ne_missing(pl.col(col + "_s")))
        assert diff.height == 0, (col, diff.select("account_id", col, col + "_s").head())
    assert (j["score"].cast(pl.Float64) - j["score_s"].cast(pl.Float64)).abs().max() <= 1e-4
    assert (j["flagged"] == "true").sum() > 0 and j["cluster_id"].is_not_null().sum() > 0  # the check has teeth

    ca = pl.read_csv(tmp_path / "local" / "clusters.csv", infer_schema=False).sort("cluster_id")
    cb = pl.read_csv(tmp_path / "spark" / "clusters.csv", infer_schema=False).sort("cluster_id")
    assert ca.select("cluster_id", "accounts", "events", "flagged", "first_flagged_ts").equals(
        cb.select("cluster_id", "accounts", "events", "flagged", "first_flagged_ts"))
    for k in ("records_read", "valid", "quarantined", "duplicates_dropped", "event_time_start", "event_time_end",
              "accounts", "flagged_accounts", "clusters", "flagged_clusters", "actions"):
        assert s_loc[k] == s_spk[k], k
    assert s_spk["duplicates_dropped"] == 5 and s_spk["quarantined"] == 1
    assert (tmp_path / "spark" / "quarantine.jsonl").read_text() == (tmp_path / "local" / "quarantine.jsonl").read_text()
