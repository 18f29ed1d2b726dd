"""Console (issue 6) without a browser: store, login, CSRF, roles, decisions, appeals, escaping, tune."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient  # noqa: E402

from console_util import ADMIN_PW, APPEAL_TOKEN, EVIL_ID, PAYLOAD, make_scan  # noqa: E402
from distillguard.console.app import create_app  # noqa: E402
from distillguard.console.cli import _is_loopback  # noqa: E402
from distillguard.console.store import Store, build_store  # noqa: E402

ENV = {"DISTILLGUARD_ADMIN_PASSWORD": ADMIN_PW, "DISTILLGUARD_APPEAL_TOKEN": APPEAL_TOKEN}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    scan = make_scan(tmp_path_factory.mktemp("scan"))
    return build_store(scan, log=lambda *a: None)


@pytest.fixture()
def client(db, tmp_path):
    import shutil

    copy = tmp_path / "c.duckdb"
    shutil.copy(db, copy)
    return TestClient(create_app(copy, env=ENV))


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def login(c: TestClient, user="admin", pw=ADMIN_PW) -> str:
    tok = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"username": user, "password": pw, "csrf": tok})
    assert r.status_code == 200 and r.url.path == "/", r.text[:300]
    return csrf_of(r.text)


def test_store_tables(db):
    s = Store(db)
    try:
        assert s.one("SELECT count(*) n FROM accounts")["n"] == 5
        assert s.one("SELECT sum(n) n FROM activity")["n"] == 240
        assert 0 < s.one("SELECT count(*) n FROM samples")["n"] <= 5 * 30
        assert s.one("SELECT count(*) n FROM links WHERE key LIKE 'pf:%'")["n"] >= 3
        assert s.one("SELECT count(*) n FROM contrib")["n"] > 0
    finally:
        s.close()


def test_first_start_needs_admin_password(db, tmp_path):
    import shutil

    copy = tmp_path / "fresh.duckdb"
    shutil.copy(db, copy)
    with pytest.raises(RuntimeError, match="DISTILLGUARD_ADMIN_PASSWORD"):
        create_app(copy, env={})


def test_only_login_page_without_session(client):
    for path in ["/", "/account/acct_top", "/cluster/cl-1", "/audit", "/users"]:
        r = client.get(path)
        assert r.url.path == "/login", path
        assert "acct_top" not in r.text
    assert client.post("/account/acct_top/decide", data={"decision": "confirm", "comment": "x"}).status_code == 403
    r = client.get("/login")
    assert "script-src 'none'" in r.headers["content-security-policy"]
    # wrong password
    tok = csrf_of(r.text)
    r = client.post("/login", data={"username": "admin", "password": "nope", "csrf": tok})
    assert r.url.path == "/login" and "Wrong" in r.text
    # login form without its pre-session token
    r = client.post("/login", data={"username": "admin", "password": ADMIN_PW, "csrf": "forged"})
    assert r.url.path == "/login"


def test_queue_sort_filter_and_escaping(client):
    login(client)
    r = client.get("/")
    assert r.status_code == 200
    order = re.findall(r'data-account="([^"]+)"', r.text)
    assert order[0] == "acct_top" and "acct_calm2" not in order  # sorted by score, action none hidden
    assert "<b>evil</b>" not in r.text and "acct_&lt;b&gt;evil&lt;/b&gt;" in r.text
    r = client.get("/?sort=score&dir=asc&status=all")
    assert re.findall(r'data-account="([^"]+)"', r.text)[0] == "acct_calm2"
    r = client.get("/?action=throttle")
    assert re.findall(r'data-account="([^"]+)"', r.text) == ["acct_two"]
    r = client.get("/?reason=model:reason_share")
    assert re.findall(r'data-account="([^"]+)"', r.text) == ["acct_top"]
    r = client.get("/?cluster=cl-1&status=all")
    assert len(re.findall(r'data-account="([^"]+)"', r.text)) == 3


def test_case_pages(client):
    login(client)
    r = client.get("/account/acct_top")
    assert r.status_code == 200
    for needle in ["Activity timeline", "Hour of day", "Score contributions", "Linked accounts", "Partner indicator", "Sample exchanges",
                   "Reasoning", "<svg"]:
        assert needle.lower() in r.text.lower(), needle
    assert "<script>window.__pwned" not in r.text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in r.text
    assert "&amp;lt;b&amp;gt;" in r.text  # text that looks escaped stays literal
    from urllib.parse import quote

    r = client.get("/account/" + quote(EVIL_ID, safe=""))
    assert r.status_code == 200 and "<b>evil</b>" not in r.text
    r = client.get("/cluster/cl-1")
    assert r.status_code == 200 and "Members (3)" in r.text


def test_decisions_need_comment_csrf_and_role(client):
    csrf = login(client)
    assert client.post("/account/acct_top/decide", data={"decision": "confirm", "comment": "c", "csrf": "bad"}).status_code == 403
    assert client.post("/account/acct_top/decide", data={"decision": "confirm", "comment": "  ", "csrf": csrf}).status_code == 400
    r = client.post("/account/acct_top/decide", data={"decision": "confirm", "comment": "sweeps <i>CoT</i>", "csrf": csrf})
    assert r.status_code == 200 and 'id="label">attack' in r.text and "&lt;i&gt;CoT" in r.text
    r = client.post("/account/acct_two/decide", data={"decision": "false_positive", "comment": "known lab", "csrf": csrf})
    q = client.get("/").text
    assert "lifted" in q
    # a viewer cannot decide; an admin makes one
    r = client.post("/users", data={"username": "vic", "password": "viewer-pass", "role": "viewer", "csrf": csrf})
    assert r.status_code == 200 and "vic" in r.text
    audit = client.get("/audit").text
    assert "decision.confirm" in audit and "enforcement.lift" in audit and "user.create" in audit
    client.cookies.clear()
    vcsrf = login(client, "vic", "viewer-pass")
    assert client.post("/account/acct_top/decide", data={"decision": "confirm", "comment": "x", "csrf": vcsrf}).status_code == 403
    assert client.get("/users").status_code == 403
    assert client.get("/audit").status_code == 403
    assert client.post("/users", data={"username": "x", "password": "xxxxxxxxx", "role": "admin", "csrf": vcsrf}).status_code == 403


def test_appeal_flow(client):
    body = {"account_id": "acct_top", "ticket": "T-1", "message": PAYLOAD}
    assert client.post("/api/appeals", json=body).status_code == 401
    assert client.post("/api/appeals", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    h = {"Authorization": f"Bearer {APPEAL_TOKEN}"}
    assert client.post("/api/appeals", json={**body, "account_id": "nobody"}, headers=h).status_code == 404
    assert client.post("/api/appeals", json={**body, "account_id": "acct_calm2"}, headers=h).status_code == 409
    r = client.post("/api/appeals", json=body, headers=h)
    assert r.status_code == 201
    aid = r.json()["id"]
    assert client.post("/api/appeals", json=body, headers=h).json()["duplicate"] is True
    csrf = login(client)
    q = client.get("/").text
    assert "Pending appeals (1)" in q and "<script>window" not in q
    r = client.post(f"/appeal/{aid}/decide", data={"decision": "lift", "comment": "", "csrf": csrf})
    assert r.status_code == 400
    r = client.post(f"/appeal/{aid}/decide", data={"decision": "lift", "comment": "research use, verified", "csrf": csrf})
    assert r.status_code == 200 and "lifted" in r.text
    assert client.get(f"/api/appeals/{aid}", headers=h).json()["decision"] == "lift"
    audit = client.get("/audit").text
    assert "appeal.receive" in audit and "appeal.lift" in audit and "enforcement.lift" in audit
    # no enforcement left: a new appeal is refused
    assert client.post("/api/appeals", json=body, headers=h).status_code == 409


def test_logout_kills_session(client):
    csrf = login(client)
    cookie = client.cookies.get("dg_session")
    client.post("/logout", data={"csrf": csrf})
    client.cookies.set("dg_session", cookie)
    assert client.get("/").url.path == "/login"


def test_loopback_only():
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("localhost")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("192.168.1.2")


def test_tune_from_labels(client, tmp_path):
    from distillguard.console.tune import format_report, tune

    csrf = login(client)
    for a, d in [("acct_top", "confirm"), ("acct_two", "confirm"), ("acct_calm1", "false_positive"), ("acct_calm2", "false_positive")]:
        client.post(f"/account/{a}/decide", data={"decision": d, "comment": "t", "csrf": csrf})
    path = client.app.state.store.path
    client.app.state.store.close()
    out = tmp_path / "m.json"
    res = tune(path, None, out, apply=False)
    assert res["labels"]["analyst"] == 4 and not out.exists()
    assert "auroc" in format_report(res)
    res = tune(path, None, out, apply=True)
    assert out.exists() and res["applied"] and res["after"]["auroc"] is not None
