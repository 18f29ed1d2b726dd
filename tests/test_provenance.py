"""Provenance: canaries, the evidence log, the watermark and its test, the experiment, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from distillguard.cli import app
from distillguard.provenance import evidence
from distillguard.provenance.canary import canary_for, find_canaries, hit_p_value, selected, weave
from distillguard.provenance.experiment import ExperimentConfig, load_corpus, run_experiment
from distillguard.provenance.ngram import BigramLM
from distillguard.provenance.watermark import (GreenList, WatermarkLogitsProcessor, score_pairs, score_texts,
                                               text_pairs, token_hashes, tokenize)

KEY = bytes(range(32))
runner = CliRunner()


# -- canaries -------------------------------------------------------------------------------------

def test_canaries_are_keyed_per_account_and_name_the_leak():
    a, b = canary_for(KEY, "acct-a", "k1"), canary_for(KEY, "acct-b", "k1")
    assert a == canary_for(KEY, "acct-a", "k1")  # derived, nothing stored
    assert a.trigger != b.trigger and a.response != b.response and a.mark_id != b.mark_id
    assert canary_for(bytes(32), "acct-a").response != a.response  # another key, another canary
    answer = "The answer is 42."
    woven = weave(answer, a)
    assert woven.startswith(answer) and woven.endswith(a.tag())
    # A model that learned it repeats it: the hit names acct-a, with a tiny p-value bound.
    leaked = ["unrelated text", f"... {a.response} and more"]
    hits = find_canaries(leaked, [a, b])
    assert [h["account_id"] for h in hits] == ["acct-a"] and hits[0]["p_value"] < 1e-12
    assert hit_p_value("nothing here", a) is None


def test_canaries_are_rare_in_natural_text():
    texts, prompts, _ = load_corpus(3000)
    cans = [canary_for(KEY, f"acct-{i}") for i in range(500)]
    assert find_canaries(texts + prompts, cans) == []


def test_canary_selection_rate():
    picks = [selected(KEY, f"req-{i}", 0.05) for i in range(20_000)]
    assert 0.04 < np.mean(picks) < 0.06
    assert selected(KEY, "r", 1.0) and not selected(KEY, "r", 0.0)
    assert picks == [selected(KEY, f"req-{i}", 0.05) for i in range(20_000)]  # reproducible


# -- evidence log ---------------------------------------------------------------------------------

def _log(tmp_path, n=6):
    p = tmp_path / "evidence.jsonl"
    log = evidence.EvidenceLog(p)
    for i in range(n):
        log.append(account=f"acct-{i % 2}", request_id=f"req-{i}", mark="canary", mark_id=f"cn-{i}", key_id="k1", ts_ms=1_000 + i)
    log.close()
    return p


def test_evidence_log_verifies_and_holds_no_text(tmp_path):
    p = _log(tmp_path)
    v = evidence.verify(p)
    assert v.ok and v.entries == 6
    e = evidence.read_entries(p)[0]
    assert set(e) == {"seq", "ts", "account", "request_id", "mark", "mark_id", "key_id", "prev", "hash"}
    # Appends continue the chain across reopenings (several gateway workers share one file).
    log = evidence.EvidenceLog(p)
    log.append(account="acct-9", request_id="req-9", mark="watermark", mark_id="wm-k1", key_id="k1")
    log.close()
    assert evidence.verify(p).entries == 7 and evidence.verify(p).ok


@pytest.mark.parametrize("tamper", ["edit", "remove", "reorder", "truncate", "garbage"])
def test_evidence_log_detects_tampering(tmp_path, tamper):
    p = _log(tmp_path)
    head = evidence.verify(p).head
    lines = p.read_bytes().splitlines(keepends=True)
    if tamper == "edit":
        d = json.loads(lines[2])
        d["account"] = "acct-innocent"
        lines[2] = (json.dumps(d, separators=(",", ":")) + "\n").encode()
    elif tamper == "remove":
        del lines[3]
    elif tamper == "reorder":
        lines[1], lines[2] = lines[2], lines[1]
    elif tamper == "truncate":
        lines = lines[:-1]
    else:
        lines.insert(2, b"not json\n")
    p.write_bytes(b"".join(lines))
    v = evidence.verify(p, expect_head=head)
    assert not v.ok and v.line >= 1
    r = runner.invoke(app, ["provenance", "verify-log", str(p), "--expect-head", head])
    assert r.exit_code == 1 and "BROKEN" in r.output


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=8), st.integers(0, 5)), min_size=1, max_size=12), st.data())
def test_evidence_log_any_single_edit_is_found(tmp_path_factory, entries, data):
    p = tmp_path_factory.mktemp("ev") / "e.jsonl"
    log = evidence.EvidenceLog(p)
    for acct, k in entries:
        log.append(account=acct, request_id=f"r{k}", mark="canary", mark_id=f"cn-{k}", key_id="k", ts_ms=k)
    log.close()
    assert evidence.verify(p).ok
    lines = p.read_bytes().splitlines(keepends=True)
    i = data.draw(st.integers(0, len(lines) - 1))
    field = data.draw(st.sampled_from(["account", "request_id", "mark_id", "ts", "key_id"]))
    d = json.loads(lines[i])
    d[field] = (d[field] + 1) if isinstance(d[field], int) else d[field] + "x"
    lines[i] = (json.dumps(d) + "\n").encode()
    p.write_bytes(b"".join(lines))
    assert not evidence.verify(p).ok


# -- watermark ------------------------------------------------------------------------------------

def test_green_share_and_processor_interface():
    g = GreenList(KEY, 0.25)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2**63, 200_000, dtype=np.uint64), rng.integers(0, 2**63, 200_000, dtype=np.uint64)
    assert abs(g.is_green(a, b).mean() - 0.25) < 0.005
    proc = WatermarkLogitsProcessor(g, delta=2.0)
    ids = np.array([[5, 7], [1, 3]])
    scores = np.zeros((2, 50))
    out = proc(ids, scores)
    assert out.shape == scores.shape and set(np.unique(out)) <= {0.0, 2.0}
    assert np.array_equal(out[0] > 0, g.is_green(np.uint64(7), np.arange(50, dtype=np.uint64)))
    assert proc(np.zeros((2, 0), dtype=int), scores) is scores  # nothing generated yet: unchanged


def test_processor_on_torch_tensors():
    torch = pytest.importorskip("torch")
    g = GreenList(KEY, 0.5)
    proc = WatermarkLogitsProcessor(g, 1.5, token_hashes([f"t{i}" for i in range(30)]))
    ids = torch.tensor([[1, 2, 3]])
    scores = torch.zeros((1, 30), dtype=torch.float32)
    out = proc(ids, scores)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert np.array_equal(out.numpy()[0], proc(np.array([[1, 2, 3]]), np.zeros((1, 30)))[0].astype(np.float32))


def test_test_is_exact_under_the_null_on_natural_text():
    """Natural text never marked, many keys: p-values below a level at (or below) that rate."""
    texts, _, _ = load_corpus(1500)
    prev, tok = text_pairs(texts)
    pairs = np.unique(np.stack([prev, tok], axis=1), axis=0)  # de-duplicated once; each key scores the same pairs
    ps = np.array([score_pairs(pairs[:, 0], pairs[:, 1], GreenList(i.to_bytes(4, "big") * 8, 0.25), dedup=False).p_value
                   for i in range(500)])
    # sd of a rate at 0.05 over 500 runs: 0.0097
    assert (ps < 0.05).mean() <= 0.075 and (ps < 0.01).mean() <= 0.02 and (ps < 0.001).mean() <= 0.006


def test_marked_text_is_detected_and_dedup_counts_pairs_once():
    texts, _, _ = load_corpus(2000)
    lm = BigramLM.fit(texts, 600)
    g = GreenList(KEY, 0.25)
    rng = np.random.default_rng(1)
    start = rng.integers(0, lm.size, 50)
    marked = lm.decode(lm.generate(start, 40, rng, lm.cdf(WatermarkLogitsProcessor(g, 2.0, lm.hashes))))
    plain = lm.decode(lm.generate(start, 40, rng))
    assert score_texts(marked, g).p_value < 1e-6
    assert score_texts(plain, g).p_value > 1e-3
    r = score_texts(["a b a b a b a b"], g)
    assert r.tokens == 7 and r.scored == 2  # (a,b) and (b,a), once each
    assert tokenize("Hello, World!") == ["hello", ",", "world", "!"]


# -- the experiment (CI-sized; the full run is in docs/provenance.md) ------------------------------

@pytest.fixture(scope="module")
def small_experiment():
    return run_experiment(ExperimentConfig.small())


def test_experiment_power_controls_and_canaries(small_experiment):
    r = small_experiment
    by = {s["share"]: s for s in r["students"]}
    assert by[0.05]["api"]["p_value"] < 1e-3  # API mode: the probe's view of the student
    assert by[1.0]["api"]["p_value"] < 1e-9 and by[1.0]["reading"]["p_value"] < 1e-9
    fpr = r["controls"]["false_positive_rate"]
    assert r["controls"]["runs"] == 12
    assert fpr["api"]["0.001"] == 0.0 and fpr["reading"]["0.001"] == 0.0
    assert fpr["api"]["0.05"] <= 2 / 12 and fpr["reading"]["0.05"] <= 2 / 12  # 12 runs: nominal 0.05 plus noise
    assert fpr["api_no_dedup"]["0.001"] > fpr["api"]["0.001"]  # why the test de-duplicates
    # Canary hits name exactly the harvesting accounts; never the bystander, never in controls.
    cfg = r["config"]
    for s in r["students"]:
        assert set(s["canary_hits"]) <= set(cfg["harvesters"]) and cfg["bystander"] not in s["canary_hits"]
    assert set(by[1.0]["canary_hits"]) == set(cfg["harvesters"])
    assert r["controls"]["canary_false_hits"] == 0


# -- CLI ------------------------------------------------------------------------------------------

def test_cli_test_and_export(tmp_path, monkeypatch):
    pytest.importorskip("stix2validator")
    monkeypatch.setenv("DG_MARK_KEY", KEY.hex())
    monkeypatch.setenv("DG_COALITION_KEY", "c0" * 32)
    texts, _, _ = load_corpus(1500)
    lm = BigramLM.fit(texts, 500)
    g = GreenList(KEY, 0.25, "default")
    rng = np.random.default_rng(3)
    marked = lm.decode(lm.generate(rng.integers(0, lm.size, 60), 40, rng, lm.cdf(WatermarkLogitsProcessor(g, 2.0, lm.hashes))))
    leak = weave(marked[0], canary_for(KEY, "acct-leaky", "default"))
    f = tmp_path / "suspect.jsonl"
    f.write_text("\n".join(json.dumps({"text": t}) for t in [leak, *marked[1:]]) + "\n")
    res = tmp_path / "res.json"
    r = runner.invoke(app, ["provenance", "test", str(f), "--account", "acct-leaky", "--account", "acct-other", "--out", str(res)])
    assert r.exit_code == 0, r.output
    d = json.loads(res.read_text())
    assert d["watermark"]["p_value"] < 1e-6 and [x["account_id"] for x in d["canaries"]["found"]] == ["acct-leaky"]
    bundle = tmp_path / "bundle.json"
    r = runner.invoke(app, ["provenance", "export", str(res), "--out", str(bundle), "--provider", "ProviderA"])
    assert r.exit_code == 0, r.output
    from distillguard.share import stix

    b = json.loads(bundle.read_text())
    ok, msgs = stix.validate(b)
    assert ok, msgs
    assert "acct-leaky" not in bundle.read_text()  # accounts travel only as coalition-key HMACs


def test_cli_user_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("DG_MARK_KEY", raising=False)
    r = runner.invoke(app, ["provenance", "test", str(tmp_path / "x.jsonl")])
    assert r.exit_code == 2 and "mark key" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["provenance", "verify-log", str(tmp_path / "missing.jsonl")])
    assert r.exit_code == 2 and "no such file" in r.output
    monkeypatch.setenv("DG_MARK_KEY", KEY.hex())
    r = runner.invoke(app, ["provenance", "probe", "--endpoint", "ftp://x", "--model", "m"])
    assert r.exit_code == 2 and "http" in r.output
