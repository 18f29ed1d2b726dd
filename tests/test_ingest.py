"""Ingestion: formats, timestamps, reason codes, line numbers, quarantine file."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from distillguard.ingest import (
    MAX_DEPTH,
    MAX_LINE_BYTES,
    IngestStats,
    Quarantine,
    detect_format,
    expand_inputs,
    parse_block,
    parse_block_slow,
    parse_ts_column,
    read_events,
    records_to_batch,
    truncate_record,
)
from distillguard.schema import EVENT_SCHEMA

TS = "2026-11-01T09:30:00.123Z"
TS_MS = 1793525400123


def rec(i: int = 0, **over) -> dict:
    r = {
        "request_id": f"r-{i}",
        "ts": TS,
        "account_id": f"acct_{i % 3}",
        "asn": 64500,
        "model": "frontier-large",
        "temperature": 0.7,
        "stream": False,
        "prompt": f"Explain step {i}.",
        "output_tokens": 812,
    }
    for k, v in over.items():
        if v is _DROP:
            r.pop(k, None)
        else:
            r[k] = v
    return r


_DROP = object()


def line(r) -> bytes:
    return r if isinstance(r, bytes) else json.dumps(r).encode()


def write_jsonl(path: Path, records, *, opener=open) -> Path:
    with opener(path, "wb") as fh:
        fh.write(b"".join(line(r) + b"\n" for r in records))
    return path


def scan(paths, tmp_path: Path, **kw):
    """read_events over paths -> (table, stats, quarantine lines)."""
    stats = IngestStats()
    qpath = tmp_path / "q" / "quarantine.jsonl"
    with Quarantine(qpath) as q:
        batches = list(read_events([str(p) for p in paths], q, stats, **kw))
    for b in batches:
        assert b.schema.equals(EVENT_SCHEMA, check_metadata=False)
    table = pa.Table.from_batches(batches, schema=EVENT_SCHEMA)
    qlines = [json.loads(x) for x in qpath.read_text(encoding="utf-8").splitlines()]
    assert stats.read == stats.valid + stats.quarantined
    assert stats.valid == table.num_rows
    assert stats.quarantined == len(qlines)
    return table, stats, qlines


def reasons(qlines) -> list[tuple[int, str]]:
    return [(q["line"], q["reason"]) for q in qlines]


# --- formats and inputs ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.jsonl", "a.ndjson", "a.json", "a.jsonl.gz", "a.jsonl.zst", "a.JSONL"])
def test_jsonl_variants(tmp_path, name):
    records = [rec(i) for i in range(5)]
    p = tmp_path / name
    data = b"".join(line(r) + b"\n" for r in records)
    if name.endswith(".gz"):
        data = gzip.compress(data)
    elif name.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    p.write_bytes(data)
    table, stats, q = scan([p], tmp_path)
    assert table.column("request_id").to_pylist() == [f"r-{i}" for i in range(5)]
    assert table.column("ts").to_pylist() == [TS_MS] * 5
    assert table.column("_line").to_pylist() == [1, 2, 3, 4, 5]
    assert table.column("temperature").to_pylist() == [0.7] * 5
    assert table.column("stream").to_pylist() == [False] * 5
    assert stats.read == 5 and q == []


def test_multi_member_gzip_and_multi_frame_zstd(tmp_path):
    a = b"".join(line(rec(i)) + b"\n" for i in range(3))
    b = b"".join(line(rec(i)) + b"\n" for i in range(3, 6))
    (tmp_path / "m.jsonl.gz").write_bytes(gzip.compress(a) + gzip.compress(b))
    z = zstandard.ZstdCompressor()
    (tmp_path / "m.jsonl.zst").write_bytes(z.compress(a) + z.compress(b))
    for name in ("m.jsonl.gz", "m.jsonl.zst"):
        table, stats, q = scan([tmp_path / name], tmp_path)
        assert table.column("_line").to_pylist() == [1, 2, 3, 4, 5, 6], name
        assert q == []


def test_parquet(tmp_path):
    t = pa.table(
        {
            "request_id": ["a", "b", "c", None],
            "ts": pa.array([TS_MS, TS_MS + 1, TS_MS + 2, TS_MS], pa.timestamp("ms", "UTC")),
            "account_id": ["x", "y", "", "z"],
            "asn": pa.array([1, 2, 3, 4], pa.int32()),
            "temperature": pa.array([0.5, None, 1, 2], pa.float32()),
            "n": [1.0, 2.0, 3.0, 4.0],  # integral floats are fine for an integer field
            "extra": ["ignored", "x", "y", "z"],
        }
    )
    pq.write_table(t, tmp_path / "e.parquet")
    table, stats, q = scan([tmp_path / "e.parquet"], tmp_path)
    assert table.column("request_id").to_pylist() == ["a", "b"]
    assert table.column("ts").to_pylist() == [TS_MS, TS_MS + 1]
    assert table.column("asn").to_pylist() == [1, 2]
    assert table.column("n").to_pylist() == [1, 2]
    assert table.column("_line").to_pylist() == [1, 2]
    assert reasons(q) == [(3, "empty:account_id"), (4, "missing:request_id")]
    assert json.loads(q[1]["record"])["account_id"] == "z"


def test_parquet_wrong_column_type_rejects_rows_with_values(tmp_path):
    t = pa.table({"request_id": ["a", "b"], "ts": [TS, TS], "account_id": ["x", "y"], "asn": ["64500", None]})
    pq.write_table(t, tmp_path / "e.parquet")
    table, stats, q = scan([tmp_path / "e.parquet"], tmp_path)
    assert table.column("request_id").to_pylist() == ["b"]
    assert reasons(q) == [(1, "type:asn")]


def test_parquet_unreadable(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    table, stats, q = scan([tmp_path / "bad.parquet"], tmp_path)
    assert table.num_rows == 0
    assert reasons(q) == [(0, "unreadable_file")]
    assert stats.read == 1


def test_parquet_damaged_tail_keeps_earlier_row_groups(tmp_path):
    t = pa.table({"request_id": [f"r{i}" for i in range(1000)], "ts": [TS] * 1000, "account_id": ["a"] * 1000})
    p = tmp_path / "e.parquet"
    pq.write_table(t, p, row_group_size=100, compression="none")
    meta = pq.ParquetFile(p).metadata
    rg = meta.row_group(9).column(0)
    data = bytearray(p.read_bytes())
    start = rg.data_page_offset
    data[start : start + 64] = b"\xff" * 64  # smash the last row group's first page
    p.write_bytes(bytes(data))
    table, stats, q = scan([p], tmp_path, batch_rows=100)
    assert table.num_rows == 900
    assert reasons(q) == [(901, "unreadable_file")]


def test_csv(tmp_path):
    text = (
        "request_id,ts,account_id,asn,temperature,stream,prompt,unknown\n"
        f"r1,{TS},a,64500,0.5,true,\"hello, world\",x\n"
        "r2,1793525400000,b,,1e-1,FALSE,\"multi\nline\",y\n"
        f"r3,{TS},c,64x,0.5,true,p,z\n"
        f"r4,{TS},d,2.0,abc,true,p,z\n"
        f"r5,{TS},e,1,1,maybe,p,z\n"
        "r6,not-a-time,f,1,1,1,p,z\n"
        ",2026-11-01T09:30:00Z,g,1,1,1,p,z\n"
        "r8,2026-11-01T09:30:00Z,g\n"
        "r9,2026-11-01T09:30:00Z,h,7,,0,,\n"
    )
    (tmp_path / "e.csv").write_text(text)
    table, stats, q = scan([tmp_path / "e.csv"], tmp_path)
    assert table.column("request_id").to_pylist() == ["r1", "r2", "r9"]
    assert table.column("ts").to_pylist() == [TS_MS, 1793525400000, 1793525400000]
    assert table.column("asn").to_pylist() == [64500, None, 7]
    assert table.column("temperature").to_pylist() == [0.5, 0.1, None]
    assert table.column("stream").to_pylist() == [True, False, False]
    assert table.column("prompt").to_pylist() == ["hello, world", "multi\nline", None]
    assert table.column("_line").to_pylist() == [2, 3, 10]
    assert reasons(q) == [
        (4, "type:asn"),
        (5, "type:temperature"),
        (6, "type:stream"),
        (7, "bad_ts:ts"),
        (8, "missing:request_id"),
        (9, "bad_csv_row"),
    ]
    assert json.loads(q[0]["record"])["asn"] == "64x"


def test_csv_gz_and_invalid_utf8_cell(tmp_path):
    raw = f"request_id,ts,account_id,prompt\nr1,{TS},a,ok\nr2,{TS},b,bad\xff\n".encode("latin-1")
    (tmp_path / "e.csv.gz").write_bytes(gzip.compress(raw))
    table, stats, q = scan([tmp_path / "e.csv.gz"], tmp_path)
    assert table.column("request_id").to_pylist() == ["r1"]
    assert reasons(q) == [(3, "invalid_utf8")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_unreadable_jsonl_is_quarantined_not_raised(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [rec()])
    p.chmod(0)
    table, stats, q = scan([p], tmp_path)
    assert reasons(q) == [(1, "unreadable_file")]


def test_io_error_mid_file_keeps_earlier_lines(tmp_path, monkeypatch):
    import distillguard.ingest.streams as streams

    p = write_jsonl(tmp_path / "a.jsonl", [rec(i) for i in range(10)])
    real_open = open

    class Flaky:
        def __init__(self, fh):
            self.fh, self.calls = fh, 0

        def read(self, n):
            self.calls += 1
            if self.calls > 1:
                raise OSError(5, "Input/output error")
            return self.fh.read(len(p.read_bytes()) // 2)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.fh.close()

    monkeypatch.setattr(streams, "open", lambda path, mode: Flaky(real_open(path, mode)), raising=False)
    table, stats, q = scan([p], tmp_path)
    n = table.num_rows
    assert 0 < n < 10 and reasons(q) == [(n + 1, "unreadable_file")]


def test_empty_inputs(tmp_path):
    (tmp_path / "e.jsonl").write_bytes(b"")
    (tmp_path / "e.csv").write_bytes(b"")
    (tmp_path / "h.csv").write_bytes(b"request_id,ts,account_id\n")
    (tmp_path / "e.jsonl.gz").write_bytes(gzip.compress(b""))
    table, stats, q = scan([tmp_path / n for n in ("e.jsonl", "e.csv", "h.csv", "e.jsonl.gz")], tmp_path)
    assert table.num_rows == 0 and stats.read == 0 and q == []


def test_detect_format():
    assert detect_format("x/a.jsonl.gz") == ("jsonl", "gz")
    assert detect_format("a.ndjson.zst") == ("jsonl", "zst")
    assert detect_format("a.parquet") == ("parquet", None)
    assert detect_format("A.CSV.GZ") == ("csv", "gz")
    assert detect_format("a.log") == ("jsonl", None)


def test_expand_inputs(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/a.jsonl", "d/b.csv.gz", "d/c.parquet", "d/notes.txt", "d/sub/e.jsonl.zst", "x.ndjson"):
        (tmp_path / name).write_bytes(b"")
    d = str(tmp_path / "d")
    assert [Path(p).name for p in expand_inputs([d])] == ["a.jsonl", "b.csv.gz", "c.parquet"]
    got = expand_inputs([str(tmp_path / "**" / "*.jsonl*"), d, str(tmp_path / "x.ndjson")])
    assert [Path(p).name for p in got] == ["a.jsonl", "b.csv.gz", "c.parquet", "e.jsonl.zst", "x.ndjson"]
    assert got == sorted(got) and len(set(got)) == len(got)
    # An explicit file is taken whatever its extension.
    assert expand_inputs([str(tmp_path / "d" / "notes.txt")]) == [os.path.normpath(tmp_path / "d" / "notes.txt")]
    with pytest.raises(FileNotFoundError, match="nope"):
        expand_inputs([d, str(tmp_path / "nope*.jsonl")])
    with pytest.raises(FileNotFoundError):
        expand_inputs([str(tmp_path / "missing.jsonl")])


def test_missing_file_raises_before_reading(tmp_path):
    good = write_jsonl(tmp_path / "a.jsonl", [rec()])
    stats = IngestStats()
    with Quarantine(None) as q, pytest.raises(FileNotFoundError, match="missing"):
        next(read_events([str(good), str(tmp_path / "missing.jsonl")], q, stats))
    assert stats.read == 0


def test_source_index_and_order_across_files(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [rec(1), rec(2)])
    b = write_jsonl(tmp_path / "b.jsonl.gz", [rec(3)], opener=gzip.open)
    table, stats, q = scan([a, b], tmp_path)
    assert table.column("_source").to_pylist() == [0, 0, 1]
    assert table.column("request_id").to_pylist() == ["r-1", "r-2", "r-3"]


# --- timestamps ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, ms",
    [
        ("2026-11-01T09:30:00Z", 1793525400000),
        ("2026-11-01T09:30:00.123Z", 1793525400123),
        ("2026-11-01T09:30:00.1Z", 1793525400100),
        ("2026-11-01T09:30:00.123456789Z", 1793525400123),
        ("2026-11-01 09:30:00Z", 1793525400000),
        ("2026-11-01t09:30:00z", 1793525400000),
        ("2026-11-01T11:30:00+02:00", 1793525400000),
        ("2026-11-01T04:00:00.5-05:30", 1793525400500),
        ("1969-12-31T23:59:59.999Z", -1),
        ("2024-02-29T00:00:00Z", 1709164800000),
        ("0001-01-01T00:00:00Z", -62135596800000),
        ("9999-12-31T23:59:59.999Z", 253402300799999),
        (1793525400123, 1793525400123),
        (0, 0),
    ],
)
def test_ts_accepted(value, ms):
    out, bad = parse_ts_column(pa.array([value]))
    assert out.to_pylist() == [ms] and bad.to_pylist() == [False]
    b = line(rec(ts=value))
    assert parse_block(b).table.column("ts").to_pylist() == [ms]


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-01T09:30:00",  # no offset
        "2026-11-01",
        "2026-11-01T09:30Z",
        "2026-11-01T09:30:00.Z",
        "2026-11-01T09:30:00.1234567891Z",  # 10 fraction digits
        "2026-11-01T09:30:00+0200",
        "2026-11-01T09:30:00+2:00",
        "2026-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-11-01T24:00:00Z",
        "2026-11-01T09:60:00Z",
        "2026-11-01T09:30:60Z",
        "2026-11-01T09:30:00+24:00",
        " 2026-11-01T09:30:00Z",
        "2026-11-01T09:30:00Z\n",
        "0001-01-01T00:00:00+00:01",  # before year 1 in UTC
        "1793525400000",  # numbers as strings are not timestamps
        "",
        "２０２６-11-01T09:30:00Z",  # non-ASCII digits
    ],
)
def test_ts_rejected(value):
    out, bad = parse_ts_column(pa.array([value]))
    assert out.to_pylist() == [None] and bad.to_pylist() == [True]
    res = parse_block(line(rec(ts=value)))
    assert res.table.num_rows == 0 and [r[1] for r in res.rejects] == ["bad_ts:ts"]


def test_ts_integer_range_and_types():
    out, bad = parse_ts_column(pa.array([253402300800000, -62135596800001, None], pa.int64()))
    assert out.to_pylist() == [None, None, None] and bad.to_pylist() == [True, True, False]
    out, bad = parse_ts_column(pa.array([5, 2**64 - 1], pa.uint64()))
    assert out.to_pylist() == [5, None] and bad.to_pylist() == [False, True]
    out, bad = parse_ts_column(pa.array([-1500], pa.timestamp("us")))
    assert out.to_pylist() == [-2]  # floor, not truncation toward zero
    out, bad = parse_ts_column(pa.chunked_array([["2026-11-01T09:30:00Z"], [None]]))
    assert out.to_pylist() == [1793525400000, None]
    out, bad = parse_ts_column(pa.array([True]))
    assert bad.to_pylist() == [True]


def test_ts_as_integral_float_and_mixed_block():
    lines = [rec(0, ts=1793525400000), rec(1, ts=1793525400001.0), rec(2, ts=TS), rec(3, ts=1.5)]
    res = parse_block(b"\n".join(map(line, lines)))
    assert res.table.column("ts").to_pylist() == [1793525400000, 1793525400001, TS_MS]
    assert res.rejects[0][:2] == (4, "type:ts")


# --- reason codes ----------------------------------------------------------------------


def test_every_jsonl_reason_code(tmp_path):
    bad_lines = [
        (b'{"request_id": "r", "ts": ', "invalid_json"),
        (b'{"request_id": "r\xff", "ts": 1, "account_id": "a"}', "invalid_utf8"),
        (b"[1, 2]", "not_an_object"),
        (b'"just a string"', "not_an_object"),
        (b"42", "not_an_object"),
        (b"null", "not_an_object"),
        (line(rec(request_id=_DROP)), "missing:request_id"),
        (line(rec(ts=None)), "missing:ts"),
        (line(rec(account_id=_DROP)), "missing:account_id"),
        (line(rec(request_id="")), "empty:request_id"),
        (line(rec(account_id="")), "empty:account_id"),
        (line(rec(request_id=7)), "type:request_id"),
        (line(rec(ts=True)), "type:ts"),
        (line(rec(ts=2**63)), "type:ts"),
        (line(rec(ts="yesterday")), "bad_ts:ts"),
        (line(rec(account_created_at="2026-02-30T00:00:00Z")), "bad_ts:account_created_at"),
        (line(rec(asn="64500")), "type:asn"),  # numbers as strings
        (line(rec(asn=True)), "type:asn"),  # bools are not numbers
        (line(rec(asn=2.5)), "type:asn"),
        (line(rec(asn=2**63)), "type:asn"),
        (line(rec(temperature=False)), "type:temperature"),
        (line(rec(temperature="0.7")), "type:temperature"),
        (line(rec(stream=1)), "type:stream"),
        (line(rec(model=5)), "type:model"),
        (line(rec(prompt={"text": "hi"})), "type:prompt"),
        (line(rec(prompt=["hi"])), "type:prompt"),
        (b'{"request_id":"r","ts":1,"account_id":"a","temperature":NaN}', "type:temperature"),
        (b'{"request_id":"r","ts":1,"account_id":"a","top_p":-Infinity}', "type:top_p"),
        (b'{"request_id":"r","ts":1,"account_id":"a","seed":1e400}', "type:seed"),
        (b"{" + b'"x":' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}", "too_deep"),
        (b'{"request_id":"' + b"x" * MAX_LINE_BYTES + b'"}', "too_long"),
    ]
    good = [line(rec(i)) for i in range(3)]
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b"\n".join([good[0]] + [b for b, _ in bad_lines] + good[1:]) + b"\n")
    table, stats, q = scan([p], tmp_path)
    assert table.column("_line").to_pylist() == [1, len(bad_lines) + 2, len(bad_lines) + 3]
    assert reasons(q) == [(i + 2, r) for i, (_, r) in enumerate(bad_lines)]
    assert stats.reasons["type:asn"] == 4
    assert all(len(x["record"].encode()) <= 2048 for x in q)


def test_lenient_but_valid_records():
    """Integral floats in integer fields, ints in number fields, unknown fields, nulls."""
    lines = [
        rec(0, asn=64500.0, n=1e0, temperature=1),
        rec(1, extra={"deep": [1, {"x": None}]}, weird=NaN_TOKEN),
        rec(2, asn=None, model=None, prompt=None),
        rec(3, **{"unknown key": "\u0000\u2028"}),
    ]
    res = parse_block(b"\n".join(x if isinstance(x, bytes) else line(x) for x in map(_nan_line, lines)))
    assert res.rejects == []
    assert res.table.column("asn").to_pylist() == [64500, 64500, None, 64500]
    assert res.table.column("n").to_pylist() == [1, None, None, None]
    assert res.table.column("temperature").to_pylist() == [1.0, 0.7, 0.7, 0.7]


NaN_TOKEN = "__NAN__"


def _nan_line(r: dict) -> bytes:
    return line(r).replace(b'"__NAN__"', b"NaN")


def test_unknown_fields_never_invalidate():
    res = parse_block(_nan_line(rec(foo=[1, 2, {"a": None}], bar=NaN_TOKEN, asn_text="x")))
    assert res.rejects == [] and res.table.num_rows == 1


def test_exact_line_numbers_blank_lines_and_crlf():
    block = b"\n".join(
        [line(rec(1)), b"", b"   ", line(rec(2)) + b"\r", b"\t\r", b"oops", line(rec(3)), b""]
    )
    for res in (parse_block(block, first_line=10), parse_block_slow(block, first_line=10)):
        assert res.table.column("_line").to_pylist() == [10, 13, 16]
        assert [(r[0], r[1]) for r in res.rejects] == [(15, "invalid_json")]
        assert res.n_records == 4


def test_leading_whitespace_and_two_objects_per_line():
    block = b"\n".join([b"  " + line(rec(1)), line(rec(2)) + b" " + line(rec(3)), line(rec(4)) + b"  "])
    res = parse_block(block)
    assert res.table.column("request_id").to_pylist() == ["r-1", "r-4"]
    assert [(r[0], r[1]) for r in res.rejects] == [(2, "invalid_json")]


def test_duplicate_keys_last_wins():
    b = b'{"request_id":"r","ts":1,"account_id":"first","account_id":"second"}'
    for res in (parse_block(b), parse_block_slow(b)):
        assert res.table.column("account_id").to_pylist() == ["second"]


def test_large_block_fast_path_with_sparse_errors():
    """Bisection keeps the good lines fast and finds the bad ones exactly."""
    lines = [line(rec(i)) for i in range(3000)]
    for i in (5, 1234, 2999):
        lines[i] = line(rec(i, asn="oops"))
    lines[700] = line(rec(700, asn=1.5))
    block = b"\n".join(lines) + b"\n"
    fast, slow = parse_block(block), parse_block_slow(block)
    assert fast.table.equals(slow.table)
    assert fast.rejects == slow.rejects
    assert [(r[0], r[1]) for r in fast.rejects] == [(6, "type:asn"), (701, "type:asn"), (1235, "type:asn"), (3000, "type:asn")]


def test_integers_written_as_doubles_stay_on_fast_path():
    from distillguard.ingest import JsonBlockParser

    lines = [line(rec(i, asn=float(64500 + i), ts=1793525400000.0 + i, seed=None)) for i in range(500)]
    lines[10] = line(rec(10, seed=2**53 + 1))  # exact only as an integer: re-checked slowly
    lines[11] = line(rec(11, n=2.5))
    block = b"\n".join(lines)
    parser = JsonBlockParser()
    fast = parser.parse(block)
    assert parser.ints_as_floats
    slow = parse_block_slow(block)
    assert fast.table.equals(slow.table) and fast.rejects == slow.rejects
    assert fast.table.column("seed")[10].as_py() == 2**53 + 1
    assert fast.table.column("asn")[-1].as_py() == 64999
    assert [r[:2] for r in fast.rejects] == [(12, "type:n")]


# --- streams: damage, long lines, progress --------------------------------------------


@pytest.mark.parametrize("comp", ["gz", "zst"])
def test_truncated_stream_keeps_what_was_read(tmp_path, comp):
    data = b"".join(line(rec(i)) + b"\n" for i in range(2000))
    packed = gzip.compress(data) if comp == "gz" else zstandard.ZstdCompressor().compress(data)
    p = tmp_path / f"t.jsonl.{comp}"
    p.write_bytes(packed[: len(packed) * 2 // 3])
    table, stats, q = scan([p], tmp_path)
    n = table.num_rows
    assert 0 < n < 2000
    assert table.column("_line").to_pylist() == list(range(1, n + 1))
    assert reasons(q) == [(n + 1, "truncated_stream")]
    assert stats.read == n + 1


def test_corrupt_gzip_stream(tmp_path):
    data = gzip.compress(b"".join(line(rec(i)) + b"\n" for i in range(50)))
    p = tmp_path / "c.jsonl.gz"
    p.write_bytes(data + b"GARBAGE")
    table, stats, q = scan([p], tmp_path)
    assert table.num_rows == 50
    assert [r for _, r in reasons(q)] == ["corrupt_stream"]
    p.write_bytes(b"not gzip at all")
    table, stats, q = scan([p], tmp_path)
    assert table.num_rows == 0 and [r for _, r in reasons(q)] == ["corrupt_stream"]


def test_truncated_csv_gz(tmp_path):
    rows = "".join(f"r{i},{TS},a,{'p' * 50}\n" for i in range(3000))
    data = gzip.compress(("request_id,ts,account_id,prompt\n" + rows).encode())
    p = tmp_path / "t.csv.gz"
    p.write_bytes(data[: len(data) // 2])
    table, stats, q = scan([p], tmp_path)
    assert 0 < table.num_rows < 3000
    assert all(len(x) == 50 for x in table.column("prompt").to_pylist())  # no cut-off last row
    assert [r for _, r in reasons(q)] == ["truncated_stream"]


def test_overlong_line_streamed_without_loading(tmp_path, monkeypatch):
    import distillguard.ingest.reader as reader

    monkeypatch.setattr(reader, "BLOCK_BYTES", 1 << 16)
    huge = b'{"request_id":"' + b"x" * (3 * MAX_LINE_BYTES) + b'"}'
    p = tmp_path / "l.jsonl"
    p.write_bytes(line(rec(1)) + b"\n" + huge + b"\n" + line(rec(2)) + b"\n" + huge)
    table, stats, q = scan([p], tmp_path)
    assert table.column("_line").to_pylist() == [1, 3]
    assert reasons(q) == [(2, "too_long"), (4, "too_long")]
    assert q[0]["record"].startswith('{"request_id":"xxx') and len(q[0]["record"]) == 2048


def test_block_boundaries_do_not_move_lines(tmp_path, monkeypatch):
    import distillguard.ingest.reader as reader

    monkeypatch.setattr(reader, "BLOCK_BYTES", 700)
    lines = [line(rec(i)) if i % 7 else b"" for i in range(400)]
    lines[123] = b"{broken"
    p = tmp_path / "b.jsonl"
    p.write_bytes(b"\n".join(lines))  # no final newline
    table, stats, q = scan([p], tmp_path, batch_rows=50)
    expected = [i + 1 for i in range(400) if i % 7 and i != 123]
    assert table.column("_line").to_pylist() == expected
    assert reasons(q) == [(124, "invalid_json")]


def test_bom_and_progress(tmp_path):
    p = tmp_path / "b.jsonl.gz"
    p.write_bytes(gzip.compress(b"\xef\xbb\xbf" + line(rec(1)) + b"\n" + line(rec(2)) + b"\n"))
    seen = []
    stats = IngestStats()
    with Quarantine(None) as q:
        rows = sum(b.num_rows for b in read_events([str(p)], q, stats, progress=seen.append))
    assert rows == 2 and q.count == 0
    assert sum(seen) == p.stat().st_size


def test_batch_rows_bound(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [rec(i) for i in range(1000)])
    stats = IngestStats()
    with Quarantine(None) as q:
        sizes = [b.num_rows for b in read_events([str(p)], q, stats, batch_rows=300)]
    assert sum(sizes) == 1000 and max(sizes) <= 300


# --- quarantine file ---------------------------------------------------------------------


def test_quarantine_file_format(tmp_path):
    qdir = tmp_path / "out"
    qdir.mkdir()
    with Quarantine(qdir) as q:  # a directory means DIR/quarantine.jsonl
        q.add("in.jsonl", 7, "invalid_json", b"\xff\xfe{" + "é".encode() * 3000)
        q.add("in.jsonl", 8, "type:asn", "x" * 10)
    lines = (qdir / "quarantine.jsonl").read_bytes().splitlines()
    first = orjson.loads(lines[0])
    assert list(first) == ["source", "line", "reason", "record"]
    assert first["source"] == "in.jsonl" and first["line"] == 7 and first["reason"] == "invalid_json"
    assert first["record"].startswith("\ufffd\ufffd{é")
    assert len(first["record"].encode()) <= 2048  # also after replacements grew it
    assert first["record"].endswith("é")  # cut on a character boundary
    assert orjson.loads(lines[1])["record"] == "x" * 10


def test_truncate_record_boundaries():
    assert truncate_record(b"a" * 5000) == "a" * 2048
    assert truncate_record(b"\xff" * 5000) == "\ufffd" * 682  # 682 * 3 bytes <= 2048
    s = truncate_record(b"a" * 2047 + "€".encode())  # 3-byte char straddles the cut
    assert s == "a" * 2047
    assert truncate_record("\ud800x") == "\ufffd\ufffd\ufffdx"  # lone surrogate replaced
    assert truncate_record(b"") == ""


def test_quarantine_none_still_counts_and_max_records(tmp_path):
    with Quarantine(None) as q:
        q.add("s", 1, "invalid_json", b"x")
    assert q.count == 1 and q.reasons["invalid_json"] == 1
    with Quarantine(tmp_path / "q.jsonl", max_records=2) as q:
        for i in range(5):
            q.add("s", i, "invalid_json", b"x")
    assert q.count == 5 and len((tmp_path / "q.jsonl").read_bytes().splitlines()) == 2


def test_quarantine_created_even_when_clean(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [rec()])
    table, stats, q = scan([p], tmp_path)
    assert (tmp_path / "q" / "quarantine.jsonl").exists() and q == []


# --- online records ----------------------------------------------------------------------


def test_records_to_batch_mixed_inputs():
    stats = IngestStats()
    with Quarantine(None) as q:
        batch = records_to_batch(
            [
                line(rec(1)),
                json.dumps(rec(2)),
                rec(3),
                rec(4, asn="x"),
                b"   ",
                "\ud800",
                json.dumps(rec(5), indent=2),  # pretty-printed: one record over several lines
                [1, 2],
                rec(6, ts="bad"),
            ],
            "http:/v1/events",
            q,
            stats,
            first_line=100,
        )
    assert batch.schema.equals(EVENT_SCHEMA)
    assert batch.column("request_id").to_pylist() == ["r-1", "r-2", "r-3", "r-5"]
    assert batch.column("_line").to_pylist() == [100, 101, 102, 106]
    assert stats.read == 8 and stats.valid == 4 and stats.quarantined == 4
    assert dict(q.reasons) == {"type:asn": 1, "invalid_utf8": 1, "not_an_object": 1, "bad_ts:ts": 1}


def test_records_to_batch_large_body_uses_block_path():
    recs = [line(rec(i)) for i in range(600)]
    recs[17] = line(rec(17, stream="yes"))
    stats = IngestStats()
    with Quarantine(None) as q:
        batch = records_to_batch(recs, "http", q, stats, source_index=3)
    assert batch.num_rows == 599 and set(batch.column("_source").to_pylist()) == {3}
    assert q.reasons == {"type:stream": 1}
    assert stats.read == 600


# --- agent-traffic fields (events.md, 2026-12-07) -------------------------------------------

AGENT = {"tool_names": ["bash", "read_file"], "message_count": 7, "last_role": "tool", "output_tool_calls": 2}


def test_agent_fields_in_every_format(tmp_path):
    """JSONL (fast and slow path), Parquet, CSV and service bodies read the same values."""
    recs = [rec(0, **AGENT), rec(1, tool_names=[]), rec(2)]
    write_jsonl(tmp_path / "a.jsonl", recs)
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "a.parquet")
    csv_rows = [{**r, "tool_names": json.dumps(r["tool_names"]) if "tool_names" in r else None} for r in recs]
    import pyarrow.csv as pcsv

    pcsv.write_csv(pa.Table.from_pylist(csv_rows), tmp_path / "a.csv")
    want = {"tool_names": [["bash", "read_file"], [], None], "message_count": [7, None, None],
            "last_role": ["tool", None, None], "output_tool_calls": [2, None, None]}
    for name in ("a.jsonl", "a.parquet", "a.csv"):
        table, stats, q = scan([tmp_path / name], tmp_path / name.replace(".", "_"))
        assert q == [], name
        for col, values in want.items():
            assert table.column(col).to_pylist() == values, (name, col)
    block = b"".join(line(r) + b"\n" for r in recs)
    assert parse_block(block).table.column("tool_names").to_pylist() == want["tool_names"]
    assert parse_block_slow(block).table.column("tool_names").to_pylist() == want["tool_names"]
    with Quarantine(None) as q:
        batch = records_to_batch(recs, "http", q, IngestStats())
    assert batch.column("tool_names").to_pylist() == want["tool_names"]


@pytest.mark.parametrize(
    "field, value",
    [("tool_names", "bash"), ("tool_names", ["bash", None]), ("tool_names", [1]), ("tool_names", [["bash"]]),
     ("tool_names", {"name": "bash"}), ("message_count", "7"), ("message_count", 2.5), ("last_role", 3),
     ("output_tool_calls", True), ("output_tool_calls", [1])],
)
def test_agent_fields_wrong_type_quarantined(tmp_path, field, value):
    recs = [rec(0), rec(1, **{field: value}), rec(2, **AGENT)]
    block = b"".join(line(r) + b"\n" for r in recs)
    for res in (parse_block(block), parse_block_slow(block)):
        assert res.table.column("request_id").to_pylist() == ["r-0", "r-2"]
        assert [(no, reason) for no, reason, _ in res.rejects] == [(2, "type:" + field)]
    with Quarantine(None) as q:
        batch = records_to_batch(recs, "http", q, IngestStats())
    assert batch.num_rows == 2 and q.reasons == {"type:" + field: 1}


def test_agent_fields_wrong_type_parquet_and_csv(tmp_path):
    t = pa.table({"request_id": ["a", "b", "c"], "ts": [TS] * 3, "account_id": ["x"] * 3,
                  "tool_names": pa.array([["bash"], ["bash", None], None], pa.list_(pa.string()))})
    pq.write_table(t, tmp_path / "e.parquet")
    table, _, q = scan([tmp_path / "e.parquet"], tmp_path / "p")
    assert table.column("request_id").to_pylist() == ["a", "c"] and reasons(q) == [(2, "type:tool_names")]
    t = pa.table({"request_id": ["a", "b"], "ts": [TS] * 2, "account_id": ["x"] * 2, "tool_names": [["bash"], ["x"]]})
    t = t.set_column(3, "tool_names", pa.array([[1], [2]], pa.list_(pa.int64())))
    pq.write_table(t, tmp_path / "f.parquet")
    table, _, q = scan([tmp_path / "f.parquet"], tmp_path / "f")
    assert table.num_rows == 0 and reasons(q) == [(1, "type:tool_names"), (2, "type:tool_names")]
    (tmp_path / "e.csv").write_text(
        "request_id,ts,account_id,tool_names,message_count\n"
        f'r1,{TS},a,"[""bash""]",3\n'
        f"r2,{TS},a,bash,3\n"
        f'r3,{TS},a,"[""bash"",null]",3\n'
        f'r4,{TS},a,"[""bash""]",x\n'
        f"r5,{TS},a,,\n"
    )
    table, _, q = scan([tmp_path / "e.csv"], tmp_path / "c")
    assert table.column("request_id").to_pylist() == ["r1", "r5"]
    assert table.column("tool_names").to_pylist() == [["bash"], None]
    assert reasons(q) == [(3, "type:tool_names"), (4, "type:tool_names"), (5, "type:message_count")]
