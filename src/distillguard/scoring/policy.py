"""Map a fused score and its evidence to an action: none / monitor / challenge / throttle / suspend.

Why evidence matters as well as the score: the same 0.9 on five exchanges and on five thousand
is not the same certainty, and a wrongly suspended customer costs more than a challenged one.
Strong actions therefore need more events behind them.

Below ``min_events_challenge`` an account is judged on its own only when the case is
near-certain (``few_events_score``) and every ask of its few is extraction-shaped
(``few_events_extract``), and then at most ``challenge``: a campaign spread over many accounts
of a handful of exchanges each shows nothing more per account, while an ordinary user's
handful of questions rarely scores that high.

A verdict of the learned layer alone (no rule fired) on a *burst* (more than
``burst_per_minute`` exchanges a minute so far) counts only once the account has been observed
for ``sustain_minutes`` of event time: harvesting at scale is sustained, while a burst that is
over in minutes (a one-off benchmark run, a batch job) harvests little and is the commonest
false alarm. A person pasting a few exam items with "show every step" in ten minutes and
leaving is not a burst, and is exactly what a thin campaign's accounts look like.

The learned layer alone (no reviewed rule fired for the account) acts at most up to
``model_only_max`` (``throttle``): suspension is the one action that takes a paying customer's
service away, and it needs evidence an analyst can point to, a rule. A cluster's verdict already
reaches its members only through a cluster rule (``replay``); this is the same principle for an
account's own verdict. The commonest case it spares is an hours-long benchmark run (single-turn,
large outputs, log-probabilities), which a statistical model cannot tell from a harvest by its
request shapes alone; throttling still caps what a real harvester gets.

Severity follows what an account has obtained, not how it asks (``severity``). Request shape
and asks (step-by-step, n > 1, huge ``max_tokens``, high effort) say how an account asks; what a
harvest is, is many distinct prompts answered, beyond what the account's apparent purpose needs.
So ``throttle`` needs a harvested yield (``features.account.harvest_yield``: novel
extraction-shaped prompts beyond an ordinary stream, over the trailing day) of at least
``throttle_min_yield``, and ``suspend`` needs ``suspend_min_yield`` *and* a fired reviewed rule
that may suspend (a rule of request shape alone, ``max_action: challenge``, may not). Two kinds
of evidence cap an account at ``monitor``: an evaluation-sized run (a finite item set over few
hours, asked the way a harness asks: what it obtains is bounded by the item set) and a product
serving people (tenure, follow-up turns), both computed in ``features.account``; against a rule
that finds a harvester hidden among other traffic (``substream``) a product is capped at
``challenge`` instead (never throttled or suspended). A takeover of such an account shows up in its trailing window, which must
carry the same marks.

Allow-listed accounts and organisations are capped at ``monitor``: they stay visible to
analysts but are never enforced automatically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..schema import ACTIONS

ACTION_LEVEL = {a: i for i, a in enumerate(ACTIONS)}


@dataclass
class Policy:
    monitor: float = 0.35
    challenge: float = 0.6
    throttle: float = 0.8
    suspend: float = 0.93
    min_events_challenge: int = 10
    min_events_throttle: int = 50
    min_events_suspend: int = 200
    few_events_min: int = 5
    few_events_score: float = 0.9  # between the throttle (0.8) and suspend (0.93) bars
    few_events_extract: float = 0.8
    sustain_minutes: float = 15.0
    burst_per_minute: float = 2.0  # the hold is for bursts: a person types fewer prompts a minute
    model_only_max: str = "throttle"  # strongest action of the learned layer alone (no rule fired)
    throttle_min_yield: float = 100.0  # novel extraction-shaped prompts a day beyond an ordinary stream
    suspend_min_yield: float = 500.0
    allow_accounts: set[str] = field(default_factory=set)
    allow_orgs: set[str] = field(default_factory=set)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Policy":
        d = yaml.safe_load(Path(path).read_text()) or {}
        thr = d.get("thresholds", {})
        allow = d.get("allow", {})
        return cls(
            **{k: float(v) for k, v in thr.items() if k in ("monitor", "challenge", "throttle", "suspend")},
            min_events_challenge=int(d.get("min_events_challenge", 10)),
            min_events_throttle=int(d.get("min_events_throttle", 50)),
            min_events_suspend=int(d.get("min_events_suspend", 200)),
            few_events_min=int(d.get("few_events_min", 5)),
            few_events_score=float(d.get("few_events_score", 0.9)),
            few_events_extract=float(d.get("few_events_extract", 0.8)),
            sustain_minutes=float(d.get("sustain_minutes", 15.0)),
            burst_per_minute=float(d.get("burst_per_minute", 2.0)),
            model_only_max=str(d.get("model_only_max", "throttle")),
            throttle_min_yield=float(d.get("throttle_min_yield", 100.0)),
            suspend_min_yield=float(d.get("suspend_min_yield", 500.0)),
            allow_accounts=set(map(str, allow.get("accounts", []) or [])),
            allow_orgs=set(map(str, allow.get("orgs", []) or [])),
        )

    def __post_init__(self) -> None:
        if self.model_only_max not in ACTION_LEVEL:
            raise ValueError(f"model_only_max must be one of {', '.join(ACTIONS)}, not {self.model_only_max!r}")

    def model_only(self, lvl: np.ndarray) -> np.ndarray:
        """Cap levels decided by the learned layer alone (no rule fired) at ``model_only_max``."""
        return np.minimum(lvl, ACTION_LEVEL[self.model_only_max]).astype(lvl.dtype)

    def levels(self, score: np.ndarray, events: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
        """Action level (index into ``ACTIONS``) per row, vectorised."""
        lvl = np.zeros(len(score), dtype=np.int8)
        lvl[score >= self.monitor] = 1
        lvl[score >= self.challenge] = 2
        lvl[(score >= self.throttle) & (events >= self.min_events_throttle)] = 3
        lvl[(score >= self.suspend) & (events >= self.min_events_suspend)] = 4
        if allowed is not None:
            lvl[allowed & (lvl > 1)] = 1
        return lvl

    def evidence_gate(self, lvl: np.ndarray, score: np.ndarray, events: np.ndarray, asks_share: np.ndarray,
                      few_lvl: np.ndarray | None = None) -> np.ndarray:
        """Cap at ``monitor`` the rows with too few events to act on, except near-certain cases
        of few events that are all extraction asks (those may reach ``challenge``).

        ``asks_share``: share of the account's readable prompts that ask for reasoning, maximal
        output or grading (exam-shaped content alone is not an ask). ``score`` and ``few_lvl``
        (the levels of that score; default ``lvl``) judge the few-events tier: the replay passes
        the score before its evidence shrinkage there, since "near-certain" is said of what each
        of a handful of exchanges shows, and the tier asks for more evidence of its own."""
        few = ((events >= self.few_events_min) & (score >= self.few_events_score)
               & (asks_share >= self.few_events_extract))
        capped = np.where(few, np.minimum(lvl if few_lvl is None else few_lvl, 2), np.minimum(lvl, 1))
        return np.where(events >= self.min_events_challenge, lvl, capped).astype(np.int8)

    def sustained(self, tick: np.ndarray, first_seen: np.ndarray, lvl: np.ndarray, events: np.ndarray | None = None) -> np.ndarray:
        """Hold each row's action at ``monitor`` while the account has been observed for less
        than ``sustain_minutes`` of event time (since its first exchange in the log), if it is
        a burst: more than ``burst_per_minute`` exchanges a minute so far (when ``events`` is given)."""
        if self.sustain_minutes <= 0:
            return lvl
        observed = tick - first_seen
        held = (lvl >= 2) & (observed < self.sustain_minutes * 60_000)
        if events is not None:
            # Only a burst is held: more exchanges a minute than a person sends by hand.
            held &= events / np.maximum(observed / 60_000, 1.0) > self.burst_per_minute
        return np.where(held, np.minimum(lvl, 1), lvl).astype(lvl.dtype)

    def severity(self, lvl: np.ndarray, harvest_yield: np.ndarray, suspend_rule: np.ndarray,
                 bounded: np.ndarray | None = None, product: np.ndarray | None = None,
                 hidden: np.ndarray | None = None) -> np.ndarray:
        """Cap each row's level by the evidence of harvesting at scale (see the module docstring).

        ``harvest_yield``: distinct prompts obtained beyond an ordinary stream (trailing day);
        ``suspend_rule``: a fired reviewed rule whose ``max_action`` is ``suspend``;
        ``bounded``: rows whose traffic shows an evaluation-sized run (capped at ``monitor``);
        ``product``: rows of a product serving people: capped at ``monitor``, or at ``challenge``
        where ``hidden`` (a rule that finds a harvester hidden among other traffic fired: a
        reseller's users are people too; the product's marks clear the stream, not the
        substream; an analyst looks, nothing is enforced)."""
        lvl = np.where((lvl >= 4) & ~(suspend_rule & (harvest_yield >= self.suspend_min_yield)), 3, lvl)
        lvl = np.where((lvl >= 3) & (harvest_yield < self.throttle_min_yield), 2, lvl)
        if bounded is not None:
            lvl = np.where(bounded, np.minimum(lvl, 1), lvl)
        if product is not None:
            cap = np.where(hidden, 2, 1) if hidden is not None else 1
            lvl = np.where(product, np.minimum(lvl, cap), lvl)
        return lvl.astype(np.int8)


# -- countermeasures: what a gateway does to an account's traffic at each action level ----------

LADDER_LEVELS = ACTIONS
REASONING_EFFORTS = ("minimal", "low", "medium", "high")
_RUNG_KEYS = {"max_tokens", "n", "logprobs", "reasoning_effort", "reasoning", "reasoning_chars", "canary_rate",
              "watermark", "block"}


@dataclass(frozen=True)
class Rung:
    """The countermeasures of one action level (``countermeasures.<level>`` in policy.yaml).

    Request shaping: ``max_tokens`` caps the request's (and ``max_completion_tokens``);
    ``n`` caps the number of choices; ``logprobs: drop`` removes ``logprobs``/``top_logprobs``;
    ``reasoning_effort`` lowers it to this level (never raises it). Response shaping:
    ``reasoning`` = ``keep`` / ``shorten`` (to ``reasoning_chars`` characters) / ``withhold`` the
    reasoning content; the final answer is never changed. Marking: ``canary_rate`` = share of
    responses carrying the account's canary, ``watermark`` = decode with the keyed watermark.
    ``block``: ``none``, ``throttle`` (429 + Retry-After) or ``suspend`` (403).
    """

    max_tokens: int | None = None
    n: int | None = None
    drop_logprobs: bool = False
    reasoning_effort: str | None = None
    reasoning: str = "keep"
    reasoning_chars: int = 400
    canary_rate: float = 0.0
    watermark: bool = False
    block: str = "none"

    def __post_init__(self) -> None:
        if self.reasoning not in ("keep", "shorten", "withhold"):
            raise ValueError(f"reasoning must be keep, shorten or withhold, not {self.reasoning!r}")
        if self.block not in ("none", "throttle", "suspend"):
            raise ValueError(f"block must be none, throttle or suspend, not {self.block!r}")
        if self.reasoning_effort is not None and self.reasoning_effort not in REASONING_EFFORTS:
            raise ValueError(f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}")
        if not 0.0 <= self.canary_rate <= 1.0:
            raise ValueError("canary_rate must be in [0, 1]")
        for k in ("max_tokens", "n"):
            v = getattr(self, k)
            if v is not None and v < 1:
                raise ValueError(f"{k} must be at least 1")
        if self.reasoning_chars < 0:
            raise ValueError("reasoning_chars must be at least 0")

    @classmethod
    def from_dict(cls, level: str, d: dict) -> "Rung":
        if not isinstance(d, dict):
            raise ValueError(f"countermeasures.{level} must be a mapping")
        unknown = set(d) - _RUNG_KEYS
        if unknown:
            raise ValueError(f"countermeasures.{level}: unknown keys {sorted(unknown)} (known: {sorted(_RUNG_KEYS)})")
        lp = d.get("logprobs", "keep")
        if lp not in ("keep", "drop"):
            raise ValueError(f"countermeasures.{level}.logprobs must be keep or drop")
        opt = lambda k: None if d.get(k) is None else int(d[k])  # noqa: E731
        return cls(max_tokens=opt("max_tokens"), n=opt("n"), drop_logprobs=lp == "drop",
                   reasoning_effort=d.get("reasoning_effort"), reasoning=str(d.get("reasoning", "keep")),
                   reasoning_chars=int(d.get("reasoning_chars", 400)), canary_rate=float(d.get("canary_rate", 0.0)),
                   watermark=bool(d.get("watermark", False)), block=str(d.get("block", "none")))


# Flagged accounts (challenge) keep their service but get less per exchange and carry marks;
# throttle and suspend block as before. ``none`` and ``monitor`` are untouched.
DEFAULT_RUNGS = {
    "challenge": Rung(max_tokens=4096, n=1, drop_logprobs=True, reasoning_effort="low", reasoning="shorten",
                      reasoning_chars=600, canary_rate=0.02, watermark=True),
    "throttle": Rung(block="throttle"),
    "suspend": Rung(block="suspend"),
}


@dataclass(frozen=True)
class Ladder:
    """Countermeasures per action level; ``shadow`` records what would be done and applies nothing
    (blocking included: it stays as the detection's own shadow setting decides)."""

    rungs: dict = field(default_factory=lambda: dict(DEFAULT_RUNGS))
    shadow: bool = False

    @classmethod
    def from_policy(cls, d: dict | None) -> "Ladder":
        """From a policy document's ``countermeasures`` section (levels it omits keep their defaults)."""
        sec = (d or {}).get("countermeasures")
        if sec is None:
            return cls()
        if not isinstance(sec, dict):
            raise ValueError("countermeasures must be a mapping of action level -> countermeasures")
        unknown = set(sec) - set(LADDER_LEVELS) - {"shadow"}
        if unknown:
            raise ValueError(f"countermeasures: unknown levels {sorted(unknown)} (levels: {', '.join(LADDER_LEVELS)})")
        rungs = dict(DEFAULT_RUNGS)
        for lvl in LADDER_LEVELS:
            if lvl in sec:
                rungs[lvl] = Rung.from_dict(lvl, sec[lvl] or {})
        return cls(rungs, bool(sec.get("shadow", False)))

    @classmethod
    def from_yaml(cls, path: str | Path | None) -> "Ladder":
        if path is None:
            return cls()
        return cls.from_policy(yaml.safe_load(Path(path).read_text()) or {})

    def rung(self, action: str) -> Rung:
        return self.rungs.get(action, Rung())
