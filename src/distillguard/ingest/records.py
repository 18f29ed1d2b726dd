"""The strict per-record validator: the reference semantics of ingestion.

Every JSON record goes through the checks below, in this order; the first failure is the
quarantine reason:

1. the line: ``too_long`` (over :data:`MAX_LINE_BYTES`), ``too_deep`` (nesting over
   :data:`MAX_DEPTH`), ``invalid_utf8``, ``invalid_json``, ``not_an_object``. The
   non-standard tokens ``NaN``, ``Inf``, ``Infinity`` (optionally negative) and numbers too
   large for a double, which some encoders write, are tolerated as values of *unlisted*
   fields; in a listed field they are a type error (step 2);
2. each listed field in :data:`~distillguard.schema.FIELD_KINDS` order:
   ``missing:F`` (required field absent or null), ``type:F`` (wrong JSON type; booleans are
   not numbers, an integer field accepts an integral float such as ``2.0``, numbers must be
   finite, integers must fit in int64, a string-array field takes an array whose every
   element is a string), ``empty:F`` (required string is ``""``);
3. timestamps (vectorised, after the per-record pass): ``bad_ts:ts`` then
   ``bad_ts:account_created_at`` (not RFC 3339 with offset / out of range).

Unknown fields are ignored. The fast block parser (:mod:`.jsonl_block`) must give exactly
the same result as this module on any input; the property tests compare the two.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import orjson
import pyarrow as pa

from ..schema import EVENT_SCHEMA, FIELD_KINDS, LINE_COL, REQUIRED, SOURCE_COL
from .timestamps import parse_ts_column

MAX_LINE_BYTES = 1 << 20  # a longer line is quarantined as too_long, never parsed
MAX_DEPTH = 1_000  # deeper nesting is quarantined as too_deep (orjson stops at 1024; parsers recurse)
BLANK = b" \t\r"  # a line of only these is not a record (not counted anywhere)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_FIELDS: tuple[tuple[str, str], ...] = tuple(FIELD_KINDS.items())
_TS_FIELDS = tuple(name for name, kind in _FIELDS if kind == "ts")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
# A JSON string (kept as is) or a non-finite number token (replaced by a value no listed
# field accepts). Number syntax follows RFC 8259 so that invalid numbers stay invalid.
_NONFINITE = re.compile(
    rb'("[^"\\]*(?:\\.[^"\\]*)*")|-?(?:NaN|Infinity|Inf)|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)', re.S
)


@dataclass
class BlockResult:
    """What validating a block of records produced.

    Attributes
    ----------
    table : pyarrow.Table
        Valid rows, exactly :data:`~distillguard.schema.EVENT_SCHEMA`, in line order
        (possibly several chunks).
    rejects : list of (line, reason, raw)
        Quarantined records, in line order.
    n_lines : int
        Lines in the block, blank ones included (0 when not known).
    """

    table: pa.Table
    rejects: list[tuple[int, str, bytes]] = field(default_factory=list)
    n_lines: int = 0

    @property
    def n_records(self) -> int:
        """Records seen (valid + rejected); blank lines are not records."""
        return self.table.num_rows + len(self.rejects)


def nesting_depth(line: bytes) -> int:
    """Deepest ``[``/``{`` nesting of a JSON text, not counting brackets inside strings."""
    body = _JSON_STRING.sub(b'""', line)
    a = np.frombuffer(body, np.uint8)
    step = ((a == 91) | (a == 123)).astype(np.int32) - ((a == 93) | (a == 125)).astype(np.int32)
    return int(np.cumsum(step).max(initial=0))


def is_blank(line: bytes) -> bool:
    """True for an empty or whitespace-only line (not a record)."""
    return not line.strip(BLANK)


def parse_line(line: bytes) -> tuple[Any, str | None]:
    """Decode one line; returns ``(object, None)`` or ``(None, reason)``.

    Parameters
    ----------
    line : bytes
        One line without its newline. Must not be blank (see :func:`is_blank`).
    """
    if len(line) > MAX_LINE_BYTES:
        return None, "too_long"
    # Bracket count bounds the depth; only then pay for the exact depth.
    if len(line) > MAX_DEPTH and line.count(b"[") + line.count(b"{") > MAX_DEPTH and nesting_depth(line) > MAX_DEPTH:
        return None, "too_deep"
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return None, "invalid_utf8"
        obj = _loads_nonfinite(line)
        if obj is None:
            return None, "invalid_json"
    if type(obj) is not dict:
        return None, "not_an_object"
    return obj, None


def _loads_nonfinite(line: bytes) -> Any:
    """Retry a line that orjson refused, with NaN/Infinity/huge-number tokens neutralised.

    Those tokens become ``[]``: syntactically a value, so the record stays parseable, and
    a type error for every listed field. Returns None if the line is still not JSON.
    """
    changed = False

    def sub(m: re.Match) -> bytes:
        nonlocal changed
        if m.group(1) is not None:  # a string: untouched
            return m.group(1)
        num = m.group(2)
        if num is not None and math.isfinite(float(num)):
            return num
        changed = True
        return b"[]"

    fixed = _NONFINITE.sub(sub, line)
    if not changed:
        return None
    try:
        return orjson.loads(fixed)
    except orjson.JSONDecodeError:
        return None


def check_object(obj: dict) -> tuple[list | None, str | None]:
    """Type-check one decoded record; returns ``(values, None)`` or ``(None, reason)``.

    ``values`` holds one entry per field of ``FIELD_KINDS`` (``None`` when absent),
    normalised: integral floats -> int, ints in number fields -> float. Timestamps are
    returned as given (str or int); their text is checked later, vectorised.
    """
    out: list = []
    append = out.append
    for name, kind in _FIELDS:
        v = obj.get(name)
        if v is None:
            if name in REQUIRED:
                return None, "missing:" + name
            append(None)
            continue
        tv = type(v)
        if kind == "str":
            if tv is not str:
                return None, "type:" + name
            if not v and name in REQUIRED:
                return None, "empty:" + name
        elif kind == "int" or kind == "ts":
            if tv is int:
                if not INT64_MIN <= v <= INT64_MAX:
                    return None, "type:" + name
            elif tv is float:
                if not (math.isfinite(v) and v.is_integer() and INT64_MIN <= v <= INT64_MAX):
                    return None, "type:" + name
                v = int(v)
            elif not (kind == "ts" and tv is str):
                return None, "type:" + name
        elif kind == "num":
            if tv is float:
                if not math.isfinite(v):
                    return None, "type:" + name
            elif tv is int:
                v = float(v)
            else:
                return None, "type:" + name
        elif kind == "strs":
            if tv is not list or not all(type(x) is str for x in v):
                return None, "type:" + name
        elif tv is not bool:  # kind == "bool"
            return None, "type:" + name
        append(v)
    return out, None


class RowCollector:
    """Accumulates checked records column-wise and turns them into one EVENT_SCHEMA batch."""

    def __init__(self) -> None:
        self.columns: list[list] = [[] for _ in _FIELDS]
        self.lines: list[int] = []
        self.raws: list[Any] = []  # raw line, or the decoded object (dumped only if rejected)

    def add(self, values: list, line: int, raw: Any) -> None:
        for col, v in zip(self.columns, values):
            col.append(v)
        self.lines.append(line)
        self.raws.append(raw)

    def finish(self, source_index: int) -> tuple[pa.RecordBatch, list[tuple[int, str, Any]]]:
        """Build the batch; rows whose timestamps fail are returned as rejects instead."""
        n = len(self.lines)
        arrays: dict[str, pa.Array] = {}
        bad_reason: list[str | None] = [None] * n
        for (name, kind), col in zip(_FIELDS, self.columns):
            if kind == "ts":
                ms, invalid = _ts_from_python(col)
                arrays[name] = ms
                for i in np.flatnonzero(invalid.to_numpy(zero_copy_only=False)):
                    if bad_reason[i] is None:
                        bad_reason[i] = "bad_ts:" + name
            else:
                arrays[name] = pa.array(col, EVENT_SCHEMA.field(name).type)
        arrays[SOURCE_COL] = pa.array(np.full(n, source_index, np.int32))
        arrays[LINE_COL] = pa.array(np.asarray(self.lines, np.int64), pa.int64())
        batch = pa.RecordBatch.from_arrays([arrays[f.name] for f in EVENT_SCHEMA], schema=EVENT_SCHEMA)
        rejects = [(self.lines[i], r, self.raws[i]) for i, r in enumerate(bad_reason) if r is not None]
        if rejects:
            keep = np.array([r is None for r in bad_reason])
            batch = batch.filter(pa.array(keep))
        return batch, rejects


def _ts_from_python(values: list) -> tuple[pa.Array, pa.Array]:
    """parse_ts_column over a list mixing str, int and None."""
    strs = [v if type(v) is str else None for v in values]
    ints = [v if type(v) is int else None for v in values]
    ms_s, bad_s = parse_ts_column(pa.array(strs, pa.string()))
    ms_i, bad_i = parse_ts_column(pa.array(ints, pa.int64()))
    is_str = np.array([type(v) is str for v in values], bool)
    ms = np.where(is_str, ms_s.fill_null(0).to_numpy(zero_copy_only=False), ms_i.fill_null(0).to_numpy(zero_copy_only=False))
    bad = np.where(is_str, bad_s.to_numpy(zero_copy_only=False), bad_i.to_numpy(zero_copy_only=False))
    null = np.array([v is None for v in values], bool) | bad
    return pa.array(ms, pa.int64(), mask=null), pa.array(bad, pa.bool_())


def validate_lines(lines: Sequence[bytes], line_numbers: Sequence[int], source_index: int = 0) -> BlockResult:
    """The slow path: validate lines one by one with orjson (reference semantics).

    Parameters
    ----------
    lines : sequence of bytes
        Lines without newlines. Blank lines are skipped (not records).
    line_numbers : sequence of int
        1-based line number of each line.
    source_index : int
        Value of the ``_source`` column.
    """
    rows = RowCollector()
    rejects: list[tuple[int, str, bytes]] = []
    for line, no in zip(lines, line_numbers):
        if not line.strip(BLANK):
            continue
        obj, reason = parse_line(line)
        if reason is None:
            values, reason = check_object(obj)
            if reason is None:
                rows.add(values, no, line)
                continue
        rejects.append((no, reason, line))
    batch, ts_rejects = rows.finish(source_index)
    if ts_rejects:
        rejects = sorted(rejects + ts_rejects, key=lambda r: r[0])
    return BlockResult(pa.Table.from_batches([batch]), rejects)


def validate_objects(objs: Iterable[tuple[int, Any]], source_index: int = 0) -> BlockResult:
    """Validate already-decoded records (e.g. items of a JSON array body).

    Parameters
    ----------
    objs : iterable of (line, object)
        Record number and the decoded value (anything; non-dicts are ``not_an_object``).
    source_index : int
        Value of the ``_source`` column.
    """
    rows = RowCollector()
    rejects: list[tuple[int, str, bytes]] = []
    for no, obj in objs:
        if not isinstance(obj, dict):
            rejects.append((no, "not_an_object", _dump(obj)))
            continue
        values, reason = check_object(obj)
        if reason is None and not _encodable(values):
            reason = "invalid_utf8"  # a Python str may hold lone surrogates; JSON text cannot
        if reason is None:
            rows.add(values, no, obj)
        else:
            rejects.append((no, reason, _dump(obj)))
    batch, ts_rejects = rows.finish(source_index)
    if ts_rejects:
        rejects = sorted(rejects + [(no, r, _dump(obj)) for no, r, obj in ts_rejects], key=lambda r: r[0])
    return BlockResult(pa.Table.from_batches([batch]), rejects)


def _encodable(values: list) -> bool:
    try:
        for v in values:
            if type(v) is str:
                v.encode("utf-8")
            elif type(v) is list:
                for x in v:
                    x.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _dump(obj: Any) -> bytes:
    """Best-effort JSON text of a decoded record for the quarantine file."""
    try:
        return orjson.dumps(obj, default=repr, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return repr(obj).encode("utf-8", "surrogatepass")
