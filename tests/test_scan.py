"""End-to-end scan: report contract, reconciliation, replay semantics (no look-ahead, exact
events_before_flag), order independence, formats."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import orjson
import polars as pl
import pytest

from distillguard.paths import shared_dir
from distillguard.scan import scan
from distillguard.sim import simulate

TICK_MS = 60_000


def _ms(s: str) -> int:
    return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)


def _accounts(d: Path) -> dict[str, dict]:
    with open(d / "accounts.csv", newline="") as f:
        return {r["account_id"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def traffic(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("traffic")
    simulate(d, seed=3, hours=4, scale=0.25, split="dev")
    return d


@pytest.fixture(scope="module")
def scanned(traffic, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scan")
    scan([str(traffic / "events.jsonl")], out, show_progress=False)
    return out


def test_report_files_follow_the_spec(traffic, scanned):
    for name in ("accounts.csv", "clusters.csv", "quarantine.jsonl", "summary.json"):
        assert (scanned / name).exists()
    acc = _accounts(scanned)
    log_accounts = {orjson.loads(line)["account_id"] for line in open(traffic / "events.jsonl", "rb")}
    assert set(acc) == log_accounts
    for r in acc.values():
        assert 0.0 <= float(r["score"]) <= 1.0
        assert (r["flagged"] == "true") == (r["action"] in ("challenge", "throttle", "suspend")) == (r["first_flagged_ts"] != "")
        assert 0 <= int(r["events_before_flag"]) <= int(r["events"])
    s = json.loads((scanned / "summary.json").read_text())
    assert s["records_read"] == s["valid"] + s["quarantined"] + s["duplicates_dropped"]
    assert s["accounts"] == len(acc)
    sd = shared_dir()
    if sd is not None and (sd / "tools" / "check-report.py").exists():
        r = subprocess.run([sys.executable, str(sd / "tools" / "check-report.py"), str(scanned), str(traffic / "events.jsonl")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


def test_detector_finds_attacks_and_spares_most_benign(traffic, scanned):
    acc = _accounts(scanned)
    labels = list(csv.DictReader(open(traffic / "labels.csv")))
    att = [acc[l["account_id"]]["flagged"] == "true" for l in labels if l["label"] == "attack"]
    ben = [acc[l["account_id"]]["flagged"] == "true" for l in labels if l["label"] == "benign"]
    assert sum(att) / len(att) > 0.6
    assert sum(ben) / len(ben) < 0.05


def test_events_before_flag_is_exact(traffic, scanned):
    acc = _accounts(scanned)
    first = {a: _ms(r["first_flagged_ts"]) for a, r in acc.items() if r["first_flagged_ts"]}
    assert first, "the benchmark slice should flag someone"
    counts = {a: 0 for a in first}
    for line in open(traffic / "events.jsonl", "rb"):
        e = orjson.loads(line)
        a = e["account_id"]
        if a in first and _ms(e["ts"]) <= first[a]:
            counts[a] += 1
    for a in first:
        assert counts[a] == int(acc[a]["events_before_flag"]), a
        assert first[a] % TICK_MS == 0  # decisions are taken at tick ends


def test_no_look_ahead(traffic, scanned, tmp_path):
    """Cutting the log at T changes no decision taken at or before T."""
    lines = open(traffic / "events.jsonl", "rb").read().splitlines()
    t_first = _ms(orjson.loads(lines[0])["ts"])
    cut = t_first + 2 * 3_600_000  # two hours in, a cluster-epoch and tick boundary
    cut = cut - cut % 900_000
    head = tmp_path / "head.jsonl"
    head.write_bytes(b"\n".join(l for l in lines if _ms(orjson.loads(l)["ts"]) <= cut) + b"\n")
    out = tmp_path / "scan-head"
    scan([str(head)], out, show_progress=False)
    full, part = _accounts(scanned), _accounts(out)
    for a, r in part.items():
        f = full[a]
        full_first = _ms(f["first_flagged_ts"]) if f["first_flagged_ts"] else None
        if full_first is not None and full_first <= cut:
            assert r["first_flagged_ts"] == f["first_flagged_ts"], a
            assert r["events_before_flag"] == f["events_before_flag"], a
        else:
            assert r["flagged"] == "false", a


def test_input_order_and_format_do_not_matter(traffic, scanned, tmp_path):
    lines = open(traffic / "events.jsonl", "rb").read().splitlines()
    random.Random(1).shuffle(lines)
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "scan-shuffled"
    scan([str(shuffled)], out, show_progress=False)
    a, b = _accounts(scanned), _accounts(out)
    assert {k: (v["flagged"], v["first_flagged_ts"], v["events_before_flag"]) for k, v in a.items()} == \
           {k: (v["flagged"], v["first_flagged_ts"], v["events_before_flag"]) for k, v in b.items()}


def test_duplicates_and_bad_lines_reconcile(traffic, tmp_path):
    lines = open(traffic / "events.jsonl", "rb").read().splitlines()[:3000]
    bad = [b"{not json", b'{"request_id": "x1", "account_id": "a"}', b'{"request_id": 5, "ts": 1, "account_id": "a"}', b"[1,2]"]
    dups = lines[:50]
    log = tmp_path / "dirty.jsonl"
    log.write_bytes(b"\n".join(lines + bad + dups) + b"\n")
    out = tmp_path / "scan-dirty"
    s = scan([str(log)], out, show_progress=False)
    assert s["records_read"] == len(lines) + len(bad) + len(dups)
    assert s["quarantined"] == len(bad)
    assert s["duplicates_dropped"] == len(dups)
    assert s["valid"] == len(lines)
    q = [json.loads(x) for x in open(out / "quarantine.jsonl")]
    assert len(q) == len(bad) and all(x["reason"] and x["line"] > len(lines) for x in q)
    assert sum(int(r["events"]) for r in _accounts(out).values()) == len(lines)


def test_parquet_input_matches_jsonl(traffic, scanned, tmp_path):
    from distillguard.ingest import IngestStats, Quarantine, read_events
    import pyarrow as pa
    import pyarrow.parquet as pq

    batches = list(read_events([str(traffic / "events.jsonl")], Quarantine(None), IngestStats()))
    t = pa.Table.from_batches(batches).drop(["_source", "_line"])
    pq.write_table(t, tmp_path / "events.parquet")
    out = tmp_path / "scan-pq"
    scan([str(tmp_path / "events.parquet")], out, show_progress=False)
    a, b = _accounts(scanned), _accounts(out)
    assert {k: v["flagged"] for k, v in a.items()} == {k: v["flagged"] for k, v in b.items()}


def test_empty_log(tmp_path):
    log = tmp_path / "empty.jsonl"
    log.write_text("")
    s = scan([str(log)], tmp_path / "out", show_progress=False)
    assert s["records_read"] == 0 and s["accounts"] == 0
    assert (tmp_path / "out" / "accounts.csv").read_text().startswith("account_id,score,flagged")


def test_bucketed_spilled_and_chunked_replay_gives_the_same_report(traffic, scanned, tmp_path, monkeypatch):
    # Force what a 16-million-exchange log does: many account buckets, spill files flushed
    # many times, per-bucket tick sums spilled to Parquet, and the account-level replay in
    # chunks of a few hundred tick rows.
    import distillguard.pipeline as pipeline
    import distillguard.replay as replay_mod

    monkeypatch.setattr(pipeline, "BUCKET_BYTES_OF_INPUT", 2_000_000)
    monkeypatch.setattr(pipeline, "SINGLE_BUCKET_BYTES", 0)
    monkeypatch.setattr(pipeline, "SPILL_FLUSH_ROWS", 3_000)
    monkeypatch.setattr(pipeline, "FLUSH_ROWS_PER_BUCKET", 100)
    monkeypatch.setattr(replay_mod, "CHUNK_TICK_ROWS", 500)
    assert pipeline.n_buckets([str(traffic / "events.jsonl")]) > 4
    out = tmp_path / "scan-chunked"
    scan([str(traffic / "events.jsonl")], out, show_progress=False)
    assert list(out.glob("*")) and _accounts(out) == _accounts(scanned)


def test_replay_chunks_combine_small_parts_split_large_ones_and_keep_accounts_whole(monkeypatch):
    import distillguard.replay as replay_mod

    monkeypatch.setattr(replay_mod, "CHUNK_TICK_ROWS", 500)
    monkeypatch.setattr(replay_mod, "MERGE_TICK_ROWS", 250)

    def part(prefix: str, accounts: int, ticks: int) -> pl.DataFrame:
        return pl.DataFrame({"account_id": [f"{prefix}{a}" for a in range(accounts) for _ in range(ticks)],
                             "tick": [t for _ in range(accounts) for t in range(ticks)]})

    parts = [part("a", 10, 10), part("b", 10, 10), pl.DataFrame(schema={"account_id": pl.String, "tick": pl.Int64}),
             part("c", 10, 10), part("d", 40, 30), part("e", 20, 20).lazy()]
    chunks = list(replay_mod._chunks(parts))
    sizes = [c.height for c in chunks]
    assert sizes[:2] == [200, 100]  # a+b combined (c would pass 250), then c alone (d is large)
    assert len(sizes) >= 5 and sum(sizes[2:-1]) == 1200  # d (1,200 rows) split by account hash
    assert sizes[-1] == 400  # e: larger than the merge size, small enough to pass whole
    seen = pl.concat([c.select("account_id").unique() for c in chunks])
    assert seen.height == seen.n_unique() == 90  # every account in exactly one chunk
    assert sum(sizes) == 200 + 100 + 1200 + 400


def test_a_textless_member_of_a_convicted_cluster_inherits_only_with_machine_like_traffic(traffic, scanned, tmp_path):
    """Logs that keep only a digest of the prompt give a member no extraction-shaped text to
    show (nor, here, an output-maximising request shape): it inherits its cluster's verdict
    when its own traffic is machine-like (mostly
    single-turn, at a volume no person types), and not when it is a light, human-scale user."""
    import hashlib

    acc = _accounts(scanned)
    labels = {r["account_id"]: r for r in csv.DictReader(open(traffic / "labels.csv", newline=""))}
    counts: dict[str, int] = {}
    for line in open(traffic / "events.jsonl", "rb"):
        try:
            a = orjson.loads(line).get("account_id")
        except orjson.JSONDecodeError:
            continue
        counts[a] = counts.get(a, 0) + 1
    flagged_clusters = {r["cluster_id"] for r in acc.values() if r["cluster_id"] and r["flagged"] == "true"}
    # A hydra member: linked through shared infrastructure (a template link needs text).
    heavy = [a for a, r in acc.items() if r["cluster_id"] in flagged_clusters and labels.get(a, {}).get("population") == "hydra"
             and r["flagged"] == "true" and counts.get(a, 0) >= 40]
    assert heavy, "the test traffic should hold a convicted cluster with a busy member"
    target = heavy[0]
    out_lines = []
    for line in open(traffic / "events.jsonl", "rb"):
        try:
            r = orjson.loads(line)
        except orjson.JSONDecodeError:
            out_lines.append(line.rstrip(b"\n"))
            continue
        if isinstance(r, dict) and r.get("account_id") == target and isinstance(r.get("prompt"), str):
            r["prompt_sha256"] = hashlib.sha256(r.pop("prompt").encode()).hexdigest()
            for k in ("system_prompt", "max_tokens", "n", "logprobs", "top_logprobs", "reasoning_effort"):
                r.pop(k, None)  # nothing of its own left to convict it but its traffic pattern
            if isinstance(r.get("output_tokens"), int):
                # Answers of ordinary length: long ones to new questions are evidence of its own (dg-009).
                r["output_tokens"] = min(r["output_tokens"], 200)
        out_lines.append(orjson.dumps(r))
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "events.jsonl").write_bytes(b"\n".join(out_lines) + b"\n")
    from distillguard.replay import ReplayConfig

    out = tmp_path / "scan"
    # (This 4-hour test log is short: the volume bar is lowered to its scale.)
    scan([str(tmp_path / "log" / "events.jsonl")], out, show_progress=False, config=ReplayConfig(propagate_textless_min_events=30))
    row = _accounts(out)[target]
    assert row["flagged"] == "true" and "cluster:" in row["reasons"], (row, acc[target], labels[target])

    strict = ReplayConfig(propagate_textless_min_events=10**9)  # no machine-like stand-in: not inherited
    out2 = tmp_path / "scan-strict"
    scan([str(tmp_path / "log" / "events.jsonl")], out2, show_progress=False, config=strict)
    assert _accounts(out2)[target]["flagged"] == "false"


def test_a_burst_is_judged_by_the_learned_layer_only_after_the_sustain_span(tmp_path):
    """Thirty output-maximising asks, too few for any rule: the learned layer alone scores them
    high. An account that sends them within five minutes and stops (like a one-off benchmark run)
    is a burst: held until it has been observed for ``sustain_minutes``, so never flagged. One
    that sends them at a person's pace (one every two minutes) is not a burst: the few-events
    tier flags it at its fifth exchange."""
    t0 = _ms("2026-11-02T00:00:00Z")
    rows = []
    for acct, step_ms in (("acct_burst", 10_000), ("acct_steady", 120_000)):
        for i in range(30):
            rows.append({
                "request_id": f"{acct}-{i}", "ts": datetime.fromtimestamp((t0 + i * step_ms) / 1000, timezone.utc).isoformat().replace("+00:00", "Z"),
                "account_id": acct, "model": "frontier-large", "n": 4, "max_tokens": 16384,
                "prompt": f"Explain in full detail, step by step, showing every intermediate step: what is {i} * {i + 7} + {3 * i}?",
                "input_tokens": 40, "output_tokens": 900, "status": 200,
            })
    rows.sort(key=lambda r: r["ts"])
    log = tmp_path / "events.jsonl"
    log.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")

    scan([str(log)], tmp_path / "scan", show_progress=False)
    acc = _accounts(tmp_path / "scan")
    assert acc["acct_burst"]["flagged"] == "false" and float(acc["acct_burst"]["score"]) >= 0.6
    steady = acc["acct_steady"]
    assert steady["flagged"] == "true" and "model:" in steady["reasons"]
    assert int(steady["events_before_flag"]) == 5 and _ms(steady["first_flagged_ts"]) < t0 + 15 * 60_000

    (tmp_path / "now.yaml").write_text("sustain_minutes: 0\n")
    scan([str(log)], tmp_path / "scan0", show_progress=False, policy_path=tmp_path / "now.yaml")
    assert _accounts(tmp_path / "scan0")["acct_burst"]["flagged"] == "true"


def test_a_light_member_of_a_convicted_cluster_inherits_even_when_its_own_score_is_higher(tmp_path):
    """Five accounts on one card send the same output-maximising wrapper over distinct items.
    The light one (five exchanges) scores as high as its cluster but has too few exchanges to be
    judged alone; it must inherit the cluster's verdict rather than be skipped because its own
    score is not below the cluster's. Two more accounts on the card do not inherit: one asked two
    questions step by step (a share of two exchanges shows nothing), one sends word problems
    without any extraction ask (homework, not a harvest wrapper)."""
    t0 = _ms("2026-11-02T00:00:00Z")
    rows, k = [], 0
    for a, count in (("acct_c1", 70), ("acct_c2", 70), ("acct_c3", 70), ("acct_c4", 70), ("acct_light", 5)):
        for i in range(count):
            k += 1
            ts = t0 + (i * 97_000 if a != "acct_light" else 3_600_000 + i * 300_000) + hash(a) % 1000
            rows.append({
                "request_id": f"{a}-{i}", "ts": datetime.fromtimestamp(ts / 1000, timezone.utc).isoformat().replace("+00:00", "Z"),
                "account_id": a, "payment_fingerprint": "pf_shared_card", "model": "frontier-large", "max_tokens": 1024,
                "prompt": f"Explain in full detail, step by step, showing every intermediate step, item {k}: "
                          f"what is {k} * {k + 7} + {3 * k}, and why does {k % 13} divide it?",
                "status": 200, "output_tokens": 900,
            })
            if a == "acct_light":  # every output-maximising lever at once: its own score tops the cluster's
                rows[-1].update(max_tokens=16384, n=4, top_logprobs=20, reasoning_effort="high")
    for i in range(2):
        ts = t0 + 2 * 3_600_000 + i * 600_000
        rows.append({"request_id": f"bystander-{i}", "ts": datetime.fromtimestamp(ts / 1000, timezone.utc).isoformat().replace("+00:00", "Z"),
                     "account_id": "acct_bystander", "payment_fingerprint": "pf_shared_card", "model": "frontier-large",
                     "prompt": f"Solve step by step: what is {17 + i} * 23?", "status": 200, "output_tokens": 200})
    for i in range(8):
        ts = t0 + 3 * 3_600_000 + i * 600_000
        rows.append({"request_id": f"student-{i}", "ts": datetime.fromtimestamp(ts / 1000, timezone.utc).isoformat().replace("+00:00", "Z"),
                     "account_id": "acct_student", "payment_fingerprint": "pf_shared_card", "model": "frontier-large",
                     "prompt": f"Question: A farmer has {17 + i} cows and buys {23 + i} more. How many cows does he have?\n"
                               f"A) {38 + i} B) {40 + 2 * i} C) {50 + i} D) {60 + i}", "status": 200, "output_tokens": 150})
    rows.sort(key=lambda r: r["ts"])
    log = tmp_path / "events.jsonl"
    log.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    scan([str(log)], tmp_path / "scan", show_progress=False)
    acc = _accounts(tmp_path / "scan")
    assert all(acc[a]["flagged"] == "true" for a in ("acct_c1", "acct_c2", "acct_c3", "acct_c4")), acc
    for a in ("acct_bystander", "acct_student"):
        assert acc[a]["cluster_id"] == acc["acct_c1"]["cluster_id"] and acc[a]["flagged"] == "false", acc[a]
    light = acc["acct_light"]
    assert light["cluster_id"] == acc["acct_c1"]["cluster_id"] != ""
    assert light["flagged"] == "true" and "cluster:" in light["reasons"], light


def test_an_agents_tool_loop_is_one_task_while_repeated_sampling_counts_every_call(tmp_path):
    """An agent resends its user's request at every tool step; the same request resent without
    tools (repeated sampling) is a harvest pattern. Both send sixty single-turn calls of three
    output-maximising requests over an hour: the loop is too little evidence to judge alone."""
    t0 = _ms("2026-11-02T00:00:00Z")
    asks = [f"Explain in full detail, step by step, every intermediate step of task {j}: refactor module {j} "
            f"and describe the whole solution." for j in range(3)]
    rows = []
    for acct, tools in (("acct_agent", 12), ("acct_sampler", None)):
        for i in range(60):
            r = {"request_id": f"{acct}-{i}", "ts": datetime.fromtimestamp((t0 + i * 60_000) / 1000, timezone.utc).isoformat().replace("+00:00", "Z"),
                 "account_id": acct, "model": "frontier-large", "max_tokens": 16384, "prompt": asks[i // 20], "status": 200}
            if tools:
                r.update(tool_count=tools, finish_reason="tool_calls")
            rows.append(r)
    rows.sort(key=lambda r: r["ts"])
    log = tmp_path / "events.jsonl"
    log.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    scan([str(log)], tmp_path / "scan", show_progress=False)
    acc = _accounts(tmp_path / "scan")
    assert acc["acct_sampler"]["flagged"] == "true", acc["acct_sampler"]
    assert acc["acct_agent"]["flagged"] == "false", acc["acct_agent"]


def test_the_learned_layer_alone_throttles_at_most_and_a_rule_is_needed_to_suspend(tmp_path):
    """1,200 sustained, output-maximising, benchmark-shaped asks (a harvest at scale: 600 novel
    asks beyond an ordinary stream): with the packaged rules (capability sweep,
    output-maximising shape) the account is suspended. With no rules at all
    the same scores come from the learned layer alone, and the policy stops at ``throttle``
    (``model_only_max``) unless a provider's policy lets the model suspend on its own."""
    t0 = _ms("2026-11-02T00:00:00Z")
    rows = [{"request_id": f"r-{i}", "ts": t0 + i * 30_000, "account_id": "acct_mo", "model": "frontier-large",
             "n": 4, "max_tokens": 16384, "logprobs": True, "top_logprobs": 10,
             "prompt": f"Question {i}: what is {i} * {i + 7} + {3 * i}?", "input_tokens": 40, "output_tokens": 900, "status": 200}
            for i in range(1200)]
    log = tmp_path / "events.jsonl"
    log.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    no_rules = tmp_path / "no-rules"
    no_rules.mkdir()

    scan([str(log)], tmp_path / "ruled", show_progress=False)
    ruled = _accounts(tmp_path / "ruled")["acct_mo"]
    assert ruled["action"] == "suspend" and "capability_sweep" in ruled["reasons"]

    scan([str(log)], tmp_path / "model", show_progress=False, rules_dir=no_rules)
    model = _accounts(tmp_path / "model")["acct_mo"]
    assert float(model["score"]) >= 0.93 and model["reasons"].startswith("model:")
    assert model["action"] == "throttle" and model["flagged"] == "true"
    assert model["first_flagged_ts"] == ruled["first_flagged_ts"]  # the cap changes the action, not when it flags

    (tmp_path / "policy.yaml").write_text("model_only_max: suspend\n")
    scan([str(log)], tmp_path / "model-suspends", show_progress=False, rules_dir=no_rules, policy_path=tmp_path / "policy.yaml")
    assert _accounts(tmp_path / "model-suspends")["acct_mo"]["action"] == "suspend"


def test_the_floor_benchmark_times_the_rows_the_scan_accepts_and_adds_up(traffic, tmp_path):
    """``bench/bench_scan_floor.py`` parses exactly the rows a scan accepts (bad lines are
    quarantined there too) and its floor is its parts added up as documented."""
    lines = open(traffic / "events.jsonl", "rb").read().splitlines()[:2000]
    log = tmp_path / "dirty.jsonl"
    log.write_bytes(b"\n".join(lines + [b"{not json", b'{"request_id": 5}'] + lines[:20]) + b"\n")
    s = scan([str(log)], tmp_path / "scan", show_progress=False)
    out = tmp_path / "floor.json"
    bench = Path(__file__).resolve().parents[1] / "bench" / "bench_scan_floor.py"
    subprocess.run([sys.executable, str(bench), "--log", str(log), "--runs", "1", "--cores", "2",
                    "--summary", str(tmp_path / "scan" / "summary.json"), "--out", str(out)],
                   check=True, capture_output=True)
    f = json.loads(out.read_text())
    assert f["rows"] == s["records_read"] - s["quarantined"] == len(lines) + 20
    cpu = f["cpu_s_median"]
    assert set(cpu) == {"bare", "arrow_json", "strict_parse", "exchange_features"} and all(v >= 0 for v in cpu.values())
    after = sum(v for k, v in s["stage_seconds"].items() if k != "reading + exchange signals")
    assert f["after_reading_s"] == pytest.approx(after, abs=0.02)
    assert f["floor_s"] == pytest.approx((cpu["strict_parse"] + cpu["exchange_features"]) / 2 + after, abs=0.03)


def test_a_steady_account_is_judged_the_same_on_a_day_and_on_five_days_of_log(tmp_path):
    """A big, steady, single-turn stream (four prompts in five are word problems: exam-shaped,
    so the learned layer's volume feature counts) must not look riskier because the log is
    longer: the volume feature counts the trailing day, so the score at the end of a five-day
    log equals the score at the end of its first day."""
    t0 = _ms("2026-11-02T00:00:00Z")

    def rows(days: int) -> list[dict]:
        return [{"request_id": f"r-{i}", "ts": t0 + i * 120_000, "account_id": "acct_steady", "model": "frontier-large",
                 "max_tokens": 1024, "input_tokens": 40, "output_tokens": 300, "status": 200,
                 "prompt": (f"Solve: what is the value of {i} * 7 + {i % 13}?" if i % 5 != 4
                            else f"Suggest a friendly name for shop number {i} on our high street.")}
                for i in range(720 * days)]

    scores = {}
    for days in (1, 5):
        log = tmp_path / f"d{days}.jsonl"
        log.write_bytes(b"\n".join(orjson.dumps(r) for r in rows(days)) + b"\n")
        scan([str(log)], tmp_path / f"scan{days}", show_progress=False)
        acc = _accounts(tmp_path / f"scan{days}")["acct_steady"]
        assert acc["flagged"] == "false"
        scores[days] = float(acc["score"])
    assert scores[1] > 0.001  # (the volume feature does contribute)
    # (More exchanges are more evidence: the score's shrinkage towards the prior, n / (n + 3) of
    # the model's log-odds, differs by a few thousandths between 720 and 3,600 exchanges.)
    assert scores[5] == pytest.approx(scores[1], abs=5e-3)


def test_a_log_without_turns_judges_multi_turn_traffic_by_its_carried_context(tmp_path):
    """A gateway log may record no ``turn``. Treating every request as single-turn would make a
    router's chat sessions look like a script's independent asks; a request whose input tokens
    carry earlier turns is counted as a continuation instead, so the account scores as it does
    in a log that records turns."""
    t0 = _ms("2026-11-02T00:00:00Z")
    rows = []
    for s in range(400):  # sessions of four turns, history carried in the input tokens
        for t in range(4):
            i = 4 * s + t
            rows.append({"request_id": f"r-{i}", "ts": t0 + i * 20_000, "account_id": "acct_router", "model": "frontier-large",
                         "prompt": (f"Solve: what is the value of {s} * 7?" if t == 0 else f"Why is step {t} of case {s} right? Explain."),
                         "conversation_id": f"c-{s}", "turn": t + 1, "input_tokens": 20 + 400 * t, "output_tokens": 350, "status": 200})
    scores = {}
    for name, keep in (("turns", True), ("no-turns", False)):
        log = tmp_path / f"{name}.jsonl"
        log.write_bytes(b"\n".join(orjson.dumps(r if keep else {k: v for k, v in r.items() if k not in ("turn", "conversation_id")})
                                   for r in rows) + b"\n")
        scan([str(log)], tmp_path / name, show_progress=False)
        scores[name] = float(_accounts(tmp_path / name)["acct_router"]["score"])
    assert scores["no-turns"] == pytest.approx(scores["turns"], abs=1e-4)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_a_tutoring_product_and_an_evaluation_run_are_at_most_monitored_a_harvest_of_the_same_shape_is_not(tmp_path):
    """Severity follows what an account obtained and what its traffic is for (issue 22).

    A tutoring company's back-end (account of two years, a fixed template asking for every
    step, its students' problems, a quarter of them followed by a question about the answer)
    and three colleagues of one university running one pass@k evaluation (n = 8, huge
    ``max_tokens``, high effort, a parseable-answer format, 300 items each within half an hour)
    are at most monitored. The same asks from a new account with no follow-ups, and the same
    request shapes over 1,500 new items without an answer format, are harvests and flagged."""
    t0 = _ms("2026-11-02T00:00:00Z")
    rnd = random.Random(5)
    rows = []
    pool = [f"A train leaves at {h}:00 and travels {d} km at {v} km/h. When does it arrive, and how far is it after {m} minutes?"
            for h, d, v, m in zip(range(1, 200), range(100, 400), range(40, 240), range(10, 210))]

    def tutor(acct: str, created: str | None, followups: float) -> None:
        ts = t0
        for i in range(600):
            ts += rnd.randint(30_000, 110_000)
            base = {"account_id": acct, "model": "frontier-large", "max_tokens": 2048, "status": 200, "output_tokens": 600,
                    "system_prompt": "You are a patient math tutor for students.", "org_id": f"org_{acct}"}
            if created:
                base["account_created_at"] = created
            rows.append(base | {"request_id": f"{acct}-{i}", "ts": _iso(ts), "conversation_id": f"{acct}-c{i}", "turn": 1,
                                "prompt": "Explain each step of the solution in detail so that a student can follow it. "
                                          f"Show all your work.\n\nProblem: {rnd.choice(pool)}"})
            if rnd.random() < followups:
                rows.append(base | {"request_id": f"{acct}-{i}-f", "ts": _iso(ts + 20_000), "conversation_id": f"{acct}-c{i}", "turn": 2,
                                    "prompt": f"I don't get step {rnd.randint(1, 5)}, why is it {rnd.randint(2, 90)}?"})

    tutor("acct_tutor", "2024-11-01T00:00:00Z", 0.25)
    tutor("acct_lookalike", "2026-11-01T00:00:00Z", 0.0)

    def sampler(acct: str, start: int, items: list[str], fmt: bool, dom: str, ip: str) -> None:
        for i, q in enumerate(items):
            prompt = (f"Solve the following problem. Think step by step.\n\n{q}\n\nPut your final answer within \\boxed{{}}." if fmt
                      else f"Explain in full detail every step of your reasoning, and do not skip anything:\n\n{q}")
            rows.append({"request_id": f"{acct}-{i}", "ts": _iso(start + i * 5_000), "account_id": acct, "model": "frontier-large",
                         "email_domain": dom, "asn": 553, "client_ip": ip, "user_agent": "openai-python/1.51.0",
                         "n": 8, "temperature": 0.8, "max_tokens": 32768, "reasoning_effort": "high", "prompt": prompt,
                         "status": 200, "output_tokens": 9000})

    bench = [f"Let $x_{{{k}}}$ satisfy ${k}x^2 + {k + 3}x - {2 * k + 1} = 0$. Find the sum of all real roots times {k % 7 + 2}."
             for k in range(1, 1501)]
    for c in range(3):
        sampler(f"acct_colleague{c}", t0 + (2 + c) * 3_600_000, bench[:300], True, "uni-example.de", f"129.206.7.{30 + c}")
    sampler("acct_harvester", t0 + 2 * 3_600_000, bench, False, "harvest.example", "203.0.113.9")
    rows.sort(key=lambda r: r["ts"])
    log = tmp_path / "events.jsonl"
    log.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    scan([str(log)], tmp_path / "scan", show_progress=False)
    acc = _accounts(tmp_path / "scan")
    for a in ("acct_tutor", "acct_colleague0", "acct_colleague1", "acct_colleague2"):
        assert acc[a]["action"] in ("none", "monitor"), acc[a]
    assert acc["acct_lookalike"]["flagged"] == "true", acc["acct_lookalike"]
    assert acc["acct_harvester"]["flagged"] == "true", acc["acct_harvester"]
