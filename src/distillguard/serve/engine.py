"""The decision engine: the scan's detection code, fed incrementally.

One code path with ``distillguard scan``. A request body goes through the same validator
(``ingest.records_to_batch``, the rules of ``read_events``) and the same per-exchange reduction
(``features.exchange.exchange_features``); accepted compact rows are committed to the embedded
store (``store.Store``) before they are acknowledged. A refresh then computes exactly what the
scan computes from the same rows:

1. ``new_global`` and ``new_item`` (first time a prompt hash, or an item's MinHash bands, appear
   anywhere) as in ``pipeline.prepare``: ``ts == min(ts)`` over all accepted rows of that key
   (``features.marks.first_seen_marks``).
2. ``features.marks.account_ticks`` for the *affected* accounts only. Its output for one
   account depends on nothing but that account's rows and their first-seen marks, so the
   cached tick sums, link rows and attributes of every other account are still exact. Affected
   = accounts with new rows, plus accounts holding a row that just lost a first-seen mark
   because a new row with the same key has an earlier ``ts``.
3. ``replay.replay`` over all cached tick sums and link rows (the scan's replay, unchanged).

Row order ties (same account, same ms) are broken by ``_line`` as in the scan: the service
numbers records in the order it accepts them, so a log sent in file order is ordered as in the
file, and the first of two records with the same ``request_id`` wins, as in the scan.

Decisions: the replay gives, per account, the strongest action reached (``max_action``,
``flagged``, ``first_flagged_ts``, the scan's ``action`` column) and the score at the end of the
data. The *current* ``action`` is the action of the account's latest decision tick (the level the
replay decided there) or of its latest cluster propagation, never above ``max_action``. Shadow mode changes only what is
enforced (``action``); ``computed_action`` is what the policy says with every rule.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import orjson
import polars as pl

from ..features.exchange import TextSignalCache, exchange_features
from ..features.marks import FIRST_SEEN_KEYS, account_ticks, first_seen_marks, first_times
from ..ingest import EventTimeWindow, IngestStats, Quarantine, ndjson_records, records_to_batch, truncate_record
from ..replay import ReplayCache, ReplayConfig, fold_before, replay
from ..report import ms_to_rfc3339
from ..schema import ACTIONS
from ..scoring.model import AccountModel
from ..scoring.policy import Ladder, Policy
from ..scoring.rules import load_rules
from .config import ServeConfig
from .metrics import Metrics
from .store import Store

log = logging.getLogger("distillguard.serve")
decision_log = logging.getLogger("distillguard.serve.decisions")

# Columns of the compact rows the engine keeps in memory (``request_id`` stays in the store).
DECISION_FIELDS = ("action", "computed_action", "max_action", "flagged", "score", "reasons", "cluster_id",
                   "first_flagged_ts", "events", "events_before_flag", "shadow")


class AppendQuarantine(Quarantine):
    """``quarantine.jsonl`` of the state dir, appended to across restarts and flushed per request.

    Every reject is written: past ``max_bytes`` the file is rotated (``quarantine.jsonl.1`` is
    the newest old part, up to ``keep`` parts; the oldest part beyond that is deleted, with a
    warning), so hostile input cannot fill the disk and writing never stops. ``written`` counts
    the lines written by this process, ``rotations`` the rotations (both also in ``/metrics``).
    """

    def __init__(self, path: str | Path, max_bytes: int = 128 << 20, keep: int = 8, metrics: Metrics | None = None):
        super().__init__(None)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab")
        self.max_bytes, self.keep = max_bytes, keep
        self.written = 0
        self.rotations = 0
        self._metrics = metrics
        self._size = self._fh.tell()

    def add(self, source: str, line: int, reason: str, raw: bytes | str) -> None:
        out = orjson.dumps({"source": str(source), "line": int(line), "reason": reason, "record": truncate_record(raw)}) + b"\n"
        with self._lock:
            self.count += 1
            self.reasons[reason] += 1
            if self._fh is None:
                return
            if self._size and self._size + len(out) > self.max_bytes:
                self._rotate()
            self._fh.write(out)
            self._size += len(out)
            self.written += 1
        if self._metrics is not None:
            self._metrics.quarantine_written.inc()

    def _rotate(self) -> None:
        """quarantine.jsonl -> .1 -> .2 ... (under the lock)."""
        assert self._fh is not None
        self._fh.close()
        oldest = self.path.with_name(f"{self.path.name}.{self.keep}")
        if oldest.exists():
            log.warning("quarantine: deleting %s (%d parts of %d bytes kept)", oldest, self.keep, self.max_bytes)
            oldest.unlink()
        for k in range(self.keep - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{k}")
            if src.exists():
                src.rename(self.path.with_name(f"{self.path.name}.{k + 1}"))
        self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        self._fh = open(self.path, "ab")
        self._size = 0
        self.rotations += 1
        if self._metrics is not None:
            self._metrics.quarantine_rotations.inc()

    def flush(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.flush()


class _Collect:
    """Per-request view of the quarantine: forwards every reject and lists the first few.

    With ``offsets`` (coalesced bodies: body ``i`` holds lines ``offsets[i]+1 .. offsets[i+1]``
    of the block), each reject is quarantined and listed under its own body's line number.
    """

    def __init__(self, q: Quarantine, limit: int, offsets: np.ndarray | None = None):
        self.q, self.limit = q, limit
        self.reasons: dict[str, int] = {}
        self.offsets = offsets
        n = 1 if offsets is None else len(offsets) - 1
        self.per_body_count = [0] * n
        self.per_body_items: list[list[dict]] = [[] for _ in range(n)]

    @property
    def count(self) -> int:
        return sum(self.per_body_count)

    @property
    def items(self) -> list[dict]:
        return [x for body in self.per_body_items for x in body][: self.limit]

    def add(self, source: str, line: int, reason: str, raw: bytes | str) -> None:
        i = 0
        if self.offsets is not None:
            i = int(np.searchsorted(self.offsets, line, side="left")) - 1
            line = int(line) - int(self.offsets[i])
        self.q.add(source, line, reason, raw)
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        self.per_body_count[i] += 1
        if len(self.per_body_items[i]) < self.limit:
            self.per_body_items[i].append({"line": int(line), "reason": reason})


@dataclass
class Prepared:
    """A validated, reduced request body, not yet committed."""

    rows: pl.DataFrame          # compact rows, ``_line`` = record number within the body (1-based)
    records: int                # records in the body (valid + rejected; blank lines excluded)
    span: int                   # line numbers the body uses (records + blank lines)
    rejected: int
    rejects: list[dict] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class _Body:
    """An NDJSON request body waiting to be reduced (possibly together with others)."""

    body: bytes
    source: str
    taken: bool = False
    done: bool = False
    result: "IngestResult | None" = None
    error: BaseException | None = None


@dataclass
class _Ticket:
    """One body waiting in the group-commit queue."""

    rows: pl.DataFrame
    base: int                   # line number of the body's first record
    span: int
    meta: dict[str, str] | None
    accepted: int = 0
    done: bool = False
    error: BaseException | None = None

    @property
    def n_in(self) -> int:
        return self.rows.height


@dataclass
class IngestResult:
    received: int
    accepted: int
    duplicate: int
    rejected: int
    rejects: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"received": self.received, "accepted": self.accepted, "duplicate": self.duplicate,
                "rejected": self.rejected, "rejects": self.rejects}


def horizon_anchor(ticks: pl.DataFrame) -> int:
    """Event time the replay horizon trails: the latest tick that at least two accounts reached.

    Not the newest exchange: one account's record dated ahead of everyone else (a bad clock,
    a hostile ingest token; within the plausible window) would move the horizon for all and
    fold away the history other accounts' decisions rest on.
    """
    last = ticks.group_by("account_id").agg(pl.col("tick").max())["tick"]
    return int(last.max() if last.len() < 2 else last.top_k(2).min())


def _level_names(levels: np.ndarray) -> list[str]:
    return [ACTIONS[int(v)] for v in levels]


class Engine:
    """State, refresh and decisions of one replica. Thread-safe."""

    def __init__(self, cfg: ServeConfig, metrics: Metrics | None = None):
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self.rules = load_rules(cfg.rules_dir)
        unknown = set(cfg.shadow_rules) - {r.id for r in self.rules}
        if unknown:
            raise ValueError(f"shadow rules not found: {sorted(unknown)}")
        self.rules_enforced = [r for r in self.rules if r.id not in set(cfg.shadow_rules)]
        self.model = AccountModel.from_json(cfg.model_path)
        self.policy = Policy.from_yaml(cfg.policy_path) if cfg.policy_path else Policy()
        # Countermeasure directives attached to each decision (serve/directives.py), one per (action, computed).
        self.ladder = Ladder.from_yaml(cfg.policy_path)
        self._directives: dict[tuple[str, str], dict] = {}
        self.replay_cfg = ReplayConfig(tick_ms=cfg.tick_ms)
        self.store = Store(cfg.state_dir)
        self.quarantine = AppendQuarantine(Path(cfg.state_dir) / "quarantine.jsonl", metrics=self.metrics)
        self.stats = IngestStats()
        # Called after each refresh with (changed decisions, action changes); must be quick.
        self.listeners: list[Callable[[list[dict], list[dict]], None]] = []

        self._lock = threading.Lock()            # ingest commit order
        self._refresh_lock = threading.Lock()    # one refresh at a time
        self._applied = threading.Condition(self._lock)
        self._queue: list[_Ticket] = []          # bodies waiting for the next group commit
        self._ing_lock = threading.Lock()          # bodies waiting to be reduced (coalesced)
        self._ing_cv = threading.Condition(self._ing_lock)
        self._ing_queue: list[_Body] = []
        self._preparing = 0
        self._committing = False
        self.next_line = int(self.store.meta("next_line", "1") or 1)
        self._pending: list[pl.DataFrame] = []
        self._pending_rows = 0
        self._pending_max_ts: int | None = None
        self._rows: pl.DataFrame | None = None   # all accepted compact rows (no request_id)
        self._firsts: dict[str, pl.DataFrame] | None = None  # per key of FIRST_SEEN_KEYS: value -> t0 (its first ts)
        self._ticks: pl.DataFrame | None = None
        self._links: pl.DataFrame | None = None
        self._attrs: pl.DataFrame | None = None
        self._dframe: pl.DataFrame | None = None  # current decisions as a frame (change detection)
        # Incremental replay state: one per rule set (all rules; the enforced ones in shadow-rule mode).
        self._rcache, self._rcache_enf = ReplayCache(), ReplayCache()
        self._announced = self.store.load_actions()  # account -> (action, computed) last announced
        # Set by ``webhooks.WebhookDispatcher``: turns an action change into a signed-webhook body
        # queued in the store's outbox in the same transaction that records the change.
        self.outbox_event: Callable[[dict], tuple[str, int, bytes]] | None = None
        self.decisions: dict[str, bytes] = {}     # account_id -> JSON of the decision (GET reads it)
        self.refreshed_at: float | None = None
        self.refresh_wall_s: float | None = None
        self.max_event_ts: int | None = None
        self.refreshes = 0
        self.last_breakdown: dict[str, Any] = {}
        self._last_tick: int | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.transport: Any = None  # the Redis transport, when one is wired (app.build_service)
        # Gateways resend the same requests (retries, an app's fixed tasks): their text signals
        # are computed once. Bounded (~8 MB at most).
        self.text_cache = TextSignalCache(max_entries=100_000)

        stored = self.store.load()
        if stored is not None and stored.height:
            self._add_pending(stored.drop("request_id"))
            log.info("loaded %d accepted exchanges from %s", stored.height, self.store.path)

    # -- ingest ------------------------------------------------------------------------------

    def prepare(self, records: list | bytes, source: str, collect: "_Collect | None" = None) -> Prepared:
        """Validate (quarantining rejects) and reduce a body's records; nothing is committed.

        ``records`` is a list of records or a whole NDJSON body (``bytes``, one record a line).
        """
        col = collect or _Collect(self.quarantine, self.cfg.max_rejects_listed)
        stats = IngestStats()
        window = EventTimeWindow(self.cfg.max_event_age_days, self.cfg.max_clock_skew_minutes)
        batch = records_to_batch(records, source, col, stats, window=window)  # type: ignore[arg-type]
        self.quarantine.flush()
        for reason, n in col.reasons.items():
            self.metrics.quarantine.labels(reason).inc(n)
        rows = exchange_features(batch, self.text_cache) if batch.num_rows else None
        if rows is None:
            rows = pl.DataFrame()
        span = ndjson_records(records) if isinstance(records, (bytes, bytearray)) else len(records)
        return Prepared(rows, stats.read, span, col.count, col.items, col.reasons)

    def apply(self, rows: pl.DataFrame, span: int, meta: dict[str, str] | None = None) -> tuple[int, int]:
        """Commit a body's compact rows (numbered in acceptance order); return (accepted, duplicate).

        ``rows['_line']`` is the record number within the body (1..span). Durable on return.
        """
        return self.apply_many([(rows, span, meta)])[0]

    def apply_many(self, items: list[tuple[pl.DataFrame, int, dict[str, str] | None]]) -> list[tuple[int, int]]:
        """``apply`` for several bodies in order; one (accepted, duplicate) pair per body.

        Group commit: bodies that arrive while a commit is running wait in a queue, and the
        next committer writes the whole queue in one transaction. The fixed cost of a durable
        commit (WAL write + fsync, index probe set-up) is then paid once per group instead of
        once per request, which is what lets concurrent clients go faster than one.
        """
        mine: list[_Ticket] = []
        with self._lock:
            for rows, span, meta in items:
                t = _Ticket(rows, self.next_line, max(span, 0), meta)
                self.next_line += t.span
                mine.append(t)
            self._queue.extend(mine)
            last = mine[-1]
            while not last.done:
                if not self._committing:
                    self._committing = True
                    group, self._queue = self._queue, []
                    break
                self._applied.wait()
            else:
                group = []
        if group:
            self._commit_group(group)
        for t in mine:
            if t.error is not None:
                raise t.error
        out = [(t.accepted, t.n_in - t.accepted) for t in mine]
        acc = sum(a for a, _ in out)
        self.metrics.events.labels("accepted").inc(acc)
        self.metrics.events.labels("duplicate").inc(sum(d for _, d in out))
        if acc:
            self._wake.set()
        return out

    def _commit_group(self, group: list["_Ticket"]) -> None:
        """Write a queue of bodies in one transaction (run by one thread at a time)."""
        new = None
        err: BaseException | None = None
        try:
            parts = []
            for t in group:
                if t.n_in:
                    parts.append(t.rows.with_columns(
                        pl.lit(0, dtype=pl.Int32).alias("_source"), (pl.col("_line") + (t.base - 1)).cast(pl.Int64).alias("_line")))
            # The first record of a request_id wins, across the bodies of the group as within one.
            rows = (pl.concat(parts, how="vertical_relaxed").unique("request_id", keep="first", maintain_order=True)
                    if parts else pl.DataFrame(schema={"request_id": pl.String}))
            m: dict[str, str] = {}
            for t in group:
                m.update(t.meta or {})
            m["next_line"] = str(max(t.base + t.span for t in group))
            if rows.height or any(t.meta for t in group):
                new = self.store.commit(rows, m)
                if new.height:
                    lines = new["_line"].to_numpy()
                    for t in group:
                        t.accepted = int(np.count_nonzero((lines >= t.base) & (lines < t.base + t.span))) if t.n_in else 0
        except BaseException as exc:  # every waiter of the group gets the error; nothing was acknowledged
            err = exc
            new = None
        with self._lock:
            if new is not None and new.height:
                self._add_pending(new.drop("request_id"))
            for t in group:
                t.error = err
                if err is not None:
                    t.accepted = 0
                t.done = True
            self._committing = False
            self._applied.notify_all()

    def ingest(self, records: list | bytes, source: str = "http:/v1/events") -> IngestResult:
        """Validate, reduce, commit (embedded mode). Returns the counts for the response.

        NDJSON bodies that arrive while others are being reduced are coalesced: the next free
        worker validates and reduces all waiting bodies of the same source as one block, then
        splits rows, rejects and counts back per body. Reduction has a fixed cost per call
        (~15 ms: expression plans, phrase automata) that would otherwise dominate small
        bodies, such as the LiteLLM logger's 200-record batches.
        """
        t0 = time.perf_counter()
        if not isinstance(records, (bytes, bytearray)):
            p = self.prepare(records, source)
            accepted, duplicate = self.apply(p.rows, p.span)
            res = IngestResult(p.records, accepted, duplicate, p.rejected, p.rejects)
        else:
            item = _Body(bytes(records), source)
            with self._ing_lock:
                self._ing_queue.append(item)
            while True:
                with self._ing_lock:
                    # Wait while every worker is busy, or while another worker holds this body.
                    while not item.done and (item.taken or self._preparing >= self.cfg.ingest_workers):
                        self._ing_cv.wait()
                    if item.done:
                        break
                    # A free worker: reduce what is waiting (oldest first, this body among them
                    # unless the size cap cut it off; then the loop takes it next).
                    self._preparing += 1
                    group = self._take_bodies(item.source)
                # The worker's slot is given back once the group is reduced, before its commit:
                # a commit waits on the store (and on other bodies' group commit) while the next
                # bodies can already be reduced on the cores it leaves idle.
                released = False

                def release() -> None:
                    nonlocal released
                    with self._ing_lock:
                        if not released:
                            released = True
                            self._preparing -= 1
                            self._ing_cv.notify_all()
                try:
                    self._ingest_group(group, release)
                finally:
                    release()
                    with self._ing_lock:
                        for b in group:
                            b.done = True
                        self._ing_cv.notify_all()
            if item.error is not None:
                raise item.error
            assert item.result is not None
            res = item.result
        self.metrics.events.labels("rejected").inc(res.rejected)
        self.metrics.ingest_seconds.observe(time.perf_counter() - t0)
        return res

    def _take_bodies(self, source: str) -> list["_Body"]:
        """Waiting bodies of ``source`` (oldest first, up to ``ingest_coalesce_bytes``); under the lock."""
        group, rest, size = [], [], 0
        for b in self._ing_queue:
            if b.source == source and (not group or size + len(b.body) <= self.cfg.ingest_coalesce_bytes):
                b.taken = True
                group.append(b)
                size += len(b.body)
            else:
                rest.append(b)
        self._ing_queue = rest
        return group

    def _ingest_group(self, group: list["_Body"], reduced: Callable[[], None] = lambda: None) -> None:
        """Reduce several NDJSON bodies as one block, commit them, and set each body's result.

        ``reduced`` is called once the block is reduced, before the commit."""
        try:
            spans = [ndjson_records(b.body) for b in group]
            offsets = np.cumsum([0, *spans])
            body = b"".join(b.body if not b.body or b.body.endswith(b"\n") else b.body + b"\n" for b in group)
            col = _Collect(self.quarantine, self.cfg.max_rejects_listed, offsets)
            p = self.prepare(body, group[0].source, collect=col)
            lines = p.rows["_line"].to_numpy() if p.rows.height else np.zeros(0, np.int64)
            items, valid = [], []
            for i, b in enumerate(group):
                lo, hi = int(offsets[i]), int(offsets[i + 1])
                if p.rows.height:
                    a, z = np.searchsorted(lines, [lo + 1, hi + 1])
                    rows = p.rows.slice(int(a), int(z - a)).with_columns(pl.col("_line") - lo)
                else:
                    rows = p.rows
                items.append((rows, spans[i], None))
                valid.append(rows.height)
            reduced()
            counts = self.apply_many(items)
            for i, b in enumerate(group):
                rej = col.per_body_count[i]
                # Received = valid + rejected (blank lines are neither), as for a body alone.
                b.result = IngestResult(valid[i] + rej, counts[i][0], counts[i][1], rej, col.per_body_items[i])
        except BaseException as exc:  # every body of the group gets the error; none was acknowledged
            for b in group:
                b.error = exc

    def _add_pending(self, rows: pl.DataFrame) -> None:
        self._pending.append(rows)
        self._pending_rows += rows.height
        mx = rows["ts"].max()
        if mx is not None:
            self._pending_max_ts = mx if self._pending_max_ts is None else max(self._pending_max_ts, mx)
        self.metrics.pending.set(self._pending_rows)

    # -- refresh -----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return self._pending_rows

    def refresh(self, force: bool = False) -> bool:
        """Bring decisions up to date with every accepted exchange. True when anything ran."""
        with self._refresh_lock:
            with self._lock:
                chunks, self._pending = self._pending, []
                n_new, self._pending_rows = self._pending_rows, 0
                pmax, self._pending_max_ts = self._pending_max_ts, None
            if not chunks and not force:
                return False
            t0 = time.perf_counter()
            try:
                self._recompute(chunks)
            except BaseException:
                with self._lock:  # keep the rows for the next try
                    self._pending = chunks + self._pending
                    self._pending_rows += n_new
                    if pmax is not None:
                        self._pending_max_ts = pmax if self._pending_max_ts is None else max(pmax, self._pending_max_ts)
                self.metrics.refresh_errors.inc()
                raise
            dt = time.perf_counter() - t0
            self.refreshes += 1
            self.refreshed_at = time.time()
            self.refresh_wall_s = dt
            self.metrics.refresh_seconds.observe(dt)
            self.metrics.last_refresh.set(self.refreshed_at)
            self.metrics.pending.set(self._pending_rows)
            if self.max_event_ts is not None:
                self.metrics.event_time.set(self.max_event_ts / 1000)
                self._last_tick = self.max_event_ts // self.cfg.tick_ms
            return True

    def _recompute(self, chunks: list[pl.DataFrame]) -> None:
        new = pl.concat(chunks, how="vertical_relaxed") if chunks else None
        old = self._rows
        if new is None or new.height == 0:
            if old is None:
                return
            affected = pl.Series("account_id", [], dtype=pl.String)
            firsts = self._firsts
            rows = old
        else:
            firsts, lost = {}, []
            for k in FIRST_SEEN_KEYS:
                nf = first_times(new, k).rename({"t0": "t_new"})
                if self._firsts is None or old is None:
                    firsts[k] = nf.rename({"t_new": "t0"})
                    continue
                j = nf.join(self._firsts[k], on=k, how="left")
                lowered = j.filter(pl.col("t0").is_not_null() & (pl.col("t_new") < pl.col("t0"))).select(k, "t0")
                if lowered.height:
                    # Rows that were the first of their prompt (or item) lose the mark to an earlier arrival.
                    lost.append(old.join(lowered, on=k).filter(pl.col("ts") == pl.col("t0"))["account_id"].unique())
                firsts[k] = pl.concat([
                    self._firsts[k].join(nf, on=k, how="left").select(k, pl.min_horizontal("t0", "t_new").alias("t0")),
                    j.filter(pl.col("t0").is_null()).select(k, pl.col("t_new").alias("t0")),
                ])
            affected = pl.concat([new["account_id"].unique(), *lost]).unique()
            rows = new if old is None else pl.concat([old, new], how="vertical_relaxed", rechunk=False)
            if rows.n_chunks() > 64:
                rows = rows.rechunk()
        # Step 2: the scan's account_ticks for the affected accounts only.
        t0 = time.perf_counter()
        if affected.len():
            aff = affected.to_frame("account_id")
            sub = rows.join(aff, on="account_id", how="semi")
            sub = first_seen_marks(sub, firsts)
            t, lk, at = account_ticks(sub, self.cfg.tick_ms)
            keep = lambda df: df.join(aff, on="account_id", how="anti")  # noqa: E731
            ticks = t if self._ticks is None else pl.concat([keep(self._ticks), t], how="vertical_relaxed")
            links = lk if self._links is None else pl.concat([keep(self._links), lk], how="vertical_relaxed")
            attrs = at if self._attrs is None else pl.concat([keep(self._attrs), at], how="vertical_relaxed")
        else:
            ticks, links, attrs = self._ticks, self._links, self._attrs
        if ticks is None or ticks.height == 0:
            return
        # Step 3: the scan's replay, over the horizon (older ticks folded into one row an account).
        t1 = time.perf_counter()
        rcfg = self.replay_cfg
        if self.cfg.replay_horizon_ms is not None:
            step = rcfg.cluster_every_ms
            horizon = (horizon_anchor(ticks) - self.cfg.replay_horizon_ms) // step * step
            if int(ticks["tick"].min()) < horizon:
                ticks = fold_before(ticks, horizon)
                rcfg = dataclasses.replace(rcfg, cluster_since_ms=horizon)
        # Only accounts with new rows (or that lost a first-of-prompt mark) changed, and nothing
        # before the earliest new exchange did: the replay re-scores those and re-runs later epochs.
        since = int(new["ts"].min()) if new is not None and new.height else None
        for c in (self._rcache, self._rcache_enf):
            c.dirty, c.since, c.key = affected, since if since is not None else 2**62, rcfg.cluster_since_ms
        try:
            acc, _clusters = replay(ticks, links, attrs, self.model, self.rules, self.policy, rcfg, cache=self._rcache)
            acc_enf = acc
            if self.cfg.shadow_rules and not self.cfg.shadow:
                acc_enf, _ = replay(ticks, links, attrs, self.model, self.rules_enforced, self.policy, rcfg, cache=self._rcache_enf)
        except BaseException:
            self._rcache.reset(), self._rcache_enf.reset()
            raise
        # Commit the new state only once everything succeeded.
        self._rows, self._firsts, self._ticks, self._links, self._attrs = rows, firsts, ticks, links, attrs
        self.max_event_ts = int(rows["ts"].max())
        t2 = time.perf_counter()
        self._publish(acc, acc_enf)
        self.last_breakdown = {"affected_accounts": int(affected.len()), "account_ticks_s": round(t1 - t0, 4),
                               "replay_s": round(t2 - t1, 4), "publish_s": round(time.perf_counter() - t2, 4)}
        self.metrics.accounts.set(acc.height)
        self.metrics.exchanges.set(rows.height)

    # -- decisions ---------------------------------------------------------------------------

    def _current_levels(self, a: pl.DataFrame) -> np.ndarray:
        """Action level of each account's latest decision (see the module docstring)."""
        p = self.policy
        level = a["level"].to_numpy().astype(np.int8)
        # The replay's own latest decision, allow-lists, evidence and sustain rules applied (the
        # replay of an empty log has no such column and no rows).
        own = (a["lvl_last"].fill_null(0).to_numpy().astype(np.int8) if "lvl_last" in a.columns
               else np.zeros(a.height, dtype=np.int8))
        cur = own
        if "p_last" in a.columns and "p_lvl" in a.columns:
            p_last = a["p_last"].fill_null(0.0).to_numpy()
            p_lvl = a["p_lvl"].fill_null(0).to_numpy().astype(np.int8)
            prop = np.minimum(p.levels(p_last, np.full(len(p_last), np.inf)), p_lvl)
            cur = np.maximum(own, prop)
        return np.minimum(cur, level).astype(np.int8)

    def _directives_of(self, action: str, computed: str) -> dict:
        k = (action, computed)
        d = self._directives.get(k)
        if d is None:
            from .directives import directives_for

            d = self._directives[k] = directives_for(self.ladder, action, computed, self.cfg.shadow)
        return d

    def _publish(self, acc: pl.DataFrame, acc_enf: pl.DataFrame) -> None:
        cur = self._current_levels(acc)
        if self.cfg.shadow:
            enf = np.zeros_like(cur)
        elif acc_enf is acc:
            enf = cur
        else:
            e = acc_enf.select("account_id").with_row_index("_i")
            lv = self._current_levels(acc_enf)
            idx = acc.select("account_id").join(e, on="account_id", how="left")["_i"].to_numpy()
            enf = lv[idx]
        d = acc.select(
            "account_id",
            pl.Series("action", _level_names(enf), dtype=pl.String),
            pl.Series("computed_action", _level_names(cur), dtype=pl.String),
            pl.col("level").cast(pl.Int64).replace_strict(dict(enumerate(ACTIONS)), return_dtype=pl.String).alias("max_action"),
            (pl.col("level") >= 2).alias("flagged"),
            pl.col("score").clip(0.0, 1.0).round(4).alias("score"),
            pl.col("reasons").fill_null(""),
            pl.col("cluster_id"),
            pl.col("first_flag").cast(pl.Int64).alias("first_flag"),
            pl.col("events").cast(pl.Int64),
            pl.col("events_before_flag").cast(pl.Int64),
            pl.Series("shadow", enf != cur, dtype=pl.Boolean),
        )
        prev = self._dframe
        cols = [c for c in d.columns if c != "account_id"]
        if prev is None:
            changed = d
        else:
            j = d.join(prev, on="account_id", how="left", suffix="_old")
            diff = pl.lit(False)
            for c in cols:
                diff = diff | pl.col(c).ne_missing(pl.col(c + "_old"))
            changed = j.filter(diff).select(d.columns)
        now_ms = int(time.time() * 1000)
        updated = ms_to_rfc3339(now_ms)
        out = dict(self.decisions)
        events: list[dict] = []
        announce: list[tuple[str, str, str]] = []
        for r in changed.iter_rows(named=True):
            doc = {
                "account_id": r["account_id"], "action": r["action"], "score": r["score"],
                "reasons": [x for x in r["reasons"].split(";") if x], "cluster_id": r["cluster_id"],
                "updated_at": updated, "computed_action": r["computed_action"], "max_action": r["max_action"],
                "flagged": r["flagged"], "first_flagged_ts": ms_to_rfc3339(r["first_flag"]),
                "events": r["events"], "events_before_flag": r["events_before_flag"], "shadow": r["shadow"],
                "directives": self._directives_of(r["action"], r["computed_action"]),
            }
            out[r["account_id"]] = orjson.dumps(doc)
            old_action, old_computed = self._announced.get(r["account_id"], ("none", "none"))
            if (old_action, old_computed) != (r["action"], r["computed_action"]):
                events.append({"account_id": r["account_id"], "previous_action": old_action,
                               "previous_computed_action": old_computed, "decision": doc})
                announce.append((r["account_id"], r["action"], r["computed_action"]))
        self.decisions = out  # one reference swap: readers never see a half-built map
        self._dframe = d
        self.store.save_actions(announce, [self.outbox_event(ev) for ev in events] if self.outbox_event else [])
        for a, x, y in announce:
            self._announced[a] = (x, y)
        for view, col in (("enforced", "action"), ("computed", "computed_action")):
            counts = dict(d.group_by(col).len().iter_rows())
            for a in ACTIONS:
                self.metrics.actions.labels(a, view).set(counts.get(a, 0))
        for ev in events:
            dd = ev["decision"]
            self.metrics.action_changes.labels(dd["action"]).inc()
            decision_log.info("decision account=%s action=%s computed=%s (was %s/%s) max=%s score=%.4f shadow=%s reasons=%s",
                              dd["account_id"], dd["action"], dd["computed_action"], ev["previous_action"],
                              ev["previous_computed_action"], dd["max_action"], dd["score"], dd["shadow"],
                              ";".join(dd["reasons"]))
        changed_docs = [orjson.loads(out[a]) for a in changed["account_id"].to_list()] if self.listeners else []
        for fn in self.listeners:
            try:
                fn(changed_docs, events)
            except Exception:  # a listener must not break decisions
                log.exception("decision listener failed")

    def decision(self, account_id: str) -> bytes | None:
        """The JSON of an account's current decision, or None when the account is unknown."""
        return self.decisions.get(account_id)

    def all_decisions(self) -> Iterable[bytes]:
        return list(self.decisions.values())

    # -- background refresher ----------------------------------------------------------------

    def _due(self, since_last: float) -> bool:
        if not self._pending_rows:
            return False
        busy = min(max(self.cfg.refresh_max_busy, 1e-3), 1.0)
        backoff = (self.refresh_wall_s or 0.0) * (1.0 / busy - 1.0)
        if since_last < backoff:
            return False
        if since_last * 1000 >= self.cfg.refresh_ms:
            return True
        mx = self._pending_max_ts
        crossed = mx is not None and (self._last_tick is None or mx // self.cfg.tick_ms > self._last_tick)
        return crossed and since_last * 1000 >= self.cfg.min_refresh_ms

    def _loop(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            self._wake.wait(timeout=max(0.01, self.cfg.min_refresh_ms / 1000))
            self._wake.clear()
            if self._stop.is_set():
                break
            now = time.monotonic()
            if self._due(now - last):
                try:
                    self.refresh()
                except Exception:
                    log.exception("refresh failed; will retry")
                last = time.monotonic()

    def start(self) -> None:
        """Initial refresh of the stored state, then refresh in the background."""
        if self._pending_rows:
            self.refresh()
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="distillguard-refresh", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def close(self) -> None:
        self.stop()
        self.quarantine.close()
        self.store.close()

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "accounts": len(self.decisions),
            "exchanges": 0 if self._rows is None else self._rows.height,
            "pending": self._pending_rows,
            "refreshes": self.refreshes,
            "last_refresh": ms_to_rfc3339(int(self.refreshed_at * 1000)) if self.refreshed_at else None,
            "last_refresh_seconds": None if self.refresh_wall_s is None else round(self.refresh_wall_s, 4),
            "last_refresh_breakdown": self.last_breakdown,
            "event_time_max": ms_to_rfc3339(self.max_event_ts),
            "shadow": self.cfg.shadow,
            "shadow_rules": list(self.cfg.shadow_rules),
        }
