"""spark-submit entry point.

    spark-submit --master yarn --archives dg-env.tar.gz#env \
        --conf spark.pyspark.python=./env/bin/python \
        "$(python -c 'import distillguard.spark.submit as m; print(m.__file__)')" \
        s3://logs/2026-11-02/ --out s3://reports/2026-11-02/

or ``python -m distillguard.spark.submit --master local[2] ARGS`` without a cluster (docs/spark.md). The session is the one spark-submit configures unless
``--master`` is given. Prints the summary JSON.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="distillguard.spark.submit", description="distillguard scan on Apache Spark")
    ap.add_argument("inputs", nargs="+", help="files, globs, dirs or object-store URIs (s3://bucket/prefix/)")
    ap.add_argument("--out", required=True, help="output directory or object-store URI")
    ap.add_argument("--master", default=None, help="Spark master for a new session (default: spark-submit's)")
    ap.add_argument("--tick-seconds", type=float, default=60.0)
    ap.add_argument("--rules", default=None, help="rules directory (default: packaged rules)")
    ap.add_argument("--model", default=None, help="model JSON (default: packaged model)")
    ap.add_argument("--policy", default=None, help="policy YAML")
    ap.add_argument("--buckets", type=int, default=None, help="account buckets (applyInArrow groups)")
    ap.add_argument("--marks-out", default=None, help="also write tick sums and link rows as Parquet here")
    ap.add_argument("--conf", action="append", default=[], metavar="K=V", help="extra Spark setting (repeatable)")
    a = ap.parse_args(argv)

    from distillguard.spark.engine import get_session, run_spark_scan  # absolute: also run as a file by spark-submit

    conf = dict(kv.split("=", 1) for kv in a.conf)
    spark = get_session(a.master, conf)
    try:
        summary = run_spark_scan(a.inputs, a.out, spark=spark, tick_ms=int(a.tick_seconds * 1000), rules_dir=a.rules,
                                 model_path=a.model, policy_path=a.policy, buckets=a.buckets, marks_out=a.marks_out)
    finally:
        spark.stop()
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
