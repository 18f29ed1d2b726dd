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
    summary = simulate(tmp_path, seed=7, hours=0.5, scale=1.0, split="dev")
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
