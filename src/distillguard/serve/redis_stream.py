"""Production transport: Redis Streams in, Redis keys out.

Two streams (names under ``ServeConfig.redis_prefix``):

``events`` (raw)
    Gateways ``XADD`` exchange records: field ``r`` = one JSON record, or ``b`` = NDJSON of many
    (:func:`xadd_events`). Replicas read it through one **consumer group** (``XREADGROUP``), so
    each entry is validated and reduced (the expensive, text-touching step) by one replica only.
    A replica publishes the compact rows of what it read to the compact stream and ``XACK``s the
    raw entries **in the same MULTI/EXEC transaction**: an entry is either still pending or its
    rows are on the compact stream. Entries left pending by a dead replica are re-claimed with
    ``XAUTOCLAIM`` once idle for ``claim_idle_ms``.
``compact``
    The replicated log of compact rows (Arrow IPC, ~100 bytes an exchange). **Every** replica
    reads all of it (plain ``XREAD``) into its embedded store, recording the last entry applied
    in the same transaction as the rows, so after ``kill -9`` it resumes exactly there. The order
    of this stream is the acceptance order: all replicas de-duplicate by ``request_id`` the same
    way and so hold the same state and compute the same decisions (an account's exchanges and its
    cluster's may come through different replicas: no sharding is needed for correctness).

Decisions are written to ``<prefix>decision:<account_id>`` (JSON, ``EX decision_ttl_s``) when they
change and re-written before they expire while not ``none``; a gateway node reads them from its
local Redis replica (:class:`RedisDecisionReader`). Every replica writes the same values, so any
subset of replicas being up keeps the keys fresh.

``POST /v1/events`` on a replica in Redis mode publishes to the compact stream and answers once
its own follower has applied the entry (so the accepted/duplicate counts are exact).
"""

from __future__ import annotations

import collections
import io
import logging
import threading
import time
from typing import Iterable, Sequence

import orjson
import polars as pl
import redis

from .config import ServeConfig
from .engine import Engine, IngestResult

log = logging.getLogger("distillguard.serve.redis")


def _sid(entry_id: bytes | str) -> tuple[int, int]:
    s = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    a, _, b = s.partition("-")
    return int(a), int(b or 0)


def xadd_events(r: redis.Redis, stream: str, records: Iterable[dict | bytes | str], per_entry: int = 200,
                maxlen: int | None = None) -> list[str]:
    """Gateway side: append exchange records to the raw stream, ``per_entry`` records an entry."""
    ids, buf = [], []

    def flush() -> None:
        if buf:
            ids.append(r.xadd(stream, {"b": b"\n".join(buf)}, maxlen=maxlen, approximate=True).decode())
            buf.clear()

    for rec in records:
        buf.append(rec if isinstance(rec, bytes) else rec.encode() if isinstance(rec, str) else orjson.dumps(rec))
        if len(buf) >= per_entry:
            flush()
    flush()
    return ids


def _encode(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_ipc(buf, compression="lz4")
    return buf.getvalue()


class RedisTransport:
    """Raw-stream consumer, compact-stream follower and decision publisher of one replica."""

    def __init__(self, engine: Engine, cfg: ServeConfig | None = None):
        self.engine = engine
        self.cfg = cfg = cfg or engine.cfg
        if not cfg.redis_url:
            raise ValueError("redis_url is not set")
        self.r = redis.Redis.from_url(cfg.redis_url)
        self.raw = cfg.key(cfg.raw_stream)
        self.compact = cfg.key(cfg.compact_stream)
        self.group = cfg.consumer_group
        self.me = cfg.consumer_name
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cv = threading.Condition()
        self._results: collections.OrderedDict[str, tuple[int, int]] = collections.OrderedDict()
        self._applied = _sid(engine.store.meta("compact_offset", "0-0") or "0-0")
        self._last_claim = 0.0
        engine.listeners.append(self.publish_decisions)

    # -- raw stream (consumer group) ----------------------------------------------------------

    def ensure_group(self) -> None:
        try:
            self.r.xgroup_create(self.raw, self.group, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def _records(self, entries: Sequence) -> tuple[list[bytes], list[bytes]]:
        recs, ids = [], []
        for eid, fields in entries:
            ids.append(eid)
            if not fields:  # deleted (trimmed) while pending: nothing to process, just ack
                continue
            if b"r" in fields:
                recs.append(fields[b"r"])
            if b"b" in fields:
                recs.extend(x for x in fields[b"b"].split(b"\n"))
        return recs, ids

    def _process_raw(self, entries: Sequence, how: str) -> int:
        if not entries:
            return 0
        recs, ids = self._records(entries)
        first, last = ids[0].decode(), ids[-1].decode()
        p = self.engine.prepare(recs, f"redis:{self.raw}:{first}..{last}") if recs else None
        pipe = self.r.pipeline(transaction=True)
        if p is not None and p.rows.height:
            pipe.xadd(self.compact, {"d": _encode(p.rows), "s": str(p.span)})
        pipe.xack(self.raw, self.group, *ids)
        pipe.execute()
        m = self.engine.metrics
        m.redis_entries.labels("raw", how).inc(len(ids))
        if p is not None:
            m.events.labels("rejected").inc(p.rejected)
        return len(ids)

    def reclaim(self) -> int:
        """Take over raw entries another (dead) consumer left pending for ``claim_idle_ms``."""
        n, start = 0, "0-0"
        while not self._stop.is_set():
            res = self.r.xautoclaim(self.raw, self.group, self.me, self.cfg.claim_idle_ms, start_id=start, count=self.cfg.read_count)
            start, entries = res[0], res[1]
            n += self._process_raw(entries, "reclaimed")
            if not entries or start in (b"0-0", "0-0"):
                break
        return n

    def consume_once(self, block_ms: int = 500) -> int:
        """Own pending entries first (after a restart under the same name), then new ones."""
        now = time.monotonic()
        n = 0
        if now - self._last_claim >= self.cfg.claim_idle_ms / 2000:
            self._last_claim = now
            n += self.reclaim()
        mine = self.r.xreadgroup(self.group, self.me, {self.raw: "0"}, count=self.cfg.read_count)
        if mine and mine[0][1]:
            return n + self._process_raw(mine[0][1], "own-pending")
        res = self.r.xreadgroup(self.group, self.me, {self.raw: ">"}, count=self.cfg.read_count, block=block_ms)
        if res:
            n += self._process_raw(res[0][1], "new")
        return n

    # -- compact stream (every replica reads all) ----------------------------------------------

    def follow_once(self, block_ms: int = 500) -> int:
        last = f"{self._applied[0]}-{self._applied[1]}"
        res = self.r.xread({self.compact: last}, count=50, block=block_ms)
        n = 0
        for _stream, entries in res or []:
            if not entries:
                continue
            sids, items = [], []
            for eid, fields in entries:
                sid = eid.decode()
                rows = pl.read_ipc(io.BytesIO(fields[b"d"]))
                span = int(fields.get(b"s", str(rows.height).encode()))
                sids.append(sid)
                items.append((rows, span, {"compact_offset": sid}))
            # All entries read in one transaction (group commit); the offset stored is the last one.
            counts = self.engine.apply_many(items)
            self._applied = _sid(sids[-1])
            with self._cv:
                for sid, c in zip(sids, counts):
                    self._results[sid] = c
                while len(self._results) > 10_000:
                    self._results.popitem(last=False)
                self._cv.notify_all()
            n += len(sids)
        if n:
            self.engine.metrics.redis_entries.labels("compact", "applied").inc(n)
        return n

    def ingest_http(self, records: list, source: str) -> IngestResult:
        """``POST /v1/events`` in Redis mode: reduce here, publish, answer once applied locally."""
        p = self.engine.prepare(records, source)
        self.engine.metrics.events.labels("rejected").inc(p.rejected)
        if not p.rows.height:
            return IngestResult(p.records, 0, 0, p.rejected, p.rejects)
        sid = self.r.xadd(self.compact, {"d": _encode(p.rows), "s": str(p.span)}).decode()
        with self._cv:
            ok = self._cv.wait_for(lambda: sid in self._results or self._applied >= _sid(sid), timeout=30)
            res = self._results.get(sid)
        if not ok or res is None:
            raise TimeoutError(f"compact entry {sid} not applied in time")
        return IngestResult(p.records, res[0], res[1], p.rejected, p.rejects)

    # -- decisions out --------------------------------------------------------------------------

    def decision_key(self, account_id: str) -> str:
        return self.cfg.key("decision", account_id)

    def publish_decisions(self, changed: list[dict], events: list[dict] | None = None) -> None:
        if not changed:
            return
        try:
            pipe = self.r.pipeline(transaction=False)
            for i, d in enumerate(changed, 1):
                pipe.set(self.decision_key(d["account_id"]), orjson.dumps(d), ex=self.cfg.decision_ttl_s)
                if i % 1000 == 0:
                    pipe.execute()
            pipe.execute()
            self.engine.metrics.redis_published.inc(len(changed))
        except redis.RedisError:
            self.engine.metrics.redis_errors.labels("publish").inc()
            log.exception("publishing decisions to Redis failed (kept locally; re-published by the TTL refresher)")

    def refresh_ttls(self) -> int:
        """Re-write every decision that is not ``none`` before its key expires."""
        docs = [orjson.loads(b) for b in list(self.engine.decisions.values())]
        live = [d for d in docs if d["action"] != "none" or d["computed_action"] != "none"]
        self.publish_decisions(live)
        return len(live)

    # -- threads --------------------------------------------------------------------------------

    def _run(self, name: str, step, every_s: float = 0.0) -> None:
        while not self._stop.is_set():
            try:
                step()
            except redis.RedisError as e:
                self.engine.metrics.redis_errors.labels(name).inc()
                log.warning("redis %s: %s; retrying", name, type(e).__name__)
                self._stop.wait(1.0)
            except Exception:
                log.exception("redis %s loop", name)
                self._stop.wait(1.0)
            if every_s:
                self._stop.wait(every_s)

    def start(self, consume: bool = True) -> None:
        self.ensure_group()
        loops = [("follow", self.follow_once, 0.0), ("ttl", self.refresh_ttls, max(1.0, self.cfg.decision_ttl_s / 3))]
        if consume:
            loops.append(("consume", self.consume_once, 0.0))
        for name, step, every in loops:
            t = threading.Thread(target=self._run, args=(name, step, every), name=f"distillguard-redis-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()

    def wait_applied(self, timeout_s: float = 30.0) -> bool:
        """Block until this replica applied everything on the compact stream right now (tests)."""
        info = self.r.xinfo_stream(self.compact) if self.r.exists(self.compact) else None
        target = _sid(info["last-generated-id"]) if info else (0, 0)
        deadline = time.monotonic() + timeout_s
        with self._cv:
            return self._cv.wait_for(lambda: self._applied >= target, timeout=max(0.0, deadline - time.monotonic()))


class RedisDecisionReader:
    """Gateway side: read decisions from (a local replica of) Redis. Missing key = no action."""

    def __init__(self, url: str, prefix: str = "dg:"):
        self.r = redis.Redis.from_url(url, socket_timeout=0.05, socket_connect_timeout=0.2)
        self.prefix = prefix

    def get(self, account_id: str) -> dict | None:
        v = self.r.get(f"{self.prefix}decision:{account_id}")
        return orjson.loads(v) if v else None
