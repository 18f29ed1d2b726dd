"""The HTTP service: parity with the scan on the benchmark slice, ingest contract, auth, metrics."""

from __future__ import annotations

import logging
import shutil

import orjson
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from distillguard.serve.app import build_service, create_app  # noqa: E402
from distillguard.serve.auth import TokenAuth  # noqa: E402
from distillguard.scoring.rules import RULES_DIR  # noqa: E402
from distillguard.serve.config import ServeConfig  # noqa: E402
from serve_util import (H_ADMIN, H_DECIDE, H_INGEST, SECRET_TOKENS, TOKENS, compare, decisions_of, lines_of,  # noqa: E402
                        scan_accounts, scan_summary, sim_and_scan)


def _client(state_dir, **kw) -> TestClient:
    cfg = ServeConfig(state_dir=state_dir, refresh_ms=kw.pop("refresh_ms", 60_000), **kw)
    return TestClient(create_app(build_service(cfg, TokenAuth(TOKENS))))


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return sim_and_scan(tmp_path_factory)


@pytest.fixture(scope="module")
def served(sim, tmp_path_factory):
    """The whole log POSTed in batches (NDJSON and JSON arrays), refreshing mid-way."""
    log, _ = sim
    lines = lines_of(log)
    state = tmp_path_factory.mktemp("serve-state")
    totals = {"received": 0, "accepted": 0, "duplicate": 0, "rejected": 0}
    with _client(state) as c:
        for k, i in enumerate(range(0, len(lines), 700)):
            part = lines[i:i + 700]
            if k % 3 == 1:  # a JSON array body; a bad line cannot be an array item, send those as NDJSON
                good = []
                for ln in part:
                    try:
                        good.append(orjson.loads(ln))
                    except orjson.JSONDecodeError:
                        good = None
                        break
                body = orjson.dumps(good) if good is not None else b"\n".join(part)
            else:
                body = b"\n".join(part) + b"\n"
            r = c.post("/v1/events", content=body, headers=H_INGEST)
            assert r.status_code == 200, r.text
            for key in totals:
                totals[key] += r.json()[key]
            if k % 4 == 3:  # an incremental refresh in the middle of the stream
                assert c.post("/v1/admin/refresh", headers=H_ADMIN).status_code == 200
        # Sending an already-acknowledged batch again changes nothing.
        again = c.post("/v1/events", content=b"\n".join(lines[:700]), headers=H_INGEST).json()
        assert c.post("/v1/admin/refresh", headers=H_ADMIN).status_code == 200
        docs = c.get("/v1/decisions", headers=H_DECIDE).json()["decisions"]
        one = c.get(f"/v1/decisions/{docs[0]['account_id']}", headers=H_DECIDE)
        metrics = c.get("/metrics", headers=H_ADMIN).text
        health = c.get("/healthz").json()
    return {"totals": totals, "again": again, "docs": docs, "one": one, "metrics": metrics, "health": health, "state": state}


def test_replaying_the_log_through_the_service_gives_the_scan_flags(sim, served):
    _, out = sim
    diffs = compare(scan_accounts(out), decisions_of(served["docs"]))
    assert not diffs, "\n".join(diffs[:20])
    flagged = sum(d["flagged"] for d in served["docs"])
    assert flagged == scan_summary(out)["flagged_accounts"] > 0


def test_ingest_counts_match_the_scan_summary(sim, served):
    _, out = sim
    s, t = scan_summary(out), served["totals"]
    assert t["received"] == s["records_read"]
    assert t["accepted"] == s["valid"]
    assert t["duplicate"] == s["duplicates_dropped"]
    assert t["rejected"] == s["quarantined"] > 0
    again = served["again"]
    assert again["accepted"] == 0 and again["duplicate"] + again["rejected"] == again["received"]
    q = [orjson.loads(x) for x in (served["state"] / "quarantine.jsonl").read_bytes().splitlines()]
    assert len(q) == s["quarantined"] + again["rejected"]
    assert {x["source"] for x in q} == {"http:/v1/events"}
    reasons: dict[str, int] = {}
    for x in q[: s["quarantined"]]:
        reasons[x["reason"]] = reasons.get(x["reason"], 0) + 1
    assert reasons == s["quarantine_reasons"]


def test_decision_document(served):
    r = served["one"]
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    d = r.json()
    for k in ("account_id", "action", "score", "reasons", "cluster_id", "updated_at", "max_action", "flagged",
              "computed_action", "first_flagged_ts", "events", "events_before_flag", "shadow"):
        assert k in d
    assert d["action"] in ("none", "monitor", "challenge", "throttle", "suspend")
    order = ["none", "monitor", "challenge", "throttle", "suspend"]
    for x in served["docs"]:
        assert order.index(x["action"]) <= order.index(x["max_action"])
        assert x["action"] == x["computed_action"] and not x["shadow"]
    assert served["health"]["pending"] == 0 and served["health"]["accounts"] == len(served["docs"])
    m = served["metrics"]
    assert 'distillguard_events_total{outcome="accepted"}' in m
    assert "distillguard_refresh_seconds_bucket" in m
    assert not any(t in m for t in SECRET_TOKENS)


def test_auth_scopes_and_no_token_leaks(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with _client(tmp_path / "s") as c:
        body = b'{"request_id":"a1","ts":1793577600000,"account_id":"x"}'
        assert c.post("/v1/events", content=body).status_code == 401
        r = c.post("/v1/events", content=body, headers={"Authorization": "Bearer not-a-real-token"})
        assert r.status_code == 401 and "not-a-real-token" not in r.text
        r = c.post("/v1/events", content=body, headers=H_DECIDE)
        assert r.status_code == 403 and "tok-decide" not in r.text
        assert c.get("/v1/decisions/x", headers=H_INGEST).status_code == 403
        assert c.get("/metrics", headers=H_DECIDE).status_code == 403
        assert c.post("/v1/events", content=body, headers={"Authorization": "Bearer tok-gateway-001"}).status_code == 200
        assert c.post("/v1/admin/refresh", headers=H_ADMIN).status_code == 200
        assert c.get("/v1/decisions/x", headers={"Authorization": "Bearer tok-gateway-001"}).json()["events"] == 1
        assert c.get("/v1/decisions/unknown", headers=H_DECIDE).status_code == 404
        assert c.get("/healthz").status_code == 200
        assert "distillguard_auth_failures_total" in c.get("/metrics", headers=H_ADMIN).text
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert not any(t in text for t in SECRET_TOKENS + ("not-a-real-token",))


def test_token_config_errors_never_echo_the_token():
    with pytest.raises(ValueError) as e:
        TokenAuth("supersecret-token:ingest+bogus")
    assert "supersecret" not in str(e.value)
    with pytest.raises(ValueError) as e:
        TokenAuth("supersecret-token")
    assert "supersecret" not in str(e.value)
    a = TokenAuth(" t0k-aaaaaaaa:admin , t0k-bbbbbbbb:decide ")
    assert a.check("Bearer t0k-aaaaaaaa").allows("ingest")
    assert not a.check("Bearer t0k-bbbbbbbb").allows("ingest")
    assert a.check("Basic t0k-aaaaaaaa") is None and a.check(None) is None


def test_bodies_are_quarantined_like_files(tmp_path):
    with _client(tmp_path / "s") as c:
        body = b"\n".join([
            b'{"request_id":"r1","ts":"2026-11-02T00:00:00Z","account_id":"a"}',
            b"",
            b'{"request_id":"r2","ts":"yesterday","account_id":"a"}',
            b"not json",
            b'{"request_id":"r1","ts":"2026-11-02T00:00:01Z","account_id":"a"}',
            b'{"request_id":"r3","ts":1790000000000,"account_id":"a","asn":"64500"}',
        ])
        r = c.post("/v1/events", content=body, headers=H_INGEST).json()
        assert (r["received"], r["accepted"], r["duplicate"], r["rejected"]) == (5, 1, 1, 3)
        assert r["rejects"] == [{"line": 3, "reason": "bad_ts:ts"}, {"line": 4, "reason": "invalid_json"},
                                {"line": 6, "reason": "type:asn"}]
        r = c.post("/v1/events", content=b'[{"request_id":"r9","ts":1793577600000,"account_id":"b"}, 5]', headers=H_INGEST).json()
        assert (r["accepted"], r["rejected"], r["rejects"][0]["reason"]) == (1, 1, "not_an_object")
        r = c.post("/v1/events", content=b'[{"request_id":', headers=H_INGEST)
        assert r.status_code == 400 and r.json()["rejected"] == 1
    q = [orjson.loads(x) for x in (tmp_path / "s" / "quarantine.jsonl").read_bytes().splitlines()]
    assert [(x["line"], x["reason"]) for x in q] == [(3, "bad_ts:ts"), (4, "invalid_json"), (6, "type:asn"),
                                                     (2, "not_an_object"), (1, "invalid_json")]
    assert q[1]["record"] == "not json"


def test_shadow_policy_and_shadow_rules(sim, served, tmp_path):
    log, _ = sim
    lines = lines_of(log)
    full = decisions_of(served["docs"])
    with _client(tmp_path / "shadow", shadow=True) as c:
        c.post("/v1/events", content=b"\n".join(lines), headers=H_INGEST)
        c.post("/v1/admin/refresh", headers=H_ADMIN)
        docs = decisions_of(c.get("/v1/decisions", headers=H_DECIDE).json()["decisions"])
    assert all(d["action"] == "none" for d in docs.values())
    assert {a: d["computed_action"] for a, d in docs.items()} == {a: d["computed_action"] for a, d in full.items()}
    assert {a: d["flagged"] for a, d in docs.items()} == {a: d["flagged"] for a, d in full.items()}
    assert any(d["shadow"] for d in docs.values())
    # A new rule rolled out in shadow: exported as if it were live, enforced as if it did not exist.
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    (rules / "dg-900-shadow-trial.yaml").write_text(SHADOW_RULE)
    with _client(tmp_path / "shadow-rule", rules_dir=rules, shadow_rules=("dg-900",)) as c:
        c.post("/v1/events", content=b"\n".join(lines), headers=H_INGEST)
        c.post("/v1/admin/refresh", headers=H_ADMIN)
        docs = decisions_of(c.get("/v1/decisions", headers=H_DECIDE).json()["decisions"])
    assert {a: d["action"] for a, d in docs.items()} == {a: d["action"] for a, d in full.items()}
    order = ["none", "monitor", "challenge", "throttle", "suspend"]
    raised = [a for a, d in docs.items() if order.index(d["computed_action"]) > order.index(full[a]["computed_action"])]
    assert raised and all(docs[a]["shadow"] for a in raised)
    assert all("trial_everything" in docs[a]["reasons"] for a in raised)
    assert all(d["shadow"] == (d["action"] != d["computed_action"]) for d in docs.values())


SHADOW_RULE = """id: dg-900
title: Trial rule that fires on every account with ten exchanges
description: A deliberately broad rule, to show a rule rolled out in shadow mode.
reason: trial_everything
level: critical
tags: [test]
falsepositives: [everyone]
scope: [account]
detection:
  min_events: 10
  all:
    log_n: ">= 0"
"""


def test_restart_keeps_state_and_idempotency(sim, tmp_path):
    log, _ = sim
    lines = lines_of(log)[:2000]
    with _client(tmp_path / "s") as c:
        first = c.post("/v1/events", content=b"\n".join(lines[:1500]), headers=H_INGEST).json()
        c.post("/v1/admin/refresh", headers=H_ADMIN)
        before = decisions_of(c.get("/v1/decisions", headers=H_DECIDE).json()["decisions"])
    with _client(tmp_path / "s") as c:  # a clean restart on the same store
        again = c.post("/v1/events", content=b"\n".join(lines[:1500]), headers=H_INGEST).json()
        assert again["accepted"] == 0 and again["duplicate"] == first["accepted"] + first["duplicate"]
        after = decisions_of(c.get("/v1/decisions", headers=H_DECIDE).json()["decisions"])
        more = c.post("/v1/events", content=b"\n".join(lines[1500:]), headers=H_INGEST).json()
        assert more["accepted"] > 0
    strip = lambda ds: {a: {k: v for k, v in d.items() if k != "updated_at"} for a, d in ds.items()}  # noqa: E731
    assert strip(before) == strip(after)


def test_serve_command_registers_on_a_typer_app(tmp_path):
    import typer
    from typer.testing import CliRunner

    from distillguard.serve.cli import serve

    app = typer.Typer()
    app.command()(serve)
    app.command("other")(lambda: None)
    runner = CliRunner()
    r = runner.invoke(app, ["serve", "--help"])
    assert r.exit_code == 0 and "--state-dir" in r.output and "--shadow-rule" in r.output
    r = runner.invoke(app, ["serve", "--state-dir", str(tmp_path)], env={"DISTILLGUARD_API_TOKENS": ""})
    assert r.exit_code == 2 and "DISTILLGUARD_API_TOKENS" in r.output
    r = runner.invoke(app, ["serve", "--no-auth", "--host", "0.0.0.0", "--state-dir", str(tmp_path)])
    assert r.exit_code == 2
    r = runner.invoke(app, ["serve", "--state-dir", str(tmp_path)], env={"DISTILLGUARD_API_TOKENS": "verysecret-x:nope"})
    assert r.exit_code == 2 and "verysecret" not in r.output


def test_replay_horizon_folds_old_ticks_and_keeps_current_actions(sim, tmp_path):
    from distillguard.serve.engine import Engine

    log, _ = sim
    body = b"\n".join(lines_of(log))
    actions, ticks = {}, {}
    for hz in (None, 2 * 3_600_000):
        e = Engine(ServeConfig(state_dir=tmp_path / f"hz-{hz}", refresh_ms=10**9, replay_horizon_ms=hz))
        try:
            e.ingest(body)
            e.refresh()
            actions[hz] = {a: orjson.loads(b)["action"] for a, b in e.decisions.items()}
            ticks[hz] = e._ticks.height
        finally:
            e.close()
    assert ticks[2 * 3_600_000] < ticks[None]
    assert actions[2 * 3_600_000] == actions[None]


def test_group_commit_under_concurrent_bodies_counts_each_exchange_once(sim, tmp_path):
    """Bodies committed together (group commit) keep per-body counts exact and first-wins order."""
    import threading

    from distillguard.serve.engine import Engine

    log, _ = sim
    lines = lines_of(log)[:6000]
    # Overlapping bodies: every record is sent twice, by two different threads.
    bodies = [b"\n".join(lines[i:i + 500]) for i in range(0, 6000, 500)]
    bodies += [b"\n".join(lines[i:i + 700]) for i in range(250, 6000, 700)]
    e = Engine(ServeConfig(state_dir=tmp_path / "gc", refresh_ms=10**9))
    seq = Engine(ServeConfig(state_dir=tmp_path / "seq", refresh_ms=10**9))
    try:
        results: list = []
        lock = threading.Lock()
        work = list(range(len(bodies)))

        def worker() -> None:
            while True:
                with lock:
                    if not work:
                        return
                    k = work.pop(0)
                r = e.ingest(bodies[k])
                with lock:
                    results.append(r)

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        unique = len({orjson.loads(x).get("request_id") for x in lines if _valid(x)})
        acc = sum(r.accepted for r in results)
        dup = sum(r.duplicate for r in results)
        rej = sum(r.rejected for r in results)
        assert sum(r.received for r in results) == acc + dup + rej
        assert e.store.counts()[0] == acc
        for b in bodies:  # the same bodies one at a time: the same set of accepted exchanges
            seq.ingest(b)
        assert seq.store.counts()[0] == acc
        assert acc <= unique
        e.refresh()
        seq.refresh()
        # Same exchanges, same detections (line numbers differ only in arrival order between bodies).
        flag = lambda eng: {a: orjson.loads(d)["flagged"] for a, d in eng.decisions.items()}  # noqa: E731
        assert flag(e) == flag(seq)
    finally:
        e.close()
        seq.close()


def _valid(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def test_incremental_refresh_equals_a_full_replay(sim, tmp_path):
    """Refreshing after every body (re-scoring only changed accounts, re-running only later
    cluster epochs) gives the same decisions as one replay of everything, also when bodies
    arrive out of event-time order."""
    import random

    from distillguard.serve.engine import Engine

    log, _ = sim
    lines = [x for x in lines_of(log) if x.strip()]
    bodies = [b"\n".join(lines[i:i + 1500]) for i in range(0, len(lines), 1500)]
    order = list(range(len(bodies)))
    random.Random(3).shuffle(order[: len(order) // 3])  # the first third arrives out of order
    inc = Engine(ServeConfig(state_dir=tmp_path / "inc", refresh_ms=10**9))
    full = Engine(ServeConfig(state_dir=tmp_path / "full", refresh_ms=10**9))
    try:
        for k in order:
            inc.ingest(bodies[k])
            inc.refresh()
            full.ingest(bodies[k])
        full.refresh()
        strip = lambda e: {a: {k: v for k, v in orjson.loads(d).items() if k != "updated_at"} for a, d in e.decisions.items()}  # noqa: E731
        a, b = strip(inc), strip(full)
        assert a == b
        assert any(d["flagged"] for d in b.values()) and any(d["cluster_id"] for d in b.values())
    finally:
        inc.close()
        full.close()


def test_coalesced_bodies_report_their_own_counts_and_reject_lines(sim, tmp_path):
    """Small NDJSON bodies sent at once are reduced together; each response and each quarantine
    line still speaks of its own body, exactly as when the bodies come one at a time."""
    import threading

    from distillguard.serve.engine import Engine

    log, _ = sim
    lines = lines_of(log)[:3000]
    bad = [b'{"request_id": 5}', b"not json", b"", b"   ", b'{"request_id": "x", "ts": "yesterday"}', b"[1,2]"]
    bodies = []
    for k, i in enumerate(range(0, 3000, 150)):
        part = list(lines[i:i + 150])
        part.insert(k % 7, bad[k % len(bad)])
        if k % 5 == 0:
            part += lines[i:i + 20]  # in-body duplicates
        bodies.append(b"\n".join(part) + (b"\n" if k % 2 else b""))
    seq = Engine(ServeConfig(state_dir=tmp_path / "seq", refresh_ms=10**9))
    co = Engine(ServeConfig(state_dir=tmp_path / "co", refresh_ms=10**9, ingest_workers=1))
    try:
        want = [seq.ingest(b).as_dict() for b in bodies]
        got: dict[int, dict] = {}
        start = threading.Barrier(len(bodies))

        def send(k: int) -> None:
            start.wait()
            got[k] = co.ingest(bodies[k]).as_dict()

        threads = [threading.Thread(target=send, args=(k,)) for k in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for k in range(len(bodies)):
            g, w = got[k], want[k]
            assert (g["received"], g["rejected"], g["rejects"]) == (w["received"], w["rejected"], w["rejects"]), k
            assert g["accepted"] + g["duplicate"] == w["accepted"] + w["duplicate"], k
        assert sum(g["accepted"] for g in got.values()) == sum(w["accepted"] for w in want)
        q = lambda e: sorted((orjson.loads(x)["line"], orjson.loads(x)["reason"]) for x in e.quarantine.path.read_bytes().splitlines())  # noqa: E731
        co.quarantine.flush()
        seq.quarantine.flush()
        assert q(co) == q(seq) and len(q(co)) == sum(w["rejected"] for w in want)
    finally:
        seq.close()
        co.close()


def test_slow_refreshes_are_spaced_out_so_ingest_keeps_most_of_the_machine(tmp_path):
    from distillguard.serve.engine import Engine

    e = Engine(ServeConfig(state_dir=tmp_path / "bp", refresh_ms=2000, refresh_max_busy=1 / 3))
    try:
        e._pending_rows = 10
        e.refresh_wall_s = 0.05          # a cheap refresh: the wall-clock cadence rules
        assert e._due(2.0) and not e._due(1.0)
        e.refresh_wall_s = 3.0           # a 3 s refresh: wait twice that before the next
        assert not e._due(5.9) and e._due(6.1)
        e._pending_rows = 0
        assert not e._due(60.0)
    finally:
        e.close()
