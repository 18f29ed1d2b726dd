"""Detection rules as reviewed YAML data (SigmaHQ style), evaluated vectorised over snapshots.

A rule file holds metadata an analyst can defend (id, title, description, level, false
positives, MITRE ATLAS tags) and a ``detection`` block: ``min_events`` and ``all`` — a map of
feature name to a comparison such as ``">= 0.6"`` (all must hold), and optionally ``any`` (at
least one must hold: the evidence that separates the rule's stated false positives). Feature names are those of
``distillguard.features.account.FEATURES`` (and ``members`` for clusters). ``scope`` says where
a rule applies: ``account`` (running history), ``window`` (the trailing window, which catches an
account that changes), ``cluster`` (sums over linked accounts). ``max_action`` (optional, default
``suspend``) is the strongest action the rule can justify: a rule that reads request shape alone
(several completions, huge ``max_tokens``, repeated sampling) says *how* an account asks, not
how much it obtained, and is capped at ``challenge`` (see ``scoring.policy``). ``substream: true``
marks a rule that finds a harvester hidden among other traffic: legitimacy evidence about the
stream as a whole (a product serving people) caps its verdict at ``challenge`` instead of
``monitor``. ``sandbox_max_action`` is written by ``share rules`` on a partner's rule not
approved locally: the rule alone raises an account at most to that action and never convicts a
cluster.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import yaml

from ..paths import RULES_DIR
from ..schema import ACTIONS

LEVEL_WEIGHT = {"informational": 0.1, "low": 0.25, "medium": 0.45, "high": 0.7, "critical": 0.9}
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}
_COND = re.compile(r"^\s*(>=|<=|==|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")
REQUIRED_KEYS = {"id", "title", "description", "level", "reason", "tags", "falsepositives", "detection", "scope"}
SCOPES = {"account", "window", "cluster", "sweep"}


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    description: str
    level: str
    reason: str
    tags: tuple[str, ...]
    falsepositives: tuple[str, ...]
    min_events: int
    conditions: tuple[tuple[str, str, float], ...]
    scope: tuple[str, ...]
    weight: float
    path: str = ""
    any_of: tuple[tuple[str, str, float], ...] = ()
    max_action: str = "suspend"
    substream: bool = False
    # Sandbox (partner rules not approved locally, ``share rules``): the most this rule may do
    # by itself (YAML ``sandbox_max_action``); ``None`` for reviewed local rules. Unlike
    # ``max_action`` (a reviewed rule's own ceiling on suspension), a sandboxed rule is taken out
    # of the decision it would raise past its cap, and never convicts a cluster.
    sandbox: str | None = None

    def expr(self, prefix: str = "x_", n_col: str = "n") -> pl.Expr:
        """Boolean Polars expression: does the rule fire on a snapshot row?"""
        e = pl.col(n_col) >= self.min_events
        col = lambda feat: pl.col(feat if feat in ("members",) else prefix + feat)  # noqa: E731
        for feat, op, val in self.conditions:
            e = e & _OPS[op](col(feat), val)
        if self.any_of:
            alt = pl.lit(False)
            for feat, op, val in self.any_of:
                alt = alt | _OPS[op](col(feat), val)
            e = e & alt
        return e.fill_null(False)


def parse_rule(doc: dict, path: str = "") -> Rule:
    """Validate one YAML rule document and build a :class:`Rule` (ValueError when malformed)."""
    missing = REQUIRED_KEYS - set(doc)
    if missing:
        raise ValueError(f"{path}: rule lacks {sorted(missing)}")
    if doc["level"] not in LEVEL_WEIGHT:
        raise ValueError(f"{path}: unknown level {doc['level']!r}")
    det = doc["detection"] or {}

    def conditions(block: dict) -> list[tuple[str, str, float]]:
        out = []
        for feat, cond in (block or {}).items():
            m = _COND.match(str(cond))
            if not m:
                raise ValueError(f"{path}: condition {feat}: {cond!r} is not '<op> <number>'")
            out.append((str(feat), m.group(1), float(m.group(2))))
        return out

    conds = conditions(det.get("all"))
    any_of = conditions(det.get("any"))
    scope = tuple(doc["scope"])
    if not scope or set(scope) - SCOPES:
        raise ValueError(f"{path}: scope must be a subset of {sorted(SCOPES)}")
    max_action = str(doc.get("max_action", "suspend"))
    if max_action not in ACTIONS:
        raise ValueError(f"{path}: max_action must be one of {', '.join(ACTIONS)}, not {max_action!r}")
    sandbox = doc.get("sandbox_max_action")
    if sandbox is not None and sandbox not in ACTIONS:
        raise ValueError(f"{path}: sandbox_max_action must be one of {', '.join(ACTIONS)}, not {sandbox!r}")
    return Rule(
        id=str(doc["id"]), title=doc["title"], description=doc["description"], level=doc["level"],
        reason=doc["reason"], tags=tuple(doc["tags"]), falsepositives=tuple(doc["falsepositives"]),
        min_events=int(det.get("min_events", 1)), conditions=tuple(conds), any_of=tuple(any_of), scope=scope,
        weight=float(doc.get("weight", LEVEL_WEIGHT[doc["level"]])), path=path, max_action=max_action,
        substream=bool(doc.get("substream", False)), sandbox=sandbox,
    )


def rule_documents(directory: str | Path | None = None) -> list[tuple[dict, str]]:
    """(YAML document, file path) of every rule in ``directory`` (default: the packaged ``rules/``)."""
    d = Path(directory) if directory else RULES_DIR
    return [(doc, str(p)) for p in sorted(d.glob("*.yaml"))
            for doc in yaml.safe_load_all(p.read_text(encoding="utf-8")) if doc]


def load_rules(directory: str | Path | None = None) -> list[Rule]:
    """All ``*.yaml`` rules of ``directory`` (default: the packaged ``rules/``), sorted by id."""
    rules = [parse_rule(doc, path) for doc, path in rule_documents(directory)]
    ids = [r.id for r in rules]
    if len(ids) != len(set(ids)):
        raise ValueError("duplicate rule ids")
    return sorted(rules, key=lambda r: r.id)


def fire(df: pl.DataFrame, rules: list[Rule], scope: str, prefix: str = "x_", n_col: str = "n") -> pl.DataFrame:
    """Add one boolean column ``r:<id>`` per rule of ``scope`` to ``df``."""
    active = [r for r in rules if scope in r.scope]
    if not active:
        return df
    return df.with_columns([r.expr(prefix, n_col).alias(f"r:{r.id}") for r in active])
