"""Countermeasure directives: what a gateway must do to an account's next requests and responses.

The service attaches them to every decision (``directives`` in ``GET /v1/decisions/{id}``, in the
Redis decision keys and in webhooks), computed from the policy's countermeasure ladder
(``countermeasures`` in policy.yaml, :class:`~distillguard.scoring.policy.Ladder`) for the
enforced action, so a gateway applies them without knowing the policy. In shadow mode (the
service's ``shadow``, or ``countermeasures.shadow``) they describe what the computed action would
do, with ``shadow: true``: the gateway records them and applies none.

:class:`Decision` is the response model of ``GET /v1/decisions/{account_id}``, published in the
service's OpenAPI schema (``/openapi.json``) so a gateway team can generate a client. The answer
itself is written by the fast path (serve/fastpath.py) from the engine's pre-serialised JSON;
``tests/test_serve_directives.py`` checks that it is the document this model validates and dumps.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from ..scoring.policy import Ladder

Action = Literal["none", "monitor", "challenge", "throttle", "suspend"]


class RequestShaping(BaseModel):
    """Applied to the request before it reaches the model."""

    model_config = ConfigDict(extra="forbid")
    max_tokens: Optional[int] = Field(None, description="Cap on max_tokens / max_completion_tokens (set when absent).")
    n: Optional[int] = Field(None, description="Cap on the number of choices.")
    drop_logprobs: bool = Field(False, description="Remove logprobs and top_logprobs from the request.")
    reasoning_effort: Optional[Literal["minimal", "low", "medium", "high"]] = Field(
        None, description="Lower reasoning_effort to this level (never raise it).")


class ResponseShaping(BaseModel):
    """Applied to the response before the client sees it; the final answer is never changed."""

    model_config = ConfigDict(extra="forbid")
    reasoning: Literal["keep", "shorten", "withhold"] = Field(
        "keep", description="What to do with reasoning content (OpenAI-style reasoning_content, Anthropic-style thinking blocks).")
    reasoning_chars: int = Field(400, description="Characters of reasoning kept when shortening.")


class Marking(BaseModel):
    """Marks that make harvested outputs recognisable in a model trained on them (docs/provenance.md)."""

    model_config = ConfigDict(extra="forbid")
    canary_rate: float = Field(0.0, description="Share of responses that carry the account's keyed canary.")
    watermark: bool = Field(False, description="Decode with the keyed green-list watermark.")


class Directives(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level: Action = Field(description="The action level these directives belong to.")
    block: Literal["none", "throttle", "suspend"] = Field(
        "none", description="throttle: answer 429 with Retry-After; suspend: answer 403; none: serve (shaped, marked).")
    shadow: bool = Field(False, description="Record what would be done; apply nothing.")
    request: RequestShaping
    response: ResponseShaping
    mark: Marking


class Decision(BaseModel):
    """An account's current decision (``GET /v1/decisions/{account_id}``)."""

    model_config = ConfigDict(extra="forbid")
    account_id: str
    action: Action = Field(description="The enforced action.")
    score: float
    reasons: list[str]
    cluster_id: Optional[str]
    updated_at: str
    computed_action: Action = Field(description="What the policy says with every rule (differs from action in shadow mode).")
    max_action: Action
    flagged: bool
    first_flagged_ts: Optional[str]
    events: int
    events_before_flag: Optional[int]
    shadow: bool
    directives: Directives


class UnknownAccount(BaseModel):
    """The 404 answer: no exchanges of this account."""

    account_id: str
    action: Literal["none"] = "none"
    known: Literal[False] = False
    detail: str


def directives_for(ladder: Ladder, action: str, computed_action: str, shadow: bool) -> dict:
    """The ``directives`` document of a decision (a plain dict, the shape of :class:`Directives`).

    ``shadow``: the service enforces nothing (or less than it computed); the directives then
    describe the computed action and are marked shadow, so gateways record them only.
    """
    shadowed = shadow or ladder.shadow
    level = computed_action if shadow else action
    r = ladder.rung(level)
    return {
        "level": level, "block": r.block, "shadow": shadowed,
        "request": {"max_tokens": r.max_tokens, "n": r.n, "drop_logprobs": r.drop_logprobs, "reasoning_effort": r.reasoning_effort},
        "response": {"reasoning": r.reasoning, "reasoning_chars": r.reasoning_chars},
        "mark": {"canary_rate": r.canary_rate, "watermark": r.watermark},
    }
