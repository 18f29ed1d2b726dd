"""One test per detection rule: it fires on the behaviour it describes and not on its stated
false positives; plus schema checks for every rule file (SigmaHQ-style metadata)."""

from __future__ import annotations

import polars as pl
import pytest

from distillguard.features.account import FEATURES
from distillguard.scoring.rules import load_rules, parse_rule

RULES = {r.id: r for r in load_rules()}

# A neutral account: ordinary chat (multi-turn, repeated topics, no extraction asks).
BASE = {f: 0.0 for f in FEATURES} | {"novelty": 0.7, "single_share": 0.4, "nd_share": 0.2, "tpl_share": 0.1}


def row(n: int, members: int = 1, **feats: float) -> pl.DataFrame:
    d = BASE | feats
    return pl.DataFrame({"n": [float(n)], "members": [members], **{f"x_{k}": [float(v)] for k, v in d.items()}})


def fires(rule_id: str, df: pl.DataFrame) -> bool:
    return bool(df.select(RULES[rule_id].expr()).item())


HARVEST = dict(novelty=0.99, single_share=1.0, nd_share=0.02)

CASES = {
    # rule: (true positive, the false positive it must not fire on)
    "dg-001": (row(500, reason_share=0.9, maxout_share=0.5, **HARVEST),
               row(500, reason_share=0.9, maxout_share=0.5, novelty=0.99, single_share=1.0, nd_share=0.85)),  # tutoring app: templated
    "dg-002": (row(2000, exam_share=0.9, shape_share=0.5, **HARVEST),
               row(2000, exam_share=0.9, reason_share=0.9, young=0.1, **HARVEST)),  # a CoT benchmark run from an established account
    "dg-003": (row(300, rubric_share=0.8, **HARVEST),
               row(300, rubric_share=0.8, novelty=0.3, single_share=1.0)),  # LLM-judge over a fixed set
    "dg-004": (row(400, shape_share=0.6, **HARVEST),
               row(400, shape_share=0.6, novelty=0.2, single_share=1.0)),  # pass@k on a fixed benchmark
    "dg-005": (row(300, lang_spread=1.0, reason_share=0.6, **HARVEST),
               row(300, lang_spread=1.0, reason_share=0.0, **HARVEST)),  # translation service
    "dg-006": (row(3000, text_share=0.0, young=0.95, single_share=1.0, shape_share=0.25),
               row(3000, text_share=0.0, young=0.1, single_share=1.0, shape_share=0.25)),  # established app, text not logged
    "dg-007": (row(400, text_share=0.0, global_novelty=0.95, log_out_tok=6.8, hod_cover=0.9, **HARVEST),
               row(400, text_share=0.0, global_novelty=0.95, log_out_tok=6.8, hod_cover=0.08, **HARVEST)),  # one-off eval run, text not logged
    "dg-008": (row(300, trace_share=0.04, reason_share=0.08, log_trace=2.5, novelty=0.6, single_share=0.95),  # reseller carrying a harvester
               row(300, trace_share=0.007, reason_share=0.03, log_trace=1.1, novelty=0.6, single_share=0.95)),  # router: an end user now and then
    "dg-009": (row(15, text_share=0.0, global_novelty=1.0, log_out_tok=6.9, log_gap=6.5, **HARVEST),  # a thin campaign's member
               row(40, text_share=0.0, global_novelty=1.0, log_out_tok=7.5, log_gap=1.2, **HARVEST)),  # eval harness, text not logged
    "dg-010": (row(1200, exam_share=1.0, novelty=0.08, nd_share=0.95, single_share=1.0, log_out_tok=6.9, hod_cover=0.9),  # cycling a code benchmark
               row(1200, exam_share=1.0, novelty=0.08, nd_share=0.95, single_share=1.0, log_out_tok=6.9, hod_cover=0.12)),  # pass@k run with CoT
    "dg-011": (row(2400, tools_share=0.95, agent_fresh_share=0.97, log_agent_fresh=4.2, day_hours=0.96, single_share=0.05),  # trajectory harvester
               row(2400, tools_share=0.95, agent_fresh_share=0.3, log_agent_fresh=2.2, day_hours=0.96, single_share=0.05)),  # developers' agent on one repo, in shifts
    "dg-101": (row(5000, members=40, extract_share=0.8, global_novelty=0.9, **HARVEST),
               row(5000, members=40, extract_share=0.1, novelty=0.95, single_share=0.5)),  # company sharing a card
    # Item-space group: unlinked student-like accounts whose items are new to the whole log ...
    "dg-102": (row(600, members=30, exam_share=0.95, item_novelty=0.8, **HARVEST),
               # ... not students asking the same popular homework items in their own words: each
               # prompt is new text (global novelty), but the items recur (item novelty).
               row(600, members=30, exam_share=0.95, global_novelty=0.95, item_novelty=0.3, **HARVEST)),
}


def test_every_rule_has_a_case():
    assert set(CASES) == set(RULES)


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_fires_on_its_behaviour_and_not_on_its_false_positive(rule_id):
    tp, fp = CASES[rule_id]
    assert fires(rule_id, tp)
    assert not fires(rule_id, fp)


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rule_metadata(rule_id):
    r = RULES[rule_id]
    assert "atlas.AML.T0024.002" in r.tags  # model extraction
    assert r.falsepositives and r.description.strip() and r.title.strip()
    assert all(f in FEATURES or f == "members" for f, _, _ in r.conditions), "unknown feature in a condition"
    assert 0 < r.weight < 1


def test_trace_demands_count_only_as_a_minority_of_untemplated_traffic():
    # A tutoring app whose template asks to show every step; a script sending nothing but such asks.
    assert not fires("dg-008", row(300, trace_share=0.9, reason_share=0.9, log_trace=5.0, tpl_share=0.95, nd_share=0.9))
    assert not fires("dg-008", row(300, trace_share=1.0, reason_share=1.0, log_trace=5.0, **HARVEST))


def test_long_answers_cut_at_the_token_cap_are_an_app_not_a_harvest():
    assert not fires("dg-007", row(800, text_share=0.0, global_novelty=0.7, log_out_tok=6.2, hod_cover=1.0, trunc_share=0.99, **HARVEST))


def test_a_person_chatting_without_logged_text_is_not_a_thin_campaign():
    # Follow-up questions, or answers of ordinary length, at a person's pace.
    assert not fires("dg-009", row(15, text_share=0.0, global_novelty=1.0, log_out_tok=6.9, log_gap=6.5, novelty=0.9, single_share=0.5))
    assert not fires("dg-009", row(15, text_share=0.0, global_novelty=1.0, log_out_tok=5.4, log_gap=6.5, **HARVEST))
    assert not fires("dg-009", row(9, text_share=0.0, global_novelty=1.0, log_out_tok=6.9, log_gap=6.5, **HARVEST))


def test_repeated_sampling_for_parseable_or_short_answers_is_an_evaluation():
    sweep = dict(exam_share=1.0, novelty=0.08, nd_share=0.95, single_share=1.0, hod_cover=0.9)
    assert not fires("dg-010", row(1200, log_out_tok=6.9, fmt_share=0.9, **sweep))  # "Answer: $X"
    assert not fires("dg-010", row(1200, log_out_tok=5.2, **sweep))  # completions, not explanations
    assert not fires("dg-010", row(1200, log_out_tok=6.9, **(sweep | {"novelty": 0.95})))  # new items: the sweep rules' case


def test_agent_sessions_in_a_working_day_or_on_one_repository_are_a_developer():
    busy = dict(tools_share=0.95, agent_fresh_share=0.97, log_agent_fresh=4.2, day_hours=0.96)
    assert fires("dg-011", row(2400, **busy))
    assert not fires("dg-011", row(2400, **(busy | {"day_hours": 0.45})))  # a working day
    assert not fires("dg-011", row(2400, **(busy | {"agent_fresh_share": 0.5})))  # returns to its repository
    assert not fires("dg-011", row(2400, **(busy | {"log_agent_fresh": 2.0})))  # a handful of sessions a day
    assert not fires("dg-011", row(2400, **(busy | {"tools_share": 0.1})))  # a chat product with a tool now and then


def test_any_block_needs_one_alternative():
    # dg-001 without output-maximising evidence or a demand for the whole trace is an
    # evaluation harness ("let's think step by step"), however new the account.
    assert not fires("dg-001", row(500, reason_share=0.9, young=0.9, **HARVEST))
    assert fires("dg-001", row(500, reason_share=0.9, trace_share=0.8, **HARVEST))


@pytest.mark.parametrize("rule_id", ["dg-001", "dg-002", "dg-004", "dg-101"])
def test_an_evaluation_harness_asking_for_parseable_answers_is_not_a_harvest(rule_id):
    # pass@k with chain of thought on a benchmark: everything a sweep shows, except that nearly
    # every prompt demands a final answer in a fixed, parseable form ("Answer: $X").
    tp, _ = CASES[rule_id]
    harness = tp.with_columns(pl.lit(0.95).alias("x_fmt_share"))
    assert fires(rule_id, tp) and not fires(rule_id, harness)


def test_rules_of_request_shape_alone_cannot_suspend():
    """n > 1, huge max_tokens, repeated sampling: how an account asks, not what it obtained."""
    assert RULES["dg-004"].max_action == "challenge" and RULES["dg-010"].max_action == "challenge"
    assert all(r.max_action == "suspend" for rid, r in RULES.items() if rid not in ("dg-004", "dg-010"))


def test_only_the_hidden_substream_rule_outweighs_a_products_legitimacy():
    """dg-008 finds a harvester among a reseller's end users: that the rest serves people does not clear it."""
    assert [rid for rid, r in RULES.items() if r.substream] == ["dg-008"]


def test_malformed_rule_is_rejected():
    bad = {"id": "x", "title": "t", "description": "d", "level": "high", "reason": "r", "tags": [], "falsepositives": [],
           "scope": ["account"], "detection": {"all": {"novelty": "about 0.9"}}}
    with pytest.raises(ValueError):
        parse_rule(bad)
    with pytest.raises(ValueError):
        parse_rule({k: v for k, v in bad.items() if k != "level"})
    with pytest.raises(ValueError):
        parse_rule(bad | {"detection": {"all": {"novelty": ">= 0.9"}}, "max_action": "ban"})


def test_unlinked_item_sweep_needs_a_group_not_one_student():
    # One diligent student (or two) asking new items is no campaign.
    assert not fires("dg-102", row(600, members=2, exam_share=0.95, item_novelty=0.95, **HARVEST))
    # An evaluation harness's answer-format prompts are not a student's.
    assert not fires("dg-102", row(600, members=30, exam_share=0.95, item_novelty=0.95, fmt_share=0.9, **HARVEST))


def test_unlinked_item_sweep_judges_item_space_groups_only():
    # Population-level evidence about what accounts ask: it never judges an account or a linked
    # cluster, so it cannot convict anyone by infrastructure.
    assert RULES["dg-102"].scope == ("sweep",)
