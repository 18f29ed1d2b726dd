"""Property tests: hostile input never crashes ingestion, and the fast path == the slow one."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pcsv
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import distillguard.ingest.jsonl_block as jb
import distillguard.ingest.reader as reader
import distillguard.ingest.timestamps as timestamps
from distillguard.ingest import (
    MAX_DEPTH,
    IngestStats,
    Quarantine,
    ndjson_records,
    parse_block,
    parse_block_slow,
    parse_ts_column,
    read_events,
    records_to_batch,
)
from distillguard.schema import EVENT_SCHEMA, FIELD_KINDS, OPTIONAL

# DG_HYPOTHESIS_EXAMPLES=5000 for a long bug hunt; the default keeps the suite quick.
EXAMPLES = int(os.environ.get("DG_HYPOTHESIS_EXAMPLES", "80"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- values ---------------------------------------------------------------------------------

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

# Any code point: control characters, NUL, U+2028, and lone surrogates (which UTF-8 text
# cannot hold: they reach the parsers as "\ud800" escapes or as invalid bytes).
any_char = st.characters(exclude_categories=())
any_text = st.text(any_char, max_size=40)
big_ints = st.integers(min_value=-(2**70), max_value=2**70)
any_float = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def rfc3339(draw) -> str:
    d = draw(st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)))
    sep = draw(st.sampled_from("Tt "))
    frac = draw(st.sampled_from(["", "." + draw(st.text("0123456789", min_size=1, max_size=9))]))
    off = draw(st.sampled_from(["Z", "z", "+00:00", "+02:00", "-05:30", "+23:59", "+14:00"]))
    return d.strftime("%Y-%m-%d") + sep + d.strftime("%H:%M:%S") + frac + off


ts_values = st.one_of(
    rfc3339(),
    st.integers(min_value=-62135596800000, max_value=253402300799999),
    st.integers(min_value=-(2**64), max_value=2**64),
    any_text,
    st.sampled_from(["2026-02-29T00:00:00Z", "2026-11-01T09:30:00", "2026-11-01T09:30:00.Z", "1793525400000"]),
    st.floats(min_value=-1e15, max_value=1e15).map(lambda f: float(int(f))),
)

VALUES = {
    "str": any_text,
    "int": st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.integers(-5, 5).map(float)),
    "num": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**60), 2**60)),
    "bool": st.booleans(),
    "ts": ts_values,
    # Mostly well-formed name lists, sometimes with a null or a non-string element.
    "strs": st.lists(st.one_of(any_text, any_text, any_text, st.none(), st.integers(-3, 3)), max_size=4),
}
json_scalar = st.one_of(st.none(), st.booleans(), big_ints, any_float, any_text)
json_any = st.recursive(json_scalar, lambda c: st.lists(c, max_size=3) | st.dictionaries(any_text, c, max_size=3), max_leaves=8)


@st.composite
def record(draw) -> dict:
    r = {
        "request_id": draw(st.text(any_char, min_size=1, max_size=12)),
        "ts": draw(rfc3339()),
        "account_id": draw(st.text(any_char, min_size=1, max_size=8)),
    }
    for name in draw(st.lists(st.sampled_from(sorted(OPTIONAL)), max_size=8, unique=True)):
        r[name] = draw(VALUES[FIELD_KINDS[name]])
    # Break it in one way, maybe: drop / null / mistype a field, add unknown fields.
    mode = draw(st.integers(0, 9))
    name = draw(st.sampled_from(sorted(FIELD_KINDS)))
    if mode == 0:
        r.pop(name, None)
    elif mode == 1:
        r[name] = None
    elif mode == 2:
        r[name] = draw(json_any)
    elif mode == 3:
        r[name] = draw(st.sampled_from(["", "64500", "true", 2.0, 1.5, True, False, [], {}, 2**63, -(2**63) - 1]))
    elif mode == 4:
        r[draw(any_text)] = draw(json_any)
    return r


def dumps(r: dict, style: int) -> bytes:
    if style == 0:
        return orjson.dumps(r, option=orjson.OPT_NON_STR_KEYS) if _orjson_ok(r) else json.dumps(r).encode()
    if style == 1:
        return json.dumps(r, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(r, separators=(",", ":"), sort_keys=True).encode()  # writes NaN/Infinity tokens


def _orjson_ok(r) -> bool:
    try:
        orjson.dumps(r)
        return True
    except (TypeError, orjson.JSONEncodeError):
        return False


HOSTILE = [
    b"",
    b"   ",
    b"\t\r",
    b"\r",
    b"\x00",
    b"{}",
    b"[]",
    b"null",
    b"true",
    b"12",
    b'"str"',
    b"{",
    b"}",
    b"{}}",
    b"{} {}",
    b'{"request_id":"a","ts":1,"account_id":"b"} {"request_id":"c","ts":1,"account_id":"d"}',
    b'{"request_id":"a","ts":1,"account_id":"b"},',
    b'{"request_id":"a","ts":1,"account_id":"b","x":NaN}',
    b'{"request_id":"a","ts":1,"account_id":"b","x":-Inf,"y":[Infinity,-NaN]}',
    b'{"request_id":"a","ts":1,"account_id":"b","temperature":NaN}',
    b'{"request_id":"a","ts":1,"account_id":"b","x":' + b"9" * 400 + b"}",
    b'{"request_id":"a","ts":1,"account_id":"b","temperature":' + b"9" * 400 + b"}",
    b'{"request_id":"a","ts":1,"account_id":"b","x":1e400}',
    b'{"request_id":"a","ts":1,"account_id":"b","x":01}',
    b'{"request_id":"a","t\\u0073":1,"account_id":"b"}',
    b'{"request_id":"a","ts":1,"t\\u0073":2,"account_id":"b"}',
    b'{"request_id":"a","ts":1,"account_id":"b","account_id":"c"}',
    b'{"request_id":"a","ts":1,"account_id":"\\ud800"}',
    b'{"request_id":"a","ts":1,"account_id":"\\ud83d\\ude00"}',
    b'{"request_id":"a","ts":1,"account_id":"b\xff"}',
    b'{"request_id":"a","ts":1,"account_id":"\xc0\x80"}',
    b'{"request_id":"a","ts":1,"account_id":"\xed\xa0\x80"}',
    b'{"request_id":"a","ts":1,"account_id":"b\x01"}',
    b'{"request_id":"a","ts":1,"account_id":"b"}\x00',
    b'\xef\xbb\xbf{"request_id":"a","ts":1,"account_id":"b"}',
    b'{"request_id":"a","ts":1.0,"account_id":"b","asn":7.0}',
    b'{"request_id":"a","ts":1,"account_id":"b","asn":9007199254740993}',
    b'{"request_id":"a","ts":1,"account_id":"b","seed":-9223372036854775808}',
    b'{"request_id":"a","ts":1,"account_id":"b","seed":9223372036854775808}',
    b'{"request_id":"a","ts":"1","account_id":"b"}',
    b'{"request_id":"a","ts":1,"account_id":"b","x":"' + b"\\u0000" * 50 + b'"}',
    b'{"request_id":"a","ts":1,"account_id":"b","x":' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}",
    b'{"request_id":"a","ts":1,"account_id":"b","x":' + b"[" * (MAX_DEPTH + 5) + b"]" * (MAX_DEPTH + 5) + b"}",
    b'{"x":"' + b"[" * (MAX_DEPTH + 5) + b'","request_id":"a","ts":1,"account_id":"b"}',
    b'{"request_id":"a","ts":1,"account_id":"b","prompt":"' + b"y" * 30000 + b'"}',
]


@st.composite
def lines(draw) -> list[bytes]:
    out = []
    for _ in range(draw(st.integers(0, 14))):
        kind = draw(st.integers(0, 9))
        if kind <= 4:
            out.append(dumps(draw(record()), draw(st.integers(0, 2))))
        elif kind == 5:
            good = dumps(draw(record()), 0)
            cut = draw(st.integers(0, len(good)))
            out.append(good[:cut])
        elif kind == 6:
            good = bytearray(dumps(draw(record()), 0))
            pos = draw(st.integers(0, len(good)))
            good[pos:pos] = draw(st.binary(min_size=1, max_size=3).filter(lambda b: b"\n" not in b))
            out.append(bytes(good))
        elif kind == 7:
            out.append(draw(st.sampled_from(HOSTILE)))
        elif kind == 8:
            pad = draw(st.sampled_from([b" ", b"\t", b"\r", b"  \r"]))
            good = dumps(draw(record()), 0)
            out.append(draw(st.sampled_from([pad + good, good + pad])))
        else:
            out.append(draw(st.binary(max_size=30)).replace(b"\n", b""))
    return out


def non_blank(ls: list[bytes]) -> int:
    return sum(1 for x in ls if x.strip(b" \t\r"))


@contextmanager
def patched(module, **values):
    old = {k: getattr(module, k) for k in values}
    for k, v in values.items():
        setattr(module, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(module, k, v)


def assert_same(fast, slow) -> None:
    assert fast.table.schema.equals(EVENT_SCHEMA)
    assert slow.table.schema.equals(EVENT_SCHEMA)
    assert fast.table.to_pylist() == slow.table.to_pylist()
    assert fast.rejects == slow.rejects


# --- properties -----------------------------------------------------------------------------


@SETTINGS
@given(lines(), st.booleans(), st.integers(1, 10**6))
def test_fast_path_equals_slow_path(ls, final_newline, first_line):
    block = b"\n".join(ls) + (b"\n" if final_newline and ls else b"")
    slow = parse_block_slow(block, first_line)
    fast = parse_block(block, first_line)
    assert_same(fast, slow)
    assert slow.n_records == non_blank(ls)
    lines_ = slow.table.column("_line").to_pylist() + [r[0] for r in slow.rejects]
    assert sorted(lines_) == [first_line + i for i, x in enumerate(ls) if x.strip(b" \t\r")]


@settings(max_examples=max(EXAMPLES // 2, 10), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines())
def test_fast_path_bisection_equals_slow_path(ls):
    """Force bisection down to single lines, on a parser that may have adapted its types."""
    block = b"\n".join(ls)
    with patched(jb, MIN_SPLIT_LINES=1, BISECT_BUDGET=100):
        parser = jb.JsonBlockParser()
        parser.parse(b'{"request_id":"a","ts":1,"account_id":"b","asn":1.0}')  # ts -> int, ints as floats
        assert_same(parser.parse(block), parse_block_slow(block))
        assert_same(jb.JsonBlockParser(use_threads=False).parse(block), parse_block_slow(block))


@settings(max_examples=max(EXAMPLES // 3, 10), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines(), st.sampled_from(["jsonl", "jsonl.gz", "jsonl.zst"]), st.integers(16, 400), st.data())
def test_read_events_never_crashes_and_counts(ls, ext, block_bytes, data):
    raw = b"\n".join(ls)
    packed = {"jsonl": raw, "jsonl.gz": gzip.compress(raw), "jsonl.zst": zstandard.ZstdCompressor().compress(raw)}[ext]
    truncate = ext != "jsonl" and data.draw(st.booleans())
    if truncate:
        packed = packed[: data.draw(st.integers(0, len(packed)))]
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / f"in.{ext}"
        p.write_bytes(packed)
        stats = IngestStats()
        with patched(reader, BLOCK_BYTES=block_bytes), Quarantine(Path(tmp) / "q.jsonl") as q:
            batches = list(read_events([str(p)], q, stats, batch_rows=7))
        qlines = [orjson.loads(x) for x in (Path(tmp) / "q.jsonl").read_bytes().splitlines()]
    assert stats.read == stats.valid + stats.quarantined
    assert stats.valid == sum(b.num_rows for b in batches)
    assert stats.quarantined == len(qlines)
    assert all(b.schema.equals(EVENT_SCHEMA) and 0 < b.num_rows <= 7 for b in batches)
    assert all(set(x) == {"source", "line", "reason", "record"} and len(x["record"].encode()) <= 2048 for x in qlines)
    if not truncate:
        expect = parse_block_slow(raw.removeprefix(b"\xef\xbb\xbf"))
        got = pa.Table.from_batches(batches, schema=EVENT_SCHEMA)
        assert got.to_pylist() == expect.table.to_pylist()
        assert [(x["line"], x["reason"]) for x in qlines] == [(r[0], r[1]) for r in expect.rejects]
        assert stats.read == non_blank(raw.removeprefix(b"\xef\xbb\xbf").split(b"\n"))
    else:
        got_lines = [ln for b in batches for ln in b.column("_line").to_pylist()]
        assert got_lines == sorted(got_lines)


@SETTINGS
@given(st.lists(st.one_of(record(), json_any, st.binary(max_size=20), any_text), max_size=10))
def test_records_to_batch_never_crashes(items):
    stats = IngestStats()
    with Quarantine(None) as q:
        batch = records_to_batch(items, "http", q, stats, first_line=5)
    assert batch.schema.equals(EVENT_SCHEMA)
    assert stats.read == stats.valid + stats.quarantined == q.count + batch.num_rows
    assert batch.column("_line").to_pylist() == sorted(batch.column("_line").to_pylist())


@SETTINGS
@given(st.binary(max_size=200), st.sampled_from([bytes, bytearray]))
def test_ndjson_records_counts_lines_as_split_does(body, kind):
    # A body's records are its lines; a final newline ends the last one and opens none.
    expect = 0 if not body else len(body.split(b"\n")) - (1 if body.endswith(b"\n") else 0)
    assert ndjson_records(kind(body)) == expect


@SETTINGS
@given(
    st.lists(
        st.lists(st.one_of(st.none(), st.text(max_size=40), big_ints.map(str), any_float.map(str)), min_size=4, max_size=4),
        max_size=12,
    )
)
def test_csv_never_crashes(rows):
    table = pa.table({name: pa.array([r[i] for r in rows], pa.string()) for i, name in enumerate(["request_id", "ts", "asn", "temperature"])})
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "in.csv"
        pcsv.write_csv(table, p)
        stats = IngestStats()
        with Quarantine(None) as q:
            batches = list(read_events([str(p)], q, stats))
    assert stats.read == stats.valid + stats.quarantined
    assert stats.valid == sum(b.num_rows for b in batches)
    assert stats.valid == 0  # account_id is absent: every row is rejected, none lost
    assert stats.read == len(rows)


@st.composite
def ts_case(draw):
    y, mo = draw(st.integers(0, 9999)), draw(st.integers(0, 13))
    d, h, mi, s = draw(st.integers(0, 32)), draw(st.integers(0, 25)), draw(st.integers(0, 61)), draw(st.integers(0, 61))
    frac = draw(st.text("0123456789", max_size=10))
    sign = draw(st.sampled_from("+-"))
    oh, om = draw(st.integers(0, 25)), draw(st.integers(0, 61))
    z = draw(st.booleans())
    text = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}" + (f".{frac}" if frac else "")
    text += "Z" if z else f"{sign}{oh:02d}:{om:02d}"
    try:
        base = dt.datetime(y, mo, d, h, mi, s, tzinfo=dt.timezone.utc)
        if len(frac) > 9 or (not z and (oh > 23 or om > 59)):
            raise ValueError
        off = dt.timedelta(0) if z else (1 if sign == "+" else -1) * dt.timedelta(hours=oh, minutes=om)
        ms = (base - EPOCH) // dt.timedelta(milliseconds=1) - off // dt.timedelta(milliseconds=1)
        ms += int((frac + "000")[:3])
        if not -62135596800000 <= ms <= 253402300799999:
            raise ValueError
    except (ValueError, OverflowError):
        ms = None
    return text, ms


@settings(max_examples=EXAMPLES * 2, deadline=None)
@given(st.lists(ts_case(), min_size=1, max_size=20))
def test_parse_ts_matches_python_datetime(cases):
    out, bad = parse_ts_column(pa.array([t for t, _ in cases]))
    assert out.to_pylist() == [ms for _, ms in cases]
    assert bad.to_pylist() == [ms is None for _, ms in cases]


ARROW_COLUMNS = [
    lambda n, d: pa.array(d.draw(st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), min_size=n, max_size=n)), pa.int64()),
    lambda n, d: pa.array(d.draw(st.lists(st.one_of(st.none(), st.integers(0, 2**64 - 1)), min_size=n, max_size=n)), pa.uint64()),
    lambda n, d: pa.array(d.draw(st.lists(st.one_of(st.none(), st.integers(-128, 127)), min_size=n, max_size=n)), pa.int8()),
    lambda n, d: pa.array(d.draw(st.lists(st.one_of(st.none(), any_float), min_size=n, max_size=n)), pa.float64()),
    lambda n, d: pa.array(d.draw(st.lists(st.one_of(st.none(), st.floats(width=32)), min_size=n, max_size=n)), pa.float32()),
    lambda n, d: pa.array(d.draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=n, max_size=n)), pa.bool_()),
    lambda n, d: pa.array(d.draw(st.lists(st.one_of(st.none(), st.text(max_size=30)), min_size=n, max_size=n)), pa.string()),
    lambda n, d: pa.array(d.draw(st.lists(st.one_of(st.none(), rfc3339()), min_size=n, max_size=n)), pa.large_string()),
    lambda n, d: pa.array(d.draw(st.lists(st.one_of(st.none(), st.text(max_size=5)), min_size=n, max_size=n)), pa.string()).dictionary_encode(),
    lambda n, d: pa.array(d.draw(st.lists(st.one_of(st.none(), st.binary(max_size=8)), min_size=n, max_size=n)), pa.binary()),
    lambda n, d: pa.array(d.draw(st.lists(st.one_of(st.none(), st.integers(-(2**50), 2**50)), min_size=n, max_size=n)), pa.timestamp(d.draw(st.sampled_from(["s", "ms", "us", "ns"])))),
    lambda n, d: pa.array(d.draw(st.lists(st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)), min_size=n, max_size=n)), pa.date32()),
    lambda n, d: pa.array([{"a": i} for i in range(n)]),
    lambda n, d: pa.array([[i] for i in range(n)]),
    lambda n, d: pa.array(d.draw(st.lists(st.one_of(st.none(), st.lists(st.one_of(st.none(), st.text(max_size=6)), max_size=3)), min_size=n, max_size=n)), pa.list_(pa.string())),
    lambda n, d: pa.array(d.draw(st.lists(st.one_of(st.none(), st.lists(st.text(max_size=6), max_size=3)), min_size=n, max_size=n)), pa.large_list(pa.large_string())),
    lambda n, d: pa.nulls(n),
    lambda n, d: pa.array(d.draw(st.lists(st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-999, max_value=999), min_size=n, max_size=n)), pa.decimal128(5, 2)),
]


@settings(max_examples=max(EXAMPLES // 2, 10), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 8), st.lists(st.sampled_from(sorted(FIELD_KINDS)), max_size=8, unique=True), st.data())
def test_parquet_any_column_types_never_crash(n, names, data):
    import pyarrow.parquet as pq

    cols = {name: data.draw(st.sampled_from(ARROW_COLUMNS))(n, data) for name in names}
    if not cols:
        cols = {"other": pa.array(range(n))}
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "in.parquet"
        pq.write_table(pa.table(cols), p)
        stats = IngestStats()
        with Quarantine(None) as q:
            batches = list(read_events([str(p)], q, stats))
    assert stats.read == stats.valid + stats.quarantined == n
    assert "internal_error" not in q.reasons
    assert all(b.schema.equals(EVENT_SCHEMA) for b in batches)


@st.composite
def near_common_ts(draw):
    """A timestamp in one of the layouts the numpy fast path reads, with a few characters changed."""
    text = list(draw(st.sampled_from(["2026-11-01T09:30:00.123Z", "2024-02-29t23:59:59Z", "0001-01-01 00:00:00.000z",
                                      "9999-12-31T23:59:59.999Z", "2026-02-29T12:00:00Z"])))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(text) - 1))
        text[i] = draw(st.sampled_from(list("0123456789-:.TtZz +x/\u0660")))
    return "".join(text)


@settings(max_examples=EXAMPLES * 2, deadline=None)
@given(st.lists(st.one_of(st.none(), near_common_ts(), ts_case().map(lambda c: c[0])), min_size=1, max_size=30))
def test_parse_ts_fast_layout_and_repeated_values_agree_with_the_regex_path(texts):
    arr = pa.array(texts, pa.string())
    fast = parse_ts_column(arr)
    original = timestamps._common_layout
    timestamps._common_layout = lambda data, offsets, present: np.zeros(offsets.size - 1, bool)
    try:
        slow = parse_ts_column(arr)
    finally:
        timestamps._common_layout = original
    assert fast[0].to_pylist() == slow[0].to_pylist()
    assert fast[1].to_pylist() == slow[1].to_pylist()
    rep = timestamps.parse_ts_column_repeated(arr)
    assert rep[0].to_pylist() == slow[0].to_pylist()
    assert rep[1].to_pylist() == slow[1].to_pylist()
