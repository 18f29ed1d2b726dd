"""Vectorised timestamp normalisation: RFC 3339 text or epoch milliseconds -> int64 ms UTC.

Accepted (shared/spec/events.md): RFC 3339 date-time *with* an offset -- ``Z``/``z`` or
``+hh:mm``/``-hh:mm`` -- with ``T``, ``t`` or a space between date and time and 0 to 9
fractional-second digits; or an integer count of milliseconds since the Unix epoch.
Everything must fall within years 0001-9999 UTC so that later stages can always print it
back as RFC 3339. Fractions finer than a millisecond are truncated (floor). Leap seconds
(``:60``) are rejected, as Python's ``datetime`` does.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

MIN_MS = -62135596800000  # 0001-01-01T00:00:00Z
MAX_MS = 253402300799999  # 9999-12-31T23:59:59.999Z

# RE2 syntax: \d is ASCII-only and $ anchors at the very end (no trailing newline).
RFC3339_RE = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"

_UNIT_PER_MS = {"s": None, "ms": 1, "us": 1000, "ns": 1000000}


def parse_ts_column(arr: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """Normalise a column of timestamps to int64 epoch milliseconds (UTC).

    Parameters
    ----------
    arr : pyarrow.Array or ChunkedArray
        RFC 3339 strings (``string``/``large_string``/``string_view``), integer epoch
        milliseconds (any integer type), integral floats (taken as epoch ms), or an Arrow
        ``timestamp`` column (a naive one is taken as UTC). Nulls stay null.

    Returns
    -------
    ms : pyarrow.Int64Array
        Epoch milliseconds; null where the input is null or invalid.
    invalid : pyarrow.BooleanArray
        True where the input is non-null but not an acceptable timestamp (no nulls).

    Examples
    --------
    >>> ms, bad = parse_ts_column(pa.array(["2026-11-01T09:30:00.123Z", "yesterday", None]))
    >>> ms.to_pylist(), bad.to_pylist()
    ([1793525400123, None, None], [False, True, False])
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    t = arr.type
    n = len(arr)
    if arr.null_count == n:  # e.g. an optional field nobody sent: nothing to parse
        return pa.nulls(n, pa.int64()), pa.array(np.zeros(n, bool))
    present = _present(arr)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        ms, ok = _parse_rfc3339(arr.cast(pa.string()) if not pa.types.is_string(t) else arr)
    elif pa.types.is_integer(t):
        if pa.types.is_unsigned_integer(t):
            vals = arr.cast(pa.uint64()).fill_null(0).to_numpy(zero_copy_only=False)
            ok = vals <= np.uint64(MAX_MS)
            ms = np.where(ok, vals, 0).astype(np.int64)
        else:
            ms = arr.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
            ok = (ms >= MIN_MS) & (ms <= MAX_MS)
    elif pa.types.is_floating(t):
        vals = arr.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(vals) & (vals == np.floor(vals)) & (vals >= MIN_MS) & (vals <= MAX_MS)
        ms = np.where(ok, vals, 0).astype(np.int64)
    elif pa.types.is_timestamp(t):
        raw = arr.view(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False) if n else np.zeros(0, np.int64)
        per = _UNIT_PER_MS[t.unit]
        if per is None:  # seconds: guard the multiplication against overflow
            ok = (raw >= MIN_MS // 1000) & (raw <= MAX_MS // 1000)
            ms = np.where(ok, raw, 0) * 1000
        else:
            ms = raw // per  # floor, also for instants before 1970
            ok = (ms >= MIN_MS) & (ms <= MAX_MS)
    elif pa.types.is_null(t):
        ms, ok = np.zeros(n, np.int64), np.zeros(n, bool)
    else:  # bool, nested, binary, ...: never a timestamp
        ms, ok = np.zeros(n, np.int64), np.zeros(n, bool)
    ok = ok & present
    invalid = present & ~ok
    return pa.array(ms, pa.int64(), mask=~ok), pa.array(invalid, pa.bool_())


def parse_ts_column_repeated(arr: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """:func:`parse_ts_column` for a column of few distinct texts (an account's creation time
    repeats on every exchange of the account): each distinct text is parsed once."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if not pa.types.is_string(arr.type) or arr.null_count == len(arr):
        return parse_ts_column(arr)
    enc = pc.dictionary_encode(arr)
    ms, invalid = parse_ts_column(enc.dictionary)
    # A null index (a null input) takes a null: the time stays null and it is not invalid.
    return ms.take(enc.indices), invalid.take(enc.indices).fill_null(False)


def _present(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.ones(len(arr), bool)
    return arr.is_valid().to_numpy(zero_copy_only=False)


def _parse_rfc3339(s: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
    """(epoch ms, ok) for a ``string`` array; the layout is checked by RE2, the numbers by numpy."""
    n = len(s)
    ms = np.zeros(n, np.int64)
    if n == 0:
        return ms, np.zeros(0, bool)
    _, off_buf, data_buf = s.buffers()
    offsets = np.frombuffer(off_buf, np.int32)[s.offset : s.offset + n + 1].astype(np.int64)
    data = np.frombuffer(data_buf if data_buf is not None else b"", np.uint8)
    # The usual layouts ("...T09:30:00Z", "...T09:30:00.123Z") are recognised with numpy; only
    # other texts need the regex (same acceptance: both layouts are cases of RFC3339_RE).
    present = _present(s)
    ok = _common_layout(data, offsets, present)
    rest = np.flatnonzero(~ok & present)
    if rest.size:
        ok[rest] = pc.match_substring_regex(s.take(pa.array(rest)), RFC3339_RE).fill_null(False).to_numpy(zero_copy_only=False)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return ms, ok
    st = offsets[idx]
    en = offsets[idx + 1]
    # Fixed-width "YYYY-MM-DDTHH:MM:SS" prefix: one 2-D gather, then digit arithmetic.
    head = data[st[:, None] + np.arange(19)].astype(np.int64) - 48

    def num(a: int, b: int) -> np.ndarray:
        out = head[:, a]
        for k in range(a + 1, b):
            out = out * 10 + head[:, k]
        return out

    year, month, day = num(0, 4), num(5, 7), num(8, 10)
    hour, minute, sec = num(11, 13), num(14, 16), num(17, 19)
    last = data[en - 1]
    is_z = (last == ord("Z")) | (last == ord("z"))
    tz_len = np.where(is_z, 1, 6)
    # Offset "+hh:mm" sits in the last six bytes (absent for Z: masked below).
    tz = data[np.maximum(en - 6, st)[:, None] + np.arange(6)].astype(np.int64)
    off_h = (tz[:, 1] - 48) * 10 + (tz[:, 2] - 48)
    off_m = (tz[:, 4] - 48) * 10 + (tz[:, 5] - 48)
    sign = np.where(tz[:, 0] == ord("-"), -1, 1)
    off_s = np.where(is_z, 0, sign * (off_h * 3600 + off_m * 60))
    # Fraction: bytes 20.. up to the zone; only the first three digits matter (floor to ms).
    n_frac = en - st - 19 - tz_len - 1  # digits after the dot; -1 when there is no dot
    frac_ms = np.zeros(idx.size, np.int64)
    for k, weight in enumerate((100, 10, 1)):
        has = n_frac > k
        d = data[np.where(has, st + 20 + k, st)].astype(np.int64) - 48
        frac_ms += np.where(has, d * weight, 0)
    good = (
        (month >= 1) & (month <= 12) & (day >= 1) & (day <= _days_in_month(year, month))
        & (hour <= 23) & (minute <= 59) & (sec <= 59)
        & (is_z | ((off_h <= 23) & (off_m <= 59)))
    )
    days = _days_from_civil(year, np.clip(month, 1, 12), day)
    total = ((days * 86400 + hour * 3600 + minute * 60 + sec) - off_s) * 1000 + frac_ms
    good &= (total >= MIN_MS) & (total <= MAX_MS)
    ms[idx] = np.where(good, total, 0)
    ok[idx] = good
    return ms, ok


_DIGITS_AT = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])


def _common_layout(data: np.ndarray, offsets: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Rows that are exactly ``YYYY-MM-DD[Tt ]HH:MM:SS[.fff][Zz]`` (digits checked, not ranges)."""
    st, ln = offsets[:-1], np.diff(offsets)
    cand = present & ((ln == 20) | (ln == 24))
    out = np.zeros(st.size, bool)
    i = np.flatnonzero(cand)
    if i.size == 0 or data.size == 0:
        return out
    b = data[np.minimum(st[i, None] + np.arange(24), data.size - 1)]
    d = b[:, _DIGITS_AT]
    good = ((d >= 48) & (d <= 57)).all(axis=1)
    good &= (b[:, 4] == 45) & (b[:, 7] == 45) & (b[:, 13] == 58) & (b[:, 16] == 58)
    good &= (b[:, 10] == 84) | (b[:, 10] == 116) | (b[:, 10] == 32)
    z20 = (b[:, 19] == 90) | (b[:, 19] == 122)
    frac = (b[:, 19] == 46) & ((b[:, 20:23] >= 48) & (b[:, 20:23] <= 57)).all(axis=1)
    z24 = (b[:, 23] == 90) | (b[:, 23] == 122)
    good &= np.where(ln[i] == 20, z20, frac & z24)
    out[i] = good
    return out


def _days_in_month(year: np.ndarray, month: np.ndarray) -> np.ndarray:
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    table = np.array([31, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])  # index 0 unused
    dim = table[np.clip(month, 0, 12)]
    return np.where((month == 2) & leap, 29, dim)


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


DAY_MS = 86_400_000


# A batch scan reads archives and logs made elsewhere (other clocks, generated test traffic), so
# it accepts events up to a year ahead of its own clock; the service, which sees events as they
# arrive, keeps the window's one-day default. Neither widens the replay's cost: it walks active
# epochs only.
SCAN_MAX_SKEW_MINUTES = 366 * 1440.0


@dataclass(frozen=True)
class EventTimeWindow:
    """Policy bounds on event time: the plausible window is ``[now - max_age, now + max_skew]``.

    Years 1-9999 are *parseable* but not *plausible*: a gateway with a bad clock, a replayed
    backfill or a hostile ingest token can send ``9999-12-31`` or epoch 0, and one such record
    must neither stretch the replay's event-time span nor move the service's replay horizon
    (which would rewrite other accounts' decisions). Records outside the window are quarantined
    (scan) or refused per record (service) with reason ``ts_out_of_range``. The bounds come
    from policy (``scan --max-event-age-days/--max-clock-skew-minutes``, ``serve`` the same,
    ``ServeConfig``), never from the data, so no record can widen them.

    Parameters
    ----------
    max_age_days : float, default 3660
        Oldest accepted event, in days before ``now`` (about ten years: archived logs scan).
    max_skew_minutes : float, default 1440
        Newest accepted event, in minutes after ``now`` (clock skew between gateways).
    now_ms : int, optional
        The reference time in epoch ms; default the wall clock when the window is applied
        (ingest time). Pin it for reproducible scans of old logs.
    """

    max_age_days: float = 3660.0
    max_skew_minutes: float = 1440.0
    now_ms: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_age_days) and self.max_age_days > 0):
            raise ValueError("max_age_days must be a positive number of days")
        if not (math.isfinite(self.max_skew_minutes) and self.max_skew_minutes >= 0):
            raise ValueError("max_skew_minutes must be a non-negative number of minutes")

    @classmethod
    def for_scan(cls, max_age_days: float = 3660.0, max_skew_minutes: float = SCAN_MAX_SKEW_MINUTES) -> "EventTimeWindow":
        """The batch scan's default window: ten years back, a year ahead of this machine's clock."""
        return cls(max_age_days, max_skew_minutes)

    def pinned(self) -> "EventTimeWindow":
        """This window with ``now`` fixed to the current time (one run, one window: every batch
        and every Spark task of a scan applies the same bounds)."""
        return self if self.now_ms is not None else EventTimeWindow(self.max_age_days, self.max_skew_minutes, int(time.time() * 1000))

    def bounds(self) -> tuple[int, int]:
        """(lowest, highest) accepted epoch ms, clipped to the parseable range."""
        now = int(time.time() * 1000) if self.now_ms is None else int(self.now_ms)
        lo = now - int(self.max_age_days * DAY_MS)
        hi = now + int(self.max_skew_minutes * 60_000)
        return max(lo, MIN_MS), min(hi, MAX_MS)

    def outside(self, ms: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Mask of non-null times outside the window (nulls are not outside)."""
        lo, hi = self.bounds()
        if isinstance(ms, pa.ChunkedArray):
            ms = ms.combine_chunks() if ms.num_chunks != 1 else ms.chunk(0)
        v = ms.fill_null(lo).to_numpy(zero_copy_only=False)
        return (v < lo) | (v > hi)


OUT_OF_RANGE = "ts_out_of_range"


def split_out_of_range(table: pa.Table, window: EventTimeWindow | None) -> tuple[pa.Table, list[tuple[int, str, bytes]]]:
    """(plausible rows, rejects ``(line, reason, raw)`` for the others): ``ts_out_of_range``
    outside ``window``, ``bad_id:account_id`` for an account id holding a control character.

    The raw text of a reject is rebuilt from its identifying fields (the reader keeps no line
    text for valid rows); ``line`` leads to the original in the input.
    """
    if window is None or table.num_rows == 0:
        return table, []
    bad_ts = window.outside(table.column("ts"))
    # An account id is written into accounts.csv, Redis keys and the console: control characters
    # (an escaped \u0000 in JSON) have no place there and are refused with the same policy checks.
    bad_id = pc.match_substring_regex(table.column("account_id"), CONTROL_RE).to_numpy(zero_copy_only=False).astype(bool)
    bad = bad_ts | bad_id
    if not bad.any():
        return table, []
    idx = np.flatnonzero(bad)
    sub = table.select(["_line", "request_id", "account_id", "ts"]).take(pa.array(idx)).to_pylist()
    rejects = [(int(r["_line"]), OUT_OF_RANGE if bad_ts[i] else "bad_id:account_id",
                orjson.dumps({"request_id": r["request_id"], "account_id": r["account_id"], "ts": r["ts"]}))
               for i, r in zip(idx, sub)]
    return table.filter(pa.array(~bad)), rejects


CONTROL_RE = r"[\x00-\x1f\x7f]"
