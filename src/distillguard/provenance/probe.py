"""``provenance probe``: ask a suspect model, through any OpenAI-compatible API, for our marks.

Two kinds of request, within a fixed budget (``max_requests``) and rate (``rate_per_s``):

1. **Canary triggers**: for each account that was served canaries, the start of its reference
   tag ``(ref. <trigger>``; an answer that continues with the account's response names it. The
   hit's p-value bound (:func:`.canary.hit_p_value`) is multiplied by the number of accounts
   tried (Bonferroni).
2. **Watermark-reading prompts**: ordinary prompts (real instructions from the corpora); the
   answers are scored with the radioactivity test (:func:`.watermark.score_texts`, the prompts'
   own pairs excluded).

Only the answers' text is kept (content and any reasoning content). Requests that fail count
against the budget; ``max_failures`` consecutive failures end the probe.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Sequence

import httpx

from .canary import canary_for, hit_p_value
from .watermark import GreenList, score_texts


@dataclass
class ProbeConfig:
    max_requests: int = 200
    rate_per_s: float = 2.0
    canary_share: float = 0.5     # of the budget, at most, for canary triggers
    canary_tries: int = 2         # requests per account
    max_tokens: int = 256
    timeout_s: float = 60.0
    max_failures: int = 5
    gamma: float = 0.25


class _Client:
    def __init__(self, endpoint: str, model: str, api_key: str | None, cfg: ProbeConfig):
        base = endpoint.rstrip("/")
        self.url = base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")
        self.model, self.cfg = model, cfg
        self.http = httpx.Client(timeout=cfg.timeout_s, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
        self.sent = self.failed = self._fails_in_row = 0
        self._next = 0.0

    @property
    def exhausted(self) -> bool:
        return self.sent >= self.cfg.max_requests or self._fails_in_row >= self.cfg.max_failures

    def ask(self, prompt: str, seed: int) -> str | None:
        wait = self._next - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._next = time.monotonic() + 1.0 / self.cfg.rate_per_s
        self.sent += 1
        try:
            r = self.http.post(self.url, json={"model": self.model, "max_tokens": self.cfg.max_tokens, "seed": seed,
                                               "messages": [{"role": "user", "content": prompt}]})
            r.raise_for_status()
            msg = r.json()["choices"][0]["message"]
            text = " ".join(t for t in (msg.get("reasoning_content"), msg.get("content")) if isinstance(t, str))
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
            self.failed += 1
            self._fails_in_row += 1
            return None
        self._fails_in_row = 0
        return text

    def close(self) -> None:
        self.http.close()


def probe(endpoint: str, model: str, key: bytes, key_id: str, accounts: Sequence[str], prompts: Sequence[str], *,
          api_key: str | None = None, cfg: ProbeConfig | None = None) -> dict:
    """Probe ``model`` at ``endpoint``; returns the results document (JSON-ready)."""
    cfg = cfg or ProbeConfig()
    c = _Client(endpoint, model, api_key, cfg)
    t0 = time.monotonic()
    try:
        canary_budget = int(cfg.max_requests * cfg.canary_share)
        tried = list(accounts)[: max(0, canary_budget // max(1, cfg.canary_tries))]
        found = []
        for acct in tried:
            can = canary_for(key, acct, key_id)
            best = None
            for i in range(cfg.canary_tries):
                if c.exhausted:
                    break
                out = c.ask(f"(ref. {can.trigger}", seed=i)
                best = hit_p_value(out, can) if out else None
                if best is not None:
                    break
            if best is not None:
                found.append({"account_id": acct, "mark_id": can.mark_id, "p_value": min(1.0, best * len(tried))})
        outputs, used_prompts = [], []
        for i, pr in enumerate(prompts):
            if c.exhausted:
                break
            out = c.ask(pr, seed=i)
            used_prompts.append(pr)
            if out:
                outputs.append(out)
        wm = score_texts(outputs, GreenList(key, cfg.gamma, key_id), exclude_texts=used_prompts)
    finally:
        c.close()
    return {"endpoint": endpoint, "model": model, "key_id": key_id, "config": asdict(cfg),
            "requests": c.sent, "failed_requests": c.failed, "seconds": round(time.monotonic() - t0, 2),
            "watermark": wm.as_dict(), "canaries": {"accounts_tried": len(tried), "accounts_not_tried": max(0, len(accounts) - len(tried)),
                                                    "found": found}}
