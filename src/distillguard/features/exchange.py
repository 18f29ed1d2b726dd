"""Per-exchange signals: one compact row per valid exchange, prompt text dropped.

This is the only place that reads prompt text in the scan. Everything downstream (account
windows, clusters, scoring) works on the compact columns produced here, which is what keeps a
16-million-exchange scan inside a few GB: the text is reduced to flags and 64-bit hashes batch
by batch and never held for the whole log.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

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
    out = df.lazy().with_columns(text.tokens(prompt).alias("_toks"), *text.lowered(prompt, pl.col("system_prompt"))).with_columns(
        *text.phrase_hits(pl.col("_low"), pl.col("_sys"))).select(
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
        *text.intent_flags(pl.col("_low"), pl.col("_both"), pl.col("_hp"), pl.col("_hs")),
        # Only prompts with non-ASCII text can have a non-Latin script (no regex needed to know).
        text.not_ascii(prompt).alias("_nonascii"),
        text.not_ascii(pl.col("_low"), pl.col("_sys")).alias("_na_low"),
        "_low", "_sys",
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
        *text.frames(prompt),
        *text.band_hashes(pl.col("_toks")),
    )
    res = out.collect()
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
        sub = df.select(pl.col("prompt").gather(idx))
        script = script.scatter(idx, sub.select(text.script_code(pl.col("prompt")))["script"])
    return res.with_columns(script).select(COMPACT_COLUMNS)
