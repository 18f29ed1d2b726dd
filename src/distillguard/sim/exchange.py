"""One exchange record: request parameters, response usage, latency, status.

A :class:`Caller` holds everything fixed about an account (identity fields, how its
traffic is logged, its client's request style) and turns "this prompt, at this time,
wanting about this many output tokens" into a spec record (shared/spec/events.md). The
record keeps the spec's field order; fields the account's logging profile lacks are
omitted (or written as ``null`` for pipelines that emit explicit nulls).
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from functools import lru_cache
from math import exp

from distillguard.sim.identity import Egress

# model -> (ms per output token, base time-to-first-token ms, is a reasoning model)
MODELS: dict[str, tuple[float, float, bool]] = {
    "frontier-large": (22.0, 450.0, False),
    "frontier-large-2025-08": (24.0, 480.0, False),
    "frontier-mini": (9.0, 220.0, False),
    "frontier-nano": (5.0, 150.0, False),
    "frontier-reasoning": (20.0, 700.0, True),
    "frontier-reasoning-mini": (10.0, 400.0, True),
    "frontier-code": (14.0, 350.0, False),
    "frontier-embed": (0.0, 40.0, False),
}
_EFFORT_TOKENS = {"low": 400, "medium": 1500, "high": 5000, None: 1200}

# Optional fields a logging pipeline may lack, grouped as pipelines drop them.
FIELD_GROUPS: dict[str, tuple[str, ...]] = {
    "text": ("prompt",),
    "sha": ("prompt_sha256",),
    "system": ("system_prompt",),
    "network": ("client_ip", "asn", "country"),
    "asn": ("asn",),
    "ua": ("user_agent",),
    "billing": ("payment_fingerprint", "email_domain"),
    "account": ("account_created_at", "org_id"),
    "key": ("api_key_id",),
    "sampling": ("temperature", "top_p", "seed", "logprobs", "top_logprobs"),
    "usage_reasoning": ("reasoning_tokens",),
    "latency": ("latency_ms",),
    "conversation": ("conversation_id", "turn"),
}


@lru_cache(maxsize=1 << 16)
def approx_tokens(text: str) -> int:
    """Token estimate: ~4 ASCII characters per token, ~1 token per CJK/other character."""
    if text.isascii():
        return max(1, (len(text) + 3) // 4)
    n_ascii = len(text.encode("ascii", "ignore"))
    return max(1, (n_ascii + 3) // 4 + int((len(text) - n_ascii) * 0.9))


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Style:
    """How an account's client sets request parameters (drawn once per account).

    ``None`` means the client does not send the parameter (the server default applies).
    """

    models: list[str] = field(default_factory=lambda: ["frontier-large"])
    model_weights: list[float] | None = None
    operation: str = "chat"
    temperature: float | None = None
    temperature_choices: list[float] | None = None  # per-request variation, when set
    top_p: float | None = None
    n: int | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stream: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    reasoning_effort: str | None = None
    tool_count: int | None = None
    system_prompt: str | None = None
    p429: float = 0.002
    p5xx: float = 0.003
    speed: float = 1.0  # multiplier on latency (region, load, plan tier)


@dataclass
class LogProfile:
    """Which optional fields this account's records carry.

    Attributes
    ----------
    drop : frozenset of str
        Field names never written.
    nulls : bool
        Write dropped fields as explicit ``null`` instead of omitting them.
    sha_with_text : bool
        Also write ``prompt_sha256`` when the prompt text is kept.
    """

    drop: frozenset[str] = frozenset()
    nulls: bool = False
    sha_with_text: bool = False


def random_log_profile(rng: random.Random, *, p_no_text: float = 0.12, p_no_network: float = 0.08) -> LogProfile:
    """A plausible mix of logging gaps (most accounts are logged fully)."""
    groups = []
    if rng.random() < p_no_text:
        groups.append("text")  # zero-retention customers: only the hash survives
    if rng.random() < p_no_network:
        groups.append("network")
    elif rng.random() < 0.05:
        groups.append("asn")  # GeoIP/ASN lookup failed or not joined
    for g, p in (
        ("ua", 0.03),
        ("billing", 0.07),
        ("account", 0.05),
        ("key", 0.15),
        ("latency", 0.05),
        ("usage_reasoning", 0.10),
        ("system", 0.25),
        ("sampling", 0.04),
    ):
        if rng.random() < p:
            groups.append(g)
    drop = {f for g in groups for f in FIELD_GROUPS[g]}
    return LogProfile(frozenset(drop), nulls=rng.random() < 0.1, sha_with_text=rng.random() < 0.4)


class Caller:
    """Per-account record factory.

    Parameters
    ----------
    rng : random.Random
        The account's stream (per-request noise).
    static : dict
        Fixed identity fields: ``account_id`` and any of ``org_id``, ``api_key_id`` (a list
        to rotate among), ``account_created_at``, ``payment_fingerprint``, ``email_domain``.
    egress : Egress or None
        Network origin; None when the account's records never carry one.
    user_agents : list of str
        The account's client strings (one for most accounts; many for routers).
    style : Style
        Request-parameter style.
    profile : LogProfile
        Logging gaps.
    """

    def __init__(
        self, rng, static: dict, egress: Egress | None, user_agents: list[str], style: Style, profile: LogProfile
    ):
        self.rng = rng
        self.static = static
        self.keys = static.get("api_key_id") or [None]
        self.egress = egress
        self.user_agents = user_agents
        self.style = style
        self.profile = profile
        drop = profile.drop
        # Identity fields never change: filter them once, not per exchange.
        self.base = {
            k: static[k]
            for k in ("account_id", "org_id", "account_created_at", "payment_fingerprint", "email_domain")
            if static.get(k) is not None and k not in drop
        }
        self.keep_sha = "prompt" in drop or profile.sha_with_text
        # Pipelines that write explicit nulls do so for every field they lack.
        self.null_fields = sorted(drop) if profile.nulls else []
        # True values of the last exchange (the logged record may withhold them).
        self.last_latency, self.last_out, self.last_status = 0, 0, 200
        self.model_cum = None
        if style.model_weights:
            total = sum(style.model_weights)
            acc, cum = 0.0, []
            for w in style.model_weights:
                acc += w
                cum.append(acc / total)
            self.model_cum = cum

    def pick_model(self) -> str:
        models = self.style.models
        if self.model_cum is None:
            return models[0]
        r = self.rng.random()
        for m, c in zip(models, self.model_cum):
            if r <= c:
                return m
        return models[-1]

    def make(
        self,
        *,
        prompt: str | None,
        want_out: int,
        extra_in: int = 0,
        model: str | None = None,
        conversation_id: str | None = None,
        turn: int | None = None,
        max_tokens: int | None = -1,
        n: int | None = -1,
        temperature: float | None = -1.0,
        reasoning_effort: str | None = "",
        tool_count: int | None = -1,
        tool_names: list[str] | None = None,
        message_count: int | None = None,
        last_role: str | None = None,
        output_tool_calls: int | None = None,
        system_prompt: str | None = "",
        status: int | None = None,
        finish: str | None = None,
        user_agent: str | None = None,
    ) -> dict:
        """Build one record (without ``request_id`` and ``ts``, which the writer adds).

        Parameters
        ----------
        prompt : str or None
            Last user message (None for embeddings-without-text or withheld).
        want_out : int
            Output tokens per choice the request would produce without a ``max_tokens`` cap.
        extra_in : int
            Input tokens beyond the prompt: history, few-shot context, tool results, files.
        model, max_tokens, n, temperature, reasoning_effort, tool_count, system_prompt
            Per-request overrides of the account's :class:`Style` (sentinels mean "style").
        tool_names, message_count, last_role, output_tool_calls : optional
            Agent-traffic fields (events.md, 2026-12-07); written only when given, and
            ``output_tool_calls`` only for a successful response (a failed call returns none).
        status, finish : optional
            Force an HTTP status / finish reason (e.g. ``tool_calls`` in agent loops).
        """
        rng, st = self.rng, self.style
        model = model or self.pick_model()
        mspt, ttft, is_reasoning = MODELS.get(model, (20.0, 400.0, False))
        max_tokens = st.max_tokens if max_tokens == -1 else max_tokens
        n = st.n if n == -1 else n
        if temperature == -1.0:
            temperature = rng.choice(st.temperature_choices) if st.temperature_choices else st.temperature
        effort = (st.reasoning_effort if reasoning_effort == "" else reasoning_effort) if is_reasoning else None
        tools = st.tool_count if tool_count == -1 else tool_count
        system = st.system_prompt if system_prompt == "" else system_prompt
        operation = "embeddings" if model == "frontier-embed" else st.operation

        in_tok = extra_in + (approx_tokens(prompt) if prompt else 0) + (approx_tokens(system) if system else 0)
        in_tok += 40 * tools if tools else 0
        choices = n or 1
        if status is None:
            u = rng.random()
            status = (
                429 if u < st.p429 else 500 if u < st.p429 + st.p5xx * 0.7 else 503 if u < st.p429 + st.p5xx else 200
            )
        reasoning = None
        if status != 200:
            out_tok, fin = 0, None
            latency = int(rng.uniform(15, 120) if status == 429 else rng.uniform(200, 30000))
            in_tok_field = None
        elif operation == "embeddings":
            out_tok, fin = 0, None
            latency = int((ttft + in_tok * 0.05) * st.speed * exp(rng.gauss(0, 0.3)))
            in_tok_field = in_tok
        else:
            cap = max_tokens if max_tokens else 16384
            per = max(1, min(int(want_out), cap))
            fin = finish or ("length" if want_out >= cap else "stop")
            # n choices: usage sums them; their lengths vary a little around the first.
            out_tok = (
                per if choices == 1 else max(choices, min(cap * choices, int(per * choices * exp(rng.gauss(0, 0.1)))))
            )
            if is_reasoning:
                base = _EFFORT_TOKENS.get(effort, 1200)
                reasoning = max(0, int(base * exp(rng.gauss(0, 0.7)) * (0.3 if per < 60 else 1.0)))
            gen = per + (reasoning or 0)
            latency = int((ttft * (1 + in_tok / 12000) + gen * mspt) * st.speed * exp(rng.gauss(0, 0.25)))
            in_tok_field = in_tok
        ip = asn = country = None
        if self.egress is not None:
            ip, net = self.egress.address()
            asn, country = net.asn, net.country
        latency = max(1, latency)
        self.last_latency, self.last_out, self.last_status = latency, out_tok, status
        keys = self.keys
        uas = self.user_agents
        drop = self.profile.drop
        rec = self.base.copy()
        for k, v in (
            ("api_key_id", keys[0] if len(keys) == 1 else rng.choice(keys)),
            ("client_ip", ip),
            ("asn", asn),
            ("country", country),
            ("user_agent", user_agent or (uas[0] if len(uas) == 1 else rng.choice(uas))),
            ("model", model),
            ("operation", operation),
            ("temperature", temperature),
            ("top_p", st.top_p),
            ("n", n),
            ("max_tokens", max_tokens),
            ("seed", st.seed),
            ("stream", st.stream),
            ("logprobs", st.logprobs),
            ("top_logprobs", st.top_logprobs),
            ("reasoning_effort", effort),
            ("tool_count", tools),
            ("tool_names", tool_names),
            ("message_count", message_count),
            ("last_role", last_role),
            ("output_tool_calls", output_tool_calls if status == 200 else None),
            ("system_prompt", system),
            ("prompt", prompt),
            ("prompt_sha256", sha256_hex(prompt) if prompt is not None and self.keep_sha else None),
            ("conversation_id", conversation_id),
            ("turn", turn),
            ("status", status),
            ("finish_reason", fin),
            ("input_tokens", in_tok_field),
            ("output_tokens", out_tok),
            ("reasoning_tokens", reasoning),
            ("latency_ms", latency),
        ):
            if v is not None and k not in drop:
                rec[k] = v
        if self.null_fields:
            for k in self.null_fields:
                rec[k] = None
        return rec


def lognormal_int(rng: random.Random, median: float, sigma: float, lo: int = 1, hi: int | None = None) -> int:
    """Integer lognormal draw clipped to ``[lo, hi]``."""
    v = int(median * math.exp(rng.gauss(0, sigma)))
    if hi is not None:
        v = min(v, hi)
    return max(lo, v)
