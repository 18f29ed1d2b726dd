"""The HTTP API (FastAPI).

=====================================  =========  ===============================================
``POST /v1/events``                    ingest     JSON array or NDJSON of exchange records
``POST /v1/traces``                    ingest     OTLP/JSON trace export of GenAI spans
``GET  /v1/decisions/{account_id}``    decide     the account's current decision (serve/fastpath.py)
``GET  /v1/decisions``                 decide     all decisions (``?flagged=true``, ``?action=``)
``POST /v1/admin/refresh``             admin      recompute decisions now (blocks until done)
``GET  /healthz``                      —          liveness + counts
``GET  /metrics``                      admin      Prometheus text
=====================================  =========  ===============================================

Bodies are validated exactly as the scan validates files: bad records go to the state dir's
``quarantine.jsonl`` (source ``http:/v1/events``, line = the record's number in the body) and
are counted as ``rejected``; the rest are ``accepted`` or, when their ``request_id`` was
already accepted, ``duplicate``. A 200 answer means the accepted exchanges are durable.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from typing import Any, Callable

import orjson
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ..ingest.bodies import json_array_items, strip_bom
from .auth import Principal, TokenAuth
from .engine import Engine, IngestResult
from .directives import Decision, UnknownAccount
from .fastpath import DecisionFastPath, decision_response
from .otel import otlp_to_records

log = logging.getLogger("distillguard.serve")

JSON = "application/json"


class _Gone(Exception):
    """The client disconnected before its request was read (logged once, as one line)."""


def _json(obj: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type=JSON, headers=headers)


def split_body(body: bytes) -> list | bytes:
    """Records of a request body: a JSON array's items, or the NDJSON body itself (``bytes``,
    one record a line; the block parser splits it without a Python object per record).

    A leading UTF-8 BOM is dropped. Acceptance is per record in both forms: an array that is not
    valid JSON as a whole (one item with ``NaN``, say) is split into its items' raw text, each
    validated on its own; a body whose first line is a complete JSON value followed by more lines
    is NDJSON (that first line, an array, is then one rejected record). Raises ``ValueError``
    only when a body that starts with ``[`` cannot be split at all (never closed).
    """
    body = strip_bom(body)
    head = body.lstrip(b" \t\r\n")[:1]
    if head != b"[":
        return body
    try:
        items = orjson.loads(body)  # orjson.JSONDecodeError is a ValueError
        if isinstance(items, list):
            return items
    except ValueError:
        pass
    first, nl, rest = body.lstrip(b" \t\r\n").partition(b"\n")
    if nl and rest.strip():
        try:
            orjson.loads(first)
            return body  # NDJSON that starts with an array line
        except ValueError:
            pass
    return json_array_items(body)


class Service:
    """What the app serves: an engine, its ingest path (embedded or Redis) and the token check."""

    def __init__(self, engine: Engine, auth: TokenAuth | None, *, ingest: Callable[[list, str], IngestResult] | None = None,
                 on_start: list[Callable[[], None]] | None = None, on_stop: list[Callable[[], None]] | None = None):
        self.engine = engine
        self.auth = auth
        self.ingest = ingest or engine.ingest
        self.on_start = on_start or []
        self.on_stop = on_stop or []

    def principal(self, request: Request, scope: str) -> Principal | None:
        if self.auth is None:  # --no-auth (explicit, loopback development only)
            return None
        m = self.engine.metrics
        p = self.auth.check(request.headers.get("authorization"))
        if p is None:
            m.auth_failures.labels("unauthenticated").inc()
            raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": 'Bearer realm="distillguard"'})
        if not p.allows(scope):
            m.auth_failures.labels("forbidden").inc()
            log.warning("token %s lacks scope %s for %s %s", p.name, scope, request.method, request.url.path)
            raise HTTPException(403, f"token lacks the '{scope}' scope")
        return p


def create_app(service: Service, *, start_engine: bool = True) -> DecisionFastPath:
    engine = service.engine
    cfg = engine.cfg
    metrics = engine.metrics

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if start_engine:
            await run_in_threadpool(engine.start)
        for fn in service.on_start:
            fn()
        try:
            yield
        finally:
            for fn in service.on_stop:
                try:
                    fn()
                except Exception:  # pragma: no cover - shutdown best effort
                    log.exception("shutdown hook failed")
            if start_engine:
                await run_in_threadpool(engine.close)

    # The schema is published (no docs UI) so gateway teams can generate a client for decisions
    # and their countermeasure directives (serve/directives.py).
    app = FastAPI(title="distillguard", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.service = service

    # Request-body bytes held by requests in progress (all on the one event loop: no lock).
    inflight = {"bytes": 0, "refused": 0, "logged": 0.0}

    def _reserve(n: int) -> None:
        if inflight["bytes"] + n > cfg.max_inflight_bytes:
            inflight["refused"] += 1
            now = time.monotonic()
            if now - inflight["logged"] >= 10.0:  # one line per 10 s, however many are refused
                log.warning("503: request bodies in flight would exceed %d bytes (%d request(s) refused)",
                            cfg.max_inflight_bytes, inflight["refused"])
                inflight["refused"], inflight["logged"] = 0, now
            raise HTTPException(503, "too much request data in flight; retry later", headers={"Retry-After": "1"})
        inflight["bytes"] += n

    async def _body(request: Request, held: list[int]) -> bytes:
        """The request body; its bytes count against ``max_inflight_bytes`` until ``held`` is released."""
        n = request.headers.get("content-length")
        if n is not None and n.isdigit() and int(n) > cfg.max_body_bytes:
            raise HTTPException(413, f"body over {cfg.max_body_bytes} bytes")
        chunks, size = [], 0
        try:
            async for c in request.stream():
                size += len(c)
                if size > cfg.max_body_bytes:
                    raise HTTPException(413, f"body over {cfg.max_body_bytes} bytes")
                _reserve(len(c))
                held[0] += len(c)
                chunks.append(c)
        except ClientDisconnect:
            # A client gone mid-body (or cut off by the body timeout): nothing was acknowledged.
            log.warning("client %s disconnected during the body of %s after %d bytes; nothing accepted",
                        request.client.host if request.client else "-", request.url.path, size)
            raise _Gone()
        return b"".join(chunks)

    def _release(held: list[int]) -> None:
        inflight["bytes"] -= held[0]
        held[0] = 0

    async def _holding(request: Request, handler) -> Response:
        """An ingest request: authorised first, its body's bytes released from the in-flight cap after."""
        service.principal(request, "ingest")
        held = [0]
        try:
            return await handler(request, held)
        finally:
            _release(held)

    @app.post("/v1/events")
    async def post_events(request: Request) -> Response:
        return await _holding(request, _post_events)

    async def _post_events(request: Request, held: list[int]) -> Response:
        body = await _body(request, held)
        try:
            records = split_body(body)
        except ValueError:
            engine.quarantine.add("http:/v1/events", 1, "invalid_json", body)
            engine.quarantine.flush()
            metrics.quarantine.labels("invalid_json").inc()
            metrics.events.labels("rejected").inc()
            return _json({"received": 1, "accepted": 0, "duplicate": 0, "rejected": 1,
                          "rejects": [{"line": 1, "reason": "invalid_json"}], "error": "body is not a JSON array"}, 400)
        res = await run_in_threadpool(service.ingest, records, "http:/v1/events")
        return _json(res.as_dict())

    @app.post("/v1/traces")
    async def post_traces(request: Request) -> Response:
        return await _holding(request, _post_traces)

    async def _post_traces(request: Request, held: list[int]) -> Response:
        body = await _body(request, held)
        try:
            doc = orjson.loads(body)
        except ValueError:
            raise HTTPException(400, "OTLP body is not JSON (only OTLP/JSON is accepted)")
        if "protobuf" in (request.headers.get("content-type") or ""):
            raise HTTPException(415, "only OTLP/JSON is accepted")
        records, skipped = otlp_to_records(doc)
        res = await run_in_threadpool(service.ingest, records, "http:/v1/traces")
        out = res.as_dict()
        out["ignored_spans"] = skipped
        if res.rejected:
            out["partialSuccess"] = {"rejectedSpans": res.rejected, "errorMessage": "spans not mappable to exchanges; see quarantine"}
        return _json(out)

    # GET /v1/decisions/{account_id} is answered in front of this app (serve/fastpath.py: no
    # routing, no validation layer; under ``distillguard serve`` inside uvicorn's protocol). This
    # route declares its schema and answers only where the app runs without that wrapper.
    @app.get("/v1/decisions/{account_id}", response_model=Decision, responses={404: {"model": UnknownAccount}})
    async def get_decision(account_id: str, request: Request) -> Response:
        status, body, extra = decision_response(service, account_id, (request.headers.get("authorization") or "").encode("latin-1") or None)
        return Response(body, status_code=status, media_type=JSON, headers={k.decode(): v.decode() for k, v in extra})

    @app.get("/v1/decisions")
    async def list_decisions(request: Request, flagged: bool | None = None, action: str | None = None) -> Response:
        service.principal(request, "decide")
        docs = [orjson.loads(b) for b in list(engine.decisions.values())]
        if flagged is not None:
            docs = [d for d in docs if d["flagged"] == flagged]
        if action is not None:
            docs = [d for d in docs if d["action"] == action]
        docs.sort(key=lambda d: (-d["score"], d["account_id"]))
        return _json({"count": len(docs), "decisions": docs})

    @app.post("/v1/admin/refresh")
    async def admin_refresh(request: Request) -> Response:
        service.principal(request, "admin")
        await run_in_threadpool(engine.refresh, True)
        return _json(engine.health())

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json(engine.health())

    @app.get("/metrics")
    async def get_metrics(request: Request) -> Response:
        service.principal(request, "admin")
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.exception_handler(_Gone)
    async def gone(request: Request, exc: "_Gone") -> Response:
        return Response(status_code=499)  # never delivered: the client is gone

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    return DecisionFastPath(app, service)


def build_service(cfg, auth: TokenAuth | None, *, consume: bool = True) -> Service:
    """Engine + (optional) Redis transport + (optional) webhooks, wired for ``create_app``."""
    engine = Engine(cfg)
    on_start: list[Callable[[], None]] = []
    on_stop: list[Callable[[], None]] = []
    ingest = engine.ingest
    if cfg.webhook_urls:
        from .webhooks import WebhookDispatcher

        wh = WebhookDispatcher(engine, cfg.webhook_urls, timeout_s=cfg.webhook_timeout_s, retries=cfg.webhook_retries)
        on_start.append(wh.start)
        on_stop.append(wh.stop)
    if cfg.redis_url:
        from .redis_stream import RedisTransport

        rt = RedisTransport(engine, cfg)
        ingest = rt.ingest_http
        on_start.append(lambda: rt.start(consume=consume))
        on_stop.insert(0, rt.stop)
        engine.transport = rt  # type: ignore[attr-defined]
    return Service(engine, auth, ingest=ingest, on_start=on_start, on_stop=on_stop)
