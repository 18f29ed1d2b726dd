"""Passwords (scrypt), server-side sessions carried by a signed cookie, CSRF tokens, roles.

A session is a row of ``sessions`` (sid, user, CSRF token, expiry); the cookie holds only the
sid, signed with the store's secret (``itsdangerous``), ``HttpOnly`` and ``SameSite=Strict``.
Logging out deletes the row, so a stolen cookie dies with the session. Every POST from a
browser must carry the session's CSRF token (form field ``csrf``), compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from itsdangerous import BadSignature, URLSafeTimedSerializer

from .store import ROLES, Store, now_ms

SESSION_COOKIE = "dg_session"
SESSION_TTL_MS = 8 * 3600 * 1000
_N, _R, _P = 2**14, 8, 1
RANK = {r: i for i, r in enumerate(ROLES)}


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    h = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(h).decode()}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored:
        hashlib.scrypt(b"x", salt=b"0" * 16, n=_N, r=_R, p=_P, dklen=32)  # same cost either way
        return False
    try:
        _, n, r, p, salt, h = stored.split("$")
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(h))


def valid_username(u: str) -> bool:
    return 1 <= len(u) <= 64 and all(c.isalnum() or c in "._-@" for c in u)


def create_user(store: Store, username: str, password: str, role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    if not valid_username(username):
        raise ValueError("username: 1-64 letters, digits or . _ - @")
    if len(password) < 8:
        raise ValueError("password: at least 8 characters")
    if store.one("SELECT username FROM users WHERE username = ?", [username]):
        raise ValueError("user exists")
    store.execute("INSERT INTO users (username, pw_hash, role, active, created_ms) VALUES (?, ?, ?, TRUE, ?)",
                  [username, hash_password(password), role, now_ms()])


def ensure_admin(store: Store, env: dict | None = None) -> str | None:
    """On first start (no users) create ``admin`` from ``DISTILLGUARD_ADMIN_PASSWORD``."""
    env = os.environ if env is None else env
    if store.one("SELECT username FROM users LIMIT 1"):
        return None
    pw = env.get("DISTILLGUARD_ADMIN_PASSWORD")
    if not pw:
        raise RuntimeError("first start: set DISTILLGUARD_ADMIN_PASSWORD to the admin's password (at least 8 characters)")
    user = env.get("DISTILLGUARD_ADMIN_USER", "admin")
    create_user(store, user, pw, "admin")
    store.audit("system", "user.create", user, "role=admin (first start, from DISTILLGUARD_ADMIN_PASSWORD)")
    return user


class Sessions:
    def __init__(self, store: Store):
        self.store = store
        self.signer = URLSafeTimedSerializer(store.secret_key(), salt="dg-console-session")

    def login(self, username: str, password: str) -> tuple[str, str] | None:
        """(cookie value, csrf) for good credentials of an active user, else None."""
        u = self.store.one("SELECT * FROM users WHERE username = ? AND active", [username])
        if not verify_password(password, u["pw_hash"] if u else None) or not u:
            return None
        sid, csrf = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        t = now_ms()
        self.store.execute("DELETE FROM sessions WHERE expires_ms < ?", [t])
        self.store.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)", [sid, username, csrf, t, t + SESSION_TTL_MS])
        return self.signer.dumps(sid), csrf

    def lookup(self, cookie: str | None) -> dict | None:
        """The session's user (username, role, csrf, sid) or None."""
        if not cookie:
            return None
        try:
            sid = self.signer.loads(cookie, max_age=SESSION_TTL_MS // 1000)
        except BadSignature:
            return None
        return self.store.one("SELECT s.sid, s.csrf, u.username, u.role FROM sessions s JOIN users u USING (username) "
                              "WHERE s.sid = ? AND s.expires_ms > ? AND u.active", [sid, now_ms()])

    def logout(self, sid: str) -> None:
        self.store.execute("DELETE FROM sessions WHERE sid = ?", [sid])

    def drop_user(self, username: str) -> None:
        self.store.execute("DELETE FROM sessions WHERE username = ?", [username])


def csrf_ok(session: dict, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(str(session["csrf"]), str(token))


def has_role(session: dict | None, need: str) -> bool:
    return bool(session) and RANK.get(session["role"], -1) >= RANK[need]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class LoginThrottle:
    """Failed logins per account and per client address, with exponential backoff.

    After ``free`` failures a key (``user:NAME`` or ``addr:IP``) must wait ``base_s * 2**k``
    seconds (k = failures past ``free``, capped at ``max_s``) before its next attempt; attempts
    inside the wait are refused *before* the password is hashed, so a guessing run costs the
    server no scrypt work and other users' pages stay fast. A good login clears the account's
    key (not the address's: one right password does not excuse a run of guesses). Memory is
    bounded: at most ``max_keys`` keys, the stalest dropped first.
    """

    def __init__(self, free: int = 5, base_s: float = 1.0, max_s: float = 900.0, max_keys: int = 100_000, clock=None):
        import time as _time

        self.free, self.base_s, self.max_s, self.max_keys = free, base_s, max_s, max_keys
        self.clock = clock or _time.monotonic
        self._fails: dict[str, tuple[int, float]] = {}  # key -> (failures, time of the last one)

    def wait(self, *keys: str) -> float:
        """Seconds before ``keys`` may try again (0: now)."""
        now = self.clock()
        out = 0.0
        for k in keys:
            n, last = self._fails.get(k, (0, 0.0))
            if n >= self.free:
                out = max(out, last + min(self.max_s, self.base_s * 2 ** (n - self.free)) - now)
        return max(0.0, out)

    def failed(self, *keys: str) -> None:
        now = self.clock()
        for k in keys:
            n, _ = self._fails.pop(k, (0, 0.0))
            self._fails[k] = (n + 1, now)  # re-inserted: dict order is staleness order
        while len(self._fails) > self.max_keys:
            self._fails.pop(next(iter(self._fails)))

    def succeeded(self, key: str) -> None:
        self._fails.pop(key, None)


def client_view(request, trusted_proxies: frozenset[str]) -> tuple[str, bool]:
    """(client address, served over TLS) of a request. ``X-Forwarded-For`` / ``-Proto`` count only
    when the peer is one of ``trusted_proxies`` (``DISTILLGUARD_TRUSTED_PROXIES``): anyone else
    could forge them to dodge the per-address throttle."""
    peer = request.client.host if request.client else "-"
    tls = request.url.scheme == "https"
    if peer in trusted_proxies:
        fwd = request.headers.get("x-forwarded-for", "")
        if fwd.strip():
            peer = fwd.split(",")[-1].strip()[:64] or peer
        proto = request.headers.get("x-forwarded-proto", "")
        if proto:
            tls = proto.split(",")[-1].strip().lower() == "https"
    return peer, tls
