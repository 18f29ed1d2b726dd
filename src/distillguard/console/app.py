"""The analyst console (FastAPI + Jinja2, autoescaped; no JavaScript, no CDN).

Security model: every page but ``/login`` and ``/static`` needs a session; every POST from a
browser needs the session's CSRF token; every action checks the role server-side
(viewer < analyst < admin); every string from the log is escaped by the template engine, and a
Content-Security-Policy without any script source stops whatever escaping might miss. The one
machine-to-machine endpoint, ``POST /api/appeals``, takes a bearer token instead of a cookie.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from . import views
from .auth import (SESSION_COOKIE, RANK, LoginThrottle, Sessions, client_view, create_user, csrf_ok, ensure_admin, has_role,
                   hash_password, hash_token)
from .store import ROLES, Store, now_ms

HERE = Path(__file__).parent
PRE_COOKIE = "dg_pre"
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'; script-src 'none'")
MAX_COMMENT = 4000


class Forbidden(Exception):
    pass


def create_app(db_path: str | Path, *, env: dict | None = None) -> FastAPI:
    env = dict(os.environ if env is None else env)
    store = Store(db_path)
    ensure_admin(store, env)
    if env.get("DISTILLGUARD_APPEAL_TOKEN"):
        store.set_meta("appeal_token_hash", hash_token(env["DISTILLGUARD_APPEAL_TOKEN"]))
    sessions = Sessions(store)
    throttle = LoginThrottle()
    trusted = frozenset(x.strip() for x in env.get("DISTILLGUARD_TRUSTED_PROXIES", "").split(",") if x.strip())
    pre_signer = URLSafeTimedSerializer(store.secret_key(), salt="dg-console-login")
    jinja = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True, default_for_string=True))
    jinja.globals.update(fmt_ms=views.fmt_ms, explain=views.explain_reason, ACTIONS=views.ACTION_COLOR, has_role=has_role)
    jinja.filters["q"] = lambda d: urlencode({k: v for k, v in d.items() if v not in (None, "")})
    jinja.filters["pq"] = _quote

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def headers(request: Request, call_next):
        resp = await call_next(request)
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden):
        return HTMLResponse(jinja.get_template("error.html").render(message=str(exc) or "Forbidden", session=None), status_code=403)

    def render(name: str, session: dict | None, status: int = 200, **ctx) -> HTMLResponse:
        notes = json.loads(store.meta("notes", "[]") or "[]")
        return HTMLResponse(jinja.get_template(name).render(session=session, notes=notes, **ctx), status_code=status)

    def session_of(request: Request) -> dict | None:
        return sessions.lookup(request.cookies.get(SESSION_COOKIE))

    def to_login() -> RedirectResponse:
        return RedirectResponse("/login", status_code=303)

    async def post_form(request: Request, need: str) -> tuple[dict, dict]:
        """Session + form of a POST, after the session, CSRF and role checks."""
        s = session_of(request)
        if not s:
            raise Forbidden("Not logged in")
        form = dict(await request.form())
        if not csrf_ok(s, form.get("csrf")):
            store.audit(s["username"], "denied", request.url.path, "CSRF token missing or wrong")
            raise Forbidden("CSRF token missing or wrong")
        if not has_role(s, need):
            store.audit(s["username"], "denied", request.url.path, f"needs {need}")
            raise Forbidden(f"This action needs the {need} role")
        return s, form

    def need_get(request: Request, role: str = "viewer") -> dict | None:
        s = session_of(request)
        if s and not has_role(s, role):
            store.audit(s["username"], "denied", request.url.path, f"needs {role}")
            raise Forbidden(f"This page needs the {role} role")
        return s

    # -- login ------------------------------------------------------------------------------
    @app.get("/login")
    def login_page(request: Request, error: str = ""):
        pre = secrets.token_urlsafe(16)
        resp = render("login.html", None, error=error, csrf=pre_signer.dumps(pre))
        resp.set_cookie(PRE_COOKIE, pre, httponly=True, samesite="strict", max_age=3600, secure=client_view(request, trusted)[1])
        return resp

    @app.post("/login")
    async def login(request: Request):
        form = dict(await request.form())
        pre = request.cookies.get(PRE_COOKIE)
        try:
            ok = bool(pre) and pre_signer.loads(form.get("csrf", ""), max_age=3600) == pre
        except BadSignature:
            ok = False
        if not ok:
            return RedirectResponse("/login?error=expired", status_code=303)
        user = str(form.get("username", ""))[:64]
        addr, tls = client_view(request, trusted)
        keys = ("user:" + user, "addr:" + addr)
        wait = throttle.wait(*keys)
        if wait > 0:
            store.audit(user or "?", "login.throttled", addr, f"retry in {wait:.0f} s")
            resp = render("login.html", None, status=429, error="throttled", csrf=pre_signer.dumps(pre))
            resp.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
            return resp
        # scrypt runs off the event loop: a run of logins must not stall other users' pages.
        got = await run_in_threadpool(sessions.login, user, str(form.get("password", "")))
        if not got:
            throttle.failed(*keys)
            store.audit(user or "?", "login.failed", addr, "")
            return RedirectResponse("/login?error=bad", status_code=303)
        throttle.succeeded(keys[0])
        store.audit(user, "login", addr, "")
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(SESSION_COOKIE, got[0], httponly=True, samesite="strict", max_age=8 * 3600, secure=tls)
        resp.delete_cookie(PRE_COOKIE)
        return resp

    @app.post("/logout")
    async def logout(request: Request):
        s, _ = await post_form(request, "viewer")
        sessions.logout(s["sid"])
        store.audit(s["username"], "logout", "", "")
        resp = to_login()
        resp.delete_cookie(SESSION_COOKIE)
        return resp

    # -- queue ------------------------------------------------------------------------------
    @app.get("/")
    def queue_page(request: Request, action: str = "", reason: str = "", cluster: str = "", status: str = "review",
                   sort: str = "score", dir: str = "desc"):
        s = need_get(request)
        if not s:
            return to_login()
        rows = views.queue(store, action=action, reason=reason, cluster=cluster, status=status, sort=sort, direction=dir)
        appeals = store.rows("SELECT p.*, a.score, a.action FROM appeals p LEFT JOIN accounts a USING (account_id) "
                             "WHERE p.status = 'pending' ORDER BY p.id")
        summary = json.loads(store.meta("summary", "{}") or "{}")
        f = {"action": action, "reason": reason, "cluster": cluster, "status": status}
        return render("queue.html", s, rows=rows, appeals=appeals, f=f, sort=sort, dir=dir, summary=summary,
                      reasons=views.reason_codes(store), clusters=views.cluster_ids(store), actions=list(views.ACTION_COLOR))

    # -- cases ------------------------------------------------------------------------------
    @app.get("/account/{account_id:path}")
    def account_page(request: Request, account_id: str):
        s = need_get(request)
        if not s:
            return to_login()
        a = store.one("SELECT * FROM accounts WHERE account_id = ?", [account_id])
        if not a:
            return render("error.html", s, status=404, message="No such account")
        lab = store.latest_labels().get(account_id)
        eff, lifted = views.effective_action(a["action"], lab)
        samples = store.rows("SELECT * FROM samples WHERE account_id = ? ORDER BY ts, request_id", [account_id])
        for x in samples:
            x["when"] = views.fmt_ms(x["ts"])
        return render(
            "case.html", s, kind="account", target=account_id, a=a, label=lab, effective=eff, lifted=lifted,
            reasons=[views.explain_reason(c) for c in a["reasons"].split(";") if c],
            timeline=views.timeline(store, [account_id], a["first_flagged_ms"]), hours=views.hour_strip(store, [account_id]),
            contrib=views.contributions(store, account_id), samples=samples,
            graph=views.graph(store, [account_id], center=account_id),
            partner=store.rows("SELECT * FROM partner WHERE account_id = ? ORDER BY confidence DESC NULLS LAST", [account_id]),
            decisions=store.rows("SELECT * FROM labels WHERE (target_kind = 'account' AND target = ?) OR (target_kind = 'cluster' AND target = ?) "
                                 "ORDER BY id DESC", [account_id, a["cluster_id"]]),
            appeals=store.rows("SELECT * FROM appeals WHERE account_id = ? ORDER BY id DESC", [account_id]),
            cluster=store.one("SELECT * FROM clusters WHERE cluster_id = ?", [a["cluster_id"]]) if a["cluster_id"] else None,
            first_flagged=views.fmt_ms(a["first_flagged_ms"]))

    @app.get("/cluster/{cluster_id:path}")
    def cluster_page(request: Request, cluster_id: str):
        s = need_get(request)
        if not s:
            return to_login()
        c = store.one("SELECT * FROM clusters WHERE cluster_id = ?", [cluster_id])
        if not c:
            return render("error.html", s, status=404, message="No such cluster")
        members = store.rows("SELECT * FROM accounts WHERE cluster_id = ? ORDER BY score DESC, account_id", [cluster_id])
        ids = [m["account_id"] for m in members]
        labels = store.latest_labels()
        for m in members:
            m["label"] = (labels.get(m["account_id"]) or {}).get("label")
        samples = store.rows("SELECT * FROM samples WHERE list_contains(?, account_id) ORDER BY ts, request_id LIMIT 60", [ids])
        for x in samples:
            x["when"] = views.fmt_ms(x["ts"])
        return render(
            "case.html", s, kind="cluster", target=cluster_id, a=c, members=members, label=None, effective=None, lifted=False,
            reasons=[views.explain_reason(x) for x in c["reasons"].split(";") if x],
            timeline=views.timeline(store, ids, c["first_flagged_ms"]), hours=views.hour_strip(store, ids),
            contrib=None, samples=samples, graph=views.graph(store, ids, center=None, cap=60),
            partner=store.rows("SELECT * FROM partner WHERE list_contains(?, account_id) ORDER BY confidence DESC NULLS LAST", [ids]),
            decisions=store.rows("SELECT * FROM labels WHERE target_kind = 'cluster' AND target = ? ORDER BY id DESC", [cluster_id]),
            appeals=[], cluster=None, first_flagged=views.fmt_ms(c["first_flagged_ms"]))

    # -- decisions --------------------------------------------------------------------------
    async def decide(request: Request, kind: str, target: str):
        s, form = await post_form(request, "analyst")
        decision = str(form.get("decision", ""))
        comment = str(form.get("comment", "")).strip()
        table = "accounts" if kind == "account" else "clusters"
        col = "account_id" if kind == "account" else "cluster_id"
        if not store.one(f"SELECT {col} FROM {table} WHERE {col} = ?", [target]):
            return render("error.html", s, status=404, message=f"No such {kind}")
        back = f"/{kind}/{_quote(target)}"
        if decision not in views.DECISIONS:
            return render("error.html", s, status=400, message="Unknown decision", back=back)
        if not comment:
            return render("error.html", s, status=400, message="A decision needs a comment", back=back)
        comment = comment[:MAX_COMMENT]
        store.execute("INSERT INTO labels (target_kind, target, decision, label, comment, username, ts_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      [kind, target, decision, views.DECISIONS[decision], comment, s["username"], now_ms()])
        store.audit(s["username"], f"decision.{decision}", f"{kind}:{target}", comment)
        if decision == "false_positive":
            store.audit(s["username"], "enforcement.lift", f"{kind}:{target}", "false positive")
        return RedirectResponse(back, status_code=303)

    @app.post("/account/{account_id:path}/decide")
    async def decide_account(request: Request, account_id: str):
        return await decide(request, "account", account_id)

    @app.post("/cluster/{cluster_id:path}/decide")
    async def decide_cluster(request: Request, cluster_id: str):
        return await decide(request, "cluster", cluster_id)

    # -- appeals ----------------------------------------------------------------------------
    @app.post("/api/appeals")
    async def receive_appeal(request: Request):
        auth = request.headers.get("authorization", "")
        want = store.meta("appeal_token_hash")
        tok = auth[7:] if auth.lower().startswith("bearer ") else ""
        if not want or not tok or not secrets.compare_digest(hash_token(tok), want):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        try:
            body = await request.json()
        except Exception:
            return JSONResponse({"error": "body must be JSON"}, status_code=400)
        if not isinstance(body, dict) or not isinstance(body.get("account_id"), str):
            return JSONResponse({"error": "account_id (string) is required"}, status_code=400)
        acct = body["account_id"]
        a = store.one("SELECT action FROM accounts WHERE account_id = ?", [acct])
        if not a:
            return JSONResponse({"error": "unknown account"}, status_code=404)
        eff, _ = views.effective_action(a["action"], store.latest_labels().get(acct))
        if eff not in ("challenge", "throttle", "suspend"):
            return JSONResponse({"error": "no enforcement in force on this account", "action": eff}, status_code=409)
        old = store.one("SELECT id FROM appeals WHERE account_id = ? AND status = 'pending'", [acct])
        if old:
            return JSONResponse({"id": old["id"], "status": "pending", "duplicate": True}, status_code=200)
        ticket, message = str(body.get("ticket", ""))[:200], str(body.get("message", ""))[:MAX_COMMENT]
        store.execute("INSERT INTO appeals (account_id, ticket, message, source, status, created_ms) VALUES (?, ?, ?, 'support-api', 'pending', ?)",
                      [acct, ticket, message, now_ms()])
        new = store.one("SELECT max(id) AS id FROM appeals WHERE account_id = ?", [acct])
        store.audit("api:support", "appeal.receive", f"account:{acct}", f"ticket={ticket}")
        return JSONResponse({"id": new["id"], "status": "pending"}, status_code=201)

    @app.get("/api/appeals/{appeal_id}")
    def appeal_status(request: Request, appeal_id: int):
        auth = request.headers.get("authorization", "")
        want = store.meta("appeal_token_hash")
        tok = auth[7:] if auth.lower().startswith("bearer ") else ""
        if not want or not tok or not secrets.compare_digest(hash_token(tok), want):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        r = store.one("SELECT id, account_id, ticket, status, decision, decided_ms FROM appeals WHERE id = ?", [appeal_id])
        return JSONResponse(r, status_code=200) if r else JSONResponse({"error": "not found"}, status_code=404)

    @app.post("/appeal/{appeal_id}/decide")
    async def decide_appeal(request: Request, appeal_id: int):
        s, form = await post_form(request, "analyst")
        ap = store.one("SELECT * FROM appeals WHERE id = ?", [appeal_id])
        if not ap:
            return render("error.html", s, status=404, message="No such appeal")
        back = f"/account/{_quote(ap['account_id'])}"
        decision = str(form.get("decision", ""))
        comment = str(form.get("comment", "")).strip()[:MAX_COMMENT]
        if decision not in ("lift", "uphold") or not comment or ap["status"] != "pending":
            return render("error.html", s, status=400, message="An appeal decision is 'lift' or 'uphold', needs a comment, and only once", back=back)
        t = now_ms()
        store.execute("UPDATE appeals SET status = 'decided', decision = ?, comment = ?, decided_by = ?, decided_ms = ? WHERE id = ?",
                      [decision, comment, s["username"], t, appeal_id])
        label_decision, label = ("appeal_lifted", "benign") if decision == "lift" else ("appeal_upheld", "attack")
        store.execute("INSERT INTO labels (target_kind, target, decision, label, comment, username, ts_ms) VALUES ('account', ?, ?, ?, ?, ?, ?)",
                      [ap["account_id"], label_decision, label, comment, s["username"], t])
        store.audit(s["username"], f"appeal.{decision}", f"account:{ap['account_id']}", f"appeal={appeal_id}; {comment}")
        if decision == "lift":
            store.audit(s["username"], "enforcement.lift", f"account:{ap['account_id']}", f"appeal={appeal_id}")
        return RedirectResponse(back, status_code=303)

    # -- audit ------------------------------------------------------------------------------
    @app.get("/audit")
    def audit_page(request: Request, user: str = "", action: str = ""):
        s = need_get(request, "analyst")
        if not s:
            return to_login()
        where, params = ["1=1"], []
        if user:
            where.append("username = ?")
            params.append(user)
        if action:
            where.append("starts_with(action, ?)")
            params.append(action)
        rows = store.rows(f"SELECT * FROM audit WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT 1000", params)
        for r in rows:
            r["when"] = views.fmt_ms(r["ts_ms"])
        return render("audit.html", s, rows=rows, f={"user": user, "action": action})

    # -- users (admin) ----------------------------------------------------------------------
    @app.get("/users")
    def users_page(request: Request):
        s = need_get(request, "admin")
        if not s:
            return to_login()
        users = store.rows("SELECT username, role, active, created_ms FROM users ORDER BY username")
        return render("users.html", s, users=users, roles=ROLES, token_set=bool(store.meta("appeal_token_hash")),
                      new_token=None)

    @app.post("/users")
    async def users_create(request: Request):
        s, form = await post_form(request, "admin")
        try:
            create_user(store, str(form.get("username", "")), str(form.get("password", "")), str(form.get("role", "")))
        except ValueError as e:
            return render("error.html", s, status=400, message=str(e), back="/users")
        store.audit(s["username"], "user.create", str(form["username"]), f"role={form['role']}")
        return RedirectResponse("/users", status_code=303)

    @app.post("/users/{username}/update")
    async def users_update(request: Request, username: str):
        s, form = await post_form(request, "admin")
        u = store.one("SELECT * FROM users WHERE username = ?", [username])
        if not u:
            return render("error.html", s, status=404, message="No such user", back="/users")
        role, active, pw = str(form.get("role", u["role"])), form.get("active") == "on", str(form.get("password", ""))
        if role not in ROLES:
            return render("error.html", s, status=400, message="Unknown role", back="/users")
        if username == s["username"] and (role != "admin" or not active):
            return render("error.html", s, status=400, message="An admin cannot demote or disable themself", back="/users")
        if pw and len(pw) < 8:
            return render("error.html", s, status=400, message="password: at least 8 characters", back="/users")
        store.execute("UPDATE users SET role = ?, active = ? WHERE username = ?", [role, active, username])
        if pw:
            store.execute("UPDATE users SET pw_hash = ? WHERE username = ?", [hash_password(pw), username])
        if pw or not active or RANK[role] < RANK[u["role"]]:
            sessions.drop_user(username)
        store.audit(s["username"], "user.update", username, f"role={role} active={active}" + (" password reset" if pw else ""))
        return RedirectResponse("/users", status_code=303)

    @app.post("/users/appeal-token")
    async def new_appeal_token(request: Request):
        s, _ = await post_form(request, "admin")
        tok = secrets.token_urlsafe(32)
        store.set_meta("appeal_token_hash", hash_token(tok))
        store.audit(s["username"], "appeal_token.rotate", "", "")
        users = store.rows("SELECT username, role, active, created_ms FROM users ORDER BY username")
        return render("users.html", s, users=users, roles=ROLES, token_set=True, new_token=tok)

    @app.get("/healthz")
    def healthz():
        return Response("ok", media_type="text/plain")

    return app


def _quote(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="")
