"""An OpenAI-compatible chat-completions server for a :class:`~.ngram.BigramLM`.

It lets the experiment's models be reached the way a suspect's model is (``provenance probe``
against ``/v1/chat/completions``) and serves as the model server behind a gateway in tests: it
honours ``max_tokens``/``max_completion_tokens``, ``n``, ``logprobs``/``top_logprobs``,
``reasoning_effort`` (the reasoning it returns in ``reasoning_content`` is longer at higher effort)
and ``seed``, and decodes with the keyed watermark when the gateway asks for it with the
``x-distillguard-watermark: <key id>`` header and the server holds that mark key.

Answers are reproducible: the sampler is seeded by the prompt, ``seed`` and the choice index,
so the same request gives the same answer, and the answer does not depend on the reasoning.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np
import orjson
import xxhash
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict

from .ngram import BigramLM
from .watermark import GreenList, WatermarkLogitsProcessor

EFFORT_TOKENS = {"minimal": 8, "low": 24, "medium": 64, "high": 160}
WATERMARK_HEADER = "x-distillguard-watermark"


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[dict]
    max_tokens: Optional[int] = None
    max_completion_tokens: Optional[int] = None
    n: int = 1
    seed: Optional[int] = None
    logprobs: Optional[bool] = None
    top_logprobs: Optional[int] = None
    reasoning_effort: Optional[str] = None
    stream: Optional[bool] = None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _sse(choices: list[dict], name: str):
    """Server-sent events of ``choices``: reasoning then answer, a few words per delta."""
    cid, created = f"chatcmpl-{time.time_ns()}", int(time.time())

    def event(delta: dict, i: int, finish: str | None = None) -> bytes:
        doc = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": name,
               "choices": [{"index": i, "delta": delta, "finish_reason": finish}]}
        return b"data: " + orjson.dumps(doc) + b"\n\n"

    for ch in choices:
        i, msg = ch["index"], ch["message"]
        yield event({"role": "assistant", "content": ""}, i)
        for field in ("reasoning_content", "content"):
            if not msg.get(field):
                continue
            words = msg[field].split(" ")
            for j in range(0, len(words), 4):
                yield event({field: " ".join(words[j:j + 4]) + (" " if j + 4 < len(words) else "")}, i)
        yield event({}, i, ch["finish_reason"])
    yield b"data: [DONE]\n\n"


def create_lm_app(model: BigramLM, name: str, *, mark_keys: Any = None, gamma: float = 0.25, delta: float = 2.0,
                  answer_tokens: int = 40, max_n: int = 8) -> FastAPI:
    """The app. ``mark_keys``: a :class:`~distillguard.share.keys.KeyRing` of mark keys (or None)."""
    app = FastAPI(title=f"bigram LM {name}", docs_url=None, redoc_url=None)
    plain_cdf = model.cdf()
    keyed: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def sampler(key_id: str | None) -> tuple[np.ndarray, np.ndarray]:
        """(cdf, logits table) for plain decoding or under a mark key."""
        if not key_id:
            return plain_cdf, model.logp
        if mark_keys is None or key_id not in mark_keys.keys:
            raise HTTPException(400, f"unknown watermark key id {key_id!r}")
        if key_id not in keyed:
            proc = WatermarkLogitsProcessor(GreenList(mark_keys.key(key_id), gamma, key_id), delta, model.hashes)
            keyed[key_id] = (model.cdf(proc), proc(np.arange(model.size)[:, None], model.logp.astype(np.float64)))
        return keyed[key_id]

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "distillguard-experiment"}]}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest, request: Request) -> dict:
        if req.model != name:
            raise HTTPException(404, f"model {req.model!r} not found")
        if not 1 <= req.n <= max_n:
            raise HTTPException(400, f"n must be in [1, {max_n}]")
        prompt = next((_text(m.get("content")) for m in reversed(req.messages) if m.get("role") == "user"), "")
        budget = req.max_completion_tokens or req.max_tokens or 4096
        n_ans = max(1, min(answer_tokens, budget))
        n_rsn = max(0, min(EFFORT_TOKENS.get(req.reasoning_effort or "medium", 64), budget - n_ans))
        cdf, logits = sampler(request.headers.get(WATERMARK_HEADER))
        choices = []
        for i in range(req.n):
            seed = xxhash.xxh64_intdigest(f"{prompt}\x00{req.seed}\x00{i}".encode("utf-8"))
            rng = np.random.default_rng(seed)
            start = model.start_ids([prompt], rng)
            ans = model.generate(start, n_ans, rng, cdf)
            rsn = model.generate(start, n_rsn, np.random.default_rng(seed ^ 0x5A5A), cdf) if n_rsn else None
            msg: dict = {"role": "assistant", "content": model.decode(ans)[0]}
            if rsn is not None:
                msg["reasoning_content"] = model.decode(rsn)[0]
            ch: dict = {"index": i, "message": msg, "finish_reason": "length" if n_ans < answer_tokens else "stop"}
            if req.logprobs:
                prev = np.concatenate([start, ans[0, :-1]])
                lp = logits[prev] - np.logaddexp.reduce(logits[prev], axis=1, keepdims=True)
                k = max(0, min(int(req.top_logprobs or 0), 20))
                items = []
                for j, t in enumerate(ans[0]):
                    top = np.argsort(-lp[j])[:k]
                    items.append({"token": str(model.vocab[t]), "logprob": float(lp[j, t]),
                                  "top_logprobs": [{"token": str(model.vocab[x]), "logprob": float(lp[j, x])} for x in top]})
                ch["logprobs"] = {"content": items}
            choices.append(ch)
        n_out = req.n * (n_ans + n_rsn)
        if req.stream:
            return StreamingResponse(_sse(choices, name), media_type="text/event-stream")
        return {"id": f"chatcmpl-{xxhash.xxh64_hexdigest(f'{prompt}{time.time_ns()}'.encode())}", "object": "chat.completion",
                "created": int(time.time()), "model": name, "choices": choices,
                "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": n_out, "total_tokens": len(prompt.split()) + n_out,
                          "completion_tokens_details": {"reasoning_tokens": req.n * n_rsn}}}

    return app


def main(argv: list[str] | None = None) -> None:
    """``python -m distillguard.provenance.lmserver``: serve a bigram LM trained on the corpora now.

    With a mark key (``$DG_MARK_KEY``) it decodes with the watermark for requests that carry the
    ``x-distillguard-watermark`` header naming that key: a stand-in for a provider's model server."""
    import argparse
    import os

    import uvicorn

    from .experiment import load_corpus

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--name", default="bigram-teacher")
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--corpus-limit", type=int, default=3000)
    a = ap.parse_args(argv)
    texts, _, _ = load_corpus(a.corpus_limit)
    ring = None
    if os.environ.get("DG_MARK_KEY"):
        from .keys import load_mark_keys

        ring = load_mark_keys()
    uvicorn.run(create_lm_app(BigramLM.fit(texts, a.vocab), a.name, mark_keys=ring), host=a.host, port=a.port, log_level="warning")


if __name__ == "__main__":  # pragma: no cover
    main()
