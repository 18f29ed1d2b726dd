"""Per-exchange signals: one compact row per valid exchange, prompt text dropped.

This is the only place that reads prompt text in the scan. Everything downstream (account
windows, clusters, scoring) works on the compact columns produced here, which is what keeps a
16-million-exchange scan inside a few GB: the text is reduced to flags and 64-bit hashes batch
by batch and never held for the whole log.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from . import text

HIGH_EFFORT = ["high", "xhigh", "max", "maximum"]
TOP_LOGPROBS_DISTRIBUTION = 5  # alternatives per token beyond what a confidence score needs

COMPACT_COLUMNS = [
    "request_id", "account_id", "ts", "_source", "_line",
    "created", "pf", "dom", "ipnet", "asn", "ua", "org", "model",
    "conv", "turn", "has_text",
    "f_reason", "f_maxout", "f_rubric", "f_exam", "f_code", "f_fmt", "f_trace", "script",
    "max_tokens", "n", "f_logprobs", "f_effort", "temperature", "tools", "out_tok", "reason_tok", "f_trunc",
    "h_exact", "h_pre", "h_suf", "b0", "b1", "b2",
]


def _ip_prefix(ip: pl.Expr) -> pl.Expr:
    """/24 for IPv4, /48 for IPv6: a network a proxy pool or an office shares, not one host."""
    v4 = ip.str.extract(r"^(\d{1,3}\.\d{1,3}\.\d{1,3})\.\d{1,3}$", 1)
    v6 = ip.str.to_lowercase().str.extract(r"^([0-9a-f]{0,4}:[0-9a-f]{0,4}:[0-9a-f]{0,4})", 1)
    return pl.coalesce(v4 + pl.lit(".0/24"), v6 + pl.lit("::/48"))


TEXT_COLUMNS = [
    "f_reason", "f_maxout", "f_rubric", "f_exam", "f_code", "f_fmt", "f_trace", "script",
    "h_pre", "h_suf", "b0", "b1", "b2",
]
# Below this share of distinct texts per batch, text signals are computed once per distinct text.
DEDUP_BELOW = 0.8


def exchange_features(batch: pa.RecordBatch | pa.Table) -> pl.DataFrame:
    """Compact per-exchange features for a batch of ``schema.EVENT_SCHEMA`` records.

    Parameters
    ----------
    batch : pyarrow RecordBatch or Table with the event schema.

    Returns
    -------
    polars.DataFrame with ``COMPACT_COLUMNS``: identifiers, linkable infrastructure, intent
    flags, request-shape columns and text hashes (exact, template head/tail, MinHash bands).
    """
    df = pl.from_arrow(batch) if not isinstance(batch, pl.DataFrame) else batch
    assert isinstance(df, pl.DataFrame)
    prompt = pl.col("prompt")
    # Exact repeats are byte-identical prompts (a digest stands in when the log keeps no text).
    # (Polars hashes a null to a constant, so each side is guarded: a null must stay null.)
    digest = pl.col("prompt_sha256").str.to_lowercase()
    exact = pl.coalesce(pl.when(prompt.is_not_null()).then(prompt.hash(seed=3)),
                        pl.when(digest.is_not_null()).then(digest.hash(seed=4)))
    meta = df.lazy().select(
        "request_id", "account_id", "ts", "_source", "_line",
        pl.col("account_created_at").alias("created"),
        pl.col("payment_fingerprint").alias("pf"),
        pl.col("email_domain").str.to_lowercase().alias("dom"),
        _ip_prefix(pl.col("client_ip")).alias("ipnet"),
        "asn",
        pl.col("user_agent").alias("ua"),
        pl.col("org_id").alias("org"),
        "model",
        pl.col("conversation_id").hash(seed=9).alias("conv"),
        "turn",
        prompt.is_not_null().alias("has_text"),
        "max_tokens", "n",
        # The token distribution, not a confidence score: a classifier reads its label's
        # probability from the top 1-3 alternatives; logit distillation asks for as many as the
        # API returns.
        (pl.col("top_logprobs").fill_null(0) >= TOP_LOGPROBS_DISTRIBUTION).alias("f_logprobs"),
        pl.col("reasoning_effort").str.to_lowercase().is_in(HIGH_EFFORT).fill_null(False).alias("f_effort"),
        "temperature",
        pl.col("tool_count").alias("tools"),
        pl.col("output_tokens").alias("out_tok"),
        pl.col("reasoning_tokens").alias("reason_tok"),
        (pl.col("finish_reason").str.to_lowercase() == "length").fill_null(False).alias("f_trunc"),
        exact.alias("h_exact"),
    ).collect()
    texts = df.select("prompt", "system_prompt")
    first, inverse = _distinct_texts(batch if not isinstance(batch, pl.DataFrame) else texts.to_arrow(), df.height)
    if first is None:
        signals = text_signals(texts)
    else:
        signals = text_signals(texts[first]).select(pl.all().gather(inverse))
    return pl.concat([meta, signals], how="horizontal").select(COMPACT_COLUMNS)


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


def text_signals(texts: pl.DataFrame) -> pl.DataFrame:
    """``TEXT_COLUMNS`` of each row of a (``prompt``, ``system_prompt``) frame."""
    prompt = pl.col("prompt")
    res = texts.lazy().with_columns(text.tokens(prompt).alias("_toks"), *text.lowered(prompt, pl.col("system_prompt"))).with_columns(
        *text.phrase_hits(pl.col("_low"), pl.col("_sys"))).select(
        *text.intent_flags(pl.col("_low"), pl.col("_both"), pl.col("_hp"), pl.col("_hs")),
        # Only prompts with non-ASCII text can have a non-Latin script (no regex needed to know).
        text.not_ascii(prompt).alias("_nonascii"),
        text.not_ascii(pl.col("_low"), pl.col("_sys")).alias("_na_low"),
        "_low", "_sys",
        *text.frames(prompt),
        *text.band_hashes(pl.col("_toks")),
    ).collect()
    # Non-ASCII phrases can only occur in texts that are not pure ASCII: match them there only.
    na = res["_na_low"]
    if na.any():
        idx = na.arg_true()
        sub = res.select(pl.col("_low", "_sys").gather(idx)).select(
            *text.phrase_hits(pl.col("_low"), pl.col("_sys"), non_ascii=True)).select(
            *text.literal_flags(pl.col("_hp"), pl.col("_hs"), non_ascii=True))
        res = res.with_columns(res[c].scatter(idx, res[c].gather(idx) | sub[c]) for c in text.INTENT_COLUMNS)
    mask = res["_nonascii"]
    script = pl.Series("script", [0] * res.height, dtype=pl.UInt8)
    if mask.any():
        idx = mask.arg_true()
        sub = texts.select(pl.col("prompt").gather(idx))
        script = script.scatter(idx, sub.select(text.script_code(pl.col("prompt")))["script"])
    return res.with_columns(script).select(TEXT_COLUMNS)
