"""Vectorised validation of typed columns (Parquet) and text columns (CSV).

Both formats arrive column by column, so the per-record rules of :mod:`.records` are
applied as column operations. Reasons follow the same order: per field in
``FIELD_KINDS`` order ``missing`` / ``type`` / ``empty``, then ``bad_ts`` per timestamp
field; a CSV row that is not valid UTF-8 is ``invalid_utf8`` first of all.

Type rules per field kind (Parquet carries types; CSV cells are text and are cast):

===== ============================================ =========================================
kind  Parquet types accepted                        CSV text accepted
===== ============================================ =========================================
str   string, large/view string, dictionary of      any text
      string, binary holding UTF-8
int   any integer fitting int64; integral finite     ``[+-]digits``, or an integral number
      floats                                        such as ``2.0`` / ``1e3``, within int64
num   any integer or floating type; finite only     decimal / exponent notation, finite
bool  bool                                          true/false (any case), 1/0
ts    RFC 3339 text, integer epoch ms, integral     RFC 3339 text or integer epoch ms
      float, Arrow timestamp (naive = UTC)
strs  list / large list of string (no null          a JSON array of strings, e.g.
      element), list of dictionary of string        ``["bash","read_file"]``
===== ============================================ =========================================
"""

from __future__ import annotations

import math
import re
from typing import Callable

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import EVENT_SCHEMA, FIELD_KINDS, LINE_COL, REQUIRED, SOURCE_COL
from .timestamps import parse_ts_column

_INT_RE = r"^[+-]?[0-9]{1,18}$"  # always fits int64: cast without overflow checks
_NUM_RE = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_NUM_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_TRUE = ("true", "1")
_FALSE = ("false", "0")


def _np_bool(arr) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _valid(arr) -> np.ndarray:
    return _np_bool(arr.is_valid())


# --- typed (Parquet) columns ---------------------------------------------------------------


def coerce_typed(kind: str, arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Convert one Arrow column to its EVENT_SCHEMA type (timestamps: left for later).

    Returns
    -------
    values : pyarrow.Array
        EVENT_SCHEMA type (``ts`` kind: the input, to be parsed by ``parse_ts_column``);
        null where the input is null or bad.
    bad : numpy.ndarray of bool
        Non-null input that is not of the field's type.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    present = _valid(arr)
    none = np.zeros(n, bool)
    if pa.types.is_null(t):
        return pa.nulls(n, _target(kind)), none
    if kind == "ts":
        ok = (
            pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
            or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_timestamp(t)
        )
        return (arr, none) if ok else (pa.nulls(n, pa.string()), present)
    if kind == "str":
        if pa.types.is_string(t):
            return arr, none
        if pa.types.is_large_string(t) or pa.types.is_string_view(t):
            return arr.cast(pa.string()), none
        if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
            return _binary_to_string(arr)
        return pa.nulls(n, pa.string()), present
    if kind == "bool":
        return (arr, none) if pa.types.is_boolean(t) else (pa.nulls(n, pa.bool_()), present)
    if kind == "strs":
        return _strs_typed(arr, present)
    if kind == "num":
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            vals = arr.cast(pa.float64(), safe=False)
            fin = _np_bool(pc.fill_null(pc.is_finite(vals), True))
            return _mask(vals, ~fin), ~fin & present
        return pa.nulls(n, pa.float64()), present
    # kind == "int"
    if pa.types.is_integer(t):
        if pa.types.is_uint64(t):
            big = _np_bool(pc.fill_null(pc.greater(arr, pa.scalar(_INT64_MAX, pa.uint64())), False))
            vals = arr.cast(pa.int64(), safe=False)
            return _mask(vals, big), big
        return arr.cast(pa.int64()), none
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return _integral_floats(arr.cast(pa.float64(), safe=False), present)
    return pa.nulls(n, pa.int64()), present


def _target(kind: str) -> pa.DataType:
    return {"str": pa.string(), "int": pa.int64(), "num": pa.float64(), "bool": pa.bool_(), "ts": pa.string(),
            "strs": _STRS}[kind]


_STRS = pa.list_(pa.string())


def null_elements(arr) -> np.ndarray:
    """Rows of a list column holding a null element (a type error: names are strings)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    if arr.null_count == n:
        return np.zeros(n, bool)
    flat_null = _np_bool(pc.list_flatten(arr).is_null())
    out = np.zeros(n, bool)
    if flat_null.any():
        out[_np_bool_idx(pc.list_parent_indices(arr))[flat_null]] = True
    return out


def _np_bool_idx(arr) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _strs_typed(arr: pa.Array, present: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """A list column -> list<string>; other value types and null elements are type errors."""
    n = len(arr)
    t = arr.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t)):
        return pa.nulls(n, _STRS), present
    vt = t.value_type
    if pa.types.is_dictionary(vt):
        vt = vt.value_type
    if not (pa.types.is_string(vt) or pa.types.is_large_string(vt) or pa.types.is_string_view(vt)):
        return pa.nulls(n, _STRS), present
    try:
        vals = arr.cast(_STRS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # e.g. over 2 GiB of names in one batch
        return pa.nulls(n, _STRS), present
    bad = null_elements(vals)
    return _mask(vals, bad), bad


def _strs_text(arr: pa.Array, present: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """CSV cells holding JSON arrays of strings -> list<string>.

    An agent's tool set repeats on every request, so each distinct cell is decoded once.
    """
    n = len(arr)
    uniq = pc.unique(arr.drop_null())
    parsed: list = []
    for text in uniq.to_pylist():
        try:
            v = orjson.loads(text)
        except orjson.JSONDecodeError:
            v = None
        parsed.append(v if type(v) is list and all(type(x) is str for x in v) else None)
    ok_uniq = pa.array([v is not None for v in parsed], pa.bool_())
    idx = pc.index_in(arr, value_set=uniq)
    vals = pa.array(parsed, _STRS).take(idx)
    ok = _np_bool(pc.fill_null(ok_uniq.take(idx), False))
    bad = present & ~ok
    return _mask(vals, bad), bad


def _mask(arr: pa.Array, bad: np.ndarray) -> pa.Array:
    if not bad.any():
        return arr
    return pc.if_else(pa.array(bad), pa.nulls(len(arr), arr.type), arr)


def _integral_floats(vals: pa.Array, present: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    v = vals.fill_null(0.0).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        # 2**63 itself is a double but not an int64: strict bound.
        ok = np.isfinite(v) & (v == np.floor(v)) & (v >= -(2.0**63)) & (v < 2.0**63)
    bad = ~ok & present
    return pa.array(np.where(ok, v, 0).astype(np.int64), pa.int64(), mask=~(ok & present)), bad


def _binary_to_string(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Binary -> string; cells that are not UTF-8 become null and bad (type error)."""
    try:
        return arr.cast(pa.string()), np.zeros(len(arr), bool)
    except pa.ArrowInvalid:
        vals = arr.to_pylist()
        out, bad = [], np.zeros(len(vals), bool)
        for i, v in enumerate(vals):
            try:
                out.append(None if v is None else v.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(None)
                bad[i] = True
        return pa.array(out, pa.string()), bad


# --- text (CSV) columns --------------------------------------------------------------------


def coerce_text(kind: str, arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Cast one CSV text column (string, nulls for empty cells) to its field's type.

    Same return convention as :func:`coerce_typed`.
    """
    n = len(arr)
    present = _valid(arr)
    none = np.zeros(n, bool)
    if kind == "str":
        return arr, none
    if kind == "strs":
        return _strs_text(arr, present)
    if kind == "bool":
        low = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
        is_t = _np_bool(pc.fill_null(pc.is_in(low, pa.array(_TRUE)), False))
        is_f = _np_bool(pc.fill_null(pc.is_in(low, pa.array(_FALSE)), False))
        ok = is_t | is_f
        return pa.array(is_t, pa.bool_(), mask=~ok), present & ~ok
    trimmed = pc.utf8_trim_whitespace(arr)
    if kind == "ts":
        # Integer text is epoch ms; anything else must be RFC 3339.
        is_int = _np_bool(pc.fill_null(pc.match_substring_regex(trimmed, _INT_RE), False))
        ms, invalid = parse_ts_column(trimmed)
        if is_int.any():
            ms_i, inv_i = parse_ts_column(pc.if_else(pa.array(is_int), trimmed, pa.nulls(n, pa.string())).cast(pa.int64()))
            ms = pc.if_else(pa.array(is_int), ms_i, ms)
            invalid = pa.array(np.where(is_int, _np_bool(inv_i), _np_bool(invalid)))
        return ParsedTs(ms, _np_bool(invalid), present), none
    if kind == "int":
        is_int = _np_bool(pc.fill_null(pc.match_substring_regex(trimmed, _INT_RE), False))
        vals = pc.if_else(pa.array(is_int), trimmed, pa.nulls(n, pa.string())).cast(pa.int64())
        rest = present & ~is_int
        if not rest.any():
            return vals, none
        # Rare: long integers and integral floats ("2.0", "1e3"): decide cell by cell.
        out = vals.to_pylist()
        bad = np.zeros(n, bool)
        texts = trimmed.to_pylist()
        for i in np.flatnonzero(rest):
            v = _text_to_int(texts[i])
            if v is None:
                bad[i] = True
            else:
                out[i] = v
        return pa.array(out, pa.int64()), bad
    # kind == "num"
    is_num = _np_bool(pc.fill_null(pc.match_substring_regex(trimmed, _NUM_RE), False))
    vals = pc.if_else(pa.array(is_num), trimmed, pa.nulls(n, pa.string())).cast(pa.float64())
    fin = _np_bool(pc.fill_null(pc.is_finite(vals), True))
    bad = present & (~is_num | ~fin)
    return _mask(vals, ~fin), bad


def _text_to_int(s: str) -> int | None:
    """Integer value of a number text (integral floats too), or None."""
    s = s.strip()
    if _NUM_TEXT.fullmatch(s) is None:  # Python would also take "1_000", "٣", "nan"
        return None
    try:
        v = int(s)
    except ValueError:
        f = float(s)
        if not (math.isfinite(f) and f.is_integer()):
            return None
        v = int(f)
    return v if _INT64_MIN <= v <= _INT64_MAX else None


class ParsedTs:
    """A timestamp column already normalised: epoch ms, invalid mask, presence mask."""

    def __init__(self, ms: pa.Array, invalid: np.ndarray, present: np.ndarray):
        self.ms, self.invalid, self.present = ms, invalid, present


# --- assembling rows -----------------------------------------------------------------------


def assemble(
    cols: dict[str, object],
    bad: dict[str, np.ndarray],
    n: int,
    line_numbers: np.ndarray,
    source_index: int,
    raw_of: Callable[[int], bytes],
    pre_reason: list[str | None] | None = None,
) -> tuple[pa.Table, list[tuple[int, str, bytes]]]:
    """Apply the record rules to coerced columns; split valid rows from rejects.

    Parameters
    ----------
    cols : dict
        Field -> coerced column (absent fields may be missing from the dict).
    bad : dict
        Field -> mask of type errors from coercion.
    n : int
        Rows.
    line_numbers : numpy.ndarray
        Line / row number of each row.
    source_index : int
    raw_of : callable
        Row position -> raw text for the quarantine (only called for rejects).
    pre_reason : list, optional
        Reasons decided before column checks (e.g. ``invalid_utf8``), None elsewhere.

    Returns
    -------
    table : pyarrow.Table
        Valid rows, EVENT_SCHEMA.
    rejects : list of (line, reason, raw)
    """
    reason = np.full(n, None, dtype=object) if pre_reason is None else np.array(pre_reason, dtype=object)
    open_ = np.array([r is None for r in reason], bool)

    def fail(mask: np.ndarray, code: str) -> None:
        hit = mask & open_
        if hit.any():
            reason[hit] = code
            open_[hit] = False

    out: dict[str, pa.Array] = {}
    ts_checks: list[tuple[str, np.ndarray]] = []
    for name, kind in FIELD_KINDS.items():
        col = cols.get(name)
        if col is None:
            col = pa.nulls(n, pa.string() if kind == "ts" else EVENT_SCHEMA.field(name).type)
        if isinstance(col, ParsedTs):
            present = col.present
        else:
            present = _valid(col) | bad.get(name, np.zeros(n, bool))
        if name in REQUIRED:
            fail(~present, "missing:" + name)
        fail(bad.get(name, np.zeros(n, bool)), "type:" + name)
        if kind == "str" and name in REQUIRED:
            fail(_np_bool(pc.fill_null(pc.equal(pc.binary_length(col), 0), False)), "empty:" + name)
        if kind == "ts":
            if isinstance(col, ParsedTs):
                ms, invalid = col.ms, col.invalid
            else:
                ms, inv = parse_ts_column(col)
                invalid = _np_bool(inv)
            out[name] = ms
            ts_checks.append((name, invalid))
        else:
            out[name] = col
    for name, invalid in ts_checks:
        fail(invalid, "bad_ts:" + name)
    out[SOURCE_COL] = pa.array(np.full(n, source_index, np.int32))
    out[LINE_COL] = pa.array(np.asarray(line_numbers, np.int64))
    table = pa.Table.from_arrays([out[f.name] for f in EVENT_SCHEMA], schema=EVENT_SCHEMA)
    rejected = np.flatnonzero(~open_)
    if rejected.size == 0:
        return table, []
    rejects = [(int(line_numbers[i]), str(reason[i]), raw_of(int(i))) for i in rejected]
    return table.filter(pa.array(open_)), rejects


def row_json(table: pa.Table | pa.RecordBatch) -> Callable[[int], bytes]:
    """Raw-record text for quarantine: the row as a JSON object (values as read)."""

    def raw_of(i: int) -> bytes:
        row = {name: _cell(table.column(name), i) for name in table.column_names}
        try:
            return orjson.dumps(row, default=repr, option=orjson.OPT_NON_STR_KEYS)
        except (TypeError, orjson.JSONEncodeError):  # e.g. lone surrogates, huge ints
            return repr(row).encode("utf-8", "replace")

    return raw_of


def _cell(col, i: int):
    """Python value of one cell; the stored number for dates/times Python cannot represent."""
    try:
        return col[i].as_py()
    except Exception:  # noqa: BLE001 - out-of-range temporal values, exotic types
        pass
    try:
        width = col.type.bit_width
        return col.slice(i, 1).view(pa.int64() if width == 64 else pa.int32())[0].as_py()
    except Exception:  # noqa: BLE001
        return f"<unprintable {col.type}>"
