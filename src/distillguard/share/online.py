"""Partner indicators in the online service: incremental matching, batch by batch.

:class:`OnlineMatcher` keeps, per account, what :func:`.match.match_indicators` computes over a
whole log: hits per (account, indicator), the time the ``min_hits``-th hit arrived, the running
behaviour counts and the account's exchange count. Fed the same exchanges in time order, its
:meth:`matches` equals ``match_indicators`` on the log (a test checks it). It needs the request
bodies *before* the prompt text is dropped (band keys are computed from the text), so the service
calls :meth:`update` with the validated record batch (``ingest.records_to_batch``), then
:func:`.match.apply_matches` on its decisions frame, exactly as ``scan --indicators`` does.
"""

from __future__ import annotations

import threading
from typing import Iterable

import polars as pl

from . import stix
from .keys import KeyRing
from .match import MATCH_SCHEMA, MIN_CONFIDENCE, PartnerIndicator, load_indicators
from .observe import BEHAVIOUR_DIMS, identifier_rows, observe_batch

_OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b,
        "=": lambda a, b: a == b}


class OnlineMatcher:
    """Incremental partner-indicator matching for the online service (thread-safe)."""

    def __init__(self, objects: Iterable[dict], key: KeyRing, *, min_confidence: float = MIN_CONFIDENCE):
        self.key = key
        self.min_confidence = min_confidence
        self._lock = threading.Lock()
        self.info: dict = {}
        self._n: dict[str, int] = {}                       # exchanges per account
        self._beh: dict[str, list[int]] = {}               # behaviour counts per account
        self._hits: dict[tuple[str, str], list[int]] = {}  # (account, indicator) -> [hits, last ts]
        self._rows: dict[tuple[str, str], dict] = {}       # completed matches
        self.load(objects)

    def load(self, objects: Iterable[dict]) -> None:
        """(Re)load partner indicators, e.g. after a TAXII pull; matches made so far are kept."""
        info: dict = {}
        objs = stix.checked([o for o in objects if o.get("type") in ("indicator", "relationship")], info)
        inds = load_indicators(objs, skipped=info)
        lookup: dict[tuple[str, str, str], list[PartnerIndicator]] = {}
        beh = []
        for i in inds:
            if i.kind == "behaviour":
                beh.append(i)
                continue
            if i.key_id not in self.key.keys or (i.key_check and self.key.check_value(i.key_id) != i.key_check):
                info["unknown_key"] = info.get("unknown_key", 0) + 1
                continue
            for v in i.values:
                lookup.setdefault((i.key_id, i.kind, v), []).append(i)
        with self._lock:
            self._lookup, self._beh_inds, self.info = lookup, beh, {**info, "indicators": len(inds)}
            self._key_ids = sorted({k for k, _, _ in lookup})
            self._hashers = {k: self.key.hasher(k) for k in self._key_ids}

    def update(self, batch) -> pl.DataFrame:
        """Feed validated exchanges (an ``EVENT_SCHEMA`` record batch); returns the matches they completed."""
        obs = observe_batch(batch).drop("_source", "_line").sort("ts", maintain_order=True).with_row_index("_r")
        new: list[dict] = []
        if obs.is_empty():
            return self._frame(new)
        with self._lock:
            prior = pl.col("account_id").replace_strict(self._n, default=0, return_dtype=pl.Int64)
            obs = obs.with_columns((prior + pl.int_range(1, pl.len() + 1).over("account_id")).alias("_n"))
            for a, n in obs.group_by("account_id").agg(pl.col("_n").max()).iter_rows():
                self._n[a] = n
            # "Exchanges up to the match" counts every exchange of the account at the match's
            # timestamp, as the batch matcher does (ts <= match time), not only those read before it.
            obs = obs.with_columns(pl.col("_n").max().over(["account_id", "ts"]).alias("_n_at"))
            events: list[tuple[int, int, PartnerIndicator]] = []
            if self._lookup:
                long = identifier_rows(obs.rename({"account_id": "_a"}).with_columns(pl.col("_r").cast(pl.String).alias("account_id")))
                uniq = long.select("kind", "value").unique().rows()
                for kid in self._key_ids:
                    h = self._hashers[kid]
                    hit_vals = {(k, v): self._lookup[(kid, k, hv)] for k, v in uniq
                                if (hv := h.raw(k, v)) and (kid, k, hv) in self._lookup}
                    if not hit_vals:
                        continue
                    for r, k, v in long.select("account_id", "kind", "value").iter_rows():
                        for i in hit_vals.get((k, v), ()):
                            events.append((int(r), i))
            rows = obs.select("account_id", "ts", "_n_at").rows()
            for r, i in sorted(events, key=lambda e: e[0]):
                a, t, n = rows[r]
                self._hit(a, t, n, i, new)
            if self._beh_inds:
                self._behaviour(obs, new)
        return self._frame(new)

    def _behaviour(self, obs: pl.DataFrame, new: list) -> None:
        dims = list(BEHAVIOUR_DIMS)
        base = {a: c for a, c in self._beh.items()}
        df = obs.select("account_id", "ts", "_n", "_n_at", *dims).with_columns(
            [(pl.col(d).cast(pl.Int64).cum_sum().over("account_id")
              + pl.col("account_id").replace_strict({a: c[j] for a, c in base.items()}, default=0, return_dtype=pl.Int64)).alias(f"_c{j}")
             for j, d in enumerate(dims)])
        df = df.with_columns([(pl.col(f"_c{j}") / pl.col("_n")).alias(f"{d}_share") for j, d in enumerate(dims)]).with_columns(
            pl.col("_n").alias("exchanges"))
        for a, *c in df.group_by("account_id").agg([pl.col(f"_c{j}").last() for j in range(len(dims))]).iter_rows():
            self._beh[a] = list(c)
        for i in self._beh_inds:
            cond = (pl.col("_n") >= i.min_hits) & (pl.col("ts") >= i.valid_from) & (pl.col("ts") < i.live_until(self.min_confidence))
            for f, op, v in i.conds:
                if f in df.columns:
                    cond = cond & _OPS[op](pl.col(f), v)
            first = df.filter(cond).group_by("account_id").agg(pl.col("ts").first(), pl.col("_n_at").first())
            for a, t, n in first.sort("ts").iter_rows():
                if (a, i.id) not in self._rows:
                    self._hits[(a, i.id)] = [n, t]
                    self._complete(a, t, n, i, new, hits=n)

    def _hit(self, a: str, t: int, n: int, i: PartnerIndicator, new: list) -> None:
        if t < i.valid_from or t >= i.live_until(self.min_confidence):
            return
        h = self._hits.setdefault((a, i.id), [0, t])
        if h[1] != t or h[0] == 0:
            h[0] += 1
        h[1] = t
        row = self._rows.get((a, i.id))
        if row is not None:
            for rr in row["rows"]:
                rr["hits"], rr["last_match_ts"] = h[0], t
            return
        if h[0] >= i.min_hits:
            self._complete(a, t, n, i, new, hits=h[0])

    def _complete(self, a: str, t: int, n: int, i: PartnerIndicator, new: list, hits: int) -> None:
        conf = i.confidence * 0.5 ** ((t - i.valid_from) / i.half_life_ms)
        rows = [{"account_id": a, "indicator_id": i.id, "campaign_ref": c, "confidence": conf, "first_match_ts": t,
                 "kind": i.kind, "hits": hits, "last_match_ts": t, "events_at_match": n, "partner": i.partner}
                for c in i.campaigns]
        self._rows[(a, i.id)] = {"rows": rows}
        new += rows

    @staticmethod
    def _frame(rows: list[dict]) -> pl.DataFrame:
        return pl.DataFrame(rows, schema=MATCH_SCHEMA) if rows else pl.DataFrame(schema=MATCH_SCHEMA)

    def matches(self) -> pl.DataFrame:
        """Every match so far, in :func:`.match.match_indicators` form."""
        with self._lock:
            rows = [r for v in self._rows.values() for r in v["rows"]]
        return self._frame(rows).sort("first_match_ts", "account_id", "indicator_id")
