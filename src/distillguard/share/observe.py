"""Read a provider's own log into the per-exchange columns that sharing works on.

Both sides use this: the exporter to find what is linkable in its flagged campaigns, the
matcher to compare a partner's indicators with its own traffic. The frame stays local: raw
identifiers are here in canonical form (:func:`.keys.canonical`); only keyed hashes of them
ever go into a bundle. Prompt text is reduced to ``dg-sig-v1`` band keys (:mod:`.signature`)
batch by batch and dropped.

Columns: ``request_id, account_id, ts`` (epoch ms), ``payment, email_domain, ip_prefix, asn,
client`` (canonical text or null), ``bands`` (list of band keys) and the behaviour flags of
``BEHAVIOUR_DIMS`` (booleans, ``dg-behaviour-v1``).
"""

from __future__ import annotations

import os
from typing import Sequence

import polars as pl

from ..features.exchange import exchange_features
from ..features.marks import single_turn
from ..ingest import IngestStats, Quarantine, expand_inputs, read_events
from .keys import canonical
from .signature import band_keys_batch

IDENTIFIER_KINDS = ("payment", "email_domain", "ip_prefix", "asn", "client")

# dg-behaviour-v1: per-exchange flags whose shares over an account's history make its
# behavioural fingerprint. The intent flags are distillguard's multilingual lexicon signals
# (features/lexicon.py); the rest are request-shape facts any provider logs.
BEHAVIOUR_SCHEME = "dg-behaviour-v1"
BEHAVIOUR_DIMS = (
    "reason",     # asks for the full reasoning / chain of thought
    "maxout",     # asks for the longest, most exhaustive answer
    "rubric",     # grading / preference-judging request
    "exam",       # exam- or benchmark-shaped content
    "code",       # code request
    "single",     # first (or only) turn of a conversation (``features.marks.single_turn``)
    "multi_n",    # n > 1 completions in one call
    "logprobs",   # log-probabilities asked for
    "effort",     # high reasoning effort asked for
    "long_out",   # max_tokens >= 4096
    "tools",      # tools offered
)
LONG_OUT_TOKENS = 4096


def _canon_col(s: pl.Series, kind: str) -> pl.Series:
    uniq = s.drop_nulls().unique().to_list()
    mapping = {v: canonical(kind, v) for v in uniq}
    return s.replace_strict(mapping, default=None, return_dtype=pl.String)


def observe_batch(batch) -> pl.DataFrame:
    """The shareable columns of one ``EVENT_SCHEMA`` record batch."""
    raw = pl.from_arrow(batch)
    assert isinstance(raw, pl.DataFrame)
    ex = exchange_features(batch)
    prompts = raw["prompt"].to_list()
    bands = pl.Series("bands", [",".join(k) for k in band_keys_batch(prompts)], dtype=pl.String)
    df = pl.DataFrame({
        "request_id": ex["request_id"], "account_id": ex["account_id"], "ts": ex["ts"],
        "_source": ex["_source"], "_line": ex["_line"],
        "payment": _canon_col(raw["payment_fingerprint"], "payment"),
        "email_domain": _canon_col(raw["email_domain"], "email_domain"),
        "ip_prefix": _canon_col(raw["client_ip"], "ip_prefix"),
        "asn": raw["asn"].cast(pl.String),
        "client": _canon_col(raw["user_agent"], "client"),
    })
    flags = ex.select(
        pl.col("f_reason").alias("reason"), pl.col("f_maxout").alias("maxout"), pl.col("f_rubric").alias("rubric"),
        pl.col("f_exam").alias("exam"), pl.col("f_code").alias("code"),
        single_turn().alias("single"),
        (pl.col("n").fill_null(1) > 1).alias("multi_n"),
        pl.col("f_logprobs").alias("logprobs"), pl.col("f_effort").alias("effort"),
        (pl.col("max_tokens").fill_null(0) >= LONG_OUT_TOKENS).alias("long_out"),
        (pl.col("tools").fill_null(0) > 0).alias("tools"),
    )
    return pl.concat([df, flags, bands.to_frame()], how="horizontal")


def observe(inputs: Sequence[str], *, until_ms: int | None = None) -> pl.DataFrame:
    """Every valid exchange of the log (duplicates of a ``request_id`` dropped, first kept).

    Parameters
    ----------
    inputs : files, globs or directories, as ``distillguard scan`` takes them.
    until_ms : keep only exchanges with ``ts <= until_ms`` (what was known at that time).
    """
    paths = expand_inputs(list(inputs))
    key = _cache_key(paths)
    hit = _CACHE.get(key)
    if hit is None:
        hit = _observe(paths)
        if hit.height <= CACHE_MAX_ROWS:
            _CACHE[key] = hit
            while len(_CACHE) > CACHE_ENTRIES:
                _CACHE.pop(next(iter(_CACHE)))
    return hit if until_ms is None else hit.filter(pl.col("ts") <= until_ms)


# The same log is often read twice in one process (export then validate, match then apply):
# keep the last few small results, keyed by file identity (path, size, mtime).
CACHE_ENTRIES = 4
CACHE_MAX_ROWS = 2_000_000
_CACHE: dict[tuple, pl.DataFrame] = {}


def _cache_key(paths: Sequence[str]) -> tuple:
    out = []
    for p in paths:
        st = os.stat(p)
        out.append((os.path.realpath(p), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _observe(paths: Sequence[str]) -> pl.DataFrame:
    parts = []
    with Quarantine(None) as q:
        for batch in read_events(paths, q, IngestStats()):
            if batch.num_rows:
                parts.append(observe_batch(batch))
    if not parts:
        return _empty()
    df = pl.concat(parts, how="vertical_relaxed")
    df = df.sort(["_source", "_line"]).unique("request_id", keep="first", maintain_order=True)
    return df.drop("_source", "_line").sort(["ts", "account_id"])


def identifier_rows(obs: pl.DataFrame, kinds: Sequence[str] = IDENTIFIER_KINDS + ("prompt_band",)) -> pl.DataFrame:
    """Long form: one ``(account_id, ts, kind, value)`` row per identifier or band key of an exchange."""
    parts = [obs.select("account_id", "ts", pl.lit(k).alias("kind"), pl.col(k).alias("value")).drop_nulls("value")
             for k in IDENTIFIER_KINDS if k in kinds]
    if "prompt_band" in kinds:
        parts.append(obs.select("account_id", "ts", pl.lit("prompt_band").alias("kind"),
                                pl.col("bands").str.split(",").alias("value")).explode("value")
                     .filter(pl.col("value").str.len_bytes() > 0))
    if not parts:
        return pl.DataFrame(schema={"account_id": pl.String, "ts": pl.Int64, "kind": pl.String, "value": pl.String})
    return pl.concat(parts)


def _empty() -> pl.DataFrame:
    schema = {"request_id": pl.String, "account_id": pl.String, "ts": pl.Int64,
              **{k: pl.String for k in IDENTIFIER_KINDS}, **{d: pl.Boolean for d in BEHAVIOUR_DIMS},
              "bands": pl.String}
    return pl.DataFrame(schema=schema)


def inputs_of_scan(scan_dir: str | os.PathLike) -> list[str]:
    """The log files a scan read (``summary.json`` ``inputs``)."""
    import json
    from pathlib import Path

    s = json.loads((Path(scan_dir) / "summary.json").read_text())
    ins = s.get("inputs") or []
    if not ins:
        raise ValueError(f"{scan_dir}/summary.json names no inputs; pass the log explicitly")
    return list(ins)
