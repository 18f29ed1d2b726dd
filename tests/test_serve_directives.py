"""Countermeasure directives: the policy's ladder, the typed decision document, shaping and marking."""

from __future__ import annotations

import asyncio
import copy

import httpx
import orjson
import pytest

pytest.importorskip("fastapi")

from distillguard.provenance.canary import canary_for  # noqa: E402
from distillguard.provenance.evidence import read_entries, verify  # noqa: E402
from distillguard.scoring.policy import Ladder, Rung  # noqa: E402
from distillguard.serve import litellm_plugin as lp  # noqa: E402
from distillguard.serve.app import build_service, create_app  # noqa: E402
from distillguard.serve.auth import TokenAuth  # noqa: E402
from distillguard.serve.config import ServeConfig  # noqa: E402
from distillguard.serve.directives import Decision, directives_for  # noqa: E402
from distillguard.serve.fastpath import decision_response  # noqa: E402
from distillguard.serve.shaping import append_to_answer, shape_request, shape_response  # noqa: E402
from serve_util import H_DECIDE, TOKENS, lines_of, sim_and_scan  # noqa: E402

POLICY = """
countermeasures:
  challenge: {max_tokens: 512, n: 1, logprobs: drop, reasoning_effort: low, reasoning: shorten, reasoning_chars: 50,
              canary_rate: 1.0, watermark: true}
"""
MARK_KEY = "ab" * 32


# -- the ladder in policy.yaml --------------------------------------------------------------------

def test_ladder_defaults_and_yaml(tmp_path):
    d = Ladder()
    assert d.rung("none") == Rung() and d.rung("monitor") == Rung()
    assert d.rung("throttle").block == "throttle" and d.rung("suspend").block == "suspend"
    assert d.rung("challenge").watermark and d.rung("challenge").reasoning == "shorten"
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY + "  monitor: {reasoning: withhold}\n  shadow: true\n")
    lad = Ladder.from_yaml(p)
    assert lad.shadow and lad.rung("challenge").max_tokens == 512 and lad.rung("monitor").reasoning == "withhold"
    assert lad.rung("throttle").block == "throttle"  # levels not named keep their defaults


@pytest.mark.parametrize("section, msg", [
    ({"challenge": {"max_tokens": 0}}, "at least 1"),
    ({"challenge": {"reasoning": "erase"}}, "reasoning must be"),
    ({"challenge": {"canary": 0.1}}, "unknown keys"),
    ({"sometimes": {}}, "unknown levels"),
    ({"challenge": {"reasoning_effort": "extreme"}}, "reasoning_effort"),
    ({"challenge": {"logprobs": "hide"}}, "logprobs"),
])
def test_ladder_rejects_bad_config(section, msg):
    with pytest.raises(ValueError, match=msg):
        Ladder.from_policy({"countermeasures": section})


def test_directives_follow_the_enforced_action_or_shadow():
    lad = Ladder()
    d = directives_for(lad, "challenge", "challenge", False)
    assert d["level"] == "challenge" and not d["shadow"] and d["mark"]["watermark"]
    assert directives_for(lad, "monitor", "monitor", False)["request"] == {"max_tokens": None, "n": None, "drop_logprobs": False,
                                                                           "reasoning_effort": None}
    s = directives_for(lad, "none", "throttle", True)  # service in shadow mode: what would have been done
    assert s["shadow"] and s["level"] == "throttle" and s["block"] == "throttle"
    assert directives_for(Ladder(shadow=True), "challenge", "challenge", False)["shadow"]


# -- the typed decision document ------------------------------------------------------------------

@pytest.fixture(scope="module")
def service(tmp_path_factory):
    log, _ = sim_and_scan(tmp_path_factory)
    pol = tmp_path_factory.mktemp("pol") / "policy.yaml"
    pol.write_text(POLICY)
    svc = build_service(ServeConfig(state_dir=tmp_path_factory.mktemp("dir-state"), refresh_ms=600_000, policy_path=pol),
                        TokenAuth(TOKENS))
    svc.engine.ingest(lines_of(log))
    svc.engine.refresh()
    yield svc
    svc.engine.close()


def test_every_decision_validates_and_carries_its_rung(service):
    seen = set()
    for acct, body in service.engine.decisions.items():
        doc = orjson.loads(body)
        assert Decision.model_validate(doc).model_dump(mode="json") == doc  # the model is the document
        assert doc["directives"] == directives_for(service.engine.ladder, doc["action"], doc["computed_action"], False)
        seen.add(doc["action"])
    assert {"none", "challenge", "throttle"} <= seen


def test_fast_path_and_schema_route_return_the_same_document(service):
    app = create_app(service, start_engine=False)
    acct = next(a for a, b in service.engine.decisions.items() if orjson.loads(b)["action"] == "challenge")

    async def run():
        out = {}
        for name, asgi in (("fast", app), ("route", app.app)):  # app.app: FastAPI without the fast path
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://dg") as c:
                out[name] = await c.get(f"/v1/decisions/{acct}", headers=H_DECIDE)
                out[name + "404"] = await c.get("/v1/decisions/nobody", headers=H_DECIDE)
                out[name + "401"] = await c.get(f"/v1/decisions/{acct}")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dg") as c:
            out["openapi"] = await c.get("/openapi.json")
        return out

    r = asyncio.run(run())
    assert r["fast"].status_code == r["route"].status_code == 200
    assert r["fast"].json() == r["route"].json() == orjson.loads(decision_response(service, acct, b"Bearer tok-decide-0001")[1])
    assert r["fast"].json()["directives"]["request"]["max_tokens"] == 512
    assert r["fast404"].json() == r["route404"].json() and r["fast404"].status_code == 404
    assert r["fast401"].status_code == r["route401"].status_code == 401
    schema = r["openapi"].json()
    op = schema["paths"]["/v1/decisions/{account_id}"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Decision")
    assert {"Decision", "Directives", "RequestShaping", "ResponseShaping", "Marking"} <= set(schema["components"]["schemas"])


# -- shaping ---------------------------------------------------------------------------------------

def test_request_shaping():
    data = {"model": "m", "max_tokens": 8000, "n": 4, "logprobs": True, "top_logprobs": 5, "reasoning_effort": "high"}
    req = {"max_tokens": 512, "n": 1, "drop_logprobs": True, "reasoning_effort": "low"}
    would = shape_request(copy.deepcopy(data), req, dry_run=True)
    changes = shape_request(data, req)
    assert would == changes and len(changes) == 5
    assert data == {"model": "m", "max_tokens": 512, "n": 1, "reasoning_effort": "low"}
    low = {"max_completion_tokens": 100, "reasoning_effort": "minimal", "n": 1}
    assert shape_request(low, req) == [] and low == {"max_completion_tokens": 100, "reasoning_effort": "minimal", "n": 1}
    unset = {}
    shape_request(unset, req)
    assert unset == {"max_tokens": 512}  # no cap asked by the client: the cap is set


def _openai_response():
    return {"id": "c1", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Final: 42.", "reasoning_content": "step " * 100,
                                 "thinking_blocks": [{"type": "thinking", "thinking": "t" * 300, "signature": "sig"},
                                                     {"type": "redacted_thinking", "data": "xx"}]},
         "logprobs": {"content": [{"token": "Final", "logprob": -0.1}]}}]}


def test_response_shaping_keeps_the_answer():
    r = _openai_response()
    changes = shape_response(r, {"reasoning": "shorten", "reasoning_chars": 50}, drop_logprobs=True)
    m = r["choices"][0]["message"]
    assert m["content"] == "Final: 42."
    assert len(m["reasoning_content"]) <= 50 + 4 and m["reasoning_content"].endswith("[…]")
    assert m["thinking_blocks"] == [{"type": "thinking", "thinking": "t" * 50 + " […]"}]  # signature dropped, redacted withheld
    assert "logprobs" not in r["choices"][0] and len(changes) == 4
    r = _openai_response()
    shape_response(r, {"reasoning": "withhold"})
    assert "reasoning_content" not in r["choices"][0]["message"] and "thinking_blocks" not in r["choices"][0]["message"]
    assert r["choices"][0]["message"]["content"] == "Final: 42."
    anth = {"content": [{"type": "thinking", "thinking": "long " * 50, "signature": "s"}, {"type": "text", "text": "Answer."}]}
    shape_response(anth, {"reasoning": "withhold"})
    assert anth["content"] == [{"type": "text", "text": "Answer."}]
    assert append_to_answer(anth, lambda t: t + " [tag]") and anth["content"][0]["text"] == "Answer. [tag]"
    r = _openai_response()
    assert shape_response(r, {"reasoning": "keep"}) == [] and r == _openai_response()


def test_plugin_marks_and_records_evidence(tmp_path, monkeypatch):
    monkeypatch.setenv("DG_MARK_KEY", MARK_KEY)
    ev = tmp_path / "evidence.jsonl"
    g = lp.DistillGuardGuardrail(url="http://dg", token="x", evidence_log=str(ev))
    dirs = directives_for(Ladder.from_policy({"countermeasures": {"challenge": {"reasoning": "withhold", "canary_rate": 1.0,
                                                                                   "watermark": True}}}),
                          "challenge", "challenge", False)
    r = _openai_response()
    changes = g.apply_response("acct-x", "req-1", dirs, r, watermarked=True)
    can = canary_for(bytes.fromhex(MARK_KEY), "acct-x", "default")
    content = r["choices"][0]["message"]["content"]
    assert content.startswith("Final: 42.") and content.endswith(can.tag())
    assert "reasoning_content" not in r["choices"][0]["message"]
    assert any(c.startswith("canary") for c in changes)
    assert g.marker.evidence.flush()  # entries are written off the request path
    entries = read_entries(ev)
    assert [(e["mark"], e["account"], e["request_id"]) for e in entries] == [("watermark", "acct-x", "req-1"), ("canary", "acct-x", "req-1")]
    assert entries[1]["mark_id"] == can.mark_id and verify(ev).ok
    # Shadow: nothing applied, nothing marked, the would-be changes recorded.
    sh = dict(dirs, shadow=True)
    r = _openai_response()
    would = g.apply_response("acct-y", "req-2", sh, r)
    assert r == _openai_response() and would and g.shadow_records[-1]["account_id"] == "acct-y"
    g.marker.evidence.close()
    assert len(read_entries(ev)) == 2


def test_streamed_reasoning_is_cut_and_answers_pass(tmp_path, monkeypatch):
    monkeypatch.delenv("DG_MARK_KEY", raising=False)
    g = lp.DistillGuardGuardrail(url="http://dg", token="x")

    def chunks():
        for i in range(6):
            yield {"choices": [{"index": 0, "delta": {"reasoning_content": "abcdefghij"}, "logprobs": {"content": []}}]}
        yield {"choices": [{"index": 0, "delta": {"content": "The answer"}}]}
        yield {"choices": [{"index": 0, "delta": {"content": " is 42."}, "finish_reason": "stop"}]}

    async def agen():
        for c in chunks():
            yield c

    async def run(dirs):
        data = {"metadata": {lp.META_KEY: {"account_id": "acct-s", "directives": dirs}}}
        return [c async for c in g.async_post_call_streaming_iterator_hook(None, agen(), data)]

    lad = Ladder.from_policy({"countermeasures": {"challenge": {"reasoning": "shorten", "reasoning_chars": 25, "logprobs": "drop"},
                                                  "throttle": {"reasoning": "withhold"}}})
    out = asyncio.run(run(directives_for(lad, "challenge", "challenge", False)))
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in out)
    assert reasoning == "abcdefghij" * 2 + "abcde […]"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in out) == "The answer is 42."
    assert all("logprobs" not in c["choices"][0] for c in out)
    out = asyncio.run(run(directives_for(lad, "throttle", "throttle", False)))
    assert not any(c["choices"][0]["delta"].get("reasoning_content") for c in out)
    out = asyncio.run(run(directives_for(lad, "monitor", "monitor", False)))  # nothing to do: chunks as they came
    assert out == list(chunks())
    out = asyncio.run(run(directives_for(lad, "none", "challenge", True)))  # shadow: recorded, not applied
    assert out == list(chunks()) and g.shadow_records[-1]["where"] == "stream"
