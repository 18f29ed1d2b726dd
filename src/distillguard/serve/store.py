"""The embedded store: what the service has acknowledged survives ``kill -9``.

One DuckDB file (``STATE_DIR/state.duckdb``) with three tables:

``ids(hi, lo) PRIMARY KEY``
    The 128-bit MD5 of every accepted ``request_id`` (the values of DuckDB's
    ``md5_number_upper/lower``, stable across versions, computed from one ``md5_number``): the
    idempotency index. A replayed exchange conflicts here and is counted as
    a duplicate, never twice. Two integers index about twice as fast as the id strings, and a
    false duplicate would take a 2^-128 coincidence.
``chunks(seq, n, data)``
    The accepted compact exchange rows (``features.exchange.COMPACT_COLUMNS``, ~100 bytes each),
    one Arrow IPC blob (LZ4) per committed batch. Wide per-column inserts cost more than the
    feature extraction itself; a blob per batch keeps the write path at index speed.
``meta(k, v)``
    Counters and transport offsets (the next line number, the last compact-stream entry applied),
    written in the same transaction as the rows they describe.

A batch is committed in one transaction *before* the service acknowledges it, so after a crash
an exchange is either in the store (and a resend is a duplicate) or was never acknowledged.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import duckdb
import polars as pl

STORE_FILE = "state.duckdb"
# Chunks smaller than this are merged at start-up when there are many of them.
COMPACT_TARGET_ROWS = 200_000


# ``md5_number_upper(x), md5_number_lower(x)`` from one digest: ``md5_number`` holds the two halves
# in the other order (the test suite checks the identity), and hashing once costs half as much.
_HI_LO = ("(m & 18446744073709551615::UHUGEINT)::UBIGINT AS hi, (m >> 64)::UBIGINT AS lo "
          "FROM (SELECT md5_number(request_id) AS m FROM _dg_ids)")


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
        self._migrate_ids()
        self._con.execute("CREATE TABLE IF NOT EXISTS ids (hi UBIGINT, lo UBIGINT, PRIMARY KEY (hi, lo))")
        self._con.execute("CREATE TABLE IF NOT EXISTS chunks (seq BIGINT PRIMARY KEY, n INTEGER, data BLOB)")
        self._con.execute("CREATE TABLE IF NOT EXISTS meta (k VARCHAR PRIMARY KEY, v VARCHAR)")
        self._con.execute("CREATE TABLE IF NOT EXISTS actions (account_id VARCHAR PRIMARY KEY, action VARCHAR, computed_action VARCHAR)")
        self._con.execute("CREATE TABLE IF NOT EXISTS outbox (id VARCHAR PRIMARY KEY, created BIGINT, body BLOB)")
        row = self._con.execute("SELECT coalesce(max(seq), 0) FROM chunks").fetchone()
        self._seq = int(row[0]) if row else 0

    def _migrate_ids(self) -> None:
        """Stores written before the hashed index kept the id strings: hash them once."""
        cols = self._con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'ids'").fetchall()
        if ("request_id",) not in cols:
            return
        self._con.execute("BEGIN TRANSACTION")
        self._con.execute("CREATE TABLE ids_h (hi UBIGINT, lo UBIGINT, PRIMARY KEY (hi, lo))")
        self._con.execute("INSERT INTO ids_h SELECT md5_number_upper(request_id), md5_number_lower(request_id) FROM ids")
        self._con.execute("DROP TABLE ids")
        self._con.execute("ALTER TABLE ids_h RENAME TO ids")
        self._con.execute("COMMIT")

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
        return pl.concat([_decode(b[0]) for b in blobs], how="vertical_relaxed")

    def counts(self) -> tuple[int, int]:
        """(accepted exchanges, chunks)."""
        with self._lock:
            n = self._con.execute("SELECT count(*) FROM ids").fetchone()[0]
            c = self._con.execute("SELECT count(*) FROM chunks").fetchone()[0]
        return int(n), int(c)

    # -- writes ------------------------------------------------------------------------------

    def commit(self, rows: pl.DataFrame, meta: dict[str, str] | None = None) -> pl.DataFrame:
        """Store the rows whose ``request_id`` is new; return them. One transaction, durable on return.

        ``rows`` must not repeat a ``request_id`` (the engine keeps the first of a batch).
        ``meta`` entries are written in the same transaction (even when no row is new).
        """
        with self._lock:
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                new = rows.head(0)
                if rows.height:
                    new = self._insert_ids(rows)
                if new.height:
                    self._seq += 1
                    con.execute("INSERT INTO chunks VALUES (?, ?, ?)", [self._seq, new.height, _encode(new)])
                for k, v in (meta or {}).items():
                    # An UPDATE of an existing key costs a quarter of an upsert (~0.8 vs ~3 ms).
                    updated = con.execute("UPDATE meta SET v = ? WHERE k = ?", [str(v), k]).fetchone()
                    if not updated or not updated[0]:
                        con.execute("INSERT INTO meta VALUES (?, ?)", [k, str(v)])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                if new.height:
                    self._seq -= 1
                raise
        return new

    def _insert_ids(self, rows: pl.DataFrame) -> pl.DataFrame:
        """Insert the hashes of the rows' ``request_id``; return the rows whose id was new (in a transaction).

        Optimistic: a plain insert costs about half of an ``ON CONFLICT`` insert, and resends are
        rare. When one conflicts, DuckDB aborts the transaction; it is restarted and the batch
        goes the conflict-aware way (the caller's later statements run after this either way).
        """
        con = self._con
        ids = rows.select("request_id").to_arrow()
        con.register("_dg_ids", ids)
        try:
            try:
                con.execute(f"INSERT INTO ids SELECT {_HI_LO}")
                return rows
            except duckdb.ConstraintException:
                con.execute("ROLLBACK")  # (which also drops the registration)
                con.execute("BEGIN TRANSACTION")
                con.register("_dg_ids", ids)
            # The returned keys are the new ones. Only when some were already there are the
            # batch's own keys computed to tell which rows they were.
            got = pl.DataFrame(con.execute(f"INSERT INTO ids SELECT {_HI_LO} ON CONFLICT DO NOTHING RETURNING hi, lo").fetchnumpy())
            if got.height == rows.height:
                return rows
            if not got.height:
                return rows.head(0)
            h = pl.from_arrow(con.sql(f"SELECT {_HI_LO}").to_arrow_table())
            keep = h.with_row_index("_k").join(got, on=["hi", "lo"], how="semi")["_k"]
            return rows[keep]
        finally:
            con.unregister("_dg_ids")

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
