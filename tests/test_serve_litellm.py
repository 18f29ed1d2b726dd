"""LiteLLM gateway integration: the guardrail (429 + Retry-After / 403), the exchange logger, and —
when a LiteLLM proxy is installed — a real proxy on loopback with a mocked model."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import orjson
import pytest

pytest.importorskip("fastapi")
from fastapi import HTTPException  # noqa: E402

from distillguard.serve import litellm_plugin as lp  # noqa: E402
from distillguard.serve.app import build_service, create_app  # noqa: E402
from distillguard.serve.auth import TokenAuth  # noqa: E402
from distillguard.serve.config import ServeConfig  # noqa: E402
from serve_util import (H_ADMIN, H_DECIDE, H_INGEST, TOKENS, env_with_tokens, free_port, lines_of,  # noqa: E402
                        sim_and_scan)

PROXY_PATH = os.environ.get("DISTILLGUARD_LITELLM_PYTHONPATH")  # a `pip install --target` dir holding litellm[proxy]


# The test slice is three hours of a fifth of the benchmark's traffic: too little harvested yield
# for the default policy to throttle or suspend anyone, so the yield bars scale down with it.
SLICE_POLICY = "throttle_min_yield: 5\nsuspend_min_yield: 25\n"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """An engine holding the benchmark slice, served in-process over ASGI."""
    log, _ = sim_and_scan(tmp_path_factory)
    policy = tmp_path_factory.mktemp("litellm-policy") / "policy.yaml"
    policy.write_text(SLICE_POLICY)
    svc = build_service(ServeConfig(state_dir=tmp_path_factory.mktemp("litellm-state"), refresh_ms=600_000, policy_path=policy),
                        TokenAuth(TOKENS))
    svc.engine.ingest(lines_of(log))
    svc.engine.refresh()
    yield svc
    svc.engine.close()


def _by_action(svc) -> dict[str, str]:
    out: dict[str, str] = {}
    for a, b in svc.engine.decisions.items():
        out.setdefault(orjson.loads(b)["action"], a)
    return out


def _asgi_client(svc, token: str) -> httpx.AsyncClient:
    app = create_app(svc, start_engine=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dg", headers={"Authorization": f"Bearer {token}"})


def test_guardrail_blocks_throttle_and_suspend(service):
    acts = _by_action(service)
    assert {"throttle", "suspend", "none"} <= set(acts), acts

    async def run():
        g = lp.DistillGuardGuardrail(url="http://dg", token="tok-decide-0001", account_source="end_user", retry_after_s=45)
        g.source._client = _asgi_client(service, "tok-decide-0001")
        out = {}
        for action in ("none", "challenge", "throttle", "suspend"):
            data = {"user": acts[action], "messages": [{"role": "user", "content": "hi"}]}
            try:
                assert await g.async_pre_call_hook(None, None, data, "completion") is data
                out[action] = 200
            except HTTPException as e:
                out[action] = (e.status_code, (e.headers or {}).get("Retry-After"), e.detail["action"])
        unknown = await g.async_pre_call_hook(None, None, {"user": "never-seen"}, "completion")
        await g.source._client.aclose()
        return out, unknown

    out, unknown = asyncio.run(run())
    assert out == {"none": 200, "challenge": 200, "throttle": (429, "45", "throttle"), "suspend": (403, None, "suspend")}
    assert unknown == {"user": "never-seen"}


def test_guardrail_fails_open_or_closed():
    async def run(fail_open):
        g = lp.DistillGuardGuardrail(url="http://127.0.0.1:9", token="x", account_source="end_user", fail_open=fail_open, timeout_s=0.2)
        try:
            await g.async_pre_call_hook(None, None, {"user": "a"}, "completion")
            return 200
        except HTTPException as e:
            return e.status_code

    assert asyncio.run(run(True)) == 200
    assert asyncio.run(run(False)) == 503


def test_account_resolution():
    class Key:
        user_id, team_id, org_id, metadata = "u1", "t1", None, {"distillguard_account_id": "acct-9"}

    assert lp.account_of(Key(), {"user": "end"}) == "acct-9"
    Key.metadata = {}
    assert lp.account_of(Key(), {"user": "end"}) == "u1"
    assert lp.account_of(Key(), {"user": "end"}, "team_id") == "t1"
    assert lp.account_of(Key(), {"user": "end"}, "end_user") == "end"
    Key.user_id, Key.team_id = "default_user_id", None
    assert lp.account_of(Key(), {"user": "end"}) == "end"


def test_logger_records_follow_the_contract(service):
    t0 = datetime(2026, 11, 2, 9, 30, tzinfo=timezone.utc)
    kwargs = {
        "litellm_call_id": "call-123", "model": "frontier-large", "call_type": "acompletion", "user": "acct_gw",
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": [{"type": "text", "text": "Explain step by step."}]}],
        "optional_params": {"temperature": 0.2, "max_tokens": 9000, "n": 2, "stream": False, "logprobs": True,
                            "tools": [{"type": "function"}], "reasoning_effort": "high"},
        "litellm_params": {"metadata": {"requester_ip_address": "203.0.113.9", "user_api_key_hash": "hk1"}},
    }
    resp = {"id": "chatcmpl-1", "choices": [{"finish_reason": "length"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 900, "completion_tokens_details": {"reasoning_tokens": 500}}}
    rec = lp.exchange_record(kwargs, resp, t0, t0.replace(second=2), ok=True, account_source="end_user")
    assert rec == {"request_id": "call-123", "ts": int(t0.timestamp() * 1000), "account_id": "acct_gw", "api_key_id": "hk1",
                   "client_ip": "203.0.113.9", "model": "frontier-large", "operation": "chat", "temperature": 0.2, "n": 2,
                   "max_tokens": 9000, "stream": False, "logprobs": True, "reasoning_effort": "high", "tool_count": 1,
                   "message_count": 2, "last_role": "user",
                   "system_prompt": "be brief", "prompt": "Explain step by step.", "status": 200, "finish_reason": "length",
                   "input_tokens": 12, "output_tokens": 900, "reasoning_tokens": 500, "latency_ms": 2000}
    # Agent traffic: tool names, the tool result the request ends with, the tool calls answered.
    agent = {**kwargs, "messages": kwargs["messages"] + [{"role": "assistant", "content": None},
                                                         {"role": "tool", "content": "ok"}],
             "optional_params": {"tools": [{"type": "function", "function": {"name": "bash"}}, {"name": "edit"}]}}
    called = {**resp, "choices": [{"finish_reason": "tool_calls", "message": {"tool_calls": [{"id": "t1"}, {"id": "t2"}]}}]}
    rec = lp.exchange_record(agent, called, t0, t0, ok=True, account_source="end_user")
    assert (rec["tool_names"], rec["message_count"], rec["last_role"], rec["output_tool_calls"]) == (["bash", "edit"], 4, "tool", 2)
    unnamed = {**agent, "optional_params": {"tools": [{"type": "function"}]}}
    assert "tool_names" not in lp.exchange_record(unnamed, resp, t0, t0, ok=True, account_source="end_user")
    hidden = lp.exchange_record(kwargs, resp, t0, t0, ok=False, account_source="end_user", keep_prompt=False)
    assert "prompt" not in hidden and len(hidden["prompt_sha256"]) == 64 and hidden["status"] == 500

    async def run():
        feed = lp.DistillGuardLogger("http://dg", token="tok-ingest-0001", account_source="end_user", flush_interval_s=0.01)
        feed._client = _asgi_client(service, "tok-ingest-0001")
        await feed.async_log_success_event(kwargs, resp, t0, t0)
        await feed.async_log_success_event(kwargs, resp, t0, t0)  # the same call logged twice
        await feed.async_log_failure_event({**kwargs, "litellm_call_id": "call-124"}, None, t0, t0)
        await asyncio.sleep(0.05)
        await feed.flush()
        await feed._client.aclose()
        return feed.sent

    assert asyncio.run(run()) == 3
    service.engine.refresh()
    assert orjson.loads(service.engine.decisions["acct_gw"])["events"] == 2  # call-123 once, call-124


@pytest.mark.skipif(not lp.HAVE_LITELLM and not PROXY_PATH, reason="litellm not installed")
def test_plugin_classes_are_litellm_hooks():
    # In a process of its own: LiteLLM may live apart (DISTILLGUARD_LITELLM_PYTHONPATH, see below).
    code = ("from distillguard.serve import litellm_plugin as lp\n"
            "from litellm.integrations.custom_guardrail import CustomGuardrail\n"
            "from litellm.integrations.custom_logger import CustomLogger\n"
            "assert lp.HAVE_LITELLM\n"
            "assert issubclass(lp.DistillGuardGuardrail, CustomGuardrail) and issubclass(lp.DistillGuardLogger, CustomLogger)\n")
    src = str(Path(lp.__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (PROXY_PATH, src) if p)
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": path, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


# -- a real LiteLLM proxy on loopback ---------------------------------------------------------------

def _proxy_available() -> bool:
    # A directory named but empty is a broken set-up (.ci/run installs it there): the test runs and fails.
    if PROXY_PATH:
        return True
    return importlib.util.find_spec("litellm") is not None and importlib.util.find_spec("apscheduler") is not None


HOOKS = """
import os
from distillguard.serve.litellm_plugin import DistillGuardGuardrail, DistillGuardLogger
class Gate(DistillGuardGuardrail):
    def __init__(self, **kw):
        super().__init__(url=os.environ["DG_URL"], token=os.environ["DG_DECIDE_TOKEN"], account_source="end_user",
                         retry_after_s=30, cache_ttl_s=0.0, timeout_s=2.0, **kw)
feed = DistillGuardLogger(os.environ["DG_URL"], token=os.environ["DG_INGEST_TOKEN"], account_source="end_user", flush_interval_s=0.1)
"""

CONFIG = """
model_list:
  - model_name: mock-model
    litellm_params: {model: openai/mock-model, api_key: sk-not-used, mock_response: "The answer is 42."}
guardrails:
  - guardrail_name: distillguard
    litellm_params: {guardrail: dg_hooks.Gate, mode: pre_call, default_on: true}
litellm_settings:
  callbacks: dg_hooks.feed
general_settings:
  master_key: sk-master-test-0000
"""


def _shift_to_now(lines: list[bytes]) -> list[bytes]:
    def ms(v):
        if isinstance(v, int):
            return v
        return int(datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1000)

    recs = []
    for ln in lines:
        try:
            d = orjson.loads(ln)
            recs.append((d, ms(d["ts"])))
        except Exception:
            recs.append((ln, None))
    end = max(t for _, t in recs if t is not None)
    delta = int(time.time() * 1000) - 60_000 - end
    return [orjson.dumps({**d, "ts": t + delta}) if t is not None else d for d, t in recs]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited {proc.returncode}: {log.read_text(errors='replace')[-3000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up: {log.read_text(errors='replace')[-3000:]}")


@pytest.mark.skipif(not _proxy_available(), reason="LiteLLM proxy not installed: litellm[proxy] pins polars<2, so install it "
                    "apart (pip install --target DIR 'litellm[proxy]') and set DISTILLGUARD_LITELLM_PYTHONPATH=DIR")
def test_real_litellm_proxy_on_loopback(tmp_path_factory, tmp_path):
    log, _ = sim_and_scan(tmp_path_factory)
    src = str(Path(lp.__file__).resolve().parents[2])
    dg_port, px_port = free_port(), free_port()
    dg_url, px_url = f"http://127.0.0.1:{dg_port}", f"http://127.0.0.1:{px_port}"
    (tmp_path / "dg_hooks.py").write_text(HOOKS)
    (tmp_path / "config.yaml").write_text(CONFIG)
    dg_log, px_log = tmp_path / "dg.log", tmp_path / "proxy.log"
    (tmp_path / "policy.yaml").write_text(SLICE_POLICY)
    dg = subprocess.Popen([sys.executable, "-m", "distillguard.serve", "--port", str(dg_port), "--state-dir", str(tmp_path / "state"),
                           "--refresh-ms", "200", "--policy", str(tmp_path / "policy.yaml")],
                          env=env_with_tokens(), stdout=open(dg_log, "wb"), stderr=subprocess.STDOUT)
    env = {**os.environ, "DG_URL": dg_url, "DG_DECIDE_TOKEN": "tok-decide-0001", "DG_INGEST_TOKEN": "tok-ingest-0001",
           "PYTHONPATH": os.pathsep.join(p for p in (PROXY_PATH, str(tmp_path), src) if p),
           # Nothing may leave loopback: no remote cost map, and any stray outbound call hits a closed local port.
           "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost"}
    env.pop("DISTILLGUARD_API_TOKENS", None)
    px = subprocess.Popen([sys.executable, "-c", "import sys; from litellm import run_server; sys.exit(run_server())",
                           "--config", str(tmp_path / "config.yaml"), "--host", "127.0.0.1", "--port", str(px_port)],
                          cwd=tmp_path, env=env, stdout=open(px_log, "wb"), stderr=subprocess.STDOUT)
    try:
        _wait_http(dg_url + "/healthz", dg, dg_log, 90)
        with httpx.Client(timeout=60) as c:
            # The benchmark slice, moved to end now: the proxy's own exchanges arrive in real time, and a
            # decision replays the whole event-time span (see docs/serve.md, limits).
            body = b"\n".join(_shift_to_now(lines_of(log)))
            assert c.post(dg_url + "/v1/events", content=body, headers=H_INGEST).status_code == 200
            c.post(dg_url + "/v1/admin/refresh", headers=H_ADMIN)
            acts: dict[str, str] = {}
            for d in c.get(dg_url + "/v1/decisions", headers=H_DECIDE).json()["decisions"]:
                acts.setdefault(d["action"], d["account_id"])
            _wait_http(px_url + "/health/liveliness", px, px_log, 240)
            hdr = {"Authorization": "Bearer sk-master-test-0000"}

            def call(user):
                return c.post(px_url + "/v1/chat/completions", headers=hdr,
                              json={"model": "mock-model", "user": user, "max_tokens": 64,
                                    "messages": [{"role": "user", "content": "Explain step by step why 6*7=42."}]})

            r = call(acts["throttle"])
            assert r.status_code == 429 and r.headers["retry-after"] == "30", r.text
            r = call(acts["suspend"])
            assert r.status_code == 403, r.text
            assert call(acts["none"]).status_code == 200
            for _ in range(2):
                r = call("acct_via_proxy")
                assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "The answer is 42."
            deadline = time.monotonic() + 30  # the logger callback feeds both exchanges in
            events = 0
            while time.monotonic() < deadline and events < 2:
                time.sleep(0.3)
                c.post(dg_url + "/v1/admin/refresh", headers=H_ADMIN)
                g = c.get(dg_url + "/v1/decisions/acct_via_proxy", headers=H_DECIDE)
                events = g.json()["events"] if g.status_code == 200 else 0
            assert events == 2
    finally:
        for p in (px, dg):
            p.send_signal(signal.SIGTERM)
        for p in (px, dg):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


# -- the countermeasure ladder through the real proxy ----------------------------------------------

LADDER_POLICY = """
countermeasures:
  challenge: {max_tokens: 50, n: 1, logprobs: drop, reasoning_effort: low, reasoning: shorten, reasoning_chars: 16,
              canary_rate: 1.0, watermark: true}
"""

LADDER_HOOKS = """
import os
from distillguard.serve.litellm_plugin import DistillGuardGuardrail
class Gate(DistillGuardGuardrail):
    def __init__(self, **kw):
        super().__init__(url=os.environ["DG_URL"], token=os.environ["DG_DECIDE_TOKEN"], account_source="end_user",
                         cache_ttl_s=0.0, timeout_s=5.0, evidence_log=os.environ["DG_EVIDENCE"], **kw)
"""

LADDER_CONFIG = """
model_list:
  - model_name: bigram-teacher
    litellm_params: {model: openai/bigram-teacher, api_base: "%s/v1", api_key: sk-upstream}
guardrails:
  - guardrail_name: distillguard
    litellm_params: {guardrail: dg_hooks.Gate, mode: [pre_call, post_call], default_on: true}
general_settings:
  master_key: sk-master-test-0000
"""


@pytest.mark.skipif(not _proxy_available(), reason="LiteLLM proxy not installed (see test_real_litellm_proxy_on_loopback)")
def test_real_litellm_proxy_applies_the_ladder(tmp_path_factory, tmp_path):
    """A flagged (challenge) account's requests come back shaped and marked through the real proxy;
    a monitored-only account's come back as the model server wrote them."""
    from distillguard.provenance.canary import canary_for
    from distillguard.provenance.evidence import read_entries, verify

    log, _ = sim_and_scan(tmp_path_factory)
    src = str(Path(lp.__file__).resolve().parents[2])
    mark_key = "5e" * 32
    dg_port, px_port, lm_port = free_port(), free_port(), free_port()
    dg_url, px_url, lm_url = (f"http://127.0.0.1:{p}" for p in (dg_port, px_port, lm_port))
    (tmp_path / "dg_hooks.py").write_text(LADDER_HOOKS)
    (tmp_path / "config.yaml").write_text(LADDER_CONFIG % lm_url)
    (tmp_path / "policy.yaml").write_text(LADDER_POLICY)
    evidence = tmp_path / "evidence.jsonl"
    logs = {n: tmp_path / f"{n}.log" for n in ("dg", "lm", "proxy")}
    base_env = {**os.environ, "DG_MARK_KEY": mark_key, "PYTHONPATH": src}
    dg = subprocess.Popen([sys.executable, "-m", "distillguard.serve", "--port", str(dg_port), "--state-dir", str(tmp_path / "state"),
                           "--refresh-ms", "200", "--policy", str(tmp_path / "policy.yaml")], env=env_with_tokens(),
                          stdout=open(logs["dg"], "wb"), stderr=subprocess.STDOUT)
    # The model server: a bigram LM trained at start-up, decoding with the watermark when the gateway asks.
    lm = subprocess.Popen([sys.executable, "-m", "distillguard.provenance.lmserver", "--port", str(lm_port), "--corpus-limit", "1500",
                           "--vocab", "600"], env=base_env, stdout=open(logs["lm"], "wb"), stderr=subprocess.STDOUT)
    env = {**base_env, "DG_URL": dg_url, "DG_DECIDE_TOKEN": "tok-decide-0001", "DG_EVIDENCE": str(evidence),
           "PYTHONPATH": os.pathsep.join(p for p in (PROXY_PATH, str(tmp_path), src) if p),
           "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost"}
    env.pop("DISTILLGUARD_API_TOKENS", None)
    px = subprocess.Popen([sys.executable, "-c", "import sys; from litellm import run_server; sys.exit(run_server())",
                           "--config", str(tmp_path / "config.yaml"), "--host", "127.0.0.1", "--port", str(px_port)],
                          cwd=tmp_path, env=env, stdout=open(logs["proxy"], "wb"), stderr=subprocess.STDOUT)
    try:
        _wait_http(dg_url + "/healthz", dg, logs["dg"], 90)
        with httpx.Client(timeout=60) as c:
            body = b"\n".join(_shift_to_now(lines_of(log)))
            assert c.post(dg_url + "/v1/events", content=body, headers=H_INGEST).status_code == 200
            c.post(dg_url + "/v1/admin/refresh", headers=H_ADMIN)
            acts: dict[str, str] = {}
            for d in c.get(dg_url + "/v1/decisions", headers=H_DECIDE).json()["decisions"]:
                acts.setdefault(d["action"], d["account_id"])
            flagged, monitored = acts["challenge"], acts.get("monitor", acts["none"])
            _wait_http(lm_url + "/v1/models", lm, logs["lm"], 120)
            _wait_http(px_url + "/health/liveliness", px, logs["proxy"], 240)
            ask = {"model": "bigram-teacher", "max_tokens": 2000, "n": 3, "logprobs": True, "top_logprobs": 3,
                   "reasoning_effort": "high", "seed": 5, "messages": [{"role": "user", "content": "Explain how a cell divides."}]}
            hdr = {"Authorization": "Bearer sk-master-test-0000"}

            r = c.post(px_url + "/v1/chat/completions", headers=hdr, json={**ask, "user": monitored})
            assert r.status_code == 200, r.text
            plain = r.json()
            direct = c.post(lm_url + "/v1/chat/completions", json=ask).json()
            assert len(plain["choices"]) == 3 and plain["choices"][0].get("logprobs")
            m = plain["choices"][0]["message"]
            assert m["content"] == direct["choices"][0]["message"]["content"]  # untouched
            assert m["reasoning_content"] == direct["choices"][0]["message"]["reasoning_content"]

            r = c.post(px_url + "/v1/chat/completions", headers=hdr, json={**ask, "user": flagged})
            assert r.status_code == 200, r.text
            shaped = r.json()
            assert len(shaped["choices"]) == 1 and not shaped["choices"][0].get("logprobs")  # n = 1, no log-probabilities
            assert shaped["usage"]["completion_tokens"] <= 50 < plain["usage"]["completion_tokens"] / 3  # max_tokens capped
            m = shaped["choices"][0]["message"]
            # What the model server answers to the shaped request (capped, low effort, watermarked):
            wm = c.post(lm_url + "/v1/chat/completions", headers={"x-distillguard-watermark": "default"},
                        json={**ask, "max_tokens": 50, "n": 1, "reasoning_effort": "low", "logprobs": None, "top_logprobs": None}).json()
            can = canary_for(bytes.fromhex(mark_key), flagged, "default")
            want = wm["choices"][0]["message"]["content"]
            assert m["content"] == want + "\n\n" + can.tag()  # the answer intact, the canary after it
            assert m["content"] != plain["choices"][0]["message"]["content"]  # decoded with the watermark
            full = wm["choices"][0]["message"]["reasoning_content"]  # low effort: shorter than the monitored account's
            assert len(full) < len(plain["choices"][0]["message"]["reasoning_content"])
            assert len(full) > 16 and m["reasoning_content"] == full[:16].rstrip() + " […]"  # then shortened by the post-call hook
            # Streamed: the reasoning deltas are cut the same way, the answer deltas pass.
            text = {"reasoning_content": "", "content": ""}
            with c.stream("POST", px_url + "/v1/chat/completions", headers=hdr, json={**ask, "user": flagged, "stream": True}) as s:
                assert s.status_code == 200
                for line in s.iter_lines():
                    if line.startswith("data: {"):
                        for ch in orjson.loads(line[6:])["choices"]:
                            for k in text:
                                text[k] += ch["delta"].get(k) or ""
            assert text["content"] == want
            assert text["reasoning_content"] == full[:16].rstrip() + " […]"

            deadline = time.monotonic() + 10  # the proxy writes evidence off the request path
            while len(entries := read_entries(evidence) if evidence.exists() else []) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert {(e["account"], e["mark"]) for e in entries} == {(flagged, "canary"), (flagged, "watermark")}
            assert all(monitored != e["account"] for e in entries) and verify(evidence).ok
            assert all("cell" not in str(e) for e in entries)  # no prompt text in the evidence
    finally:
        for p in (px, lm, dg):
            p.send_signal(signal.SIGTERM)
        for p in (px, lm, dg):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
