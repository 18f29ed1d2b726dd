"""What each exchange adds to its account's history, and the per-(account, tick) sums.

Engine-neutral: ``account_ticks`` is a pure function from an Arrow/Polars table holding *all*
exchanges of a set of accounts (one hash bucket of accounts) to that bucket's per-(account,
tick) sums and account–key link rows. The local engine applies it bucket by bucket; a
distributed engine can apply it per group (e.g. Spark's ``applyInArrow``) with the same result.

Marks, per exchange, in the account's event-time order (ties broken by file and line):
``new_exact`` first time this exact prompt appears in the account; ``new_global`` first time in
the whole log and ``new_item`` first time its *item* (most of its MinHash bands: the same
question in other words) appears in the whole log (both computed by the caller across buckets
with ``first_seen_marks``); ``nd`` shares a MinHash band
with an earlier prompt of the account; ``tpl`` its head or tail frame was already used with a
different prompt; ``new_hour``/``new_hod`` a new active hour / hour of day; ``dt`` the gap since
the account's previous exchange; ``agent_open`` it is the second request of an agent session
(tools offered; sessions by ``session_key``): the session is a loop, counted once; ``agent_fresh``
that session's first request was a task new to the account that names no file the account's
earlier traffic named (``ctx_seen``): an unrelated task, not more work on the same repository.
"""

from __future__ import annotations

import polars as pl

from .linking import FREE_MAIL, TEMPLATE_NEW_SHARE, TEMPLATE_REUSE, TEMPLATE_SHARE

SMALL_OUTPUT_CAP = 256  # max_tokens below this asks for a label or a short extract, not a corpus
# Keys whose log-wide first time marks an exchange: the exact prompt, and its MinHash bands.
FIRST_SEEN_KEYS = ("h_exact", "b0", "b1", "b2")
# An item is new to the log when this many of its bands are (one shared band is often a common
# phrase; two are the same question, whatever the wrapper or typos around it).
ITEM_NEW_BANDS = 2


def first_times(rows: pl.DataFrame | pl.LazyFrame, key: str) -> pl.DataFrame:
    """(key, t0): the first time each value of ``key`` appears in ``rows`` (de-duplicated rows)."""
    return rows.lazy().filter(pl.col(key).is_not_null()).group_by(key).agg(pl.col("ts").min().alias("t0")).collect()


def first_seen_marks(df: pl.DataFrame, firsts: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """``df`` with ``new_global`` and ``new_item`` from the log-wide first times ``firsts[key]``
    (``first_times`` over the whole log, for each of ``FIRST_SEEN_KEYS``).

    Ties at the same millisecond count as first for each: rare, and harmless either way. An
    exchange without bands (no text) falls back to its exact prompt.
    """
    hit = []
    for k in FIRST_SEEN_KEYS:
        f = firsts[k].rename({"t0": f"_t_{k}"})
        df = df.join(f, on=k, how="left")
        hit.append(pl.col(f"_t_{k}").is_not_null() & (pl.col("ts") == pl.col(f"_t_{k}")))
    bands_new = pl.sum_horizontal([h.cast(pl.Int8) for h in hit[1:]])
    return df.with_columns(
        hit[0].alias("new_global"),
        pl.when(pl.col("b0").is_null()).then(hit[0]).otherwise(pl.col("h_exact").is_not_null() & (bands_new >= ITEM_NEW_BANDS)).alias("new_item"),
    ).drop([f"_t_{k}" for k in FIRST_SEEN_KEYS])


def _first(*cols: str | pl.Expr) -> pl.Expr:
    """First row of each (account, value) in a frame sorted by account (see ``mark``'s ``_acct``)."""
    # A window over the integer account key: ~3x cheaper than hashing (account, value) structs.
    if len(cols) > 1:
        value = pl.struct(cols)
    else:
        value = pl.col(cols[0]) if isinstance(cols[0], str) else cols[0]
    return value.is_first_distinct().over("_acct")


def _context_seen(m: pl.DataFrame) -> pl.Series:
    """Row numbers (into ``m``, sorted by account, then time) of the rows naming a file
    (``ctx0``/``ctx1``) that an earlier exchange of the same account already named."""
    row = pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row")
    named = m.select("_acct", row, "ctx0", "ctx1").filter(pl.col("ctx0").is_not_null())
    if not named.height:
        return pl.Series("_row", [], dtype=pl.UInt32)
    long = pl.concat([named.select("_acct", "_row", pl.col(c).alias("_h")) for c in ("ctx0", "ctx1")]).drop_nulls("_h")
    # Within one row the two hashes differ, so a repeat is always an earlier row's.
    return long.sort("_row").filter(~pl.struct("_acct", "_h").is_first_distinct()).get_column("_row").unique()


def session_key() -> pl.Expr:
    """What ties an agent loop's requests together: the conversation id where the log has one;
    otherwise the task prompt itself, which an agent resends at every step of its loop."""
    return pl.coalesce(pl.col("conv"), pl.col("h_exact"))


def mark(df: pl.DataFrame, tick_ms: int) -> pl.DataFrame:
    """Per-exchange marks for one bucket of accounts (input: compact exchange rows)."""
    df = df.sort(["account_id", "ts", "_source", "_line"])
    # An integer per account (rows are sorted by account): keys with it hash ~2x faster than
    # with the account's string.
    df = df.with_columns((pl.col("account_id") != pl.col("account_id").shift(1)).fill_null(True).cum_sum().alias("_acct"))
    df = df.with_columns(
        # A prompt with neither text nor digest has no identity: it cannot be "new".
        (_first("h_exact") & pl.col("h_exact").is_not_null()).alias("new_exact"),
        (((pl.col("ts") - 1) // tick_ms) * tick_ms + tick_ms).alias("tick"),
        (pl.col("ts") // 3_600_000).alias("_hour"),
    )
    same_acct = pl.col("_acct") == pl.col("_acct").shift(1)
    use = lambda h: pl.when(pl.col(h).is_null()).then(0).otherwise(pl.col("new_exact").cast(pl.Int32).cum_sum().over(["_acct", h]))  # noqa: E731
    # Uses of a frame with a prompt new to the whole log (see ``_framing``).
    use_new = lambda h: pl.when(pl.col(h).is_null()).then(0).otherwise(pl.col("new_global").cast(pl.Int32).cum_sum().over(["_acct", h]))  # noqa: E731
    m = df.with_columns(
        (pl.col("b0").is_not_null() & ~(_first("b0") & _first("b1") & _first("b2"))).alias("nd"),
        use("h_pre").alias("pre_use"),
        use("h_suf").alias("suf_use"),
        use_new("h_pre").alias("pre_new"),
        use_new("h_suf").alias("suf_new"),
        pl.col("new_exact").cast(pl.Int32).cum_sum().over("_acct").alias("acct_new"),
        _first("_hour").alias("new_hour"),
        _first(pl.col("_hour") % 24).alias("new_hod"),
        _first("script").alias("new_script"),
        pl.when(same_acct).then(pl.col("ts") - pl.col("ts").shift(1)).alias("dt"),
        single_turn().alias("single"),
        (pl.col("n").fill_null(1) > 1).alias("multi_n"),
        (pl.col("max_tokens").fill_null(0) >= 8000).alias("big_max"),
        (pl.col("tools").fill_null(0) > 0).alias("has_tools"),
        (pl.col("script") > 0).alias("non_latin"),
        (pl.col("f_reason") | pl.col("f_maxout") | pl.col("f_rubric") | pl.col("f_exam")).alias("extract"),
    )
    return m.with_columns(agent_sessions(m))


def agent_sessions(m: pl.DataFrame) -> list[pl.Series]:
    """``agent_open`` and ``agent_fresh`` per row of ``m`` (``mark``'s frame, sorted by account,
    then time). Computed on the requests that offer tools only (a small share of most logs).

    A session counts once, at its second request, and only when that request continues a loop
    (the first was answered with tool calls, or this one carries a tool result or more than a
    system and a user message): an app's one-shot calls with tools, even repeated, are no
    session. The session is fresh when its first request opened a task new to the account that
    names no file the account named before. Every row read is in the account's past at the
    second request: no look-ahead.
    """
    n = m.height
    seen = _context_seen(m)
    key = ["_acct", "_sess"]
    sub = m.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"), "_acct", session_key().alias("_sess"),
        "new_exact", "f_toolres", "f_toolcall", "msgs", "tools",
    ).filter((pl.col("tools").fill_null(0) > 0) & pl.col("_sess").is_not_null())
    sub = sub.with_columns(
        (pl.col("new_exact") & ~pl.col("_row").is_in(seen.implode()) & ~pl.col("f_toolres")).alias("_fresh_row"),
    ).with_columns(
        ((pl.int_range(pl.len()).over(key) == 1)
         & (pl.col("f_toolcall").shift(1).over(key).fill_null(False) | pl.col("f_toolres")
            | (pl.col("msgs").fill_null(0) > 2))).alias("_open"),
        pl.col("_fresh_row").first().over(key).alias("_sess_fresh"),
    ).filter("_open")
    opened = pl.Series("agent_open", [False] * n)
    fresh = pl.Series("agent_fresh", [False] * n)
    if sub.height:
        opened = opened.scatter(sub["_row"], True)
        rows = sub.filter("_sess_fresh")["_row"]
        if rows.len():
            fresh = fresh.scatter(rows, True)
    return [opened, fresh]


def single_turn() -> pl.Expr:
    """An independent, bare request: the first turn by the log's ``turn``; where the log does not
    say, one that carries no context beyond its own texts (``f_ctx``; a request of unknown size
    counts as single, as a request with no turn always did). Logs that record no turns at all
    would otherwise make every router's and agent's multi-turn traffic look single-turn."""
    return pl.when(pl.col("turn").is_not_null()).then(pl.col("turn") <= 1).otherwise(~pl.col("f_ctx").fill_null(False))


def _i(e: pl.Expr) -> pl.Expr:
    return e.cast(pl.Float64).sum()


def tick_sums(m: pl.DataFrame) -> pl.DataFrame:
    """Sums per (account, tick) — see ``account.SUM_COLUMNS``."""
    dt = pl.col("dt") / 1000.0
    return m.group_by("_acct", "tick").agg(
        pl.col("account_id").first(),
        pl.len().cast(pl.Float64).alias("n"),
        _i(pl.col("new_exact")).alias("new_exact"),
        _i(pl.col("new_global")).alias("new_global"),
        _i(pl.col("new_item")).alias("new_item"),
        _i(pl.col("nd")).alias("nd"),
        _i((pl.col("pre_use") > 1) | (pl.col("suf_use") > 1)).alias("tpl"),
        _i(pl.col("new_hour")).alias("new_hour"),
        _i(pl.col("new_hod")).alias("new_hod"),
        _i(pl.col("single")).alias("single"),
        _i(~pl.col("single")).alias("multi"),
        _i(pl.col("has_text")).alias("text"),
        _i(pl.col("h_exact").is_not_null()).alias("ident"),
        # A reasoning ask that is only the means to a parseable answer ("think step by step ...
        # Answer: $X", what an evaluation harness sends) is not reasoning elicitation unless it
        # also demands the whole trace or as much output as possible.
        _i(pl.col("f_reason") & (~pl.col("f_fmt") | pl.col("f_maxout") | pl.col("f_trace"))).alias("reason"),
        _i(pl.col("f_maxout")).alias("maxout"),
        _i(pl.col("f_rubric")).alias("rubric"),
        _i(pl.col("f_exam")).alias("exam"),
        _i(pl.col("f_code")).alias("code"),
        # A parseable-answer constraint with no output-maximising ask: evaluation harnesses and
        # app back-ends want one value back; a harvester wants the whole trace.
        _i(pl.col("f_fmt") & ~pl.col("f_maxout")).alias("fmt"),
        # A reasoning ask that also demands the whole, unedited trace.
        _i(pl.col("f_reason") & pl.col("f_trace")).alias("trace"),
        _i(pl.col("f_logprobs")).alias("logprobs"),
        _i(pl.col("f_effort")).alias("effort"),
        _i(pl.col("multi_n")).alias("multi_n"),
        _i(pl.col("big_max")).alias("big_max"),
        _i(pl.col("f_trunc")).alias("trunc"),
        _i(pl.col("has_tools")).alias("tools"),
        # An agent's tool loop resends the same user request at every step: one task, not many.
        _i(pl.col("has_tools") & ~pl.col("new_exact") & pl.col("h_exact").is_not_null()).alias("tool_repeat"),
        _i(pl.col("agent_open")).alias("agent_open"),
        _i(pl.col("agent_fresh")).alias("agent_fresh"),
        _i(pl.col("non_latin")).alias("lang"),
        pl.col("out_tok").fill_null(0).cast(pl.Float64).sum().alias("out_tok"),
        pl.col("dt").count().cast(pl.Float64).alias("dt_n"),
        dt.sum().fill_null(0.0).alias("dt_sum"),
        (dt ** 2).sum().fill_null(0.0).alias("dt_sq"),
        _i(pl.col("new_script")).alias("new_script"),
        _i(pl.col("extract")).alias("extract"),
        # Output-maximising shape counts only on prompts that are new and not near-duplicates,
        # and not under a small output cap: a classifier asking for logprobs on 32 tokens of
        # templated input wants as little output as possible, the opposite of harvesting.
        ((pl.col("f_logprobs").cast(pl.Float64) + pl.col("f_effort") + pl.col("multi_n") + pl.col("big_max")) / 4.0
         * (pl.col("new_exact") & ~pl.col("nd") & (pl.col("max_tokens").fill_null(1 << 30) >= SMALL_OUTPUT_CAP))
         ).sum().alias("shape_novel"),
        pl.col("ts").min().alias("first_ts"),
        pl.col("ts").max().alias("last_ts"),
        pl.col("created").min().alias("created"),
    ).select("account_id", "tick", pl.exclude("_acct", "account_id", "tick"))


def _framing(use: str, new: str) -> pl.Expr:
    """Rows at which a frame counts as the account's template (see ``linking``), causally.

    Only prompts new to the whole log count towards it (``new``: at least ``TEMPLATE_REUSE``
    of them, and at least half of the frame's uses): a public template (an evaluation
    harness's, a popular framework's, a benchmark's own wording) reaches an account with items
    others already sent, while accounts splitting a sweep under a private wrapper each send new
    ones."""
    return ((pl.col(use) >= TEMPLATE_REUSE) & (pl.col(use) >= TEMPLATE_SHARE * pl.col("acct_new"))
            & (pl.col(new) >= TEMPLATE_REUSE) & (pl.col(new) >= TEMPLATE_NEW_SHARE * pl.col(use)))


def link_rows(m: pl.DataFrame) -> pl.DataFrame:
    """(account_id, key, first_ts) for every linkable key an account showed (see ``linking``).

    ``m`` is ``mark``'s output, sorted by account and time, so an account's first row with a
    value is its earliest: each kind keeps those rows first and builds key strings only for
    them (not for every exchange).
    """
    s = pl.col

    def firsts(cond: pl.Expr, *cols: str) -> pl.DataFrame:
        # Only the columns a key is built from: filtering every column of ``m`` copies them all.
        f = m.select("account_id", "_acct", "ts", *cols, cond.alias("_c")).filter(pl.col("_c"))
        return f.filter(_first(*cols))

    parts = [
        firsts(s("pf").is_not_null(), "pf").select("account_id", (pl.lit("pf:") + s("pf")).alias("key"), "ts"),
        firsts(s("org").is_not_null(), "org").select("account_id", (pl.lit("org:") + s("org")).alias("key"), "ts"),
        firsts(s("ipnet").is_not_null() & s("ua").is_not_null(), "ipnet", "ua").select(
            "account_id", pl.concat_str([pl.lit("net:"), s("ipnet"), pl.lit("|"), s("ua")]).alias("key"), "ts"),
        # A domain alone is weak (ISP mail, big employers); with the network it is one organisation.
        firsts(s("dom").is_not_null() & s("asn").is_not_null() & ~s("dom").is_in(sorted(FREE_MAIL)), "dom", "asn").select(
            "account_id", pl.concat_str([pl.lit("dom:"), s("dom"), pl.lit("|"), s("asn").cast(pl.String)]).alias("key"), "ts"),
        firsts(_framing("pre_use", "pre_new"), "h_pre").select("account_id", (pl.lit("tpl:") + s("h_pre").cast(pl.String)).alias("key"), "ts"),
        firsts(_framing("suf_use", "suf_new"), "h_suf").select("account_id", (pl.lit("tpl:") + s("h_suf").cast(pl.String)).alias("key"), "ts"),
        item_space_rows(m),
    ]
    # (A head and a tail frame can hash alike: the group-by keeps one row per key.)
    return pl.concat(parts).group_by("account_id", "key").agg(pl.col("ts").min().alias("first_ts"))


def account_ticks(df: pl.DataFrame, tick_ms: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """One bucket: (tick sums, link rows, account attributes) from its compact exchange rows.

    ``df`` must already be de-duplicated and carry the boolean ``new_global`` and ``new_item``
    columns (``first_seen_marks``).
    """
    m = mark(df, tick_ms)
    attrs = m.group_by("account_id").agg(pl.col("org").drop_nulls().first().alias("org"))
    return tick_sums(m), link_rows(m), attrs


# An item-only account (``item_space_rows``): at least this many distinct exam-shaped items, ...
ITEM_MIN = 5
# ... making up this share of its distinct prompts, ...
ITEM_SHARE = 0.8
# ... with at most this share of its requests multi-turn or with tools, or sent within
# ``ITEM_PACE_MS`` of the previous one (evaluation runs and back-ends send many at once).
ITEM_MAX_OTHER = 0.15
ITEM_PACE_MS = 10_000


def item_space_rows(m: pl.DataFrame) -> pl.DataFrame:
    """(account_id, key, ts): when an account became an *item-only* account of an item space.

    An item-only account asks nothing but exam-shaped items (``ITEM_MIN`` distinct ones or more,
    ``ITEM_SHARE`` of its distinct prompts), one at a time (single-turn, no tools) at a person's
    pace. Alone that is a diligent student; the key ``space:<shape>`` puts every such account of
    one item shape (code or other exam items) in one group, so that the cluster replay can judge
    them together: many unlinked accounts each sweeping new items of one space is a campaign
    split over identities. Running sums over the account's rows so far: no look-ahead.
    """
    acc = "_acct"
    c = lambda e: e.cast(pl.Int32).cum_sum().over(acc)  # noqa: E731
    f = m.select(
        "account_id", "ts",
        c(pl.col("new_exact")).alias("_new"),
        c(pl.col("new_exact") & pl.col("f_exam")).alias("_items"),
        c(pl.col("new_exact") & pl.col("f_exam") & pl.col("f_code")).alias("_code"),
        c(pl.lit(True)).alias("_n"),
        c(~pl.col("single") | pl.col("has_tools")).alias("_multi"),
        c(pl.col("dt").fill_null(1 << 40) < ITEM_PACE_MS).alias("_fast"),
    ).filter(
        (pl.col("_items") >= ITEM_MIN) & (pl.col("_items") >= ITEM_SHARE * pl.col("_new"))
        & (pl.col("_multi") <= ITEM_MAX_OTHER * pl.col("_n")) & (pl.col("_fast") <= ITEM_MAX_OTHER * pl.col("_n"))
    ).with_columns(
        (pl.lit("space:") + pl.when(2 * pl.col("_code") >= pl.col("_items")).then(pl.lit("code")).otherwise(pl.lit("exam"))).alias("key")
    )
    return f.select("account_id", "key", "ts")

