"""Signed webhooks on action changes (at-least-once, no repeats after restart) and OpenTelemetry
GenAI span ingestion."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

pytest.importorskip("httpx")
from distillguard.serve.config import ServeConfig  # noqa: E402
from distillguard.serve.engine import Engine  # noqa: E402
from distillguard.serve.otel import otlp_to_records  # noqa: E402
from distillguard.serve.webhooks import SIGNATURE_HEADER, WebhookDispatcher, sign, verify  # noqa: E402
from serve_util import lines_of, sim_and_scan  # noqa: E402

SECRET = "whsec-test-0123456789"


class _Receiver:
    def __init__(self, fail_first: int = 0):
        self.got: list[tuple[dict, bytes]] = []
        self.fail_left = fail_first
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.fail_left > 0:
                    outer.fail_left -= 1
                    self.send_response(503)
                else:
                    outer.got.append((dict(self.headers), body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/hook"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()


def test_signatures():
    body = b'{"a":1}'
    h = sign(SECRET, body, ts=1_800_000_000)
    assert verify(SECRET, body, h, now=1_800_000_010)
    assert not verify(SECRET, body + b" ", h, now=1_800_000_010)
    assert not verify("other-secret", body, h, now=1_800_000_010)
    assert not verify(SECRET, body, h, now=1_800_000_000 + 3600)  # replayed too late
    assert not verify(SECRET, body, None) and not verify(SECRET, body, "garbage")


def _wait(pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_webhooks_fire_on_action_changes_once(tmp_path_factory, tmp_path):
    log, _ = sim_and_scan(tmp_path_factory)
    lines = lines_of(log)
    rx = _Receiver(fail_first=2)  # the first deliveries fail and are retried
    cfg = ServeConfig(state_dir=tmp_path / "s", webhook_urls=(rx.url,), refresh_ms=600_000)
    try:
        e = Engine(cfg)
        wh = WebhookDispatcher(e, cfg.webhook_urls, secret=SECRET, backoff_s=0.02)
        wh.start()
        e.ingest(lines[: len(lines) // 2])
        e.refresh()
        e.ingest(lines[len(lines) // 2:])
        e.refresh()
        _wait(lambda: not e.store.outbox())
        wh.stop()
        got = list(rx.got)
        assert got, "some account's action should change on the benchmark slice"
        ids = set()
        for headers, body in got:
            assert verify(SECRET, body, headers[SIGNATURE_HEADER])
            ev = json.loads(body)
            assert ev["type"] == "decision.action_changed" and ev["id"] == headers["X-DistillGuard-Event-Id"]
            assert (ev["previous"]["action"], ev["previous"]["computed_action"]) != (ev["current"]["action"], ev["current"]["computed_action"])
            ids.add(ev["id"])
        assert len(ids) == len(got)
        last = {}
        for _, body in got:
            ev = json.loads(body)
            last[ev["account_id"]] = ev["current"]["action"]
        for a, action in last.items():
            assert orjson.loads(e.decisions[a])["action"] == action
        e.close()
        # Restart on the same store: the same decisions are not announced again.
        e = Engine(cfg)
        wh = WebhookDispatcher(e, cfg.webhook_urls, secret=SECRET, backoff_s=0.02)
        wh.start()
        e.start()
        time.sleep(0.3)
        wh.stop()
        e.close()
        assert len(rx.got) == len(got)
    finally:
        rx.close()


def _span(rec: dict, trace: str, span: str) -> dict:
    def sv(v):
        if isinstance(v, bool):
            return {"boolValue": v}
        if isinstance(v, int):
            return {"intValue": str(v)}
        if isinstance(v, float):
            return {"doubleValue": v}
        return {"stringValue": v}

    attrs = {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": rec.get("model"), "enduser.id": rec["account_id"],
        "client.address": rec.get("client_ip"), "user_agent.original": rec.get("user_agent"),
        "gen_ai.request.max_tokens": rec.get("max_tokens"), "gen_ai.request.temperature": rec.get("temperature"),
        "gen_ai.usage.output_tokens": rec.get("output_tokens"), "gen_ai.conversation.id": rec.get("conversation_id"),
        "payment_fingerprint": rec.get("payment_fingerprint"),
        "gen_ai.input.messages": json.dumps([{"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
                                             {"role": "user", "parts": [{"type": "text", "content": rec.get("prompt") or ""}]}]),
        "gen_ai.response.finish_reasons": ["length"],
        "gen_ai.tool.definitions": json.dumps([{"name": "a"}, {"name": "b"}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
            {"type": "text", "content": "ok"}, {"type": "tool_call", "name": "a", "arguments": {}}]}]),
    }
    start = rec["ts_ms"] * 1_000_000
    return {"traceId": trace, "spanId": span, "name": "chat", "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + 1_234_000_000),
            "attributes": [{"key": k, "value": sv(v) if not isinstance(v, list) else {"arrayValue": {"values": [sv(x) for x in v]}}}
                           for k, v in attrs.items() if v is not None]}


def test_otel_genai_spans_map_to_exchanges(tmp_path):
    rec = {"account_id": "acct_otel", "model": "frontier-large", "client_ip": "203.0.113.7", "user_agent": "sdk/1",
           "max_tokens": 4096, "temperature": 0.7, "output_tokens": 812, "conversation_id": "c-1",
           "payment_fingerprint": "pf_1", "prompt": "Explain step by step.", "ts_ms": 1_793_000_000_000}
    doc = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "gateway"}}]},
        "scopeSpans": [{"spans": [
            _span(rec, "a" * 32, "b" * 16),
            {"traceId": "c" * 32, "spanId": "d" * 16, "name": "GET /", "startTimeUnixNano": "1",
             "attributes": [{"key": "http.method", "value": {"stringValue": "GET"}}]},  # not GenAI: ignored
            {**_span({**rec, "account_id": None}, "e" * 32, "f" * 16)},  # no account: quarantined
        ]}]}]}
    records, ignored = otlp_to_records(doc)
    assert ignored == 1 and len(records) == 2
    r = records[0]
    assert r["request_id"] == "a" * 32 + "-" + "b" * 16 and r["ts"] == rec["ts_ms"] and r["latency_ms"] == 1234
    assert (r["account_id"], r["model"], r["operation"], r["client_ip"], r["user_agent"]) == (
        "acct_otel", "frontier-large", "chat", "203.0.113.7", "sdk/1")
    assert (r["max_tokens"], r["temperature"], r["output_tokens"], r["tool_count"], r["finish_reason"]) == (4096, 0.7, 812, 2, "length")
    assert r["prompt"] == "Explain step by step." and r["payment_fingerprint"] == "pf_1" and r["status"] == 200
    assert (r["tool_names"], r["message_count"], r["last_role"], r["output_tool_calls"]) == (["a", "b"], 2, "user", 1)
    e = Engine(ServeConfig(state_dir=tmp_path / "s", refresh_ms=600_000))
    res = e.ingest(records, "http:/v1/traces")
    assert (res.accepted, res.rejected, res.rejects[0]["reason"]) == (1, 1, "missing:account_id")
    assert e.ingest(records, "http:/v1/traces").duplicate == 1  # a re-exported span counts once
    e.refresh()
    assert orjson.loads(e.decisions["acct_otel"])["events"] == 1
    e.close()


def test_otel_endpoint(tmp_path):
    from fastapi.testclient import TestClient

    from distillguard.serve.app import build_service, create_app
    from distillguard.serve.auth import TokenAuth
    from serve_util import H_INGEST, TOKENS

    rec = {"account_id": "acct_otel", "ts_ms": 1_793_000_000_000, "prompt": "hi"}
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [_span(rec, "1" * 32, "2" * 16)]}]}]}
    app = create_app(build_service(ServeConfig(state_dir=tmp_path / "s"), TokenAuth(TOKENS)))
    with TestClient(app) as c:
        r = c.post("/v1/traces", content=json.dumps(doc), headers={**H_INGEST, "Content-Type": "application/json"})
        assert r.status_code == 200 and r.json()["accepted"] == 1
