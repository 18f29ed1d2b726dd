"""Per-account signals as of every decision tick, computed without look-ahead.

``features.marks`` turns exchanges into sums per (account, tick); here ``snapshots`` makes
running sums per account of them, so the row for tick T describes the account using exchanges with ``ts`` <= T only.
   A trailing window (``window_ms``) is the difference of two running sums, which is what lets
   an old account that suddenly changes (takeover, resale) stand out from its own history.

Ratios are derived in ``derive`` from the sums, so cluster-level sums (members added together)
go through exactly the same transformation as one account.
"""

from __future__ import annotations

import polars as pl

# Sums kept per (account, tick). Everything the detector knows about an account is a function
# of these running sums plus a few static attributes.
SUM_COLUMNS = [
    "n", "new_exact", "nd", "tpl", "new_hour", "new_hod", "single", "multi", "text",
    "reason", "maxout", "rubric", "exam", "code", "logprobs", "effort", "multi_n", "big_max",
    "trunc", "tools", "lang", "out_tok", "dt_n", "dt_sum", "dt_sq", "new_script", "extract", "new_global", "new_item", "ident", "shape_novel", "fmt", "trace",
    "tool_repeat", "agent_open", "agent_fresh",
]

def tick_aggregates(ticks: pl.DataFrame) -> pl.DataFrame:
    """Per-(account, tick) sums (from ``marks.tick_sums``), sorted by account then tick."""
    return ticks.with_columns([pl.col(c).cast(pl.Float64) for c in SUM_COLUMNS]).sort(["account_id", "tick"])


# Sums also kept over a trailing day (prefix ``d_``): what the volume feature ``log_extract`` counts.
# Every other feature of the running sums is a share or a rate, which does not grow with the
# length of the log; a count does, so a big router or app back-end would look riskier in a
# month's log than in a day's for no change in behaviour. A day is also the span of the logs the
# learned layer was fitted on, so on a log of up to a day the two are the same.
VOLUME_COLUMNS = ("n", "extract", "new_exact", "agent_fresh", "new_hour")
# Extraction-shaped prompts up to this share of a stream are ordinary: a router's or an app's
# users send homework, exam questions and "explain step by step" as part of a mixed stream.
# Only the volume beyond it counts (an account whose traffic is mostly extraction, at volume).
ORDINARY_EXTRACT_SHARE = 0.5
VOLUME_WINDOW_MS = 86_400_000
DAY_COLUMNS = [f"d_{c}" for c in VOLUME_COLUMNS]  # their trailing-day sums, as ``snapshots`` names them


def _window_sums(cum: pl.DataFrame, columns, window_ms: int, out: str) -> pl.DataFrame:
    """``cum`` (sorted by account, then tick) with ``out + c``: running sum now minus the running
    sum at the account's last tick <= T - window."""
    past = cum.select(
        "account_id",
        (pl.col("tick") + window_ms).alias("tick"),
        *[pl.col(c).alias(f"_p_{c}") for c in columns],
    ).sort(["account_id", "tick"])
    joined = cum.join_asof(past, on="tick", by="account_id", strategy="backward", check_sortedness=False)
    return joined.with_columns(
        [(pl.col(c) - pl.col(f"_p_{c}").fill_null(0.0)).alias(out + c) for c in columns]
    ).drop([f"_p_{c}" for c in columns])


def snapshots(ticks: pl.DataFrame, window_ms: int, volume_window_ms: int = VOLUME_WINDOW_MS) -> pl.DataFrame:
    """Running sums per account at each of its ticks, plus trailing-window sums (prefix ``w_``)
    and trailing-day sums of ``VOLUME_COLUMNS`` (prefix ``d_``, over ``volume_window_ms``).

    ``ticks`` must be sorted by account, then tick, as ``tick_aggregates`` returns them.

    ``first_seen`` is the account's first exchange in the log; ``created`` its sign-up time
    when the log says (earliest value seen so far).
    """
    # Rows are sorted by account (``tick_aggregates``): a run id is an integer key for the same
    # partition, and windows over it cost ~30 % less than over the account's string.
    cum = ticks.with_columns(pl.col("account_id").rle_id().alias("_run")).with_columns(
        [pl.col(c).cum_sum().over("_run") for c in SUM_COLUMNS]
        + [
            pl.col("first_ts").cum_min().over("_run").alias("first_seen"),
            pl.col("created").cum_min().over("_run").alias("created"),
        ]
    ).drop("_run")
    cum = cum.sort(["account_id", "tick"])
    return _window_sums(_window_sums(cum, SUM_COLUMNS, window_ms, "w_"), VOLUME_COLUMNS, volume_window_ms, "d_")


FEATURES = [
    "log_n", "novelty", "nd_share", "tpl_share", "single_share", "reason_share", "maxout_share",
    "rubric_share", "exam_share", "code_share", "shape_share", "trunc_share", "log_out_tok",
    "hod_cover", "duty", "iat_cv", "log_rate", "young", "lang_spread", "tools_share", "extract_share", "log_extract",
    "global_novelty", "text_share", "fmt_share", "trace_share", "log_trace", "log_gap",
    "agent_fresh_share", "log_agent_fresh", "day_hours", "item_novelty",
]


def asks_share() -> pl.Expr:
    """Share of an account's readable prompts that *ask* for extraction (reasoning, maximal
    output or grading), from its running sums: exam-shaped content alone is not an ask (a
    student's homework questions are not a harvest wrapper)."""
    return pl.max_horizontal("reason", "maxout", "rubric") / pl.col("text").clip(lower_bound=1.0)


def derive(df: pl.DataFrame, prefix: str = "", now_col: str = "tick") -> pl.DataFrame:
    """Scale-free behavioural features from the running sums (prefix ``w_`` for the window).

    Returns ``df`` with one column per name in ``FEATURES`` (prefixed ``prefix + "x_"``).
    """
    c = lambda name: pl.col(prefix + name)  # noqa: E731
    # The running features count volume over the trailing day (see ``VOLUME_COLUMNS``) when the
    # frame carries those sums; a window's own sums are bounded already.
    vol = (lambda name: pl.col("d_" + name)) if not prefix and "d_extract" in df.columns else c  # noqa: E731
    excess = pl.min_horizontal(vol("extract"), vol("new_exact")) - ORDINARY_EXTRACT_SHARE * vol("n")
    n = c("n").clip(lower_bound=1.0)
    hours = ((pl.col(now_col) - pl.col("first_seen")) / 3_600_000).clip(lower_bound=1.0)
    active_hours = c("new_hour").clip(lower_bound=1.0)
    mean_dt = c("dt_sum") / c("dt_n").clip(lower_bound=1.0)
    var_dt = (c("dt_sq") / c("dt_n").clip(lower_bound=1.0) - mean_dt ** 2).clip(lower_bound=0.0)
    text = c("text").clip(lower_bound=1.0)
    age_days = ((pl.col("first_seen") - pl.col("created")) / 86_400_000).fill_null(365.0).clip(lower_bound=0.0)
    shape = c("shape_novel") / n
    feats = {
        "log_n": c("n").log1p(),
        # Distinct prompts (per account; summed over a cluster's members) over events.
        # Over exchanges whose prompt has an identity (text or digest); 0 when none has one.
        "novelty": c("new_exact") / c("ident").clip(lower_bound=1.0),
        # Prompts never seen before anywhere in the log: evaluators re-running one public
        # benchmark repeat each other; a campaign splitting a sweep over its accounts does not.
        "global_novelty": c("new_global") / c("ident").clip(lower_bound=1.0),
        # Items (a question, whatever its wording) never asked before anywhere in the log:
        # students asking popular homework and evaluators re-running public benchmarks ask what
        # others asked, in their own words; accounts taking disjoint slices of a space do not.
        "item_novelty": c("new_item") / c("ident").clip(lower_bound=1.0),
        # How much of the traffic the detector can read at all (logs may withhold prompts).
        "text_share": c("text") / n,
        "nd_share": c("nd") / text,
        "tpl_share": c("tpl") / text,
        "single_share": c("single") / n,
        "reason_share": c("reason") / text,
        "maxout_share": c("maxout") / text,
        "rubric_share": c("rubric") / text,
        "exam_share": c("exam") / text,
        "code_share": c("code") / text,
        "fmt_share": c("fmt") / text,
        "trace_share": c("trace") / text,
        "shape_share": shape,
        "trunc_share": c("trunc") / n,
        "log_out_tok": (c("out_tok") / n).log1p(),
        "hod_cover": pl.col("new_hod") / 24.0 if not prefix else (c("new_hour") / 24.0).clip(upper_bound=1.0),
        "duty": (pl.col("new_hour") / hours).clip(upper_bound=1.0) if not prefix else (c("new_hour") / 1.0).clip(upper_bound=1.0),
        "iat_cv": pl.when(c("dt_n") >= 3).then(var_dt.sqrt() / mean_dt.clip(lower_bound=1e-3)).otherwise(1.0).clip(upper_bound=10.0),
        "log_rate": (c("n") / (active_hours if not prefix else pl.lit(1.0))).log1p(),
        "young": (1.0 / (1.0 + age_days / 7.0)),
        "lang_spread": (pl.col("new_script") - 1).clip(lower_bound=0.0) / 3.0,
        "tools_share": c("tools") / n,
        "extract_share": c("extract") / text,
        # Coverage: how many *new*, extraction-shaped prompts in the trailing day, beyond the
        # ordinary share of a mixed stream. Volume alone is not risk (routers and app back-ends
        # are big, and their users' homework grows with them); a stream that is mostly novel
        # extraction asks, at volume, is harvesting. At a rate: not summed over however long the
        # log happens to be.
        "log_extract": excess.clip(lower_bound=0.0).log1p(),
        # How many asks for the whole, unedited reasoning trace (per hour in the window). A
        # count, not a share: a harvester hidden in a reseller's traffic is a small share of
        # a large stream, but no ordinary stream of users asks for raw traces several times an hour.
        "log_trace": c("trace").log1p(),
        # Mean seconds between an account's exchanges (sessions' pauses included): a person reads
        # a long answer before sending the next; an evaluation harness sends it at once.
        "log_gap": mean_dt.log1p(),
        # Agent sessions whose task is unrelated to the account's earlier work (new to it, and
        # naming none of the files its earlier traffic named), over all its agent sessions. A
        # developer's sessions return to one repository; a trajectory harvester's are each a
        # new task drawn from a broad task space.
        "agent_fresh_share": c("agent_fresh") / c("agent_open").clip(lower_bound=1.0),
        # How many such unrelated agent sessions in the trailing day: a day's yield of new
        # trajectories, not a share (one developer opens a handful; a harvester, dozens).
        "log_agent_fresh": vol("agent_fresh").log1p(),
        # Hours with traffic in the trailing day, over 24: the duty cycle of the account's
        # current day, which a long log does not inflate (``hod_cover`` counts every hour of
        # the day ever used). A person's working day leaves hours idle; a harness need not.
        "day_hours": (vol("new_hour") / 24.0).clip(upper_bound=1.0),
    }
    return df.with_columns([e.cast(pl.Float64).fill_nan(0.0).fill_null(0.0).alias(prefix + "x_" + k) for k, e in feats.items()])



# --- Severity evidence (read by ``scoring.policy.Policy.severity``) -------------------------
# These are functions of an account's (or a cluster's summed) running sums, so the scan, the
# service and Spark compute them alike. They say how much an account has *obtained*, and
# whether its traffic carries the marks of a purpose that needs that much.

# An evaluation harness runs a finite item set and stops: public benchmarks hold hundreds to a
# few thousand items, and a pass@k run of one, even at n = 16 with long reasoning, is over
# within hours of active traffic.
EVAL_MAX_ITEMS = 2_000
EVAL_MAX_HOURS = 8
# A product account that has served people for a quarter of a year before the log began.
TENURE_DAYS = 90
# Follow-up turns: people reacting to answers, which a product serving people carries and a
# harvester has no use for (a follow-up yields no new item).
PRODUCT_MIN_FOLLOWUP = 0.05


def harvest_yield() -> pl.Expr:
    """Distinct prompts an account (or a cluster's summed members) obtained answers to beyond
    an ordinary stream, over the trailing day: novel extraction-shaped prompts beyond half of
    the stream (what ``log_extract`` counts), plus, for the share of traffic whose text the log
    withholds, novel prompts beyond half of it (a digest still says "new"). Needs the running
    sums and their ``d_`` trailing-day sums."""
    n = pl.col("d_n")
    text_frac = (pl.col("text") / pl.col("n").clip(lower_bound=1.0)).clip(0.0, 1.0)
    readable = (pl.min_horizontal("d_extract", "d_new_exact") - ORDINARY_EXTRACT_SHARE * n).clip(lower_bound=0.0)
    textless = (1.0 - text_frac) * (pl.col("d_new_exact") - ORDINARY_EXTRACT_SHARE * n).clip(lower_bound=0.0)
    return (readable + textless).fill_null(0.0)


def evaluation_run() -> pl.Expr:
    """An evaluation-sized run, from the running sums: a finite item set (at most
    ``EVAL_MAX_ITEMS`` distinct prompts) over few active hours (``EVAL_MAX_HOURS``), asked the way
    a harness asks (most prompts demand a parseable final answer), without demanding the whole
    trace or the most output. Whatever its request shape (n > 1, huge ``max_tokens``, high effort), what it
    obtains is bounded by the item set: at most monitored, and it escalates the moment it grows
    past either bound."""
    text = pl.col("text").clip(lower_bound=1.0)
    # (Items the log had already seen from others are no evidence of a public benchmark: a
    # campaign spreading repeated sampling of its items over its accounts echoes too.)
    harness = pl.col("fmt") / text >= 0.5
    return (harness & (pl.col("trace") / text < 0.1) & (pl.col("maxout") / text < 0.2)
            & (pl.col("new_exact") <= EVAL_MAX_ITEMS) & (pl.col("new_hour") <= EVAL_MAX_HOURS)).fill_null(False)


def serves_people() -> pl.Expr:
    """Legitimacy evidence from the running sums: an account of long standing
    (``TENURE_DAYS`` before its first exchange here) whose traffic keeps follow-up turns, as a
    product serving people does (a tutoring or support app whose users ask about the answer). A
    harvester gains nothing from a follow-up (no new item), and an account bought or taken over
    for harvesting changes its trailing window first (the replay checks that too). Unknown tenure
    is no evidence. (Items repeated across end users are a product's mark too, but so they are
    of repeated sampling: not used.)"""
    age_days = (pl.col("first_seen") - pl.col("created")) / 86_400_000
    n = pl.col("n").clip(lower_bound=1.0)
    return ((age_days >= TENURE_DAYS) & (pl.col("multi") / n >= PRODUCT_MIN_FOLLOWUP)).fill_null(False)
