"""LiteLLM proxy integration: enforce decisions before the call, feed every exchange in after it.

``DistillGuardGuardrail`` (a LiteLLM ``CustomGuardrail``): its pre-call hook looks up the
calling account's decision and answers **429 with Retry-After** for ``throttle`` and **403** for
``suspend`` (``challenge`` and below pass: a challenge is the product's job, e.g. a CAPTCHA or
re-verification flow keyed on the decision). It applies the decision's countermeasure
``directives`` (serve/directives.py): the request is shaped before the call (``max_tokens``,
``n``, log-probabilities, ``reasoning_effort``; the watermark is asked of the model server with
the ``x-distillguard-watermark`` header), and its post-call hook shapes the response (reasoning
withheld or shortened, the answer untouched) and weaves in the account's canary, recording every
mark served in the evidence log (provenance/evidence.py). Shadow directives are only logged
(``shadow_records``). Marking needs the provider's mark key (``mark_key`` file or ``$DG_MARK_KEY``)
and an evidence log path (``evidence_log`` or ``$DISTILLGUARD_EVIDENCE_LOG``); without them
requests and responses are still shaped, and nothing is marked. Lookups come from the distillguard service
(``GET /v1/decisions/{account}``, a ``decide`` token) or straight from Redis decision keys (a
local replica on the gateway node); they are cached for ``cache_ttl_s`` and **fail open** (a
detector outage must not take the API down) unless ``fail_open=False``.

``DistillGuardLogger`` (a LiteLLM ``CustomLogger``): turns each finished call (success or
failure) into an exchange record (shared/spec/events.md) and POSTs them as NDJSON to
``/v1/events`` in batches (an ``ingest`` token). ``request_id`` is LiteLLM's call id, so a retried
delivery counts once.

This module imports neither Polars nor DuckDB: it runs inside the LiteLLM proxy process. When
LiteLLM is not installed the classes still import (on plain bases) so they can be unit-tested.

Proxy ``config.yaml`` (with a ``dg_hooks.py`` next to it that instantiates the two classes)::

    guardrails:
      - guardrail_name: distillguard
        litellm_params: {guardrail: dg_hooks.DistillGuardGate, mode: [pre_call, post_call], default_on: true}
    litellm_settings:
      callbacks: dg_hooks.feed
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import datetime
from typing import Any

import httpx
import orjson

from ..provenance.canary import Canary, canary_for, weave
from ..provenance.canary import selected as canary_selected
from ..provenance.evidence import EvidenceWriter
from ..provenance.keys import load_mark_keys
from .shaping import StreamShaper, _get, append_to_answer, shape_request, shape_response

try:  # pragma: no cover - depends on the environment
    from litellm.integrations.custom_guardrail import CustomGuardrail as _GuardBase
    from litellm.integrations.custom_logger import CustomLogger as _LoggerBase

    HAVE_LITELLM = True
except ImportError:  # pragma: no cover
    HAVE_LITELLM = False

    class _LoggerBase:  # type: ignore[no-redef]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

    class _GuardBase(_LoggerBase):  # type: ignore[no-redef]
        def __init__(self, guardrail_name: str | None = None, **kwargs: Any) -> None:
            self.guardrail_name = guardrail_name

log = logging.getLogger("distillguard.litellm")

BLOCK = {"throttle": 429, "suspend": 403}
WATERMARK_HEADER = "x-distillguard-watermark"
META_KEY = "distillguard"  # where the pre-call hook leaves the directives for the post-call hook (request metadata)


def _http_error(status: int, detail: dict, headers: dict | None = None) -> Exception:
    try:
        from fastapi import HTTPException

        return HTTPException(status_code=status, detail=detail, headers=headers)
    except ImportError:  # pragma: no cover
        e = PermissionError(detail)
        e.status_code, e.headers = status, headers  # type: ignore[attr-defined]
        return e


def account_of(user_api_key_dict: Any, data: dict | None, source: str = "auto") -> str | None:
    """The distillguard account of a proxied call.

    ``source``: ``key_metadata`` (the key's ``metadata.distillguard_account_id``), ``user_id``,
    ``team_id``, ``org_id``, ``end_user`` (the request's ``user`` field), or ``auto`` (that order,
    the proxy's own admin user excluded).
    """
    data = data or {}
    meta = _get(user_api_key_dict, "metadata") or {}
    cands = {
        "key_metadata": meta.get("distillguard_account_id") if isinstance(meta, dict) else None,
        "user_id": _get(user_api_key_dict, "user_id"),
        "team_id": _get(user_api_key_dict, "team_id"),
        "org_id": _get(user_api_key_dict, "org_id"),
        "end_user": data.get("user") or _get(user_api_key_dict, "end_user_id"),
    }
    if source != "auto":
        v = cands.get(source)
        return str(v) if v else None
    for k in ("key_metadata", "user_id", "team_id", "org_id", "end_user"):
        v = cands[k]
        if v and not (k == "user_id" and v in ("default_user_id", "litellm-proxy-admin")):
            return str(v)
    return None


class DecisionSource:
    """Cached decision lookups over HTTP (the service) or Redis (decision keys)."""

    def __init__(self, url: str | None = None, token: str | None = None, redis_url: str | None = None,
                 redis_prefix: str = "dg:", cache_ttl_s: float = 1.0, timeout_s: float = 0.05):
        if not url and not redis_url:
            raise ValueError("a decision source needs url= (the service) or redis_url=")
        self.url = url.rstrip("/") if url else None
        self._token = token if token is not None else os.environ.get("DISTILLGUARD_DECIDE_TOKEN")
        self.redis_url, self.redis_prefix = redis_url, redis_prefix
        self.cache_ttl_s, self.timeout_s = cache_ttl_s, timeout_s
        self._cache: dict[str, tuple[float, dict | None]] = {}
        self._client: httpx.AsyncClient | None = None
        self._redis: Any = None

    async def _fetch(self, account_id: str) -> dict | None:
        if self.redis_url:
            if self._redis is None:
                import redis.asyncio as aioredis

                self._redis = aioredis.Redis.from_url(self.redis_url, socket_timeout=self.timeout_s)
            v = await self._redis.get(f"{self.redis_prefix}decision:{account_id}")
            return orjson.loads(v) if v else None
        if self._client is None:
            headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
            self._client = httpx.AsyncClient(timeout=self.timeout_s, headers=headers)
        r = await self._client.get(f"{self.url}/v1/decisions/{account_id}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    async def get(self, account_id: str) -> dict | None:
        now = time.monotonic()
        hit = self._cache.get(account_id)
        if hit is not None and now - hit[0] < self.cache_ttl_s:
            return hit[1]
        d = await self._fetch(account_id)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[account_id] = (now, d)
        return d


class DistillGuardGuardrail(_GuardBase):
    """Pre-call enforcement: 429 + Retry-After for ``throttle``, 403 for ``suspend``."""

    # Newer LiteLLM routes guardrails through ``apply_guardrail`` unless told to run the hooks.
    use_native_lifecycle_hooks = True

    def __init__(self, url: str | None = None, token: str | None = None, redis_url: str | None = None,
                 redis_prefix: str = "dg:", account_source: str = "auto", retry_after_s: int = 60,
                 fail_open: bool = True, cache_ttl_s: float = 1.0, timeout_s: float = 0.05,
                 mark_key: str | None = None, evidence_log: str | None = None, **kwargs: Any):
        kwargs.setdefault("guardrail_name", "distillguard")
        super().__init__(**kwargs)
        self.source = DecisionSource(url, token, redis_url, redis_prefix, cache_ttl_s, timeout_s)
        self.account_source, self.retry_after_s, self.fail_open = account_source, retry_after_s, fail_open
        self.marker = Marker.configured(mark_key, evidence_log)
        self.shadow_records: list[dict] = []  # the last shadow directives' would-be changes (bounded)

    async def check(self, account_id: str | None) -> dict | None:
        """Raise the HTTP error the gateway should answer with, or return the decision (None when
        unknown or the lookup failed open) to let the call through."""
        if not account_id:
            return None
        try:
            d = await self.source.get(account_id)
        except Exception as e:
            log.warning("distillguard lookup failed (%s): %s", type(e).__name__, "allowing" if self.fail_open else "refusing")
            if self.fail_open:
                return None
            raise _http_error(503, {"error": "risk check unavailable"}, {"Retry-After": "5"})
        action = (d or {}).get("action", "none")
        dirs = (d or {}).get("directives")
        if isinstance(dirs, dict):  # the service says what to block (policy countermeasures)
            status = None if dirs.get("shadow") else BLOCK.get(dirs.get("block"))
        else:  # a service (or Redis key) from before directives
            status = BLOCK.get(action)
        if status is None:
            return d
        detail = {"error": "rate limited" if status == 429 else "account suspended",
                  "type": "distillguard", "action": action}
        headers = {"Retry-After": str(self.retry_after_s)} if status == 429 else None
        raise _http_error(status, detail, headers)

    def _shadow(self, account: str, where: str, changes: list[str]) -> None:
        if not changes:
            return
        log.info("distillguard shadow: account=%s %s would: %s", account, where, "; ".join(changes))
        if len(self.shadow_records) >= 1000:
            del self.shadow_records[:500]
        self.shadow_records.append({"account_id": account, "where": where, "changes": changes})

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any) -> dict:
        account = account_of(user_api_key_dict, data, self.account_source)
        d = await self.check(account)
        dirs = (d or {}).get("directives")
        if not isinstance(dirs, dict) or not account:
            return data
        if dirs.get("shadow"):
            self._shadow(account, "request", shape_request(data, dirs.get("request") or {}, dry_run=True))
        else:
            shape_request(data, dirs.get("request") or {})
            if (dirs.get("mark") or {}).get("watermark") and self.marker is not None:
                hdrs = data.get("extra_headers") if isinstance(data.get("extra_headers"), dict) else {}
                data["extra_headers"] = {**hdrs, WATERMARK_HEADER: self.marker.key_id}
        meta = data.get("metadata")
        if not isinstance(meta, dict):
            meta = data["metadata"] = {}
        meta[META_KEY] = {"account_id": account, "directives": dirs}
        return data

    async def async_post_call_success_hook(self, data: dict, user_api_key_dict: Any, response: Any) -> Any:
        info = (data.get("metadata") or {}).get(META_KEY) if isinstance(data.get("metadata"), dict) else None
        if not info:
            return response
        request_id = str(data.get("litellm_call_id") or _get(response, "id") or "")
        self.apply_response(info["account_id"], request_id, info["directives"], response,
                            watermarked=WATERMARK_HEADER in (data.get("extra_headers") or {}))
        return response

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # LiteLLM (1.108) runs a streaming iterator hook only when the registered class defines it in
        # its own ``__dict__``; deployments register a subclass (dg_hooks.Gate), so each gets it there.
        super().__init_subclass__(**kwargs)
        if "async_post_call_streaming_iterator_hook" not in cls.__dict__:
            cls.async_post_call_streaming_iterator_hook = DistillGuardGuardrail.async_post_call_streaming_iterator_hook

    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict: Any, response: Any, request_data: dict):
        """Streamed responses: reasoning deltas withheld or cut, log-probabilities dropped (no canary)."""
        meta = request_data.get("metadata") if isinstance(request_data, dict) else None
        info = meta.get(META_KEY) if isinstance(meta, dict) else None
        dirs = (info or {}).get("directives") or {}
        shaper = StreamShaper(dirs.get("response") or {}, drop_logprobs=bool((dirs.get("request") or {}).get("drop_logprobs")))
        if not info or not shaper.active:
            async for chunk in response:
                yield chunk
            return
        if dirs.get("shadow"):
            self._shadow(info["account_id"], "stream", [f"reasoning: {shaper.mode}", *(["logprobs dropped"] if shaper.drop_logprobs else [])])
            async for chunk in response:
                yield chunk
            return
        async for chunk in response:
            yield shaper.apply(chunk)

    def apply_response(self, account: str, request_id: str, dirs: dict, response: Any, *, watermarked: bool = False) -> list[str]:
        """Shape ``response`` in place and weave the canary as directed; record marks. Returns the changes."""
        req = dirs.get("request") or {}
        if dirs.get("shadow"):
            changes = shape_response(response, dirs.get("response") or {}, drop_logprobs=bool(req.get("drop_logprobs")), dry_run=True)
            self._shadow(account, "response", changes)
            return changes
        changes = shape_response(response, dirs.get("response") or {}, drop_logprobs=bool(req.get("drop_logprobs")))
        if self.marker is not None:
            changes += self.marker.mark(account, request_id, dirs.get("mark") or {}, response, watermarked=watermarked)
        return changes


class Marker:
    """Weaves canaries and records every mark served (needs the mark key and an evidence log)."""

    def __init__(self, key: bytes, key_id: str, evidence: EvidenceWriter):
        self.key, self.key_id, self.evidence = key, key_id, evidence
        self._canaries: dict[str, Canary] = {}

    @classmethod
    def configured(cls, mark_key: str | None, evidence_log: str | None) -> "Marker | None":
        path = evidence_log or os.environ.get("DISTILLGUARD_EVIDENCE_LOG")
        try:
            ring = load_mark_keys(mark_key)
        except ValueError:
            ring = None
        if ring is None or not path:
            log.warning("distillguard: no mark key or evidence log configured: responses are shaped, never marked")
            return None
        return cls(ring.key(), ring.active, EvidenceWriter(path))

    def canary(self, account: str) -> Canary:
        c = self._canaries.get(account)
        if c is None:
            if len(self._canaries) > 100_000:
                self._canaries.clear()
            c = self._canaries[account] = canary_for(self.key, account, self.key_id)
        return c

    def mark(self, account: str, request_id: str, mark: dict, response: Any, *, watermarked: bool = False) -> list[str]:
        out = []
        if watermarked:
            self.evidence.submit(account=account, request_id=request_id, mark="watermark", mark_id=f"wm-{self.key_id}", key_id=self.key_id)
            out.append("watermark requested")
        rate = float(mark.get("canary_rate") or 0.0)
        if rate > 0 and request_id and canary_selected(self.key, request_id, rate):
            c = self.canary(account)
            if append_to_answer(response, lambda text: weave(text, c)):
                self.evidence.submit(account=account, request_id=request_id, mark="canary", mark_id=c.mark_id, key_id=self.key_id)
                out.append(f"canary {c.mark_id}")
        return out


def _ms(t: Any) -> int | None:
    if t is None:
        return None
    if isinstance(t, datetime):
        return int(t.timestamp() * 1000)
    if isinstance(t, (int, float)):
        return int(t * 1000) if t < 1e11 else int(t)
    return None


def _text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") in ("text", "input_text")]
        parts = [p for p in parts if isinstance(p, str)]
        return "\n".join(parts) if parts else None
    return None


def _tool_names(tools: Any) -> list[str] | None:
    """Names of the offered tools (OpenAI ``{"function": {"name"}}`` or flat ``{"name"}``), or
    None when any lacks a string name: an unknown list is left out, not logged wrong."""
    if not isinstance(tools, list):
        return None
    names = []
    for t in tools:
        fn = t.get("function") if isinstance(t, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else (t.get("name") if isinstance(t, dict) else None)
        if not isinstance(name, str):
            return None
        names.append(name)
    return names


def _tool_calls(choice: Any) -> int | None:
    calls = _get(_get(choice, "message"), "tool_calls")
    return len(calls) if isinstance(calls, list) else (0 if _get(choice, "message") is not None else None)


def exchange_record(kwargs: dict, response_obj: Any, start_time: Any, end_time: Any, *, ok: bool,
                    account_source: str = "auto", keep_prompt: bool = True) -> dict:
    """The events.md record of one LiteLLM call."""
    slo = kwargs.get("standard_logging_object") or {}
    meta = (slo.get("metadata") if isinstance(slo, dict) else None) or {}
    lp = kwargs.get("litellm_params") or {}
    lmeta = lp.get("metadata") or kwargs.get("metadata") or {}
    op = dict(kwargs.get("optional_params") or {})
    op.update({k: v for k, v in (slo.get("model_parameters") or {}).items() if k not in op})
    messages = kwargs.get("messages") or kwargs.get("input") or []
    prompt = system = None
    if isinstance(messages, list):
        for m in messages:
            if isinstance(m, dict) and m.get("role") == "user":
                prompt = _text(m.get("content"))
            elif isinstance(m, dict) and m.get("role") in ("system", "developer") and system is None:
                system = _text(m.get("content"))
    elif isinstance(messages, str):
        prompt = messages
    user_key = {"user_id": meta.get("user_api_key_user_id") or lmeta.get("user_api_key_user_id"),
                "team_id": meta.get("user_api_key_team_id") or lmeta.get("user_api_key_team_id"),
                "org_id": meta.get("user_api_key_org_id") or lmeta.get("user_api_key_org_id"),
                "metadata": lmeta.get("user_api_key_metadata") or {}}
    data = {"user": kwargs.get("user") or slo.get("end_user") or meta.get("user_api_key_end_user_id")}
    usage = _get(response_obj, "usage")
    choices = _get(response_obj, "choices") or []
    details = _get(usage, "completion_tokens_details")
    exc = kwargs.get("exception")
    rec = {
        "request_id": kwargs.get("litellm_call_id") or slo.get("id") or _get(response_obj, "id"),
        "ts": _ms(start_time) or _ms(slo.get("startTime")),
        "account_id": account_of(user_key, data, account_source),
        "api_key_id": meta.get("user_api_key_hash") or lmeta.get("user_api_key_hash"),
        "client_ip": slo.get("requester_ip_address") or meta.get("requester_ip_address") or lmeta.get("requester_ip_address"),
        "user_agent": slo.get("user_agent") or meta.get("user_agent"),
        "model": kwargs.get("model") or slo.get("model"),
        "operation": {"completion": "chat", "acompletion": "chat", "text_completion": "text_completion",
                      "atext_completion": "text_completion", "aresponses": "responses", "responses": "responses",
                      "embedding": "embeddings", "aembedding": "embeddings"}.get(kwargs.get("call_type") or slo.get("call_type"), kwargs.get("call_type")),
        "temperature": op.get("temperature"), "top_p": op.get("top_p"), "n": op.get("n"),
        "max_tokens": op.get("max_tokens") or op.get("max_completion_tokens"), "seed": op.get("seed"),
        "stream": op.get("stream", kwargs.get("stream")), "logprobs": op.get("logprobs"), "top_logprobs": op.get("top_logprobs"),
        "reasoning_effort": op.get("reasoning_effort"),
        "tool_count": len(op["tools"]) if isinstance(op.get("tools"), list) else None,
        "tool_names": _tool_names(op.get("tools")),
        "message_count": len(messages) if isinstance(messages, list) else None,
        "last_role": messages[-1].get("role") if isinstance(messages, list) and messages and isinstance(messages[-1], dict) else None,
        "output_tool_calls": _tool_calls(choices[0]) if ok and choices else None,
        "system_prompt": system if keep_prompt else None,
        "prompt": prompt if keep_prompt else None,
        "status": 200 if ok else int(getattr(exc, "status_code", 500) or 500),
        "finish_reason": _get(choices[0], "finish_reason") if choices else None,
        "input_tokens": _get(usage, "prompt_tokens"), "output_tokens": _get(usage, "completion_tokens"),
        "reasoning_tokens": _get(details, "reasoning_tokens"),
    }
    if rec["ts"] is not None and _ms(end_time) is not None:
        rec["latency_ms"] = max(0, _ms(end_time) - rec["ts"])
    if not keep_prompt and prompt is not None:
        import hashlib

        rec["prompt_sha256"] = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
    # Keep only what the contract types allow (a wrong type would quarantine the record).
    for k in ("temperature", "top_p"):
        if rec.get(k) is not None and (isinstance(rec[k], bool) or not isinstance(rec[k], (int, float))):
            rec[k] = None
    for k in ("n", "max_tokens", "seed", "top_logprobs", "input_tokens", "output_tokens", "reasoning_tokens", "tool_count"):
        if rec.get(k) is not None and (not isinstance(rec[k], int) or isinstance(rec[k], bool)):
            rec[k] = None
    for k in ("stream", "logprobs"):
        if rec.get(k) is not None and not isinstance(rec[k], bool):
            rec[k] = None
    if not isinstance(rec.get("last_role"), str):
        rec["last_role"] = None
    return {k: v for k, v in rec.items() if v is not None}


class DistillGuardLogger(_LoggerBase):
    """Feeds every finished call to ``POST /v1/events`` (NDJSON batches, background flush)."""

    def __init__(self, url: str, token: str | None = None, *, account_source: str = "auto", keep_prompt: bool = True,
                 batch_size: int = 200, flush_interval_s: float = 0.5, timeout_s: float = 10.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.url = url.rstrip("/") + "/v1/events"
        self._token = token if token is not None else os.environ.get("DISTILLGUARD_INGEST_TOKEN")
        self.account_source, self.keep_prompt = account_source, keep_prompt
        self.batch_size, self.flush_interval_s, self.timeout_s = batch_size, flush_interval_s, timeout_s
        self._buf: list[bytes] = []
        self._lock: asyncio.Lock | None = None
        self._task: asyncio.Task | None = None
        self._client: httpx.AsyncClient | None = None
        self.sent = 0

    def _add(self, rec: dict) -> None:
        if not rec.get("request_id") or not rec.get("account_id"):
            return  # the service would quarantine it; without an account there is nothing to track
        self._buf.append(orjson.dumps(rec))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flusher())

    async def _flusher(self) -> None:
        while self._buf:
            if len(self._buf) < self.batch_size:
                await asyncio.sleep(self.flush_interval_s)
            await self.flush()

    async def flush(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._buf:
                return
            batch, self._buf = self._buf, []
            if self._client is None:
                headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
                self._client = httpx.AsyncClient(timeout=self.timeout_s, headers=headers)
            for attempt in range(3):
                try:
                    r = await self._client.post(self.url, content=b"\n".join(batch) + b"\n",
                                                headers={"Content-Type": "application/x-ndjson"})
                    if r.status_code < 500:
                        self.sent += len(batch)
                        if r.status_code >= 400:
                            log.warning("distillguard refused an exchange batch: HTTP %d", r.status_code)
                        return
                except httpx.HTTPError as e:
                    log.warning("distillguard ingest failed (%s), retrying", type(e).__name__)
                await asyncio.sleep(0.2 * 2 ** attempt)
            log.error("dropping %d exchange records after retries", len(batch))

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):  # noqa: D401
        self._add(exchange_record(kwargs, response_obj, start_time, end_time, ok=True,
                                  account_source=self.account_source, keep_prompt=self.keep_prompt))

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._add(exchange_record(kwargs, response_obj, start_time, end_time, ok=False,
                                  account_source=self.account_source, keep_prompt=self.keep_prompt))
