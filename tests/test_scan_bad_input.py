"""Hostile and malformed logs through the whole scan: never a crash, always reconciled."""

from __future__ import annotations

import csv
import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillguard.scan import scan

VALID = st.fixed_dictionaries(
    {
        "request_id": st.text(min_size=1, max_size=8),
        "ts": st.one_of(st.integers(1_600_000_000_000, 1_900_000_000_000),
                        st.sampled_from(["2026-11-01T09:30:00.123Z", "2026-11-01T10:00:00+02:00", "2026-11-01 11:00:00Z"])),
        "account_id": st.sampled_from(["a1", "a2", "<script>alert(1)</script>", "ünï", "a\u0000b"]),
    },
    optional={
        "prompt": st.text(max_size=300),
        "n": st.one_of(st.integers(-5, 10), st.floats(allow_nan=True), st.text(max_size=3), st.booleans()),
        "asn": st.one_of(st.integers(0, 2**40), st.text(max_size=5), st.none()),
        "client_ip": st.one_of(st.ip_addresses().map(str), st.text(max_size=20)),
        "turn": st.one_of(st.integers(0, 50), st.none()),
        "payment_fingerprint": st.one_of(st.text(max_size=10), st.integers(-(2**63), 2**63 - 1)),
    },
)

GARBAGE = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    st.sampled_from([b"{", b"[]", b"null", b"42", b'"x"', b'{"request_id": null}', b"{" * 300, b'{"ts": "yesterday"}']),
)

LINE = st.one_of(VALID.map(lambda d: orjson.dumps(d)), GARBAGE)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=st.lists(LINE, max_size=60))
def test_scan_never_crashes_and_reconciles(tmp_path, lines):
    body = b"\n".join(l.replace(b"\n", b" ").replace(b"\r", b" ") for l in lines)
    log = tmp_path / "log.jsonl"
    log.write_bytes(body)
    out = tmp_path / "out"
    s = scan([str(log)], out, show_progress=False)
    assert s["records_read"] == s["valid"] + s["quarantined"] + s["duplicates_dropped"]
    q = [json.loads(x) for x in open(out / "quarantine.jsonl", encoding="utf-8")]
    assert len(q) == s["quarantined"]
    assert all(len(x["record"].encode("utf-8")) <= 2048 for x in q)

    with open(out / "accounts.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sum(int(r["events"]) for r in rows) == s["valid"]
