"""Per-exchange signals: one compact row per valid exchange, prompt text dropped.

This is the only place that reads prompt text in the scan. Everything downstream (account
windows, clusters, scoring) works on the compact columns produced here, which is what keeps a
16-million-exchange scan inside a few GB: the text is reduced to flags and 64-bit hashes batch
by batch and never held for the whole log.
"""

from __future__ import annotations

import functools
import random
import threading
from typing import Iterable, Iterator

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from . import text

HIGH_EFFORT = ["high", "xhigh", "max", "maximum"]
TOP_LOGPROBS_DISTRIBUTION = 5  # alternatives per token beyond what a confidence score needs
# A request "carries context" when its input tokens exceed what its own texts can account for:
# at most ~1 token per 1.5 UTF-8 bytes (CJK ~1 token a character, 3 bytes; English ~4 bytes a
# token), plus a margin for the chat format. The rest is earlier turns, documents or tool
# definitions: not the bare, independent question a harvesting script sends.
CTX_TOKENS_PER_BYTE = 2 / 3
CTX_MARGIN_TOKENS = 64

COMPACT_COLUMNS = [
    "request_id", "account_id", "ts", "_source", "_line",
    "created", "pf", "dom", "ipnet", "asn", "ua", "org", "model",
    "conv", "turn", "has_text", "f_ctx",
    "f_reason", "f_maxout", "f_rubric", "f_exam", "f_code", "f_fmt", "f_trace", "script",
    "max_tokens", "n", "f_logprobs", "f_effort", "temperature", "tools", "out_tok", "reason_tok", "f_trunc",
    "h_exact", "h_pre", "h_suf", "b0", "b1", "b2",
    "msgs", "f_toolres", "f_toolcall", "ctx0", "ctx1",
]

# A file path a task names ("django/db/models/query.py", "@src/auth/views.ts"): the working
# context an agent session shares with the developer's other sessions on the same repository.
# At least one directory and a file extension, so fractions, dates and prose do not match.
PATH_TOKEN = r"(?:[A-Za-z0-9_.@~-]+/)+[A-Za-z0-9_-]+\.[A-Za-z][A-Za-z0-9]{0,4}\b"
CONTEXT_CHARS = 8_000  # the paths a task names are in its first pages


def _ip_prefix(ip: pl.Expr) -> pl.Expr:
    """/24 for IPv4, /48 for IPv6: a network a proxy pool or an office shares, not one host."""
    v4 = ip.str.extract(r"^(\d{1,3}\.\d{1,3}\.\d{1,3})\.\d{1,3}$", 1)
    v6 = ip.str.to_lowercase().str.extract(r"^([0-9a-f]{0,4}:[0-9a-f]{0,4}:[0-9a-f]{0,4})", 1)
    return pl.coalesce(v4 + pl.lit(".0/24"), v6 + pl.lit("::/48"))


# Rows per call of the per-exchange reduction: each call pays a fixed cost (Polars compiles the
# lexicon regexes and builds their lazy DFAs and the phrase automaton anew per call), so reading
# blocks (~9k rows) are grouped (``reduction_groups``; the local scan and Spark's ingest tasks).
REDUCE_ROWS = 65_536

TEXT_COLUMNS = [
    "f_reason", "f_maxout", "f_rubric", "f_exam", "f_code", "f_fmt", "f_trace", "script",
    "h_pre", "h_suf", "b0", "b1", "b2",
]
# Below this share of distinct texts per batch, text signals are computed once per distinct text.
DEDUP_BELOW = 0.8


@functools.cache
def _meta_exprs() -> tuple:
    """The non-text columns, built once per process (the service reduces thousands of bodies)."""
    prompt = pl.col("prompt")
    # Exact repeats are byte-identical prompts (a digest stands in when the log keeps no text).
    # (Polars hashes a null to a constant, so each side is guarded: a null must stay null.)
    digest = pl.col("prompt_sha256").str.to_lowercase()
    exact = pl.coalesce(pl.when(prompt.is_not_null()).then(prompt.hash(seed=3)),
                        pl.when(digest.is_not_null()).then(digest.hash(seed=4)))
    return (
        "request_id", "account_id", "ts", "_source", "_line",
        pl.col("account_created_at").alias("created"),
        pl.col("payment_fingerprint").alias("pf"),
        pl.col("email_domain").str.to_lowercase().alias("dom"),
        _ip_prefix(pl.col("client_ip")).alias("ipnet"),
        "asn",
        pl.col("user_agent").alias("ua"),
        pl.col("org_id").alias("org"),
        "model",
        pl.when(pl.col("conversation_id").is_not_null()).then(pl.col("conversation_id").hash(seed=9)).alias("conv"),
        "turn",
        prompt.is_not_null().alias("has_text"),
        # (Null when unknown: no token count, or no prompt text to compare it with.)
        (pl.col("input_tokens") > (prompt.str.len_bytes() + pl.col("system_prompt").str.len_bytes().fill_null(0))
         * CTX_TOKENS_PER_BYTE + CTX_MARGIN_TOKENS).alias("f_ctx"),
        "max_tokens", "n",
        # The token distribution, not a confidence score: a classifier reads its label's
        # probability from the top 1-3 alternatives; logit distillation asks for as many as the
        # API returns.
        (pl.col("top_logprobs").fill_null(0) >= TOP_LOGPROBS_DISTRIBUTION).alias("f_logprobs"),
        pl.col("reasoning_effort").str.to_lowercase().is_in(HIGH_EFFORT).fill_null(False).alias("f_effort"),
        "temperature",
        # Tools offered: the count, or the number of names where only the names are logged.
        pl.coalesce(pl.col("tool_count"), pl.col("tool_names").list.len()).alias("tools"),
        pl.col("output_tokens").alias("out_tok"),
        pl.col("reasoning_tokens").alias("reason_tok"),
        (pl.col("finish_reason").str.to_lowercase() == "length").fill_null(False).alias("f_trunc"),
        exact.alias("h_exact"),
        pl.col("message_count").alias("msgs"),
        # The request carries a tool's result: a step of an agent's loop, not a new task.
        (pl.col("last_role").str.to_lowercase() == "tool").fill_null(False).alias("f_toolres"),
        # The model answered with tool calls: the caller's next request continues a loop.
        ((pl.col("finish_reason").str.to_lowercase() == "tool_calls").fill_null(False)
         | (pl.col("output_tool_calls").fill_null(0) > 0)).alias("f_toolcall"),
    )


_CTX_SEED = 21
_WEB_HOST = r"^(?:[A-Za-z0-9-]+\.)+(?:com|org|net|io|dev|edu|gov|html?|[a-z]{2})/"


def context_hashes(df: pl.DataFrame, agent: pl.Series) -> pl.DataFrame:
    """``ctx0``, ``ctx1``: the two smallest hashes of the file paths an agent request's prompt
    names (a bottom-2 sketch of its path set; null when it names none).

    Only agent traffic (``agent``: tools offered, or a tool result carried) is read, and each
    distinct prompt once: an agent resends its task at every step of its loop.
    """
    n = df.height
    idx = agent.arg_true()
    out = pl.DataFrame({"ctx0": pl.Series([None] * n, dtype=pl.UInt64), "ctx1": pl.Series([None] * n, dtype=pl.UInt64)})
    if not idx.len():
        return out
    prompts = df["prompt"].gather(idx)
    uniq = prompts.unique().drop_nulls()
    if not uniq.len():
        return out
    paths = (uniq.str.slice(0, CONTEXT_CHARS).str.extract_all(PATH_TOKEN)
             # A web address (an issue template's link to the contributing guide) is not a
             # file of the working copy.
             .list.eval(pl.element().filter(~pl.element().str.contains(_WEB_HOST))
                        .str.strip_chars_start("@").str.to_lowercase().hash(seed=_CTX_SEED))
             .list.unique().list.sort())
    sk = pl.DataFrame({"prompt": uniq, "ctx0": paths.list.get(0, null_on_oob=True),
                       "ctx1": paths.list.get(1, null_on_oob=True)})
    got = pl.DataFrame({"prompt": prompts}).join(sk, on="prompt", how="left", maintain_order="left", nulls_equal=False)
    return out.with_columns(out["ctx0"].scatter(idx, got["ctx0"]), out["ctx1"].scatter(idx, got["ctx1"]))


def exchange_features(batch: pa.RecordBatch | pa.Table, cache: "TextSignalCache | None" = None) -> pl.DataFrame:
    """Compact per-exchange features for a batch of ``schema.EVENT_SCHEMA`` records.

    Parameters
    ----------
    batch : pyarrow RecordBatch or Table with the event schema.
    cache : TextSignalCache, optional
        Text signals of pairs seen in earlier batches (same result, less work on repeats).

    Returns
    -------
    polars.DataFrame with ``COMPACT_COLUMNS``: identifiers, linkable infrastructure, intent
    flags, request-shape columns and text hashes (exact, template head/tail, MinHash bands).
    """
    df = pl.from_arrow(batch) if not isinstance(batch, pl.DataFrame) else batch
    assert isinstance(df, pl.DataFrame)
    meta = df.lazy().select(_meta_exprs()).collect()
    texts = df.select("prompt", "system_prompt")
    if cache is not None:
        signals = cache.signals(texts)  # (the cache looks each distinct pair up once)
    else:
        first, inverse = _distinct_texts(batch if not isinstance(batch, pl.DataFrame) else texts.to_arrow(), df.height)
        signals = text_signals(texts) if first is None else text_signals(texts[first]).select(pl.all().gather(inverse))
    agent = (meta["tools"].fill_null(0) > 0) | meta["f_toolres"]
    return pl.concat([meta, signals, context_hashes(df, agent)], how="horizontal").select(COMPACT_COLUMNS)


def _distinct_texts(batch, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(first row of each distinct (prompt, system prompt) pair, each row's pair), or
    (None, None) when most pairs are distinct and deduplicating would not pay.

    Retries, pass@k sampling, benchmark items and app back-ends with a fixed task repeat the
    same text many times in a batch; the text signals are a pure function of the two texts.
    """
    if n < 2:
        return None, None
    codes = []
    for name in ("prompt", "system_prompt"):
        col = batch.column(name)
        if isinstance(col, pa.ChunkedArray):  # one dictionary for the whole column
            col = col.combine_chunks()
        enc = pc.dictionary_encode(col)
        idx = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        codes.append((idx + 1, len(enc.dictionary) + 1))
    (p, _), (s, ns) = codes
    key = p * ns + s
    uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    if uniq.size >= DEDUP_BELOW * n:
        return None, None
    return first, inverse


@functools.cache
def _signal_exprs() -> tuple[list[pl.Expr], ...]:
    """The expressions of ``text_signals``, built once (hundreds of phrase literals each call)."""
    prompt = pl.col("prompt")
    first = [text.tokens(prompt).alias("_toks"), *text.lowered(pl.col("_bp"), pl.col("_bs"))]
    hits = text.phrase_hits(pl.col("_low"), pl.col("_sys"))
    main = [
        *text.intent_flags(pl.col("_low"), pl.col("_both"), pl.col("_hp"), pl.col("_hs")),
        # Only prompts with non-ASCII text can have a non-Latin script (no regex needed to know).
        text.not_ascii(prompt).alias("_nonascii"),
        text.not_ascii(pl.col("_low"), pl.col("_sys")).alias("_na_low"),
        pl.col("_low"), pl.col("_sys"),
        *text.frames(prompt),
        *text.band_hashes(pl.col("_toks")),
    ]
    na_hits = text.phrase_hits(pl.col("_low"), pl.col("_sys"), non_ascii=True)
    na_flags = text.literal_flags(pl.col("_hp"), pl.col("_hs"), non_ascii=True)
    return first, hits, main, na_hits, na_flags, [text.script_code(prompt)]


def text_signals(texts: pl.DataFrame) -> pl.DataFrame:
    """``TEXT_COLUMNS`` of each row of a (``prompt``, ``system_prompt``) frame."""
    first, hits, main, na_hits, na_flags, script_expr = _signal_exprs()
    bounded = [text.bounded_series(texts["prompt"]).alias("_bp"), text.bounded_series(texts["system_prompt"]).alias("_bs")]
    res = texts.with_columns(bounded).lazy().with_columns(first).with_columns(hits).select(main).collect()
    # Non-ASCII phrases can only occur in texts that are not pure ASCII: match them there only.
    na = res["_na_low"]
    if na.any():
        idx = na.arg_true()
        sub = res.lazy().select(pl.col("_low", "_sys").gather(idx)).select(na_hits).select(na_flags).collect()
        res = res.with_columns(res[c].scatter(idx, res[c].gather(idx) | sub[c]) for c in text.INTENT_COLUMNS)
    mask = res["_nonascii"]
    script = pl.Series("script", [0] * res.height, dtype=pl.UInt8)
    if mask.any():
        idx = mask.arg_true()
        sub = texts.lazy().select(pl.col("prompt").gather(idx)).select(script_expr).collect()
        script = script.scatter(idx, sub["script"])
    return res.with_columns(script).select(TEXT_COLUMNS)


_KEYS = ["_k0", "_k1", "_k2"]


class TextSignalCache:
    """``text_signals`` of recently seen (prompt, system prompt) pairs, across batches.

    Retries, pass@k sampling, evaluation items and an app's fixed requests repeat a text far
    apart in a log, beyond one batch's de-duplication. The signals are a pure function of the
    two texts, so a cached row is exactly what a fresh computation gives: the cache changes
    the cost, never the result.

    Pairs are keyed by three 64-bit hashes (the prompt under two seeds, the system prompt under
    a third). The seeds are drawn per cache, so colliding texts cannot be prepared in advance;
    two different pairs share a key by chance with probability about 2**-128 (2**-64 when only
    the system prompts differ). Memory is bounded by two generations of about
    ``max_entries / 2`` rows each (~80 bytes a row; a generation closes once it holds that
    many): a pair found in the older generation moves to the younger one, and the older one is
    dropped when the younger one closes (an approximate least-recently-used policy). Safe to
    share between threads.
    """

    def __init__(self, max_entries: int = 400_000, seed: int | None = None):
        rng = random.Random(seed) if seed is not None else random.SystemRandom()
        self._seeds = [rng.getrandbits(63) for _ in range(3)]
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._young: list[pl.DataFrame] = []
        self._young_rows = 0
        self._old: pl.DataFrame | None = None
        self.hits = 0
        self.misses = 0

    def _keys(self, texts: pl.DataFrame) -> pl.DataFrame:
        k0, k1, k2 = self._seeds
        return texts.select(pl.col("prompt").hash(seed=k0).alias("_k0"), pl.col("prompt").hash(seed=k1).alias("_k1"),
                            pl.col("system_prompt").hash(seed=k2).alias("_k2")).with_row_index("_i")

    @staticmethod
    def _found(keys: pl.DataFrame, table: pl.DataFrame | None) -> pl.DataFrame:
        if table is None or not keys.height:
            return keys.select("_i").head(0)
        # Joined on one key and checked on the other two: a one-column join is ~2x cheaper than
        # a three-column one, and a pair still matches only when all three keys are equal.
        # (Two threads may both have added a pair: keep one row per input row.)
        j = keys.join(table, on="_k0", how="inner", suffix="_t")
        return j.filter((pl.col("_k1") == pl.col("_k1_t")) & (pl.col("_k2") == pl.col("_k2_t"))).drop(
            "_k1_t", "_k2_t").unique("_i", keep="any")

    def signals(self, texts: pl.DataFrame) -> pl.DataFrame:
        """``text_signals(texts)``, reusing cached rows."""
        keys = self._keys(texts)
        # One lookup per distinct pair: a batch may repeat one pair thousands of times (a log
        # that withholds prompts has one (null, null) pair), and a cached pair must be unique
        # or the lookup join multiplies rows.
        uniq = keys.unique(_KEYS, keep="first", maintain_order=True)
        with self._lock:
            if len(self._young) > 1:
                self._young = [pl.concat(self._young)]
            young = self._young[0] if self._young else None
            old = self._old
        hit_young = self._found(uniq, young)
        rest = uniq.join(hit_young.select("_i"), on="_i", how="anti") if hit_young.height else uniq
        hit_old = self._found(rest, old)
        miss = rest.join(hit_old.select("_i"), on="_i", how="anti") if hit_old.height else rest
        fresh = text_signals(texts[miss["_i"]]) if miss.height else None
        parts = [h.select("_i", *TEXT_COLUMNS) for h in (hit_young, hit_old) if h.height]
        if fresh is not None:
            parts.append(fresh.with_columns(miss["_i"]).select("_i", *TEXT_COLUMNS))
        # Rows in ``uniq``'s order (ascending ``_i``).
        out = fresh if len(parts) == 1 and fresh is not None else pl.concat(parts, how="vertical").sort("_i").drop("_i")
        if uniq.height < keys.height:
            # (Three-key join and unique: on this data they beat one key checked on the others.)
            pos = keys.join(uniq.select(_KEYS).with_row_index("_u"), on=_KEYS, how="left", maintain_order="left")["_u"]
            out = out[pos]
        promote = [p for p in (hit_old.select(*_KEYS, *TEXT_COLUMNS) if hit_old.height else None,
                               pl.concat([miss.select(_KEYS), fresh], how="horizontal") if fresh is not None else None)
                   if p is not None]
        with self._lock:
            self.hits += keys.height - miss.height
            self.misses += miss.height
            if promote:
                self._young.extend(promote)
                self._young_rows += sum(p.height for p in promote)
                if self._young_rows >= self.max_entries // 2:
                    self._old = pl.concat(self._young)
                    self._young, self._young_rows = [], 0
        return out


def reduction_groups(batches: Iterable[pa.RecordBatch], rows: int = REDUCE_ROWS) -> Iterator[pa.Table]:
    """Reading batches grouped into tables of at least ``rows`` rows (the last one may be
    shorter; empty batches skipped): the unit of ``exchange_features`` for every engine."""
    group: list = []
    n = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        group.append(batch)
        n += batch.num_rows
        if n >= rows:
            yield pa.Table.from_batches(group)
            group, n = [], 0
    if group:
        yield pa.Table.from_batches(group)
