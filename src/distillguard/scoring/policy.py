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
