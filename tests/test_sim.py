"""Tests of the labelled traffic simulator (distillguard.sim).

Runs are kept small (short windows, reduced scale) so the whole file takes seconds; the
full-size run is exercised by the benchmark, not here.
"""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import orjson
import pytest

from distillguard import paths
from distillguard.schema import FIELD_KINDS, LABELS_COLUMNS, REQUIRED
from distillguard.sim import simulate
from distillguard.sim.params import ATTACK_POPULATIONS, BENIGN_POPULATIONS

# Agent-traffic fields of events.md (2026-12-07), checked here by their documented types
# whether or not the reader's schema types them yet.
AGENT_FIELD_KINDS = {"tool_names": "strlist", "message_count": "int", "last_role": "str", "output_tool_calls": "int"}
KINDS = {**FIELD_KINDS, **AGENT_FIELD_KINDS}
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CAMPAIGN = re.compile(r"^c\d{2}_[a-z]+$")


def read_events(out: Path) -> list[dict]:
    with open(out / "events.jsonl", "rb") as fh:
        return [orjson.loads(line) for line in fh]


def read_labels(out: Path) -> tuple[list[str], list[dict]]:
    with open(out / "labels.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


@pytest.fixture(scope="module")
def dev_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("dev")
    summary = simulate(out, seed=3, hours=1.5, scale=0.3, split="dev")
    return out, summary


def _kind_ok(kind: str, v) -> bool:
    if kind == "str":
        return isinstance(v, str)
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "num":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "strlist":
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    if kind == "ts":
        return (isinstance(v, str) and RFC3339_MS.match(v) is not None) or (
            isinstance(v, int) and not isinstance(v, bool)
        )
    raise AssertionError(kind)


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path, dev_run):
    out, _ = dev_run
    again = tmp_path / "again"
    simulate(again, seed=3, hours=1.5, scale=0.3, split="dev")
    assert (again / "events.jsonl").read_bytes() == (out / "events.jsonl").read_bytes()
    assert (again / "labels.csv").read_bytes() == (out / "labels.csv").read_bytes()
    other = tmp_path / "other"
    simulate(other, seed=4, hours=1.5, scale=0.3, split="dev")
    assert (other / "events.jsonl").read_bytes() != (out / "events.jsonl").read_bytes()


def test_label_file_columns_and_values(dev_run):
    out, _ = dev_run
    header, rows = read_labels(out)
    assert header == ["account_id", "label", "population", "campaign", "attack_start_ts"] == LABELS_COLUMNS
    assert rows
    pops = set(BENIGN_POPULATIONS) | set(ATTACK_POPULATIONS)
    for r in rows:
        assert r["label"] in ("benign", "attack")
        assert r["population"] in pops
        if r["label"] == "benign":
            assert r["population"] in BENIGN_POPULATIONS
            assert r["campaign"] == "" and r["attack_start_ts"] == ""
        else:
            assert r["population"] in ATTACK_POPULATIONS
            assert CAMPAIGN.match(r["campaign"]), r["campaign"]
            assert r["attack_start_ts"] == "" or RFC3339_MS.match(r["attack_start_ts"])
    assert len({r["account_id"] for r in rows}) == len(rows)


def test_events_follow_the_spec(dev_run):
    out, summary = dev_run
    events = read_events(out)
    assert len(events) == summary["events"] > 1000
    for e in events:
        for f in REQUIRED:
            assert e.get(f) is not None, f
        for k, v in e.items():
            assert k in KINDS, k  # the simulator writes only contract fields
            if v is not None:
                assert _kind_ok(KINDS[k], v), (k, v)
        assert RFC3339_MS.match(e["ts"])
        if e.get("prompt") and e.get("prompt_sha256"):
            assert hashlib.sha256(e["prompt"].encode()).hexdigest() == e["prompt_sha256"]


def test_events_sorted_ids_unique_and_accounts_match_labels(dev_run):
    out, _ = dev_run
    events = read_events(out)
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    ids = [e["request_id"] for e in events]
    assert len(set(ids)) == len(ids)
    _, rows = read_labels(out)
    assert {e["account_id"] for e in events} == {r["account_id"] for r in rows}


def test_attack_start_is_the_first_attack_phase_exchange(dev_run):
    out, _ = dev_run
    events = read_events(out)
    _, rows = read_labels(out)
    starts = {r["account_id"]: r["attack_start_ts"] for r in rows if r["attack_start_ts"]}
    assert starts, "takeover accounts turn bad part-way"
    by_acct: dict[str, list[str]] = {}
    for e in events:
        if e["account_id"] in starts:
            by_acct.setdefault(e["account_id"], []).append(e["ts"])
    for aid, start in starts.items():
        assert start in by_acct[aid]


def test_every_population_present_at_scale_one(tmp_path):
    # Two hours: a few dozen human-paced students sweeping together may all be idle for half an hour.
    summary = simulate(tmp_path, seed=7, hours=2, scale=1.0, split="dev")
    _, rows = read_labels(tmp_path)
    pops = {r["population"] for r in rows}
    assert pops == set(BENIGN_POPULATIONS) | set(ATTACK_POPULATIONS)
    assert all(summary["accounts_by_population"][p] > 0 for p in pops)


@pytest.mark.parametrize("split", ["dev", "holdout"])
def test_account_counts_at_scale_one(split):
    """About 2000-4000 benign and 150-300 attack accounts exist (not all active in a short window)."""
    from distillguard.sim.context import Ctx
    from distillguard.sim.corpora import load_corpora
    from distillguard.sim.engine import DEFAULT_START, build_accounts, resolve_data_dir
    from distillguard.sim.traces import load_traces

    ddir, _ = resolve_data_dir(None)
    t0 = int(DEFAULT_START.timestamp() * 1000)
    ctx = Ctx(
        seed=7,
        split=split,
        t0=t0,
        t1=t0 + 86_400_000,
        scale=1.0,
        corpora=load_corpora(ddir, split),
        traces=load_traces(ddir),
    )
    accounts = build_accounts(ctx)
    n_attack = sum(a.label == "attack" for a in accounts)
    assert 150 <= n_attack <= 450
    assert 2000 <= len(accounts) - n_attack <= 4000
    assert len({a.account_id for a in accounts}) == len(accounts)


def test_bundled_data_is_used_when_shared_is_absent(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "shared_data_dir", lambda: None)
    summary = simulate(tmp_path, seed=5, hours=1.0, scale=0.2, split="dev")
    assert summary["data_source"] == "bundled"
    assert summary["events"] > 500
    _, rows = read_labels(tmp_path)
    assert {r["label"] for r in rows} == {"benign", "attack"}


def test_bundle_is_small_and_permissive_only():
    files = list(paths.BUNDLED_DATA.glob("*.gz"))
    assert files
    assert sum(f.stat().st_size for f in files) < 3_000_000
    names = " ".join(f.name for f in files)
    for excluded in ("sharegpt", "alpaca", "oasst2"):
        assert excluded not in names


def test_dev_and_holdout_prompts_are_disjoint(tmp_path, dev_run):
    out, _ = dev_run
    hold = tmp_path / "holdout"
    simulate(hold, seed=3, hours=1.5, scale=0.3, split="holdout")

    def prompt_hashes(p: Path) -> set[str]:
        hs = set()
        for e in read_events(p):
            if e.get("prompt"):
                hs.add(hashlib.sha256(e["prompt"].encode()).hexdigest())
            if e.get("prompt_sha256"):
                hs.add(e["prompt_sha256"])
        return hs

    dev, ho = prompt_hashes(out), prompt_hashes(hold)
    assert dev and ho
    assert not dev & ho
    assert (hold / "events.jsonl").read_bytes() != (out / "events.jsonl").read_bytes()


def test_inject_bad_adds_lines_but_keeps_labels(tmp_path, dev_run):
    out, summary = dev_run
    dirty = tmp_path / "dirty"
    s2 = simulate(dirty, seed=3, hours=1.5, scale=0.3, split="dev", inject_bad=0.02)
    assert s2["events"] == summary["events"] and s2["bad_lines"] > 0
    lines = (dirty / "events.jsonl").read_bytes().splitlines()
    assert len(lines) == s2["events"] + s2["bad_lines"]
    assert (dirty / "labels.csv").read_bytes() == (out / "labels.csv").read_bytes()


def test_progress_callback_and_argument_checks(tmp_path):
    seen = []
    s = simulate(tmp_path, seed=1, hours=0.25, scale=0.1, progress=seen.append)
    assert seen and seen[-1] == s["events"]
    with pytest.raises(ValueError):
        simulate(tmp_path, split="test")
    with pytest.raises(ValueError):
        simulate(tmp_path, hours=0)


def test_every_attacking_account_has_its_attack_start(dev_run):
    # The shared scorer needs the column on every attack row; benign rows leave it empty.
    out, _ = dev_run
    _, rows = read_labels(out)
    assert rows and all(bool(r["attack_start_ts"]) == (r["label"] == "attack") for r in rows)


# --- the populations of issue 22: agent harvesting, target-only sweeps, tutors, pass@k ----------

NEW_POPULATIONS = ("agent_harvest", "target_only_sweep", "tutor_product", "passk_eval")


@pytest.fixture(scope="module", params=["dev", "holdout"])
def day_run(request, tmp_path_factory) -> tuple[str, list[dict], dict[str, dict]]:
    """A full day at reduced scale with typo-free student phrasing (so items can be matched)."""
    from distillguard.sim.params import PARAMS

    split = request.param
    out = tmp_path_factory.mktemp(f"day_{split}")
    mp = pytest.MonkeyPatch()
    mp.setitem(PARAMS[split]["target_only_sweep"], "typo_rate", (0.0, 0.0))
    try:
        simulate(out, seed=11, hours=24, scale=0.3, split=split)
    finally:
        mp.undo()
    _, rows = read_labels(out)
    return split, read_events(out), {r["account_id"]: r for r in rows}


def _by_population(events: list[dict], labels: dict[str, dict], pop: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in events:
        if labels[e["account_id"]]["population"] == pop:
            out.setdefault(e["account_id"], []).append(e)
    return out


def test_new_populations_exist_in_both_splits_with_valid_fields(day_run):
    split, events, labels = day_run
    pops = {r["population"] for r in labels.values()}
    assert set(NEW_POPULATIONS) <= pops, split
    for r in labels.values():
        if r["population"] in ("agent_harvest", "target_only_sweep"):
            assert r["label"] == "attack" and CAMPAIGN.match(r["campaign"])
        elif r["population"] in ("tutor_product", "passk_eval"):
            assert r["label"] == "benign" and r["campaign"] == ""
    n = 0
    for e in events:
        if labels[e["account_id"]]["population"] in NEW_POPULATIONS:
            n += 1
            for k, v in e.items():
                assert k in KINDS, k
                if v is not None:
                    assert _kind_ok(KINDS[k], v), (k, v)
            if e.get("last_role") is not None:
                assert e["last_role"] in ("user", "tool", "assistant", "system")
    assert n > 1000


@pytest.mark.parametrize("pop", ["agent_harvest", "coding_agent"])
def test_agent_sessions_carry_consistent_agent_fields(day_run, pop):
    """One model call per step: the first ends with the user's message, every later one with a
    tool result, and two messages (tool call, tool result) are added per step."""
    _, events, labels = day_run
    steps: dict[tuple, list[dict]] = {}
    for accts in _by_population(events, labels, pop).values():
        for e in accts:
            if e.get("message_count") is not None and e.get("conversation_id"):
                steps.setdefault((e["conversation_id"], e.get("turn")), []).append(e)
    assert len(steps) > 5
    for calls in steps.values():
        counts = [e["message_count"] for e in calls]
        assert counts == list(range(counts[0], counts[0] + 2 * len(calls), 2))
        assert calls[0]["last_role"] == "user"
        assert all(e["last_role"] == "tool" for e in calls[1:])
        for e in calls:
            assert e["tool_count"] == len(e["tool_names"]) > 0
            if e.get("status") == 200:
                assert (e["output_tool_calls"] > 0) == (e.get("finish_reason") == "tool_calls")


def test_agent_harvest_runs_new_tasks_round_the_clock(day_run):
    _, events, labels = day_run
    accounts = _by_population(events, labels, "agent_harvest")
    hours = {int(e["ts"][11:13]) for evs in accounts.values() for e in evs}
    assert len(hours) == 24  # no diurnal off-time
    for evs in accounts.values():
        first = {}
        for e in evs:
            if e.get("prompt") and e.get("conversation_id"):
                first.setdefault(e["conversation_id"], e["prompt"])
        if len(first) >= 4:
            # every session a new task (a pass over the task space takes longer than a day)
            assert len(set(first.values())) == len(first)


def _student_item(prompt: str, templates: list[str], items: dict[str, int]) -> int | None:
    for t in templates:
        head, tail = t.split("{q}")
        if prompt.startswith(head) and prompt.endswith(tail):
            q = prompt[len(head) : len(prompt) - len(tail)] if tail else prompt[len(head) :]
            if q in items:
                return items[q]
    return None


def test_target_only_sweep_accounts_share_no_infrastructure_and_split_the_items(day_run):
    from distillguard.sim.corpora import load_corpora
    from distillguard.sim.engine import resolve_data_dir
    from distillguard.sim.wrappers import STUDENT

    split, events, labels = day_run
    corpora = load_corpora(resolve_data_dir(None)[0], split)
    items = {it.text: j for j, it in enumerate(it for v in corpora.harvest.values() for it in v)}
    templates = sorted({t for ts in STUDENT[split].values() for t in ts}, key=len, reverse=True)
    campaigns: dict[str, dict[str, list[dict]]] = {}
    for aid, evs in _by_population(events, labels, "target_only_sweep").items():
        campaigns.setdefault(labels[aid]["campaign"], {})[aid] = evs
    assert len(campaigns) >= 2
    matched = 0
    for accts in campaigns.values():
        for field in ("payment_fingerprint", "client_ip", "api_key_id"):
            owner: dict[str, str] = {}
            for aid, evs in accts.items():
                for v in {e.get(field) for e in evs} - {None}:
                    assert owner.setdefault(v, aid) == aid, (field, v)
        asked: dict[int, str] = {}
        for aid, evs in accts.items():
            for e in evs:
                if e.get("turn") == 1 and e.get("prompt"):
                    j = _student_item(e["prompt"], templates, items)
                    if j is not None:
                        matched += 1
                        assert asked.setdefault(j, aid) == aid  # no item asked by two accounts
    assert matched > 50


def test_tutor_items_repeat_across_students_with_follow_ups(day_run):
    _, events, labels = day_run
    tutors = _by_population(events, labels, "tutor_product")
    assert tutors
    for evs in tutors.values():
        assert len({e.get("system_prompt") for e in evs} - {None}) <= 1  # one product template
        assert len({e.get("org_id") for e in evs}) == 1
    evs = max(tutors.values(), key=len)
    firsts = [e["prompt"] for e in evs if e.get("turn") == 1 and e.get("prompt")]
    if firsts:  # zero-retention tutors log no text
        top = max(set(firsts), key=firsts.count)
        assert firsts.count(top) >= 5  # a popular homework problem, asked by many students
    turns = {}
    for e in evs:
        turns.setdefault(e["conversation_id"], []).append(e["turn"])
    follow = [t for t in turns.values() if len(t) > 1]
    assert follow and all(t == list(range(1, len(t) + 1)) for t in follow)
    assert 0.05 < len(follow) / len(turns) < 0.7
    assert len({int(e["ts"][11:13]) for e in evs}) >= 20  # 24/7 service


def test_passk_evaluations_sample_repeatedly_in_bursts_that_end(day_run):
    from datetime import datetime

    _, events, labels = day_run
    runs = _by_population(events, labels, "passk_eval")
    assert len(runs) >= 5
    end = max(datetime.fromisoformat(e["ts"]) for e in events)
    ended = 0
    prompt_owners: dict[str, set[str]] = {}
    for aid, evs in runs.items():
        for e in evs:
            assert e.get("max_tokens", 16384) >= 16384
            if e.get("n") is not None:
                assert e["n"] >= 6 and e.get("temperature", 1.0) > 0
            if e.get("prompt"):
                prompt_owners.setdefault(e["prompt"], set()).add(aid)
        prompts = {e.get("prompt") or e.get("prompt_sha256") for e in evs}
        assert len(prompts) <= 500  # a finite item set
        if (end - datetime.fromisoformat(evs[-1]["ts"])).total_seconds() > 3600:
            ended += 1
    assert ended >= len(runs) // 2  # most runs are over well before the log ends
    # unrelated institutions send identical prompts: one public template over one public benchmark
    shared = [a for a in prompt_owners.values() if len({labels[x]["account_id"] for x in a}) > 1]
    domains = {aid: {e.get("email_domain") for e in evs} for aid, evs in runs.items()}
    assert any(len({d for a in accts for d in domains[a]}) > 1 for accts in shared)
    # colleagues: several accounts on one university domain and one campus network
    lab = {}
    for aid, evs in runs.items():
        for e in evs:
            if e.get("email_domain") and e.get("asn"):
                lab.setdefault((e["email_domain"], e["asn"]), set()).add(aid)
    assert max(len(v) for v in lab.values()) >= 2
