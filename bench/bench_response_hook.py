"""Overhead of the gateway's response hook (countermeasure ladder) on a 2,000-token response.

What the LiteLLM plugin's post-call hook does for a flagged account
(``DistillGuardGuardrail.apply_response``): shorten or withhold the reasoning content, drop
log-probabilities, weave the account's canary after the answer and append the marks to the
evidence log (hash chain, flock, one write per mark). The response holds 1,500 tokens of
reasoning and 500 of answer, real text (GSM8K solutions). Cases:

- ``monitored``  the hook's early exit (no directives for the account)
- ``shorten``    reasoning shortened, no mark drawn for this request
- ``withhold``   reasoning withheld
- ``mark``       reasoning shortened + canary woven + 2 evidence entries (canary, watermark): the worst case

Each call gets its own fresh response (built before timing). Reports p50 / p99 / max in µs; the
target is p99 ≤ 1 ms. ``--litellm`` times LiteLLM's own ``ModelResponse`` objects (run with the
proxy's packages on PYTHONPATH, e.g. ``PYTHONPATH=/opt/distillguard-ci/litellm-proxy:src``).

Usage::

    python bench/bench_response_hook.py [--calls 5000] [--litellm]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gzip
import json
import os
import statistics
import tempfile
import time

from distillguard.paths import BUNDLED_DATA
from distillguard.scoring.policy import Ladder
from distillguard.serve import litellm_plugin as lp
from distillguard.serve.directives import directives_for


def _words(n: int, offset: int) -> str:
    out: list[str] = []
    with gzip.open(BUNDLED_DATA / "gsm8k__train.jsonl.gz", "rt") as f:
        for line in f:
            out += json.loads(line)["answer"].split()
            if len(out) >= n + offset:
                break
    return " ".join(out[offset:offset + n])


def response(reasoning: str, answer: str) -> dict:
    return {"id": "chatcmpl-bench", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": answer, "reasoning_content": reasoning},
                         "logprobs": None}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 2000, "completion_tokens_details": {"reasoning_tokens": 1500}}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--litellm", action="store_true", help="time LiteLLM ModelResponse objects instead of dicts")
    a = ap.parse_args()
    # ~0.75 words per token: 1,500 and 500 tokens of text.
    base = response(_words(1125, 0), _words(375, 5000))
    make = (lambda: copy.deepcopy(base))
    if a.litellm:
        import litellm

        make = (lambda: litellm.ModelResponse(**copy.deepcopy(base)))
    tmp = tempfile.mkdtemp()
    os.environ["DG_MARK_KEY"] = "ab" * 32
    g = lp.DistillGuardGuardrail(url="http://unused", token="x", evidence_log=os.path.join(tmp, "evidence.jsonl"))
    lad = Ladder.from_policy({"countermeasures": {
        "challenge": {"reasoning": "shorten", "reasoning_chars": 600, "logprobs": "drop", "canary_rate": 0.0},
        "throttle": {"reasoning": "withhold", "logprobs": "drop"},
        "suspend": {"reasoning": "shorten", "reasoning_chars": 600, "canary_rate": 1.0, "watermark": True}}})
    cases = {"shorten": (directives_for(lad, "challenge", "challenge", False), False),
             "withhold": (directives_for(lad, "throttle", "throttle", False), False),
             "mark": (directives_for(lad, "suspend", "suspend", False), True)}
    print(f"response: {len(base['choices'][0]['message']['reasoning_content'])} chars of reasoning, "
          f"{len(base['choices'][0]['message']['content'])} of answer; {a.calls} calls per case; "
          f"{'LiteLLM ModelResponse' if a.litellm else 'dict'}")
    print(f"{'case':10s} {'p50 µs':>8s} {'p99 µs':>8s} {'max µs':>8s}")

    async def monitored(resp):
        return await g.async_post_call_success_hook({"metadata": {}}, None, resp)

    loop = asyncio.new_event_loop()
    for name in ("monitored", *cases):
        resps = [make() for _ in range(a.calls)]
        ts = []
        for i, r in enumerate(resps):
            if name == "monitored":
                coro = monitored(r)
                t0 = time.perf_counter_ns()
                loop.run_until_complete(coro)
            else:
                dirs, wm = cases[name]
                t0 = time.perf_counter_ns()
                g.apply_response("acct-bench", f"req-{name}-{i}", dirs, r, watermarked=wm)
            ts.append((time.perf_counter_ns() - t0) / 1000)
        ts.sort()
        print(f"{name:10s} {statistics.median(ts):8.1f} {ts[int(len(ts) * 0.99) - 1]:8.1f} {ts[-1]:8.1f}")
    loop.close()


if __name__ == "__main__":
    main()
