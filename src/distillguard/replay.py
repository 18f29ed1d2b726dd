"""Event-time replay: every decision the online service would have made, computed in bulk.

Decisions are taken at the end of each tick (default one minute of event time, well inside the
spec's 15) from snapshots that contain only exchanges with ``ts`` <= the tick's end, so the scan
has no look-ahead. Account decisions use the account's running and trailing-window features;
cluster decisions are refreshed every ``cluster_every_ms`` from the links active at that moment.
``first_flagged_ts`` is the first decision time whose action reached ``challenge``;
``events_before_flag`` the account's exchanges with ``ts`` <= that time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence, Union

import numpy as np
import polars as pl
import xxhash

from .features.account import (DAY_COLUMNS, SUM_COLUMNS, VOLUME_WINDOW_MS,
                               asks_share, derive, evaluation_run, harvest_yield, serves_people, snapshots, tick_aggregates)
from .features.linking import ITEM_SPACE_CAP, LinkGraph, link_pairs, split_item_spaces
from .schema import ACTIONS
from .scoring.model import AccountModel, shrink_by_evidence
from .scoring.policy import ACTION_LEVEL, Policy
from .scoring.rules import Rule, fire

MODEL_REASON_MIN = 0.4  # log-odds a feature must add before it is named as a reason
# Follow-ups a product's trailing window must show once its own rate expects this many (a
# Poisson count of 5 is zero by chance 0.7 % of the time).
PRODUCT_WINDOW_EXPECTED = 5.0


@dataclass
class ReplayConfig:
    tick_ms: int = 60_000
    window_ms: int = 3_600_000
    # The span over which volume is counted (``features.account.VOLUME_COLUMNS``): a day, so a
    # big account's risk does not grow with the length of the log.
    volume_window_ms: int = VOLUME_WINDOW_MS
    cluster_every_ms: int = 900_000
    min_window_events: int = 20
    # A linked account inherits its cluster's verdict only with some evidence of its own (mostly
    # extraction asks: reasoning, output-maximising or grading requests, not exam-shaped content
    # alone; or a model score well above an ordinary user's): guilt by association alone would
    # punish a family member sharing a card, or a student on the same VPN exit.
    propagate_min_extract: float = 0.5
    propagate_min_own: float = 0.3
    # ... measured over at least this many of its own exchanges: a share of one or two is noise.
    propagate_min_events: int = 3
    # A member whose prompts the log does not carry (digest only) cannot show extraction-shaped
    # text; for it, machine-like traffic of its own stands in: mostly single-turn requests at a
    # volume no person types. A bystander on a shared card or NAT rarely has both.
    propagate_textless_max_text: float = 0.5
    propagate_textless_min_events: int = 50
    propagate_textless_min_single: float = 0.9
    # A cluster convicts only when most of its prompts are new to the whole log. Linked
    # accounts that mostly echo what others already sent (evaluators sharing a public eval
    # template and benchmark, users of one popular prompt) are not jointly covering new ground;
    # a campaign that splits a sweep over its accounts is.
    cluster_min_global_novelty: float = 0.5
    # Cluster epochs before this event time are not replayed (the online service sets it to its
    # replay horizon; the batch scan replays everything).
    cluster_since_ms: int | None = None
    # An item-space group (unlinked accounts that each ask only new exam-shaped items of one
    # space, ``marks.item_space_rows``) is evidence about a population, not about any one
    # member's identity: its verdict reaches members at most as this action, and only members
    # still asking mostly items (``sweep_member_min_exam`` of their readable prompts).
    sweep_max_action: str = "challenge"
    sweep_member_min_exam: float = 0.7
    # ... and whose trailing day is person-scale: a group member looks like one student. (A
    # harvester at machine volume is judged on its own; in the group its volume would drown the
    # small accounts' evidence.)
    sweep_member_max_day: float = 300.0
    # ... and at most this many requests per hour it was active in: what one person reads and
    # types (a product serving many students, or a harness, sends more as soon as it starts).
    sweep_member_max_per_hour: float = 20.0
    # ... and whose prompts mostly do not reuse one frame: a product or a harness sends every
    # request through its template; a person phrases each question anew. (A campaign with a
    # fixed wrapper is linked by that private template instead.)
    sweep_member_max_template: float = 0.5
    # ... and most of whose own items are new to the log: a member is challenged for its own
    # share of a disjoint sweep, not for asking what others asked while a campaign runs nearby.
    sweep_member_min_item_novelty: float = 0.3


def _noisy_or(p: np.ndarray, fired: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """1 - (1-p) * prod(1 - w_r) over fired rules: independent evidence accumulates."""
    if fired.size == 0:
        return p
    keep = np.prod(np.where(fired, 1.0 - weights[None, :], 1.0), axis=1)
    return 1.0 - (1.0 - p) * keep


def _score_block(df: pl.DataFrame, model: AccountModel, rules: list[Rule], scope: str, prefix: str, n_col: str,
                 unshrunk: list | None = None) -> tuple[np.ndarray, np.ndarray, list[Rule]]:
    """Fused score for each row of ``df`` in one scope; also the fired matrix and its rules.

    The model's probability is shrunk by the evidence behind the row (``shrink_by_evidence``)
    before rules are fused in: a rule carries its own ``min_events``. ``unshrunk`` (a list),
    when given, receives ``(fused score without the shrinkage, model probability, shrunk model
    probability)``: the policy's few-events tier reads the first, the sandbox re-fuses the others."""
    raw = model.predict_proba(df, prefix)
    p = shrink_by_evidence(raw, evidence(df, n_col[: -len("n")]) if df.height else np.zeros(0))
    active = [r for r in rules if scope in r.scope]
    if active and df.height:
        fired = fire(df, active, scope, prefix, n_col).select([f"r:{r.id}" for r in active]).to_numpy().astype(bool)
    else:
        fired = np.zeros((df.height, len(active)), dtype=bool)
    w = np.array([r.weight for r in active], dtype=float)
    if unshrunk is not None:
        unshrunk.append((_noisy_or(raw, fired, w), raw, p))
    return _noisy_or(p, fired, w), fired, active


def sandbox_cap(rules: Sequence[Rule]) -> int | None:
    """The highest cap of the sandboxed rules among ``rules`` (None: none is)."""
    caps = [ACTIONS.index(r.sandbox) for r in rules if r.sandbox is not None]
    return max(caps) if caps else None


def _reasons(fired_row: np.ndarray, active: list[Rule], contrib_row: np.ndarray, features: tuple[str, ...], prefix: str = "") -> list[str]:
    rs = sorted((r for r, f in zip(active, fired_row) if f), key=lambda r: -r.weight)
    out = [prefix + r.reason for r in rs]
    order = np.argsort(-contrib_row)
    out += [f"{prefix}model:{features[i]}" for i in order[:3] if contrib_row[i] >= MODEL_REASON_MIN]
    return out


def account_snapshots(ticks: pl.DataFrame, cfg: ReplayConfig) -> pl.DataFrame:
    """Every account's running and trailing-window features at each tick it was active."""
    snaps = derive(derive(snapshots(tick_aggregates(ticks), cfg.window_ms, cfg.volume_window_ms)), prefix="w_")
    # The window's raw sums are spent once its features are derived (only its size and its
    # tool-loop repeats, for ``evidence``, are used again): dropping them cuts the replay's
    # largest frame by about a quarter.
    return snaps.drop([f"w_{c}" for c in SUM_COLUMNS if c not in ("n", "tool_repeat")])


def may_suspend(fired: np.ndarray, active: list[Rule]) -> np.ndarray:
    """Rows where a fired rule may justify suspension (``max_action: suspend``)."""
    if fired.size == 0:
        return np.zeros(fired.shape[0], dtype=bool)
    strong = np.array([ACTION_LEVEL[r.max_action] >= ACTION_LEVEL["suspend"] for r in active], dtype=bool)
    return fired[:, strong].any(axis=1)


def fired_substream(fired: np.ndarray, active: list[Rule]) -> np.ndarray:
    """Rows where a rule that finds a harvester hidden among other traffic fired (``substream``)."""
    if fired.size == 0:
        return np.zeros(fired.shape[0], dtype=bool)
    return fired[:, np.array([r.substream for r in active], dtype=bool)].any(axis=1)


def evidence(df: pl.DataFrame, prefix: str = "") -> np.ndarray:
    """Exchanges a snapshot's verdict rests on: all of them, except the repeats of one request
    inside an agent's tool loop (it resends the user's request at every step; that is one task,
    not fifty independent asks). Repeated sampling without tools still counts every call."""
    return (df[prefix + "n"] - df[prefix + "tool_repeat"]).to_numpy()


# Account-level replay runs over chunks of accounts of at most this many per-tick rows, so the
# snapshot frame (~90 float columns a row) stays bounded whatever the log's size.
CHUNK_TICK_ROWS = 600_000

TickInput = Union[pl.DataFrame, pl.LazyFrame, Sequence[Union[pl.DataFrame, pl.LazyFrame]]]


# Parts smaller than this (the scan's account buckets) are combined into chunks of up to this
# many rows: each chunk's pass has a fixed cost (~40 ms: hundreds of expressions planned), so
# tiny chunks are slow (the 1M log in 16 chunks of ~33k rows: +30 %), and so are big ones (its
# ticks in one 528k-row chunk: +15 %; 66k to 150k rows a chunk were equally fast).
MERGE_TICK_ROWS = 150_000


def _chunks(ticks: TickInput) -> Iterator[pl.DataFrame]:
    """Frames of whole accounts, each of at most about ``CHUNK_TICK_ROWS`` rows: parts of up to
    ``MERGE_TICK_ROWS`` rows are combined in order, larger ones pass whole or are split by account."""
    parts = [ticks] if isinstance(ticks, (pl.DataFrame, pl.LazyFrame)) else list(ticks)
    merge = min(MERGE_TICK_ROWS, CHUNK_TICK_ROWS)
    held: list[pl.DataFrame] = []
    rows = 0
    for part in parts:
        df = part.collect() if isinstance(part, pl.LazyFrame) else part
        if not df.height:
            continue
        if held and rows + df.height > merge:
            yield pl.concat(held, how="vertical_relaxed")
            held, rows = [], 0
        if df.height <= merge:
            held.append(df)
            rows += df.height
            continue
        if df.height <= CHUNK_TICK_ROWS:
            yield df
            continue
        k = -(-df.height // CHUNK_TICK_ROWS)
        key = pl.col("account_id").hash(seed=17) % k
        for _, sub in df.with_columns(key.alias("_c")).partition_by("_c", as_dict=True).items():
            yield sub.drop("_c")
    if held:
        yield pl.concat(held, how="vertical_relaxed")


def _account_pass(ticks: pl.DataFrame, attrs: pl.DataFrame, model: AccountModel, rules: list[Rule], policy: Policy,
                  cfg: ReplayConfig, linked: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """One chunk of accounts: (per-account summary with own reasons, cluster state of its linked
    accounts, running count per tick) — everything the rest of the replay needs from snapshots."""
    snaps = account_snapshots(ticks, cfg)
    snaps = snaps.join(attrs.select("account_id", "org"), on="account_id", how="left")
    allowed = (snaps["account_id"].is_in(list(policy.allow_accounts)) | snaps["org"].is_in(list(policy.allow_orgs)).fill_null(False)).to_numpy()

    raw: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    s_cum, f_cum, a_cum = _score_block(snaps, model, rules, "account", "x_", "n", raw)
    s_win, f_win, a_win = _score_block(snaps, model, rules, "window", "w_x_", "w_n", raw)
    w_ok = evidence(snaps, "w_") >= cfg.min_window_events
    s_win = np.where(w_ok, s_win, 0.0)
    own = np.maximum(s_cum, s_win)
    own_raw = np.maximum(raw[0][0], np.where(w_ok, raw[1][0], 0.0))
    n_arr = evidence(snaps)
    asks = snaps.select(asks_share()).to_series().to_numpy()
    tick, first_seen = snaps["tick"].to_numpy(), snaps["first_seen"].to_numpy()
    # Severity by what the account obtained and what its traffic is for (``Policy.severity``).
    # A product's follow-ups must go on in its trailing window too: an account taken over or
    # resold changes there first. A window with none where the account's own rate expects
    # several (PRODUCT_WINDOW_EXPECTED) has changed; a quiet hour's chance gap has not.
    w_multi = pl.col("w_n") * (1.0 - pl.col("w_x_single_share"))
    expected = pl.col("w_n") * pl.col("multi") / pl.col("n").clip(lower_bound=1.0)
    window_agrees = ~pl.col("_w_ok") | (w_multi >= 0.5) | (expected < PRODUCT_WINDOW_EXPECTED)
    sev = snaps.with_columns(pl.Series("_w_ok", w_ok)).select(
        harvest_yield().alias("y"), evaluation_run().alias("b"), (serves_people() & window_agrees).alias("p"))
    y, bounded, product = sev["y"].to_numpy(), sev["b"].to_numpy(), sev["p"].to_numpy()

    def decide(own: np.ndarray, own_raw: np.ndarray, f_c: np.ndarray, a_c: list[Rule], f_w: np.ndarray, a_w: list[Rule]) -> np.ndarray:
        lvl = policy.levels(own, n_arr, allowed)
        # Too few exchanges to judge an account on its own (unless near-certain, see the policy):
        # it can still be flagged through its cluster.
        # The few-events tier reads extraction asks, as propagation does.
        lvl = policy.evidence_gate(lvl, own_raw, n_arr, asks, few_lvl=policy.levels(own_raw, n_arr, allowed))
        # A reviewed rule is specific evidence and acts at once; the learned layer's verdict alone
        # on a burst waits until the account has been observed for the policy's sustain span, and
        # never goes past the policy's ``model_only_max`` (suspension needs a rule).
        ruled = f_c.any(axis=1) | (f_w.any(axis=1) & w_ok)
        lvl = np.where(ruled, lvl, policy.model_only(policy.sustained(tick, first_seen, lvl, n_arr)))
        strong = may_suspend(f_c, a_c) | (may_suspend(f_w, a_w) & w_ok)
        hidden = fired_substream(f_c, a_c) | (fired_substream(f_w, a_w) & w_ok)
        if ACTION_LEVEL[policy.model_only_max] >= ACTION_LEVEL["suspend"]:
            strong |= ~ruled  # a provider's policy lets the learned layer suspend on its own
        return policy.severity(lvl, y, strong, bounded, product=product, hidden=hidden)

    lvl = decide(own, own_raw, f_cum, a_cum, f_win, a_win)
    cap = sandbox_cap(a_cum + a_win)
    if cap is not None:
        # Sandboxed (partner) rules raise an account's action at most to their cap: the decision
        # without them, or the decision with them capped, whichever is higher.
        keep_c = np.array([r.sandbox is None for r in a_cum], dtype=bool)
        keep_w = np.array([r.sandbox is None for r in a_win], dtype=bool)
        kc, kw = [r for r in a_cum if r.sandbox is None], [r for r in a_win if r.sandbox is None]
        w_c = np.array([r.weight for r in kc], dtype=float)
        w_w = np.array([r.weight for r in kw], dtype=float)
        (_, p_c, q_c), (_, p_w, q_w) = raw  # model probabilities, as scored above: raw and shrunk
        t_cum = _noisy_or(q_c, f_cum[:, keep_c], w_c)
        t_win = np.where(w_ok, _noisy_or(q_w, f_win[:, keep_w], w_w), 0.0)
        r_cum = _noisy_or(p_c, f_cum[:, keep_c], w_c)
        r_win = np.where(w_ok, _noisy_or(p_w, f_win[:, keep_w], w_w), 0.0)
        trusted = decide(np.maximum(t_cum, t_win), np.maximum(r_cum, r_win), f_cum[:, keep_c], kc, f_win[:, keep_w], kw)
        lvl = np.maximum(trusted, np.minimum(lvl, cap)).astype(np.int8)
    snaps = snaps.with_columns(pl.Series("own", own), pl.Series("lvl", lvl)).with_row_index("_row")

    own_flag = snaps.filter(pl.col("lvl") >= 2).group_by("account_id").agg(pl.col("tick").min().alias("t_own"))
    last = snaps.group_by("account_id", maintain_order=True).agg(
        pl.col("n").last().alias("events"), pl.col("own").last().alias("score_last"),
        pl.col("lvl").max().alias("own_lvl"), pl.col("lvl").last().alias("lvl_last"), pl.col("_row").sort_by(["lvl", "own"]).last().alias("_imax"),
    )
    # Reasons: the account's strongest own decision, the one that set its highest level (then
    # the highest score; its window's when that scored higher): the reasons explain the action.
    imax = last["_imax"].to_numpy().astype(np.int64)
    contrib_cum = model.contributions(snaps[imax.tolist()], "x_")
    reasons = []
    for k in range(last.height):
        i = imax[k]
        if s_win[i] > s_cum[i]:
            rs = _reasons(f_win[i], a_win, model.contributions(snaps[[int(i)]], "w_x_")[0], model.features, "window:")
        else:
            rs = _reasons(f_cum[i], a_cum, contrib_cum[k], model.features)
        reasons.append(";".join(rs))
    summary = last.drop("_imax").with_columns(pl.Series("own_reasons", reasons, dtype=pl.String)).join(
        own_flag, on="account_id", how="left")
    state_cols = ["account_id", "tick", "first_seen", "created", "own", *SUM_COLUMNS, *DAY_COLUMNS]
    # A cluster epoch E reads each member's latest state at or before E, and epochs fall on
    # multiples of ``cluster_every_ms``: only an account's last tick in each (E - step, E] can
    # ever be read, so only those are kept (15x fewer rows for an account active every minute).
    step = cfg.cluster_every_ms
    epoch_of = (pl.col("tick") + (step - 1)) // step
    state = snaps.filter(pl.col("account_id").is_in(linked.implode())).select(state_cols).filter(
        pl.col("tick") == pl.col("tick").max().over("account_id", epoch_of))
    # Sorted per chunk (each account lives in one chunk): the replay then only concatenates, and
    # never holds a second, sorted copy of the whole log's state at its memory peak.
    key = ["account_id", "tick"]
    return summary, state.sort(key), snaps.select("account_id", "tick", "n").sort(key)


@dataclass
class ReplayCache:
    """What an incremental replay reuses between calls (the online service keeps one).

    The replay is causal and per-account: an account's own scores depend on its own ticks
    only, and a cluster epoch at time E on ticks and links up to E only. So when the caller
    says which accounts changed (``dirty``) and the earliest event time any change touches
    (``since``), only those accounts are re-scored and only epochs at or after ``since`` are
    re-run; the result equals a full replay (the service's parity test checks it against the
    scan). ``key`` stands for everything else the replay depends on (the service's replay
    horizon): when it differs from the cached one, everything is recomputed.
    """

    dirty: pl.Series | None = None
    since: int | None = None
    key: object = None
    summary: pl.DataFrame | None = None
    state: pl.DataFrame | None = None
    counts: pl.DataFrame | None = None
    prop: dict[int, pl.DataFrame | None] = field(default_factory=dict)
    cached_key: object = None

    def reset(self) -> None:
        self.summary = self.state = self.counts = None
        self.prop = {}

    def usable(self) -> bool:
        return (self.summary is not None and self.dirty is not None and self.since is not None
                and self.key == self.cached_key)


def replay(ticks: TickInput, links: pl.DataFrame, attrs: pl.DataFrame, model: AccountModel, rules: list[Rule],
           policy: Policy, cfg: ReplayConfig | None = None,
           progress: Callable[[str, float], None] | None = None,
           cache: ReplayCache | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Replay per-(account, tick) sums and link rows (``pipeline.prepare``); return (accounts, clusters).

    ``ticks`` is one frame or a sequence of frames (lazy ones are read one at a time), each
    holding whole accounts. Accounts are scored chunk by chunk; only linked accounts' per-tick
    state is kept for the cluster epochs, so memory follows the linked share of the log.
    ``cache`` (optional) makes a repeated replay incremental (see ``ReplayCache``).
    """
    cfg = cfg or ReplayConfig()
    say = progress or (lambda stage, frac: None)
    pairs = link_pairs(links)
    link_only, space_pairs = split_item_spaces(pairs)
    if attrs.height and space_pairs.height:
        # Item-space groups pool anonymous consumer accounts: an organisation account is a known
        # business (a tutoring product, a lab), judged on its own traffic and its links.
        orgs = attrs.filter(pl.col("org").is_not_null()).select("account_id")
        space_pairs = space_pairs.join(orgs, on="account_id", how="anti")
    linked = pairs["account_id"].unique() if pairs.height else pl.Series("account_id", [], dtype=pl.String)
    incremental = cache is not None and cache.usable()
    redo = None
    if incremental:
        assert cache is not None and cache.state is not None and cache.dirty is not None
        # Re-score the changed accounts, and those that became linked (their per-tick state was not kept).
        newly_linked = linked.filter(~linked.is_in(cache.state["account_id"].unique().implode()))
        redo = pl.concat([cache.dirty.cast(pl.String).rename("account_id"), newly_linked]).unique()
    summaries, states, counts = [], [], []
    say("accounts scored", 0.0)
    for chunk in _chunks(ticks):
        if redo is not None:
            chunk = chunk.filter(pl.col("account_id").is_in(redo.implode()))
            if chunk.height == 0:
                continue
        sm, st, ct = _account_pass(chunk, attrs, model, rules, policy, cfg, linked)
        summaries.append(sm), states.append(st), counts.append(ct)
        say("accounts scored", 0.1 + 0.3 * min(1.0, sum(c.height for c in counts) / max(1, CHUNK_TICK_ROWS * 4)))
    if incremental:
        assert cache is not None and redo is not None
        keep = lambda df: df.filter(~pl.col("account_id").is_in(redo.implode()))  # noqa: E731
        summaries.insert(0, keep(cache.summary))
        states.insert(0, keep(cache.state))
        counts.insert(0, keep(cache.counts))
    if not summaries or not sum(x.height for x in summaries):
        if cache is not None:
            cache.reset()
        return empty_result()
    summary = pl.concat(summaries, how="vertical_relaxed")
    # Each part holds whole accounts sorted by tick: what the as-of joins by account need.
    state = pl.concat(states, how="vertical_relaxed")
    counts_df = pl.concat(counts, how="vertical_relaxed")
    del summaries, states, counts
    # Epochs before ``since`` reuse their cached propagations (incremental replay only).
    reuse: dict[int, pl.DataFrame | None] = cache.prop if incremental and cache is not None else {}
    since = cache.since if incremental and cache is not None and cache.since is not None else -1
    new_prop: dict[int, pl.DataFrame | None] = {}
    t_end = int(counts_df["tick"].max())
    say("accounts scored", 0.4)

    # Cluster epochs.
    accounts = summary["account_id"].to_list()
    index = {a: i for i, a in enumerate(accounts)}
    graph = LinkGraph.build(link_only, index)
    spaces = LinkGraph.build(space_pairs, index, cap=ITEM_SPACE_CAP)
    prop_rows: list[pl.DataFrame] = []
    final_labels = np.arange(len(accounts))
    final_linked = np.zeros(len(accounts), dtype=bool)
    if pairs.height:
        t0 = int(pairs["first_ts"].min())
        if cfg.cluster_since_ms is not None:
            t0 = max(t0, int(cfg.cluster_since_ms) - cfg.cluster_every_ms)
        step = cfg.cluster_every_ms
        epochs = active_epochs(state["tick"], pairs["first_ts"], t0, t_end, step)
        todo: list[tuple[int, np.ndarray, np.ndarray]] = []  # epochs to compute, scored in groups
        todo_sweep: list[tuple[int, np.ndarray, np.ndarray]] = []  # the same epochs' item-space groups
        todo_rows = 0

        def run_todo() -> None:
            nonlocal todo_rows
            got = _cluster_epochs(todo, accounts, state, model, rules, policy, cfg)
            got_sweep = _cluster_epochs(todo_sweep, accounts, state, model, rules, policy, cfg, scope="sweep")
            for E, rows in got.items():
                both = [r for r in (rows, got_sweep.get(E)) if r is not None]
                new_prop[E] = pl.concat(both) if both else None
            todo.clear()
            todo_sweep.clear()
            todo_rows = 0

        for k, E in enumerate(epochs):
            say("clusters", 0.4 + 0.5 * k / max(1, len(epochs)))
            if E < since and E < t_end and E in reuse:
                # Nothing at or before E changed: the epoch's propagations are what they were.
                new_prop[E] = reuse[E]
                continue
            labels, linked_now = graph.components_at(E)
            if E >= t_end:
                final_labels, final_linked = labels, linked_now
            todo.append((E, labels, linked_now))
            todo_rows += int(linked_now.sum())
            if space_pairs.height:  # most logs have no item-space groups: no per-epoch arrays for them
                s_labels, s_linked = spaces.components_at(E)
                todo_sweep.append((E, s_labels, s_linked))
                todo_rows += int(s_linked.sum())
            if todo_rows >= EPOCH_GROUP_ROWS:
                run_todo()
        run_todo()
        prop_rows = [new_prop[E] for E in epochs if new_prop.get(E) is not None]
        if not epochs or epochs[-1] < t_end:
            final_labels, final_linked = graph.components_at(t_end)
    say("decisions", 0.9)
    if cache is not None:
        cache.summary, cache.state, cache.counts, cache.prop = summary, state, counts_df, new_prop
        cache.cached_key = cache.key

    # First flag per account: own decisions and cluster-propagated ones.
    prop = pl.concat(prop_rows) if prop_rows else pl.DataFrame(schema={"account_id": pl.String, "tick": pl.Int64, "c_score": pl.Float64,
                                                                     "c_lvl": pl.Int8, "n": pl.Float64, "label": pl.Int64, "c_reasons": pl.String})
    prop_flag = prop.sort("tick").group_by("account_id").agg(
        pl.col("tick").min().alias("t_prop"), pl.col("c_lvl").max().alias("p_lvl"), pl.col("c_score").last().alias("p_last"),
        pl.col("c_reasons").first().alias("p_reasons"))

    acc = summary.join(prop_flag, on="account_id", how="left")
    acc = acc.with_columns(
        pl.min_horizontal("t_own", "t_prop").alias("first_flag"),
        pl.max_horizontal("own_lvl", pl.col("p_lvl").fill_null(0)).alias("level"),
        pl.max_horizontal("score_last", pl.col("p_last").fill_null(0.0)).alias("score"),
    )
    # events_before_flag: running count at the flag time (as-of join on the per-tick counts).
    ff = acc.filter(pl.col("first_flag").is_not_null()).select("account_id", pl.col("first_flag").alias("tick")).sort("tick")
    ebf = ff.join_asof(counts_df.select("account_id", "tick", pl.col("n").alias("n_at")), on="tick", by="account_id",
                       strategy="backward", check_sortedness=False)
    acc = acc.join(ebf.select("account_id", "n_at"), on="account_id", how="left")
    acc = acc.with_columns(pl.when(pl.col("first_flag").is_null()).then(pl.col("events")).otherwise(pl.col("n_at").fill_null(0)).alias("events_before_flag"))

    # Reasons: the strongest own decision, plus the cluster's when that is what flagged it.
    acc = acc.with_columns(
        pl.when(pl.col("p_reasons").is_null()).then(pl.col("own_reasons"))
        .otherwise(pl.concat_str([pl.col("own_reasons"), pl.col("p_reasons")], separator=";").str.strip_chars(";"))
        .map_elements(lambda s: ";".join(dict.fromkeys(x for x in s.split(";") if x)), return_dtype=pl.String)
        .alias("reasons")
    ).drop("own_reasons")

    # Clusters at the end of the log.
    lab = pl.DataFrame({"account_id": accounts, "label": final_labels, "linked": final_linked})
    lab = lab.filter(pl.col("linked")).filter(pl.len().over("label") >= 2)
    lab = lab.with_columns(pl.col("account_id").min().over("label").alias("_min"))
    lab = lab.with_columns(pl.col("_min").map_elements(lambda s: "cl-" + xxhash.xxh64_hexdigest(s.encode("utf-8"))[:12], return_dtype=pl.String).alias("cluster_id"))
    acc = acc.join(lab.select("account_id", "cluster_id"), on="account_id", how="left").sort("account_id")
    return acc, _clusters(acc)


def active_epochs(ticks: pl.Series, link_ts: pl.Series, t0: int, t_end: int, step: int) -> list[int]:
    """Cluster epochs worth deciding: those in which a linked account was active or a link
    appeared (their ``(E - step, E]`` holds one of its ticks or a link's first time).

    Between two such epochs nothing a cluster verdict reads has changed (members' sums, links),
    so, as for an account (decided at the ticks it is active), no new decision is taken there.
    The replay's cost then grows with the epochs that hold data, not with the span between the
    first and the last record: a record dated years after the rest adds at most one epoch, and
    an unlinked account's late record none (clusters at the end of the log are those of the
    last epoch: no link appears after it).
    """
    first = (t0 // step + 1) * step
    last = -(-t_end // step) * step
    times = pl.concat([ticks.cast(pl.Int64), link_ts.cast(pl.Int64)])
    up = ((times + (step - 1)) // step * step).unique()
    return sorted(up.filter((up >= first) & (up <= last)).to_list())


# Linked-member rows scored together across cluster epochs: one vectorised pass per group of
# epochs instead of a fixed ~40 ms per epoch, with memory bounded by this many member rows.
EPOCH_GROUP_ROWS = 50_000


def _cluster_epochs(items: list[tuple[int, np.ndarray, np.ndarray]], accounts: list[str], state: pl.DataFrame,
                    model: AccountModel, rules: list[Rule], policy: Policy, cfg: ReplayConfig,
                    scope: str = "cluster") -> dict[int, pl.DataFrame | None]:
    """Propagation rows of cluster epochs (accounts that inherit a flagged cluster's verdict).

    ``scope`` "cluster": groups are linked accounts, judged by cluster rules. "sweep": groups
    are item-space groups (``features.linking.split_item_spaces``), judged by sweep rules, their
    verdict capped at ``cfg.sweep_max_action``.

    ``items`` holds (epoch E, component label per account, linked mask) per epoch. Each epoch is
    judged on its own (a cluster is the accounts sharing a label at E, with their state as of
    E); epochs are only computed together. Returns E -> rows, or None where nothing propagates.
    """
    out: dict[int, pl.DataFrame | None] = {E: None for E, _, _ in items}
    parts = [pl.DataFrame({"account_id": [accounts[i] for i in np.flatnonzero(linked)], "label": labels[linked]},
                          schema={"account_id": pl.String, "label": pl.Int64}).with_columns(pl.lit(E, dtype=pl.Int64).alias("tick"))
             for E, labels, linked in items if linked.any()]
    if not parts:
        return out
    members = pl.concat(parts)
    now = members.sort("tick").join_asof(state, on="tick", by="account_id", strategy="backward", check_sortedness=False).drop_nulls("n")
    if scope == "sweep":
        now = now.filter(_sweep_member(cfg))
    now = now.filter(pl.len().over("tick", "label") >= 2)
    if now.height == 0:
        return out
    csum = now.group_by("tick", "label").agg(
        [pl.col(c).sum() for c in (*SUM_COLUMNS, *DAY_COLUMNS)] + [pl.col("first_seen").min(), pl.col("created").min(), pl.len().alias("members")]
    )
    csum = derive(csum)
    # Sandboxed (partner) rules never convict a cluster: propagation is guilt by association,
    # which only reviewed local rules may decide.
    c_score, c_fired, c_active = _score_block(csum, model, [r for r in rules if r.sandbox is None], scope, "x_", "n")
    c_lvl = policy.levels(c_score, csum["n"].to_numpy())
    # A cluster verdict reaches its members only through a reviewed cluster rule: the model
    # alone never convicts by association.
    c_lvl = np.where(c_fired.any(axis=1) if c_fired.size else False, c_lvl, np.minimum(c_lvl, 1)).astype(np.int8)
    echo = csum["x_global_novelty"].to_numpy() < cfg.cluster_min_global_novelty
    c_lvl = np.where(echo, np.minimum(c_lvl, 1), c_lvl).astype(np.int8)
    # The same severity evidence as an account's, over the members' summed sums: colleagues
    # running one evaluation together are an evaluation-sized run.
    c_sev = csum.select(harvest_yield().alias("y"), evaluation_run().alias("b"))
    c_lvl = policy.severity(c_lvl, c_sev["y"].to_numpy(), may_suspend(c_fired, c_active), c_sev["b"].to_numpy())
    if scope == "sweep":
        c_lvl = np.minimum(c_lvl, ACTIONS.index(cfg.sweep_max_action)).astype(np.int8)
    flagged_c = np.flatnonzero(c_lvl >= 2)
    if flagged_c.size == 0:
        return out
    contrib = model.contributions(csum[flagged_c.tolist()])
    c_reasons = [";".join(scope + ":" + r for r in _reasons(c_fired[i], c_active, contrib[k], model.features))
                 for k, i in enumerate(flagged_c)]
    csum = csum.with_columns(pl.Series("c_score", c_score), pl.Series("c_lvl", c_lvl))[flagged_c.tolist()]
    csum = csum.with_columns(pl.Series("c_reasons", c_reasons, dtype=pl.String))
    j = now.join(csum.select("tick", "label", "c_score", "c_lvl", "c_reasons"), on=["tick", "label"])
    textless = ((pl.col("text") < cfg.propagate_textless_max_text * pl.col("n")) & (pl.col("n") >= cfg.propagate_textless_min_events)
                & (pl.col("single") >= cfg.propagate_textless_min_single * pl.col("n")))
    shown = ((asks_share() >= cfg.propagate_min_extract) | (pl.col("own") >= cfg.propagate_min_own)) & (
        pl.col("n") >= cfg.propagate_min_events)
    # A member whose own traffic is a product serving people does not inherit, whoever it
    # shares a card or network with. (An evaluation-sized member still does: a campaign's
    # accounts are each small; colleagues running one evaluation are judged as a cluster,
    # whose summed run is evaluation-sized.)
    own_evidence = (shown | textless) & ~serves_people()
    if scope == "sweep":
        # Membership (item-only, person-scale traffic as of E) is the member's own evidence.
        own_evidence = (pl.col("n") >= cfg.propagate_min_events) & ~serves_people()
    # (Whatever the member's own score: a member scoring higher than its cluster may still be
    # below the evidence an account needs to be judged alone, e.g. a handful of exchanges.)
    j = j.filter((pl.col("c_lvl") >= 2) & own_evidence)
    if j.height:
        j = j.select("account_id", "tick", "c_score", pl.col("c_lvl").cast(pl.Int8), "n", "label", "c_reasons")
        for (E,), rows in j.partition_by("tick", as_dict=True, maintain_order=True).items():
            out[int(E)] = rows
    return out


def _sweep_member(cfg: ReplayConfig) -> pl.Expr:
    """An item-space group member as of the epoch: still mostly items, at a person's volume."""
    return ((pl.col("exam") >= cfg.sweep_member_min_exam * pl.col("text")) & (pl.col("d_n") <= cfg.sweep_member_max_day)
            & (pl.col("n") <= cfg.sweep_member_max_per_hour * pl.col("new_hour"))
            & (pl.col("tpl") <= cfg.sweep_member_max_template * pl.col("n"))
            & (pl.col("new_item") >= cfg.sweep_member_min_item_novelty * pl.col("ident")))


def _clusters(acc: pl.DataFrame) -> pl.DataFrame:
    c = acc.filter(pl.col("cluster_id").is_not_null())
    if c.height == 0:
        return pl.DataFrame(schema={"cluster_id": pl.String, "accounts": pl.Int64, "events": pl.Int64, "score": pl.Float64,
                                    "flagged": pl.Boolean, "first_flagged_ts": pl.Int64, "reasons": pl.String})
    return c.group_by("cluster_id").agg(
        pl.len().alias("accounts"),
        pl.col("events").sum().cast(pl.Int64),
        pl.col("score").max(),
        (pl.col("level") >= 2).any().alias("flagged"),
        pl.col("first_flag").min().alias("first_flagged_ts"),
        pl.col("reasons").sort_by("score", descending=True).first().alias("reasons"),
    ).sort(["score", "cluster_id"], descending=[True, False])  # ties in a stable order


def fold_before(ticks: pl.DataFrame, horizon: int) -> pl.DataFrame:
    """Per-(account, tick) sums with every tick before ``horizon`` folded into one row per account.

    Running sums after the horizon are unchanged (the folded row carries the account's history
    at its last old tick), so decisions after the horizon see the same account totals; only the
    trailing windows reach back into the folded row, for decisions less than a window after the
    horizon: the hour's (``window_ms``) and the day's over which volume is counted
    (``volume_window_ms``), which there count the whole history. This bounds the online
    service's replay by its horizon instead of by everything it ever saw.
    """
    old = ticks.filter(pl.col("tick") < horizon)
    if old.height == 0:
        return ticks
    folded = old.group_by("account_id").agg(
        pl.col("tick").max(), *[pl.col(c).sum() for c in SUM_COLUMNS],
        pl.col("first_ts").min(), pl.col("last_ts").max(), pl.col("created").min(),
    )
    return pl.concat([folded.select(ticks.columns), ticks.filter(pl.col("tick") >= horizon)], how="vertical_relaxed")


def empty_result() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Accounts and clusters frames of a log with no valid exchange."""
    acc = pl.DataFrame(schema={"account_id": pl.String, "score": pl.Float64, "level": pl.Int8, "cluster_id": pl.String,
                               "first_flag": pl.Int64, "events": pl.Int64, "events_before_flag": pl.Int64, "reasons": pl.String})
    return acc, _clusters(acc)
