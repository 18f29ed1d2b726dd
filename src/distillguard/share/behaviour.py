"""Behavioural fingerprints (``dg-behaviour-v1``): running shares of per-exchange flags.

An account's fingerprint at an exchange is, for every flag of :data:`.observe.BEHAVIOUR_DIMS`,
the share of its exchanges so far that carry the flag (``<dim>_share``), with ``exchanges``
the count so far. A campaign's fingerprint indicator is a box: a range per share. An account
matches at the first exchange where it has at least ``min_exchanges`` exchanges and every share
lies in its range; only exchanges up to that one count, so there is no look-ahead.
"""

from __future__ import annotations

import operator

import polars as pl

from .observe import BEHAVIOUR_DIMS

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "=": operator.eq}


def running_shares(obs: pl.DataFrame) -> pl.DataFrame:
    """``account_id, ts, exchanges, <dim>_share...`` for every exchange (ordered by account, time)."""
    if obs.is_empty():
        return pl.DataFrame(schema={"account_id": pl.String, "ts": pl.Int64, "exchanges": pl.Int64,
                                    **{f"{d}_share": pl.Float64 for d in BEHAVIOUR_DIMS}})
    df = obs.select("account_id", "ts", *BEHAVIOUR_DIMS).sort("account_id", "ts")
    n = pl.int_range(1, pl.len() + 1).over("account_id")
    return df.select(
        "account_id", "ts", n.alias("exchanges"),
        *[(pl.col(d).cast(pl.Int64).cum_sum().over("account_id") / n).alias(f"{d}_share") for d in BEHAVIOUR_DIMS],
    )


def first_hits(running: pl.DataFrame, conds: list[tuple[str, str, float]], min_exchanges: int,
               t_lo: int | None = None, t_hi: int | None = None) -> pl.DataFrame:
    """Per account, the first exchange (in ``[t_lo, t_hi)``) whose running shares satisfy ``conds``:
    ``account_id, ts, exchanges``."""
    cond = pl.col("exchanges") >= min_exchanges
    for f, op, v in conds:
        if f in running.columns:
            cond = cond & _OPS[op](pl.col(f), v)
    if t_lo is not None:
        cond = cond & (pl.col("ts") >= t_lo)
    if t_hi is not None:
        cond = cond & (pl.col("ts") < t_hi)
    return running.filter(cond).group_by("account_id").agg(pl.col("ts").min(), pl.col("exchanges").min())
