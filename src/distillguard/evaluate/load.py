"""Read the evaluation inputs into polars frames: labels, a scan's report, the exchange log.

Parsing follows ``shared/tools/score.py`` (the independent scorer ``distillguard evaluate``
must agree with): every CSV cell is read as text, duplicated account rows keep the *last*
row (score.py builds a dict), and a timestamp is epoch milliseconds when it parses as a
number and RFC 3339 otherwise. Timestamps are carried as int64 epoch *microseconds* so that
millisecond event times and microsecond RFC 3339 flag times compare exactly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

LABEL_COLUMNS = ("account_id", "label", "population", "campaign", "attack_start_ts")
REPORT_COLUMNS = ("account_id", "score", "flagged", "first_flagged_ts", "action")

# The scan writes RFC 3339 with a "Z" or numeric offset; this one format covers both once
# "Z" is rewritten, and the rare other shapes fall back to datetime.fromisoformat.
_RFC3339 = "%Y-%m-%dT%H:%M:%S%.f%:z"


def _read_text_csv(path: str | Path, columns: Sequence[str]) -> pl.DataFrame:
    """Read a CSV with every cell as text; absent columns and empty cells become ``""``."""
    df = pl.read_csv(path, infer_schema=False)
    # csv.DictReader yields "" for empty cells; polars yields null (version-dependent).
    df = df.with_columns(pl.all().fill_null(""))
    missing = [c for c in columns if c not in df.columns]
    if missing:
        df = df.with_columns([pl.lit("", dtype=pl.String).alias(c) for c in missing])
    return df


def read_labels(path: str | Path) -> pl.DataFrame:
    """Read ``LABELS.csv`` (``account_id,label,population,campaign,attack_start_ts``).

    Parameters
    ----------
    path : str or Path
        The labels file.

    Returns
    -------
    polars.DataFrame
        One row per account id (the last row wins, as in score.py), all columns text.
    """
    df = _read_text_csv(path, LABEL_COLUMNS)
    return df.select(LABEL_COLUMNS).unique(subset="account_id", keep="last", maintain_order=True)


def read_report(path: str | Path) -> pl.DataFrame:
    """Read a scan's ``accounts.csv`` (shared/spec/report.md).

    Parameters
    ----------
    path : str or Path
        The ``accounts.csv`` file.

    Returns
    -------
    polars.DataFrame
        ``account_id, score, flagged, first_flagged_ts, action`` as text, one row per
        account (last row wins); ``action`` is empty when the report has no such column.
    """
    df = _read_text_csv(path, REPORT_COLUMNS)
    return df.select(REPORT_COLUMNS).unique(subset="account_id", keep="last", maintain_order=True)


def read_summary(path: str | Path) -> dict:
    """Read ``summary.json``; an absent or unreadable file gives ``{}`` (it is only echoed)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _fromiso_us(text: str) -> int | None:
    """One timestamp by the slow path: epoch ms if numeric, else ``datetime.fromisoformat``."""
    t = text.strip()
    try:
        return round(float(t) * 1000.0)
    except ValueError:
        pass
    try:
        d = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        return None
    if d.tzinfo is None:  # the contract says UTC; do not depend on the host's zone
        d = d.replace(tzinfo=timezone.utc)
    delta = d - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_ts_us(values: pl.Series) -> tuple[pl.Series, int]:
    """Parse score.py-style timestamps into int64 epoch microseconds.

    Parameters
    ----------
    values : polars.Series
        Text cells: ``""`` (no timestamp), epoch milliseconds, or RFC 3339.

    Returns
    -------
    parsed : polars.Series
        Int64 epoch microseconds, null where empty or unparsable.
    unparsable : int
        Number of non-empty cells that could not be parsed (reported, never fatal).
    """
    s = values.cast(pl.String).fill_null("").str.strip_chars()
    num = pl.col("s").cast(pl.Float64, strict=False)
    out = pl.DataFrame({"s": s}).select(
        # Numeric text is epoch ms (score.py tries float() first); NaN/inf are not times.
        pl.when(num.is_finite())
        .then((num * 1000.0).round().cast(pl.Int64))
        .otherwise(
            pl.col("s").str.replace(r"[Zz]$", "+00:00")
            .str.to_datetime(_RFC3339, strict=False, time_zone="UTC", time_unit="us")
            .dt.epoch("us")
        )
        .alias("us")
    )["us"]
    todo = (out.is_null() & (s != "")).arg_true()
    bad = 0
    if len(todo):
        # Only cells the vectorised parser missed (unusual ISO shapes) take this path.
        fixed = [_fromiso_us(x) for x in s.gather(todo).to_list()]
        bad = sum(v is None for v in fixed)
        out = out.scatter(todo, pl.Series(fixed, dtype=pl.Int64))
    return out.alias(values.name), bad


def event_paths(events: str | Path | Sequence[str | Path] | None, summary: dict,
                scan_dir: Path) -> tuple[list[str] | None, str | None]:
    """Decide which exchange logs to read.

    Parameters
    ----------
    events : str, Path, sequence of them, or None
        Paths given by the caller; they must exist.
    summary : dict
        The scan's ``summary.json``; its ``inputs`` list is used when ``events`` is None.
    scan_dir : Path
        The scan directory, also tried as the base of relative ``inputs``.

    Returns
    -------
    paths : list of str or None
        The logs to read, or None when none can be found.
    note : str or None
        Why the logs are not available (shown in the output), else None.
    """
    if events is not None:
        given = [events] if isinstance(events, (str, Path)) else list(events)
        missing = [str(p) for p in given if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(f"event log(s) not found: {', '.join(missing)}")
        return [str(p) for p in given], None
    inputs = summary.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(p, str) for p in inputs):
        return None, "summary.json lists no inputs and no --events was given"
    found = []
    for p in inputs:
        # The scan may have been run from another directory: try the path as written, then
        # relative to the scan directory and its parent.
        cands = [Path(p)] if Path(p).is_absolute() else [Path(p), scan_dir / p, scan_dir.parent / p]
        hit = next((c for c in cands if c.exists()), None)
        if hit is None:
            return None, f"input {p!r} listed in summary.json was not found"
        found.append(str(hit))
    return found, None


def load_events(paths: Sequence[str]) -> tuple[pl.DataFrame, int]:
    """Read the exchange logs through the project's ingestion, as the scan did.

    Parameters
    ----------
    paths : sequence of str
        Input files in any format ``distillguard.ingest`` reads.

    Returns
    -------
    events : polars.DataFrame
        ``account_id`` (str) and ``ts_ms`` (int64 epoch ms), de-duplicated by request id.
    duplicates : int
        Rows dropped as repeated request ids.
    """
    from distillguard.ingest import IngestStats, Quarantine, read_events

    import pyarrow as pa

    frames = []
    for batch in read_events(list(paths), Quarantine(None), IngestStats()):
        cols = [c for c in ("request_id", "account_id", "ts") if c in batch.schema.names]
        frames.append(pl.from_arrow(pa.Table.from_batches([batch]).select(cols)))
    if not frames:
        return pl.DataFrame(schema={"account_id": pl.String, "ts_ms": pl.Int64}), 0
    df = pl.concat(frames, how="vertical_relaxed").rename({"ts": "ts_ms"})
    return dedupe_events(df)


def dedupe_events(df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Drop repeated ``request_id`` rows, keeping the first, like the scan's de-duplication.

    Parameters
    ----------
    df : polars.DataFrame
        ``account_id``, ``ts_ms`` and optionally ``request_id``.

    Returns
    -------
    events : polars.DataFrame
        ``account_id``, ``ts_ms``.
    duplicates : int
        Number of rows dropped.
    """
    n = df.height
    if "request_id" in df.columns:
        # Rows without an id cannot be matched to a replay, so they are all kept.
        no_id = df.filter(pl.col("request_id").is_null())
        with_id = df.filter(pl.col("request_id").is_not_null()).unique(
            subset="request_id", keep="first", maintain_order=True)
        df = pl.concat([with_id, no_id])
    df = df.select(pl.col("account_id").cast(pl.String), pl.col("ts_ms").cast(pl.Int64))
    return df, n - df.height
