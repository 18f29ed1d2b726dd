"""Abuse suite (issue 23): valid-looking hostile input and faults, through the real CLI and service.

Each test replays one case and asserts the outcome: no crash, bounded time (a subprocess
deadline; the measured numbers live in bench/bench_hostile.py), counts reconcile, and the
decisions of untouched accounts unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

pytest.importorskip("uvicorn")

from distillguard.serve.app import build_service, create_app  # noqa: E402
from distillguard.serve.auth import TokenAuth  # noqa: E402
from distillguard.serve.config import ServeConfig  # noqa: E402
from distillguard.serve.engine import AppendQuarantine, Engine  # noqa: E402
from distillguard.serve.fastpath import decision_protocol  # noqa: E402
from distillguard.share import stix  # noqa: E402
from distillguard.share.match import load_indicators  # noqa: E402
from distillguard.share.rules import load_rule_docs, rule_indicator  # noqa: E402
from serve_util import H_INGEST, TOKENS, lines_of, sim_and_scan  # noqa: E402
from test_serve_fastpath import Server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_hostile import CASES, good_records  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
NOW = int(time.time() * 1000)


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distillguard", *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# -- 1. extreme timestamps in the scan ------------------------------------------------------------

def test_scan_quarantines_extreme_timestamps_and_reconciles(tmp_path):
    log = _write(tmp_path / "x.jsonl", good_records() + CASES["all_extremes"])
    r = _cli("scan", str(log), "--out", str(tmp_path / "out"), "-q", timeout=60)
    assert r.returncode == 0, r.stderr[-500:]
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["quarantine_reasons"] == {"ts_out_of_range": 4}
    assert s["records_read"] == s["valid"] + s["quarantined"] + s["duplicates_dropped"] == 104
    q = [orjson.loads(x) for x in (tmp_path / "out" / "quarantine.jsonl").read_bytes().splitlines()]
    assert sorted(x["line"] for x in q) == [101, 102, 103, 104]


def test_replay_cost_follows_active_epochs_not_the_span(tmp_path):
    """With the window opened to every parseable time, the replay still ends at once: it walks
    the epochs that hold data, not every 15 minutes from year 1 to 9999."""
    log = _write(tmp_path / "x.jsonl", good_records() + CASES["all_extremes"])
    code = ("import sys; from distillguard.scan import scan; from distillguard.ingest import EventTimeWindow as W; "
            f"s = scan([{str(log)!r}], {str(tmp_path / 'out')!r}, show_progress=False, event_window=W(1e7, 1e10)); "
            "print(s['valid'], s['event_time_start'], s['event_time_end'])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 0, r.stderr[-500:]
    assert r.stdout.split() == ["104", "0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.000Z"]


def test_window_bounds_are_policy_not_data():
    from distillguard.ingest import EventTimeWindow

    w = EventTimeWindow(max_age_days=1, max_skew_minutes=60, now_ms=NOW)
    lo, hi = w.bounds()
    assert (lo, hi) == (NOW - 86_400_000, NOW + 3_600_000)
    with pytest.raises(ValueError):
        EventTimeWindow(max_age_days=float("nan"))


def test_nul_in_account_id_never_reaches_accounts_csv(tmp_path):
    log = tmp_path / "x.jsonl"
    _write(log, good_records())
    with open(log, "a") as f:
        f.write('{"request_id":"n1","ts":%d,"account_id":"ev\\u0000il"}\n' % (NOW - 60_000))
    r = _cli("scan", str(log), "--out", str(tmp_path / "out"), "-q")
    assert r.returncode == 0, r.stderr[-500:]
    assert b"\x00" not in (tmp_path / "out" / "accounts.csv").read_bytes()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["quarantine_reasons"] == {"bad_id:account_id": 1}


# -- 2. the service: one hostile record must not rewrite other accounts' decisions ---------------

KEEP = ("action", "computed_action", "max_action", "flagged", "first_flagged_ts", "events", "events_before_flag")


def test_far_future_record_leaves_other_accounts_decisions(tmp_path_factory):
    log, _ = sim_and_scan(tmp_path_factory)
    eng = Engine(ServeConfig(state_dir=tmp_path_factory.mktemp("far"), refresh_ms=60_000))
    try:
        eng.ingest(b"\n".join(lines_of(log)) + b"\n")
        eng.refresh(force=True)
        before = {a: {k: v for k, v in orjson.loads(b).items() if k in KEEP} for a, b in eng.decisions.items()}
        assert any(d["flagged"] for d in before.values())
        far = eng.ingest(b'{"request_id":"far-1","ts":"9999-12-31T23:59:59Z","account_id":"zz-far"}\n')
        assert (far.accepted, far.rejected, far.rejects[0]["reason"]) == (0, 1, "ts_out_of_range")
        # Inside the window (a gateway clock a day ahead): accepted, and still moves no one else.
        near = eng.ingest(orjson.dumps({"request_id": "near-1", "ts": NOW + 23 * 3_600_000, "account_id": "zz-near"}) + b"\n")
        assert near.accepted == 1
        eng.refresh(force=True)
        after = {a: {k: v for k, v in orjson.loads(b).items() if k in KEEP} for a, b in eng.decisions.items()}
    finally:
        eng.close()
    changed = [a for a in before if after.get(a) != before[a]]
    assert changed == []
    assert "zz-far" not in after and "zz-near" in after


# -- 7. bodies: per-record acceptance, BOM, quarantine rotation ------------------------------------

def _rec(i: int, **kw) -> dict:
    return {"request_id": f"b{i}", "ts": NOW - 3_600_000 + i, "account_id": f"acct-{i % 7}", "prompt": f"q {i}", **kw}


def test_bodies_accept_per_record(tmp_path):
    cfg = ServeConfig(state_dir=tmp_path / "s", refresh_ms=60_000)
    with TestClient(create_app(build_service(cfg, TokenAuth(TOKENS)))) as c:
        items = [orjson.dumps(_rec(i)) for i in range(1000)]
        bad = b'{"request_id":"nan","ts":%d,"account_id":"a","extra":NaN}' % NOW
        r = c.post("/v1/events", content=b"[" + b",".join(items + [bad]) + b"]", headers=H_INGEST)
        assert r.status_code == 200 and (r.json()["received"], r.json()["accepted"], r.json()["rejected"]) == (1001, 1001, 0)
        body = b"[1,2]\n" + b"\n".join(orjson.dumps(_rec(2000 + i)) for i in range(490)) + b"\n"
        r = c.post("/v1/events", content=body, headers=H_INGEST).json()
        assert (r["accepted"], r["rejected"], r["rejects"][0]) == (490, 1, {"line": 1, "reason": "not_an_object"})
        r = c.post("/v1/events", content=b"\xef\xbb\xbf" + orjson.dumps(_rec(5000)), headers=H_INGEST).json()
        assert (r["accepted"], r["rejected"]) == (1, 0)
        broken = b"[" + orjson.dumps(_rec(6000)) + b", {\"request_id\": \"x\" \"ts\": 1}, " + orjson.dumps(_rec(6001)) + b"]"
        r = c.post("/v1/events", content=broken, headers=H_INGEST).json()
        assert (r["accepted"], r["rejected"], r["rejects"][0]) == (2, 1, {"line": 2, "reason": "invalid_json"})


def test_quarantine_rotates_and_never_stops(tmp_path):
    q = AppendQuarantine(tmp_path / "quarantine.jsonl", max_bytes=2000, keep=3)
    for i in range(200):
        q.add("http:/v1/events", i + 1, "invalid_json", b"x" * 50)
    q.close()
    parts = sorted(tmp_path.glob("quarantine.jsonl*"))
    assert [p.name for p in parts] == ["quarantine.jsonl", "quarantine.jsonl.1", "quarantine.jsonl.2", "quarantine.jsonl.3"]
    assert q.written == q.count == 200 and q.rotations > 3
    last = orjson.loads((tmp_path / "quarantine.jsonl").read_bytes().splitlines()[-1])
    assert last["line"] == 200


# -- 6. connections: read timeouts, connection cap, mid-body disconnects ---------------------------

@pytest.fixture
def live(tmp_path):
    cfg = ServeConfig(state_dir=tmp_path / "s", refresh_ms=60_000, header_timeout_s=0.5, body_timeout_s=1.0, max_connections=4)
    service = build_service(cfg, TokenAuth(TOKENS))
    with Server(create_app(service), http=decision_protocol(service)) as srv:
        yield srv.port


def _closed_within(s: socket.socket, seconds: float) -> bool:
    s.settimeout(seconds)
    try:
        return s.recv(1) == b""
    except (TimeoutError, socket.timeout):
        return False
    except ConnectionResetError:
        return True


def _healthy(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return s.makefile("rb").readline().split()[1] == b"200"


def test_partial_headers_and_slow_bodies_time_out(live):
    idle = socket.create_connection(("127.0.0.1", live))
    partial = socket.create_connection(("127.0.0.1", live))
    partial.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
    slow = socket.create_connection(("127.0.0.1", live))
    slow.sendall(b"POST /v1/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer tok-ingest-0001\r\ncontent-length: 1000\r\n\r\n{")
    try:
        assert _closed_within(idle, 3) and _closed_within(partial, 3)
        assert _closed_within(slow, 4)
        assert _healthy(live)
    finally:
        for s in (idle, partial, slow):
            s.close()


def test_connection_cap_keeps_service_usable(live):
    socks = [socket.create_connection(("127.0.0.1", live)) for _ in range(12)]
    try:
        closed = sum(_closed_within(s, 0.3) for s in socks)
        assert closed >= 8  # past the cap of 4, closed on arrival (not after the header timeout)
        time.sleep(0.8)  # the idle ones within the cap time out too
        assert _healthy(live)
    finally:
        for s in socks:
            s.close()


def test_one_client_cannot_take_every_connection(tmp_path):
    cfg = ServeConfig(state_dir=tmp_path / "s", refresh_ms=60_000, header_timeout_s=5.0, max_connections=100,
                      max_connections_per_client=3)
    service = build_service(cfg, TokenAuth(TOKENS))
    with Server(create_app(service), http=decision_protocol(service)) as srv:
        socks = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(8)]
        try:
            assert sum(_closed_within(s, 0.3) for s in socks) == 5
        finally:
            for s in socks:
                s.close()
        time.sleep(0.2)
        assert _healthy(srv.port)


def test_mid_body_disconnect_logs_one_line(live, caplog):
    caplog.set_level(logging.WARNING)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", live)) as s:
            s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer tok-ingest-0001\r\n"
                      b"content-length: 100000\r\n\r\n" + b"{" * 1000)
            time.sleep(0.05)
    time.sleep(0.5)
    assert _healthy(live)
    gone = [r for r in caplog.records if "disconnected during the body" in r.getMessage()]
    assert len(gone) == 5
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_memory_in_flight_is_capped(tmp_path):
    cfg = ServeConfig(state_dir=tmp_path / "s", refresh_ms=60_000, max_inflight_bytes=1000)
    with TestClient(create_app(build_service(cfg, TokenAuth(TOKENS)))) as c:
        r = c.post("/v1/events", content=b"\n".join(orjson.dumps(_rec(i)) for i in range(100)), headers=H_INGEST)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        r = c.post("/v1/events", content=orjson.dumps(_rec(1)), headers=H_INGEST)
        assert r.status_code == 200 and r.json()["accepted"] == 1  # the first body's bytes were released


# -- 3-5. partner bundles are untrusted ------------------------------------------------------------

PROVIDER = "identity--00000000-0000-4000-8000-000000000001"


def _rule_bundle(tmp_path: Path, rid: str, level: str = "critical", pattern_doc: dict | None = None) -> Path:
    doc = dict(load_rule_docs()[0])
    doc["id"], doc["level"] = rid, level
    if pattern_doc is not None:
        doc["detection"] = pattern_doc
    ind = rule_indicator(doc, provider_id=PROVIDER, created=stix.ts(NOW), modified=stix.ts(NOW), marking=stix.TLP2_IDS["clear"],
                         half_life_days=30, ttl_days=90, valid_from_ms=NOW)
    p = tmp_path / f"bundle-{abs(hash(rid))}.json"
    p.write_text(json.dumps({"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000009", "objects": [ind]}))
    return p


def test_share_rules_never_write_outside_out(tmp_path):
    out = tmp_path / "a" / "rules"
    for rid in ("../../victim/x", "/tmp/abs-victim", "..\\..\\w"):
        r = _cli("share", "rules", str(_rule_bundle(tmp_path, rid)), "--out", str(out))
        assert r.returncode == 0, r.stderr[-500:]
    assert not (tmp_path / "victim").exists() and not Path("/tmp/abs-victim.yaml").exists()
    assert all(p.parent == out for p in tmp_path.rglob("*.yaml")), sorted(p.name for p in tmp_path.rglob("*.yaml"))


def test_partner_rule_is_sandboxed_unless_approved(tmp_path):
    import yaml

    b = _rule_bundle(tmp_path, "partner-everything", "critical", {"min_events": 1, "all": {"single_share": ">= 0"}})
    r = _cli("share", "rules", str(b), "--out", str(tmp_path / "r1"))
    assert r.returncode == 0, r.stderr[-500:]
    doc = yaml.safe_load((tmp_path / "r1" / "partner-everything.yaml").read_text())
    assert doc["sandbox_max_action"] == "monitor" and doc["weight"] < 0.6  # alone, below the policy's challenge threshold
    r = _cli("share", "rules", str(b), "--out", str(tmp_path / "r2"), "--approve", "partner-everything")
    doc = yaml.safe_load((tmp_path / "r2" / "partner-everything.yaml").read_text())
    assert doc.get("weight", 0.9) == 0.9 and "sandbox_max_action" not in doc


def _ident(conf, half=30, min_hits=1, pattern=None, iid="indicator--00000000-0000-4000-8000-0000000000a1"):
    return {"type": "indicator", "spec_version": "2.1", "id": iid, "created": stix.ts(NOW), "modified": stix.ts(NOW),
            "name": "t", "pattern": pattern or "[distillguard-identifier:kind = 'asn' AND distillguard-identifier:value = 'ab12']",
            "pattern_type": "stix", "valid_from": stix.ts(NOW), "confidence": conf,
            "extensions": {stix.EXT_PROPS["id"]: {"extension_type": "property-extension", "kind": "asn", "key_id": "k1",
                                                  "half_life_days": half, "min_hits": min_hits}}}


def test_partner_fields_are_range_checked_and_bad_ones_skipped():
    objs = [_ident(1000, iid="indicator--00000000-0000-4000-8000-0000000000a1"),
            _ident(80, half="abc", iid="indicator--00000000-0000-4000-8000-0000000000a2"),
            _ident(80, half=1e300, iid="indicator--00000000-0000-4000-8000-0000000000a3"),
            _ident(80, min_hits=2.5, iid="indicator--00000000-0000-4000-8000-0000000000a4"),
            _ident(80, iid="indicator--00000000-0000-4000-8000-0000000000a5")]
    objs[4]["extensions"]["x"] = [1, 2]
    skipped: dict = {}
    inds = load_indicators(objs, skipped=skipped)
    assert [i.id[-2:] for i in inds] == ["a5"] and inds[0].confidence == 0.8
    assert skipped == {"bad_confidence": 1, "bad_half_life_days": 2, "bad_min_hits": 1}


@pytest.fixture
def key(tmp_path):
    r = _cli("share", "keygen", "--out", str(tmp_path / "key.json"), "--key-id", "k1")
    assert r.returncode == 0, r.stderr[-300:]
    return str(tmp_path / "key.json")


@pytest.mark.parametrize("bundle", [{"type": "bundle", "objects": {"a": 1}}, {"type": "bundle", "objects": 7}, "just a string"])
def test_share_match_refuses_malformed_bundles_in_one_line(tmp_path, bundle, key):
    p = tmp_path / "b.json"
    p.write_text(json.dumps(bundle))
    log = _write(tmp_path / "x.jsonl", good_records())
    r = _cli("share", "match", str(p), "--events", str(log), "--out", str(tmp_path / "m"), "--key", key)
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout
    assert len((r.stdout + r.stderr).strip().splitlines()) == 1


def test_share_match_object_limit(tmp_path, key):
    objs = [_ident(80, iid=f"indicator--00000000-0000-4000-8000-{i:012d}") for i in range(stix.MAX_OBJECTS + 1)]
    p = tmp_path / "big.json"
    p.write_text(json.dumps({"type": "bundle", "objects": objs}))
    log = _write(tmp_path / "x.jsonl", good_records())
    r = _cli("share", "match", str(p), "--events", str(log), "--out", str(tmp_path / "m"), "--key", key, timeout=60)  # the bound
    assert r.returncode == 2 and "more than" in r.stdout + r.stderr


# -- 8. console: login throttling, Secure cookies, audited refusals --------------------------------

@pytest.fixture(scope="module")
def console_db(tmp_path_factory):
    pytest.importorskip("multipart")
    from console_util import make_scan
    from distillguard.console.store import build_store

    return build_store(make_scan(tmp_path_factory.mktemp("scan")), log=lambda *a: None)


def _console(console_db, tmp_path, **env):
    import shutil

    from console_util import ADMIN_PW
    from distillguard.console.app import create_app

    copy = tmp_path / "c.duckdb"
    shutil.copy(console_db, copy)
    return TestClient(create_app(copy, env={"DISTILLGUARD_ADMIN_PASSWORD": ADMIN_PW, **env}))


def _csrf(html: str) -> str:
    import re

    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _try_login(c, user: str, pw: str, headers: dict | None = None):
    tok = _csrf(c.get("/login", headers=headers).text)
    return c.post("/login", data={"username": user, "password": pw, "csrf": tok}, headers=headers, follow_redirects=False)


def test_console_login_is_throttled_and_audited(console_db, tmp_path):
    from console_util import ADMIN_PW
    from distillguard.console.store import Store

    with _console(console_db, tmp_path) as c:
        codes = [_try_login(c, "admin", f"wrong-{i}").status_code for i in range(8)]
        assert codes[:5] == [303] * 5 and 429 in codes[5:]
        r = _try_login(c, "admin", ADMIN_PW)  # even the right password waits out the backoff
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    s = Store(tmp_path / "c.duckdb")
    try:
        acts = [r["action"] for r in s.rows("SELECT action FROM audit WHERE username = 'admin' ORDER BY id")]
    finally:
        s.close()
    assert acts.count("login.failed") == 5 and acts.count("login.throttled") >= 3


def test_console_per_address_throttle_behind_trusted_proxy(console_db, tmp_path):
    with _console(console_db, tmp_path, DISTILLGUARD_TRUSTED_PROXIES="testclient") as c:
        bad = {"X-Forwarded-For": "198.51.100.7"}
        for i in range(6):
            _try_login(c, f"user{i}", "wrong-password", bad)  # a different account each time: only the address repeats
        assert _try_login(c, "someone", "wrong-password", bad).status_code == 429
        assert _try_login(c, "someone", "wrong-password", {"X-Forwarded-For": "198.51.100.8"}).status_code == 303


def test_console_secure_cookie_behind_tls_proxy(console_db, tmp_path):
    from console_util import ADMIN_PW

    def login_via_tls_proxy(c):
        tok = _csrf(c.get("/login").text)  # (the test client speaks http: it would not send back a Secure cookie)
        return c.post("/login", data={"username": "admin", "password": ADMIN_PW, "csrf": tok},
                      headers={"X-Forwarded-Proto": "https"}, follow_redirects=False)

    with _console(console_db, tmp_path, DISTILLGUARD_TRUSTED_PROXIES="testclient") as c:
        r = login_via_tls_proxy(c)
        assert r.status_code == 303 and r.headers["location"] == "/" and "secure" in r.headers["set-cookie"].lower()
        assert "secure" in c.get("/login", headers={"X-Forwarded-Proto": "https"}).headers["set-cookie"].lower()
    (tmp_path / "b").mkdir()
    with _console(console_db, tmp_path / "b") as c:  # not a trusted proxy: the header is ignored
        r = login_via_tls_proxy(c)
        assert r.status_code == 303 and r.headers["location"] == "/" and "secure" not in r.headers["set-cookie"].lower()


def test_console_refused_get_is_audited(console_db, tmp_path):
    from console_util import ADMIN_PW
    from distillguard.console.store import Store

    with _console(console_db, tmp_path) as c:
        r = _try_login(c, "admin", ADMIN_PW)
        c.cookies.update(r.cookies)
        page = c.get("/users").text
        r = c.post("/users", data={"username": "viv", "password": "viewer-pass-1", "role": "viewer", "csrf": _csrf(page)})
        c.cookies.clear()
        r = _try_login(c, "viv", "viewer-pass-1")
        c.cookies.update(r.cookies)
        assert c.get("/users").status_code == 403
    s = Store(tmp_path / "c.duckdb")
    try:
        denied = s.rows("SELECT * FROM audit WHERE username = 'viv' AND action = 'denied'")
    finally:
        s.close()
    assert [(d["target"], d["detail"]) for d in denied] == [("/users", "needs admin")]


# -- 5. a TAXII server that pages forever ----------------------------------------------------------

class _EndlessTaxii:
    """The hostile party itself: a TAXII 2.1 API root whose collection answers ``more: true``
    on every page, each page full of indicators."""

    COL = "91a7b528-80eb-42ed-a74d-c6fbd5a26116"

    def __init__(self):
        import http.server

        page = orjson.dumps({"more": True, "next": "again",
                             "objects": [_ident(80, iid=f"indicator--00000000-0000-4000-8000-{i:012d}") for i in range(500)]})
        col = {"id": self.COL, "title": "endless", "can_read": True, "can_write": False,
               "media_types": ["application/stix+json;version=2.1"]}
        routes = {"/api/collections/": orjson.dumps({"collections": [col]}), f"/api/collections/{self.COL}/": orjson.dumps(col)}
        self.pages = 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                path = self.path.split("?")[0]
                body = page if path.endswith("/objects/") else routes.get(path)
                if body is page:
                    outer.pages += 1
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/taxii+json;version=2.1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/"

    def __enter__(self):
        import threading

        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()


def test_share_pull_stops_a_server_that_pages_forever(tmp_path):
    with _EndlessTaxii() as srv:
        r = _cli("share", "pull", "--out", str(tmp_path / "b.json"), "--url", srv.url, "--collection", "endless",
                 "--max-pages", "20", timeout=60)
    assert r.returncode == 2 and "more than 20 pages" in r.stdout + r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "b.json").exists()


def test_share_rules_dry_run_reports_the_flag_change(tmp_path):
    log = _write(tmp_path / "x.jsonl", good_records())
    assert _cli("scan", str(log), "--out", str(tmp_path / "scan"), "-q").returncode == 0
    labels = tmp_path / "labels.csv"
    labels.write_text("account_id,label\n" + "".join(f"acct-{a},benign\n" for a in range(10)))
    b = _rule_bundle(tmp_path, "partner-everything", "critical", {"min_events": 1, "all": {"single_share": ">= 0"}})
    import re

    def dry(*extra: str) -> tuple[int, ...]:
        r = _cli("share", "rules", str(b), "--out", str(tmp_path / "r"), "--dry-run", "--scan", str(tmp_path / "scan"),
                 "--labels", str(labels), *extra)
        assert r.returncode == 0, r.stderr[-500:]
        m = re.search(r"dry run: flagged (\d+) -> (\d+) of 10 account\(s\) \((\d+) newly flagged, 0 no longer\); "
                      r"benign flagged (\d+) -> (\d+) of 10", r.stdout)
        assert m, r.stdout
        return tuple(map(int, m.groups()))

    before, after, new, b_before, b_after = dry("--approve", "partner-everything")  # approved: its own level (critical)
    assert after == b_after == 10 and new == 10 - before and b_before == before
    assert dry()[2] == 0  # sandboxed (alone at most monitor): flags no one new
    assert not (tmp_path / "r").exists()  # a dry run writes nothing


# -- the array splitter, by property ---------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json = st.recursive(st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                     max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(_json, max_size=8), st.sampled_from([b"", b" ", b"\n  "]))
def test_array_items_split_as_the_json_parser_does(items, ws):
    from distillguard.ingest.bodies import json_array_items

    body = ws + b"[" + (b"," + ws).join(orjson.dumps(x) for x in items) + b"]" + ws
    assert [orjson.loads(x) for x in json_array_items(body)] == items
