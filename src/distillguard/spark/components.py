"""Final account clusters as connected components, computed in Spark.

Same graph as ``features.linking.LinkGraph.components_at`` at the end of the log: the bipartite
account–key graph over every link row, keeping keys held by at least two accounts and at most
``KEY_CAP[kind]`` of them (100 for an unknown kind). Components come from iterative min-label
propagation over the edges (key label = min of its accounts' labels, account label = min of its
keys' labels) until no label changes; the converged label of an account is the smallest
``account_id`` in its component, which is exactly what ``replay`` hashes into ``cluster_id``.
Rounds needed = about half the component diameter (a handful on real link graphs); each round
is two joins plus a count, and the label table is checkpointed to keep the plan short.

The scan itself does not call this: its driver collects every link row for the replay anyway,
and scipy's components there cost far less than these rounds of joins (tens of seconds per scan).
It stays for link tables too large for one machine.
"""

from __future__ import annotations

import xxhash
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ..features.linking import ITEM_SPACE_KIND, KEY_CAP

DEFAULT_CAP = 100  # as ``LinkGraph.build``: replace_strict(KEY_CAP, default=100)


def kept_edges(links: DataFrame) -> DataFrame:
    """(a, k) edges of the final link graph: keys with 2 <= accounts <= cap of their kind."""
    pairs = links.select(F.col("account_id").alias("a"), F.col("key").alias("k")).distinct()
    kind = F.split(F.col("k"), ":", 2).getItem(0)
    pairs = pairs.filter(kind != F.lit(ITEM_SPACE_KIND))  # item spaces are no links (``linking``)
    cap = F.lit(DEFAULT_CAP)
    for kd, c in KEY_CAP.items():
        cap = F.when(kind == F.lit(kd), F.lit(c)).otherwise(cap)
    deg = pairs.groupBy("k").agg(F.count("*").alias("deg")).withColumn("cap", cap)
    keys = deg.filter((F.col("deg") >= 2) & (F.col("deg") <= F.col("cap"))).select("k")
    return pairs.join(keys, "k")


def connected_components(edges: DataFrame, max_rounds: int = 100) -> tuple[DataFrame, int]:
    """(account ``a``, label ``l`` = smallest account id of its component) and the rounds used."""
    edges = edges.localCheckpoint()
    labels = edges.select("a").distinct().withColumn("l", F.col("a")).localCheckpoint()
    rounds = 0
    while rounds < max_rounds:
        rounds += 1
        key_lab = edges.join(labels, "a").groupBy("k").agg(F.min("l").alias("kl"))
        new = edges.join(key_lab, "k").groupBy("a").agg(F.min("kl").alias("l"))
        new = new.join(labels.withColumnRenamed("l", "old"), "a").withColumn("ch", F.col("l") < F.col("old")).drop("old").localCheckpoint()
        changed = new.filter("ch").limit(1).count()
        labels = new.drop("ch")
        if changed == 0:
            break
    else:  # pragma: no cover - a graph of diameter > 200 is not a link graph
        raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")
    return labels, rounds


def cluster_id(min_member: str) -> str:
    """As ``replay``: "cl-" + the first 12 hex digits of xxh64(smallest member id)."""
    return "cl-" + xxhash.xxh64_hexdigest(min_member.encode("utf-8"))[:12]
