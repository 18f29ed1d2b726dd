"""Signed webhooks when an account's action changes (enforced or computed, shadow included).

Delivery is at-least-once: the body is queued in the store's ``outbox`` table in the same
transaction that records the new action, and removed only after every URL answered 2xx (a crash
in between re-sends it after restart; receivers de-duplicate by ``id``). Retries back off
exponentially; a body that still fails after ``webhook_retries`` rounds stays in the outbox and
is tried again on the next wake-up.

Signature (HMAC-SHA256 with the shared secret ``DISTILLGUARD_WEBHOOK_SECRET``)::

    X-DistillGuard-Signature: t=<unix seconds>,v1=<hex HMAC_SHA256(secret, "<t>." + raw body)>

Verify with :func:`verify` (constant-time compare, bounded clock skew).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from typing import Sequence

import httpx
import orjson

from ..report import ms_to_rfc3339
from .engine import Engine

log = logging.getLogger("distillguard.serve.webhooks")

SECRET_ENV = "DISTILLGUARD_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-DistillGuard-Signature"
EVENT_TYPE = "decision.action_changed"


def sign(secret: str | bytes, body: bytes, ts: int | None = None) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    t = int(time.time()) if ts is None else int(ts)
    mac = hmac.new(key, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str | bytes, body: bytes, header: str | None, tolerance_s: int = 300, now: float | None = None) -> bool:
    """True when ``header`` is a valid signature of ``body`` made within ``tolerance_s``."""
    if not header:
        return False
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    key = secret.encode() if isinstance(secret, str) else secret
    want = hmac.new(key, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, parts.get("v1", ""))


def event_body(ev: dict) -> tuple[str, int, bytes]:
    """(id, created ms, JSON body) of one action change; the id is stable for the same change."""
    d = ev["decision"]
    created = int(time.time() * 1000)
    raw = f"{d['account_id']}|{ev['previous_action']}|{ev['previous_computed_action']}|{d['action']}|{d['computed_action']}|{d['updated_at']}"
    eid = "evt_" + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:24]
    body = orjson.dumps({
        "id": eid, "type": EVENT_TYPE, "created_at": ms_to_rfc3339(created), "account_id": d["account_id"],
        "previous": {"action": ev["previous_action"], "computed_action": ev["previous_computed_action"]},
        "current": {"action": d["action"], "computed_action": d["computed_action"]},
        "shadow": d["shadow"], "decision": d,
    })
    return eid, created, body


class WebhookDispatcher:
    """Delivers the outbox to every configured URL from a background thread."""

    def __init__(self, engine: Engine, urls: Sequence[str], secret: str | None = None, *, timeout_s: float = 5.0,
                 retries: int = 5, backoff_s: float = 0.5):
        secret = secret or os.environ.get(SECRET_ENV)
        if not secret:
            raise ValueError(f"webhooks need a signing secret: set {SECRET_ENV}")
        self.engine, self.urls, self._secret = engine, list(urls), secret
        self.retries, self.backoff_s = retries, backoff_s
        self._client = httpx.Client(timeout=timeout_s, headers={"User-Agent": "distillguard-webhooks/0.1"})
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        engine.outbox_event = event_body
        engine.listeners.append(lambda changed, events: self._wake.set() if events else None)

    def _post(self, url: str, eid: str, body: bytes) -> bool:
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self._secret, body),
                   "X-DistillGuard-Event-Id": eid, "X-DistillGuard-Event-Type": EVENT_TYPE}
        try:
            r = self._client.post(url, content=body, headers=headers)
            ok = 200 <= r.status_code < 300
        except httpx.HTTPError as e:
            log.warning("webhook %s to %s failed: %s", eid, url, type(e).__name__)
            ok = False
        self.engine.metrics.webhooks.labels("ok" if ok else "error").inc()
        return ok

    def deliver_pending(self) -> int:
        """Try every queued body once per URL (with retries); return how many were delivered."""
        done = 0
        while not self._stop.is_set():
            batch = self.engine.store.outbox(200)
            if not batch:
                break
            delivered = []
            for eid, body in batch:
                pending = list(self.urls)
                for attempt in range(self.retries + 1):
                    pending = [u for u in pending if not self._post(u, eid, body)]
                    if not pending or self._stop.is_set():
                        break
                    self._stop.wait(self.backoff_s * (2 ** attempt))
                if pending:
                    self.engine.store.outbox_done(delivered)
                    return done + len(delivered)  # keep order: retry this one later
                delivered.append(eid)
            self.engine.store.outbox_done(delivered)
            done += len(delivered)
        return done

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_pending()
            except Exception:
                log.exception("webhook delivery loop")
            self._wake.wait(timeout=5.0)
            self._wake.clear()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="distillguard-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._client.close()
