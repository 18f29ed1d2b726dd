"""Redis transport: two replicas share one raw stream (consumer group), re-claim a dead consumer's
pending entries, replicate through the compact stream, and publish decision keys with a TTL."""

from __future__ import annotations

import time

import orjson
import pytest

redis = pytest.importorskip("redis")
from distillguard.serve.config import ServeConfig  # noqa: E402
from distillguard.serve.engine import Engine  # noqa: E402
from distillguard.serve.redis_stream import RedisDecisionReader, RedisTransport, xadd_events  # noqa: E402
from serve_util import compare, lines_of, scan_accounts, scan_summary, sim_and_scan, start_redis  # noqa: E402


@pytest.fixture()
def redis_url():
    proc, url = start_redis()
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _decisions(e: Engine) -> dict[str, dict]:
    return {a: {k: v for k, v in orjson.loads(b).items() if k != "updated_at"} for a, b in e.decisions.items()}


def _wait(pred, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_replicas_share_a_stream_and_agree_with_the_scan(tmp_path_factory, tmp_path, redis_url):
    log, out = sim_and_scan(tmp_path_factory)
    lines = lines_of(log)
    r = redis.Redis.from_url(redis_url)
    cfgs = [ServeConfig(state_dir=tmp_path / f"replica{i}", redis_url=redis_url, consumer_name=f"replica-{i}",
                        claim_idle_ms=400, refresh_ms=600_000, decision_ttl_s=120, read_count=4) for i in range(2)]
    engines = [Engine(c) for c in cfgs]
    ts = [RedisTransport(e) for e in engines]
    raw, group = ts[0].raw, ts[0].group
    ts[0].ensure_group()
    # A gateway publishes the first part; a replica reads two entries and dies before acknowledging.
    xadd_events(r, raw, lines[:1000], per_entry=250)
    got = r.xreadgroup(group, "dead-replica", {raw: ">"}, count=2)
    assert len(got[0][1]) == 2
    xadd_events(r, raw, lines[1000:], per_entry=250)
    try:
        for t in ts:
            t.start()

        def drained() -> bool:
            g = next(x for x in r.xinfo_groups(raw) if x["name"] == group.encode())
            return g["pending"] == 0 and g["lag"] == 0

        _wait(drained, what="raw stream acknowledged")
        for t in ts:
            assert t.wait_applied(60)
        # The dead consumer's entries were re-claimed, so nothing is lost.
        assert r.xpending(raw, group)["pending"] == 0
        # POST /v1/events in Redis mode (replica 0): exact counts, and replica 1 sees it too.
        res = ts[0].ingest_http([lines[0], b'{"request_id":"extra-1","ts":1793000000000,"account_id":"acct_extra"}'], "http:/v1/events")
        assert (res.accepted, res.duplicate) == (1, 1)
        _wait(lambda: ts[1].wait_applied(1), what="replica 1 follows")
        for e in engines:
            e.refresh()
    finally:
        for t in ts:
            t.stop()
    d0, d1 = (_decisions(e) for e in engines)
    assert d0 == d1  # both replicas hold the same state and decide the same
    d0.pop("acct_extra")
    s = scan_summary(out)
    assert sum(d["events"] for d in d0.values()) == s["valid"]
    diffs = compare(scan_accounts(out), d0)
    assert not diffs, "\n".join(diffs[:20])
    # Decisions are published to Redis keys with a TTL, readable by any gateway node.
    reader = RedisDecisionReader(redis_url)
    flagged = [a for a, d in d0.items() if d["flagged"]]
    assert flagged
    for a in flagged[:5]:
        doc = reader.get(a)
        assert doc is not None and doc["action"] == d0[a]["action"] and doc["max_action"] == d0[a]["max_action"]
        assert 0 < r.ttl(ts[0].decision_key(a)) <= 120
    assert reader.get("no-such-account") is None
    for e in engines:
        e.close()


def test_a_replica_restarts_from_its_checkpoint(tmp_path_factory, tmp_path, redis_url):
    log, _ = sim_and_scan(tmp_path_factory)
    lines = lines_of(log)[:1500]
    r = redis.Redis.from_url(redis_url)
    cfg = ServeConfig(state_dir=tmp_path / "replica", redis_url=redis_url, consumer_name="solo", refresh_ms=600_000)
    e = Engine(cfg)
    t = RedisTransport(e)
    t.ensure_group()
    xadd_events(r, t.raw, lines[:800])
    t.start()
    _wait(lambda: next(x for x in r.xinfo_groups(t.raw))["lag"] == 0 and r.xpending(t.raw, t.group)["pending"] == 0)
    assert t.wait_applied(30)
    t.stop()
    n1 = e.store.counts()[0]
    e.close()
    xadd_events(r, t.raw, lines[800:])  # arrives while the replica is down
    e = Engine(cfg)  # restart: resumes the compact stream at its checkpoint, no double count
    t = RedisTransport(e)
    t.start()
    _wait(lambda: next(x for x in r.xinfo_groups(t.raw))["lag"] == 0 and r.xpending(t.raw, t.group)["pending"] == 0)
    assert t.wait_applied(30)
    t.stop()
    n2 = e.store.counts()[0]
    want = len({orjson.loads(x)["request_id"] for x in lines if x.startswith(b"{") and b'"request_id"' in x
                and _valid(x)})
    assert n1 < n2 == want
    e.close()


def _valid(line: bytes) -> bool:
    from distillguard.ingest import IngestStats, Quarantine, records_to_batch

    return records_to_batch([line], "t", Quarantine(None), IngestStats()).num_rows == 1
