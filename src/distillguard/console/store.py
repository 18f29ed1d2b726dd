"""The console's embedded store: one DuckDB file built from a scan directory.

Built once (``build_store``) from ``accounts.csv``, ``clusters.csv``, ``summary.json`` and the
scan's input log (``summary.json`` ``inputs``), then it also keeps the console's own state.

Tables (scan data, rebuilt only when the scan changes):

- ``accounts``, ``clusters``       the report rows (shared/spec/report.md), typed
- ``activity(account_id, bucket_ms, n)``   exchanges per 5-minute bucket (timeline, hour strip)
- ``samples(account_id, ts, request_id, model, operation, status, output_tokens, prompt)``
  up to ``SAMPLES_PER_ACCOUNT`` exchanges per account (the first and the last ones), prompt
  truncated to ``PROMPT_CHARS`` characters; prompts are attacker-written text, only ever
  rendered escaped
- ``links(account_id, key, first_ts)``      the linking keys the detector used (pf:, org:, net:,
  dom:, tpl:), for the linked-accounts graph
- ``contrib(account_id, feature, value, contribution)``  the learned layer's log-odds
  contributions at the account's last snapshot
- ``partner(account_id, indicator_id, kind, confidence, partner, campaign_ref, hits)``  partner
  indicator matches, when the scan directory holds ``partner_matches.csv`` (or ``matches.csv``)

Console state (kept across rebuilds): ``users``, ``sessions``, ``labels``, ``appeals``,
``audit``, ``meta``.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import duckdb
import polars as pl
import pyarrow as pa

BUCKET_MS = 300_000
SAMPLES_PER_ACCOUNT = 30
PROMPT_CHARS = 4000
SCHEMA_VERSION = "1"
ACTIONS = ("none", "monitor", "challenge", "throttle", "suspend")
ROLES = ("viewer", "analyst", "admin")

STATE_DDL = [
    "CREATE TABLE IF NOT EXISTS meta (k VARCHAR PRIMARY KEY, v VARCHAR)",
    "CREATE TABLE IF NOT EXISTS users (username VARCHAR PRIMARY KEY, pw_hash VARCHAR, role VARCHAR, "
    "active BOOLEAN DEFAULT TRUE, created_ms BIGINT)",
    "CREATE TABLE IF NOT EXISTS sessions (sid VARCHAR PRIMARY KEY, username VARCHAR, csrf VARCHAR, "
    "created_ms BIGINT, expires_ms BIGINT)",
    "CREATE SEQUENCE IF NOT EXISTS seq_labels",
    "CREATE TABLE IF NOT EXISTS labels (id BIGINT DEFAULT nextval('seq_labels'), target_kind VARCHAR, target VARCHAR, "
    "decision VARCHAR, label VARCHAR, comment VARCHAR, username VARCHAR, ts_ms BIGINT)",
    "CREATE SEQUENCE IF NOT EXISTS seq_appeals",
    "CREATE TABLE IF NOT EXISTS appeals (id BIGINT DEFAULT nextval('seq_appeals'), account_id VARCHAR, ticket VARCHAR, "
    "message VARCHAR, source VARCHAR, status VARCHAR, created_ms BIGINT, decided_by VARCHAR, decided_ms BIGINT, "
    "decision VARCHAR, comment VARCHAR)",
    "CREATE SEQUENCE IF NOT EXISTS seq_audit",
    "CREATE TABLE IF NOT EXISTS audit (id BIGINT DEFAULT nextval('seq_audit'), ts_ms BIGINT, username VARCHAR, "
    "action VARCHAR, target VARCHAR, detail VARCHAR)",
]


def now_ms() -> int:
    return int(time.time() * 1000)


def _ts_ms(col: str) -> pl.Expr:
    return (pl.col(col).str.to_datetime(time_zone="UTC", strict=False).dt.epoch("ms")).alias(col.replace("_ts", "_ms"))


def read_report(scan_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """accounts.csv and clusters.csv, typed (flagged bool, *_ms epoch ms, '' for no cluster)."""
    acc = pl.read_csv(scan_dir / "accounts.csv", infer_schema=False)
    acc = acc.with_columns(
        pl.col("score").cast(pl.Float64), (pl.col("flagged").str.to_lowercase() == "true"),
        pl.col("events").cast(pl.Int64), pl.col("events_before_flag").cast(pl.Int64),
        pl.col("cluster_id").fill_null(""), pl.col("reasons").fill_null(""), pl.col("action").fill_null("none"),
        _ts_ms("first_flagged_ts"),
    )
    cp = scan_dir / "clusters.csv"
    if cp.exists() and cp.stat().st_size > 0:
        cl = pl.read_csv(cp, infer_schema=False)
    else:
        cl = pl.DataFrame(schema={c: pl.String for c in ("cluster_id", "accounts", "events", "score", "flagged", "first_flagged_ts", "reasons")})
    cl = cl.with_columns(
        pl.col("accounts").cast(pl.Int64), pl.col("events").cast(pl.Int64), pl.col("score").cast(pl.Float64),
        (pl.col("flagged").str.to_lowercase() == "true"), pl.col("reasons").fill_null(""), _ts_ms("first_flagged_ts"),
    )
    return acc, cl


def _event_batches(inputs: Sequence[str]) -> Iterable[pa.RecordBatch]:
    from ..ingest import IngestStats, Quarantine, expand_inputs, read_events

    with Quarantine(None) as q:
        yield from read_events(expand_inputs(list(inputs)), q, IngestStats())


def _load_events(con: duckdb.DuckDBPyConnection, inputs: Sequence[str]) -> None:
    """Per-account activity buckets and sample exchanges, batch by batch (bounded memory)."""
    con.execute("CREATE TABLE activity (account_id VARCHAR, bucket_ms BIGINT, n BIGINT)")
    con.execute("CREATE TABLE samples_raw (account_id VARCHAR, ts BIGINT, request_id VARCHAR, model VARCHAR, operation VARCHAR, "
                "status BIGINT, output_tokens BIGINT, prompt VARCHAR, first_rank BIGINT, last_rank BIGINT)")
    half = SAMPLES_PER_ACCOUNT // 2
    for batch in _event_batches(inputs):
        names = set(batch.schema.names)
        cols = {}
        for c in ("account_id", "ts", "request_id", "model", "operation", "status", "output_tokens", "prompt"):
            cols[c] = batch.column(c) if c in names else pa.nulls(batch.num_rows)
        b = pa.table(cols)  # noqa: F841  (read by DuckDB's replacement scan)
        con.execute(f"INSERT INTO activity SELECT account_id, (ts // {BUCKET_MS}) * {BUCKET_MS}, count(*) FROM b GROUP BY 1, 2")
        con.execute(f"""
            INSERT INTO samples_raw
            SELECT * FROM (
              SELECT account_id, CAST(ts AS BIGINT), CAST(request_id AS VARCHAR), CAST(model AS VARCHAR), CAST(operation AS VARCHAR),
                     CAST(status AS BIGINT), CAST(output_tokens AS BIGINT), left(CAST(prompt AS VARCHAR), {PROMPT_CHARS}),
                     row_number() OVER (PARTITION BY account_id ORDER BY ts, request_id) AS first_rank,
                     row_number() OVER (PARTITION BY account_id ORDER BY ts DESC, request_id DESC) AS last_rank
              FROM b) WHERE first_rank <= {half} OR last_rank <= {half}""")
    con.execute("CREATE TABLE activity2 AS SELECT account_id, bucket_ms, sum(n)::BIGINT AS n FROM activity GROUP BY 1, 2")
    con.execute("DROP TABLE activity")
    con.execute("ALTER TABLE activity2 RENAME TO activity")
    con.execute(f"""
        CREATE TABLE samples AS SELECT account_id, ts, request_id, model, operation, status, output_tokens, prompt FROM (
          SELECT *, row_number() OVER (PARTITION BY account_id ORDER BY ts, request_id) AS r1,
                    row_number() OVER (PARTITION BY account_id ORDER BY ts DESC, request_id DESC) AS r2
          FROM samples_raw) WHERE r1 <= {half} OR r2 <= {half}""")
    con.execute("DROP TABLE samples_raw")


def _load_features(con: duckdb.DuckDBPyConnection, inputs: Sequence[str], model_path: str | None, tick_ms: int) -> None:
    """Link keys and the learned layer's contributions at each account's last snapshot."""
    from ..features.account import FEATURES
    from ..ingest import IngestStats, Quarantine, expand_inputs
    from ..pipeline import prepare
    from ..replay import ReplayConfig, account_snapshots
    from ..scoring.model import AccountModel

    spill = Path(tempfile.mkdtemp(prefix="distillguard-console-"))
    try:
        with Quarantine(None) as q:
            prep = prepare(expand_inputs(list(inputs)), spill, q, IngestStats(), tick_ms=tick_ms)
        if prep.ticks.height == 0:
            raise ValueError("no valid events")
        cfg = ReplayConfig(tick_ms=tick_ms)
        snaps = account_snapshots(prep.ticks, cfg)
        links = prep.links.select(pl.col("account_id").cast(pl.String), pl.col("key").cast(pl.String), pl.col("first_ts").cast(pl.Int64))
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    last = snaps.sort("tick").group_by("account_id").last()
    try:
        model = AccountModel.from_json(model_path) if model_path else AccountModel.from_json()
    except Exception:
        model = AccountModel.from_json()
    contrib = model.contributions(last, "x_")
    vals = last.select([pl.col("x_" + f) for f in FEATURES]).to_numpy()
    rows = []
    ids = last["account_id"].to_list()
    for i, a in enumerate(ids):
        for j, f in enumerate(FEATURES):
            if model.coef[j] != 0:
                rows.append((a, f, float(vals[i, j]), float(contrib[i, j])))
    cdf = pl.DataFrame(rows, schema={"account_id": pl.String, "feature": pl.String, "value": pl.Float64, "contribution": pl.Float64}, orient="row")
    icpt = pl.DataFrame({"account_id": ids, "feature": ["(intercept)"] * len(ids), "value": [1.0] * len(ids),
                         "contribution": [float(model.intercept)] * len(ids)})
    cdf = pl.concat([cdf, icpt])  # noqa: F841
    links_t = links.to_arrow()  # noqa: F841
    con.execute("CREATE TABLE contrib AS SELECT * FROM cdf")
    con.execute("CREATE TABLE links AS SELECT * FROM links_t")
    con.execute("CREATE INDEX links_acc ON links(account_id)")


def _load_partner(con: duckdb.DuckDBPyConnection, scan_dir: Path) -> None:
    cols = ("account_id", "indicator_id", "kind", "confidence", "partner", "campaign_ref", "hits")
    for name in ("partner_matches.csv", "matches.csv"):
        p = scan_dir / name
        if p.exists() and p.stat().st_size > 0:
            df = pl.read_csv(p, infer_schema=False)
            df = df.select([(pl.col(c) if c in df.columns else pl.lit(None, pl.String)).alias(c) for c in cols])  # noqa: F841
            con.execute("CREATE TABLE partner AS SELECT account_id, indicator_id, kind, TRY_CAST(confidence AS DOUBLE) AS confidence, "
                        "partner, campaign_ref, TRY_CAST(hits AS BIGINT) AS hits FROM df")
            return
    con.execute("CREATE TABLE partner (account_id VARCHAR, indicator_id VARCHAR, kind VARCHAR, confidence DOUBLE, "
                "partner VARCHAR, campaign_ref VARCHAR, hits BIGINT)")


def _scan_fingerprint(scan_dir: Path) -> str:
    parts = []
    for name in ("accounts.csv", "clusters.csv", "summary.json", "partner_matches.csv", "matches.csv"):
        p = scan_dir / name
        if p.exists():
            st = p.stat()
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return SCHEMA_VERSION + "|" + "|".join(parts)


def build_store(scan_dir: str | Path, db_path: str | Path | None = None, *, events: Sequence[str] | None = None,
                with_features: bool = True, rebuild: bool = False, log=print) -> Path:
    """Build (or refresh) the console store for ``scan_dir``; console state is kept."""
    scan_dir = Path(scan_dir)
    if not (scan_dir / "accounts.csv").exists():
        raise FileNotFoundError(f"{scan_dir}/accounts.csv not found: not a scan output directory")
    db_path = Path(db_path) if db_path else scan_dir / "console.duckdb"
    summary = json.loads((scan_dir / "summary.json").read_text()) if (scan_dir / "summary.json").exists() else {}
    inputs = list(events) if events else [str(p) for p in summary.get("inputs", [])]
    fp = _scan_fingerprint(scan_dir) + "|" + ";".join(inputs)
    con = duckdb.connect(str(db_path))
    try:
        for ddl in STATE_DDL:
            con.execute(ddl)
        row = con.execute("SELECT v FROM meta WHERE k = 'scan_fingerprint'").fetchone()
        if row and row[0] == fp and not rebuild:
            return db_path
        log(f"building console store {db_path} from {scan_dir} ...")
        for t in ("accounts", "clusters", "activity", "samples", "links", "contrib", "partner"):
            con.execute(f"DROP TABLE IF EXISTS {t}")
        acc, cl = read_report(scan_dir)
        acc_t, cl_t = acc.to_arrow(), cl.to_arrow()  # noqa: F841
        con.execute("CREATE TABLE accounts AS SELECT * FROM acc_t")
        con.execute("CREATE TABLE clusters AS SELECT * FROM cl_t")
        notes = []
        existing = [p for p in inputs if Path(p).exists()]
        if existing:
            _load_events(con, existing)
            if with_features:
                try:
                    _load_features(con, existing, None, int(float(summary.get("tick_seconds", 60)) * 1000))
                except Exception as e:  # contributions are a nicety; the console works without them
                    import logging

                    logging.getLogger(__name__).warning("score contributions failed", exc_info=True)
                    notes.append(f"score contributions unavailable: {type(e).__name__}: {e}")
        else:
            notes.append("the scan's input log was not found: no activity, samples or linked-accounts graph")
            con.execute("CREATE TABLE activity (account_id VARCHAR, bucket_ms BIGINT, n BIGINT)")
            con.execute("CREATE TABLE samples (account_id VARCHAR, ts BIGINT, request_id VARCHAR, model VARCHAR, operation VARCHAR, "
                        "status BIGINT, output_tokens BIGINT, prompt VARCHAR)")
        if not _has_table(con, "links"):
            con.execute("CREATE TABLE links (account_id VARCHAR, key VARCHAR, first_ts BIGINT)")
        if not _has_table(con, "contrib"):
            con.execute("CREATE TABLE contrib (account_id VARCHAR, feature VARCHAR, value DOUBLE, contribution DOUBLE)")
        _load_partner(con, scan_dir)
        meta = {"scan_fingerprint": fp, "scan_dir": str(scan_dir.resolve()), "inputs": json.dumps(inputs),
                "summary": json.dumps(summary), "notes": json.dumps(notes), "built_ms": str(now_ms())}
        for k, v in meta.items():
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [k, v])
        for n in notes:
            log("note: " + n)
        return db_path
    finally:
        con.close()


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0])


class Store:
    """Thread-safe access to the store (one DuckDB connection, one lock: the console is small)."""

    def __init__(self, db_path: str | Path):
        self.path = Path(db_path)
        self.con = duckdb.connect(str(self.path))
        for ddl in STATE_DDL:
            self.con.execute(ddl)
        self.lock = threading.RLock()

    def close(self) -> None:
        with self.lock:
            self.con.close()

    # -- generic helpers -------------------------------------------------------------------
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict]:
        with self.lock:
            cur = self.con.execute(sql, list(params))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict | None:
        r = self.rows(sql, params)
        return r[0] if r else None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self.lock:
            self.con.execute(sql, list(params))

    def meta(self, k: str, default: str | None = None) -> str | None:
        r = self.one("SELECT v FROM meta WHERE k = ?", [k])
        return r["v"] if r else default

    def set_meta(self, k: str, v: str) -> None:
        self.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [k, v])

    def secret_key(self) -> str:
        with self.lock:
            k = self.meta("secret_key")
            if not k:
                k = secrets.token_urlsafe(32)
                self.set_meta("secret_key", k)
            return k

    def audit(self, username: str, action: str, target: str = "", detail: str = "") -> None:
        self.execute("INSERT INTO audit (ts_ms, username, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                     [now_ms(), username, action, target, detail])

    # -- labels ---------------------------------------------------------------------------
    def latest_labels(self) -> dict[str, dict]:
        """Latest decision per account; a cluster decision applies to its members unless an
        account has a later decision of its own."""
        out: dict[str, dict] = {}
        for r in self.rows("SELECT l.*, a.account_id AS member FROM labels l LEFT JOIN accounts a "
                           "ON l.target_kind = 'cluster' AND a.cluster_id = l.target ORDER BY l.id"):
            acct = r["target"] if r["target_kind"] == "account" else r["member"]
            if acct:
                out[acct] = r
        return out
