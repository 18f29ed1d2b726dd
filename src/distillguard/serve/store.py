"""The embedded store: what the service has acknowledged survives ``kill -9``.

One DuckDB file (``STATE_DIR/state.duckdb``) with these tables:

``chunks(seq, n, data)``
    The accepted compact exchange rows (``features.exchange.COMPACT_COLUMNS`` with
    ``request_id``, ~100 bytes each), one Arrow IPC blob (LZ4) per committed batch. Wide
    per-column inserts cost more than the feature extraction itself; a blob per batch keeps the
    write path cheap.
``meta(k, v)``
    Counters and transport offsets (the next line number, the last compact-stream entry applied),
    written in the same transaction as the rows they describe.
``actions``, ``outbox``
    The last announced action per account and undelivered webhook bodies (``webhooks``).

The idempotency index is held in memory: a set of 128-bit keys of every stored ``request_id``
(two 64-bit hashes under seeds drawn per process), rebuilt from the chunks when they are first read. The
chunks are the durable record of which ids were accepted, so the index needs no table of its
own: a DuckDB primary-key index cost ~2/3 of every commit (its inserts, and a rewrite of the
whole index at each checkpoint). A false duplicate would take a 2^-128 coincidence, and the
seeds are not known in advance, so colliding ids cannot be prepared.

A batch is committed in one transaction *before* the service acknowledges it, so after a crash
an exchange is either in the store (and a resend is a duplicate) or was never acknowledged.
"""

from __future__ import annotations

import io
import random
import threading
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

STORE_FILE = "state.duckdb"
# Chunks smaller than this are merged at start-up when there are many of them.
COMPACT_TARGET_ROWS = 200_000


def _encode(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_ipc(buf, compression="lz4")
    return buf.getvalue()


def _decode(blob: bytes) -> pl.DataFrame:
    return pl.read_ipc(io.BytesIO(blob))


class Store:
    """Durable, idempotent store of accepted compact exchange rows (thread-safe)."""

    def __init__(self, state_dir: str | Path, memory_limit: str = "256MB"):
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / STORE_FILE
        self._con = duckdb.connect(str(self.path))
        # The store holds ids and blobs only: a small buffer pool is plenty (DuckDB's default is 80 % of RAM).
        self._con.execute(f"SET memory_limit='{memory_limit}'")
        self._lock = threading.Lock()
        # Stores written before the in-memory index kept one in an ``ids`` table: the chunks
        # hold the same ids (both were written in one transaction), so it is simply dropped.
        self._con.execute("DROP TABLE IF EXISTS ids")
        self._con.execute("CREATE TABLE IF NOT EXISTS chunks (seq BIGINT PRIMARY KEY, n INTEGER, data BLOB)")
        self._con.execute("CREATE TABLE IF NOT EXISTS meta (k VARCHAR PRIMARY KEY, v VARCHAR)")
        self._con.execute("CREATE TABLE IF NOT EXISTS actions (account_id VARCHAR PRIMARY KEY, action VARCHAR, computed_action VARCHAR)")
        self._con.execute("CREATE TABLE IF NOT EXISTS outbox (id VARCHAR PRIMARY KEY, created BIGINT, body BLOB)")
        row = self._con.execute("SELECT coalesce(max(seq), 0) FROM chunks").fetchone()
        self._seq = int(row[0]) if row else 0
        rng = random.SystemRandom()
        self._seeds = (rng.getrandbits(63), rng.getrandbits(63))
        # Built on first use (``_index``), or by ``load``, which decodes every chunk anyway: the
        # service loads the store at start-up, so a restart reads each chunk once.
        self._ids: set[int] | None = None

    def _index(self) -> set[int]:
        """The id index, built from the stored chunks the first time it is needed (under the lock)."""
        if self._ids is None:
            ids: set[int] = set()
            cur = self._con.execute("SELECT data FROM chunks ORDER BY seq")
            while batch := cur.fetchmany(64):
                for (blob,) in batch:
                    ids.update(self._keys(pl.read_ipc(io.BytesIO(blob), columns=["request_id"])["request_id"]).tolist())
            self._ids = ids
        return self._ids

    def _keys(self, ids: pl.Series) -> np.ndarray:
        """128-bit key of each request id (Python ints in an object array)."""
        a, b = self._seeds
        h = ids.to_frame("r").select(pl.col("r").hash(seed=a).alias("hi"), pl.col("r").hash(seed=b).alias("lo"))
        return (h["hi"].to_numpy().astype(object) << 64) | h["lo"].to_numpy().astype(object)

    # -- reads -------------------------------------------------------------------------------

    def meta(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._con.execute("SELECT v FROM meta WHERE k = ?", [key]).fetchone()
        return row[0] if row else default

    def load(self) -> pl.DataFrame | None:
        """All accepted compact rows (with ``request_id``), in commit order; None when empty."""
        with self._lock:
            blobs = self._con.execute("SELECT data FROM chunks ORDER BY seq").fetchall()
            if not blobs:
                return None
            # (Diagonal: chunks written before a compact column was added lack it; it reads as null.)
            df = pl.concat([_decode(b[0]) for b in blobs], how="diagonal_relaxed")
            if self._ids is None:
                self._ids = set(self._keys(df["request_id"]).tolist())
        return df

    def counts(self) -> tuple[int, int]:
        """(accepted exchanges, chunks)."""
        with self._lock:
            c = self._con.execute("SELECT count(*) FROM chunks").fetchone()[0]
            return len(self._index()), int(c)

    # -- writes ------------------------------------------------------------------------------

    def commit(self, rows: pl.DataFrame, meta: dict[str, str] | None = None) -> pl.DataFrame:
        """Store the rows whose ``request_id`` is new; return them. One transaction, durable on return.

        ``rows`` must not repeat a ``request_id`` (the engine keeps the first of a batch).
        ``meta`` entries are written in the same transaction (even when no row is new).
        """
        with self._lock:
            new, keys = rows.head(0), None
            if rows.height:
                keys = self._keys(rows["request_id"])
                seen = self._index().intersection(keys.tolist())
                if not seen:
                    new = rows
                elif len(seen) < len(keys):  # a resend overlapping new rows (rare): keep the new ones
                    fresh = ~np.isin(keys, np.array(list(seen), dtype=object))
                    new, keys = rows.filter(pl.Series(fresh)), keys[fresh]
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                if new.height:
                    con.execute("INSERT INTO chunks VALUES (?, ?, ?)", [self._seq + 1, new.height, _encode(new)])
                for k, v in (meta or {}).items():
                    # An UPDATE of an existing key costs a quarter of an upsert (~0.8 vs ~3 ms).
                    updated = con.execute("UPDATE meta SET v = ? WHERE k = ?", [str(v), k]).fetchone()
                    if not updated or not updated[0]:
                        con.execute("INSERT INTO meta VALUES (?, ?)", [k, str(v)])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            # Only a committed batch enters the index.
            if new.height:
                self._seq += 1
                self._index().update(keys.tolist())
        return new

    def load_actions(self) -> dict[str, tuple[str, str]]:
        """Last (action, computed_action) announced per account (webhooks fire on changes only)."""
        with self._lock:
            rows = self._con.execute("SELECT account_id, action, computed_action FROM actions").fetchall()
        return {a: (x, y) for a, x, y in rows}

    def save_actions(self, changes: list[tuple[str, str, str]], outbox: list[tuple[str, int, bytes]] = ()) -> None:
        """Record announced actions and queue their webhook bodies, in one transaction."""
        if not changes:
            return
        df = pl.DataFrame(changes, schema={"account_id": pl.String, "action": pl.String, "computed_action": pl.String}, orient="row")
        with self._lock:
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                con.register("_dg_act", df.to_arrow())
                con.execute("INSERT INTO actions SELECT * FROM _dg_act ON CONFLICT (account_id) DO UPDATE "
                            "SET action = excluded.action, computed_action = excluded.computed_action")
                con.unregister("_dg_act")
                if outbox:
                    con.executemany("INSERT INTO outbox VALUES (?, ?, ?) ON CONFLICT DO NOTHING", list(outbox))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def outbox(self, limit: int = 1000) -> list[tuple[str, bytes]]:
        """Undelivered webhook bodies, oldest first."""
        with self._lock:
            return [(i, bytes(b)) for i, b in self._con.execute(
                "SELECT id, body FROM outbox ORDER BY created, id LIMIT ?", [limit]).fetchall()]

    def outbox_done(self, ids: list[str]) -> None:
        if ids:
            with self._lock:
                self._con.executemany("DELETE FROM outbox WHERE id = ?", [[i] for i in ids])

    def compact(self, min_chunks: int = 1_000) -> bool:
        """Merge many small chunks into large ones (start-up housekeeping). True when it did."""
        with self._lock:
            n = self._con.execute("SELECT count(*) FROM chunks WHERE n < ?", [COMPACT_TARGET_ROWS // 10]).fetchone()[0]
        if n < min_chunks:
            return False
        df = self.load()
        if df is None:
            return False
        with self._lock:
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute("DELETE FROM chunks")
                seq = 0
                for off in range(0, df.height, COMPACT_TARGET_ROWS):
                    part = df.slice(off, COMPACT_TARGET_ROWS)
                    seq += 1
                    con.execute("INSERT INTO chunks VALUES (?, ?, ?)", [seq, part.height, _encode(part)])
                con.execute("COMMIT")
                self._seq = seq
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("CHECKPOINT")
        return True

    def close(self) -> None:
        with self._lock:
            try:
                self._con.close()
            except Exception:  # pragma: no cover - closing twice
                pass
