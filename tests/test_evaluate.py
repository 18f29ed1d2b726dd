"""Tests of ``distillguard.evaluate``: agreement with shared/tools/score.py, escaping, delays."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from distillguard.evaluate import compute, evaluate, load, render_table
from distillguard.evaluate.load import dedupe_events, parse_ts_us
from distillguard.paths import shared_dir

T0 = datetime(2026, 11, 1, 9, 30, tzinfo=timezone.utc)
PAYLOAD = "evil<script>alert(1)</script>"
MIN = 60_000  # ms


def ms(minutes: float) -> int:
    return int(T0.timestamp() * 1000 + minutes * MIN)


def iso(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# account, label, population, campaign, attack_start (minutes or None), first event, last event
# (minutes), score, first flag (minutes or None), in report
ACCOUNTS = [
    ("b1", "benign", "normal", "", None, 0, 300, 0.10, None, True),
    ("b2", "benign", "normal", "", None, 10, 200, 0.50, None, True),   # tie with attackers
    ("b3", "benign", "normal", "", None, 20, 100, 0.20, 50, True),     # false positive
    ("b4", "benign", "normal", "", None, 0, 50, 0.05, None, True),
    ("h1", "benign", "eval_harness", "", None, 0, 400, 0.50, 30, True),  # hard negative, flagged
    ("h2", "benign", "eval_harness", "", None, 5, 400, 0.70, None, True),
    ("r1", "benign", "researcher", "", None, 0, 100, 0.30, None, True),
    (PAYLOAD, "benign", "pop<script>x</script>", "", None, 0, 60, 0.0, None, False),
    ("a1", "attack", "distiller", "c1", 0, 0, 300, 0.90, 10, True),
    ("a2", "attack", "distiller", "c1", 5, 5, 300, 0.50, 35, True),    # tie with b2/h1
    ("a3", "attack", "distiller", "c1", 0, 0, 300, 0.50, None, True),  # never flagged
    ("a4", "attack", "distiller", "c1", 0, 0, 300, 0.0, None, False),  # missing from report
    ("a5", "attack", "distiller", "c2", 60, 60, 400, 0.80, 180, True),
    ("a6", "attack", "distiller", "c2", 0, 0, 100, 0.95, 20, True),
    ("t1", "attack", "turncoat", "c3", 60, 0, 300, 0.60, 90, True),    # benign phase first
    ("t2", "attack", "turncoat", "c3", 120, 0, 300, 0.70, 100, True),  # flagged before turning
]
# Expected delays (s) of flagged attack accounts: a1 600, a2 1800, a5 7200, a6 1200, t1 1800,
# t2 -1200 -> 0.  Sorted: 0, 600, 1200, 1800, 1800, 7200.
TTD_MEDIAN_S = 1500.0
TTD_P90_S = 4500.0  # numpy linear: 1800 + 0.5 * (7200 - 1800)


def write_fixture(d: Path, *, attack_start_for_all: bool = True) -> tuple[Path, Path, Path]:
    """Labels, a scan directory and a JSONL log (every 5 minutes; ts alternately ms / RFC 3339)."""
    d.mkdir(parents=True, exist_ok=True)
    labels, events = d / "labels.csv", d / "events.jsonl"
    scan = d / "scan"
    scan.mkdir()
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["account_id", "label", "population", "campaign", "attack_start_ts"])
        for i, (a, lab, pop, camp, start, *_rest) in enumerate(ACCOUNTS):
            if start is None or (not attack_start_for_all and pop == "distiller"):
                s = ""
            else:  # both encodings score.py accepts
                s = iso(start) if i % 2 else str(ms(start))
            w.writerow([a, lab, pop, camp, s])
    with open(scan / "accounts.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["account_id", "score", "flagged", "action", "cluster_id", "first_flagged_ts",
                    "events", "events_before_flag", "reasons"])
        for a, _lab, _pop, _c, _s, _f0, _f1, score, flag, in_rep in ACCOUNTS:
            if in_rep:
                w.writerow([a, score, "true" if flag is not None else "false",
                            "throttle" if flag is not None else "none", "",
                            iso(flag) if flag is not None else "", 0, 0, ""])
        w.writerow(["u1", 0.3, "false", "none", "", "", 1, 1, ""])  # unlabelled
    n = 0
    with open(events, "w") as f:
        for a, _lab, _pop, _c, _s, first, last, _score, _flag, _in in ACCOUNTS:
            for m in range(first, last + 1, 5):
                n += 1
                ts = ms(m) if n % 2 else iso(m)
                f.write(json.dumps({"request_id": f"r{n}", "ts": ts, "account_id": a}) + "\n")
    (scan / "summary.json").write_text(json.dumps({"records": n, "valid": n, "accounts": 16}))
    return labels, scan, events


def _local_events(paths):
    """Minimal JSONL reader used only while distillguard.ingest.read_events is unavailable."""
    rows = [json.loads(line) for p in paths for line in open(p, encoding="utf-8")]
    df = pl.DataFrame({
        "request_id": [r["request_id"] for r in rows],
        "account_id": [r["account_id"] for r in rows],
        "ts_raw": [str(r["ts"]) for r in rows],
    })
    ts, _ = parse_ts_us(df["ts_raw"])
    return dedupe_events(df.with_columns((ts // 1000).alias("ts_ms")).drop("ts_raw"))


@pytest.fixture(autouse=True)
def _events_reader(monkeypatch):
    try:
        from distillguard.ingest import IngestStats, Quarantine, read_events  # noqa: F401
    except ImportError:
        monkeypatch.setattr(load, "load_events", _local_events)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """The standard fixture evaluated once (chart rendering dominates the test time)."""
    d = tmp_path_factory.mktemp("scanned")
    labels, scan, events = write_fixture(d)
    mp = pytest.MonkeyPatch()
    try:
        from distillguard.ingest import IngestStats, Quarantine, read_events  # noqa: F401
    except ImportError:
        mp.setattr(load, "load_events", _local_events)
    try:
        res = evaluate(labels, scan, events=events, out_dir=d / "ev")
    finally:
        mp.undo()
    return labels, scan, events, res


def _score_py() -> Path:
    s = shared_dir()
    if s is None or not (s / "tools" / "score.py").exists():
        pytest.skip("shared/tools/score.py not available")
    return s / "tools" / "score.py"


def test_agrees_with_score_py(scanned):
    labels, scan, events, res = scanned
    out = subprocess.run([sys.executable, str(_score_py()), str(labels), str(scan / "accounts.csv"),
                          str(events)], capture_output=True, text=True, check=True).stdout
    result = dict(kv.split("=") for kv in out.strip().splitlines()[-1].split()[1:])
    o = res["overall"]
    assert f"{o['recall']:.3f}" == result["recall"]
    assert f"{o['fpr']:.4f}" == result["fpr"]
    assert f"{o['precision']:.3f}" == result["precision"]
    assert f"{o['auroc']:.3f}" == result["auroc"]
    assert f"{o['harvest_leakage']:.3f}" == result["leak"]
    # score.py's line, then the headline count it does not print
    assert res["result_line"] == (out.strip().splitlines()[-1].removeprefix("RESULT ")
                                  + f" benign_suspended={o['benign_suspended']}")
    pops = {}
    for line in out.splitlines():
        m = re.match(r"^(\S.*?)\s+accounts=\s*(\d+) flagged=\s*(\d+) rate=([\d.]+)$", line)
        if m:
            pops[m[1]] = (int(m[2]), int(m[3]), m[4])
    ours = {p["population"]: (p["accounts"], p["flagged"], f"{p['rate']:.3f}")
            for p in res["populations"]}
    assert ours == pops
    assert list(ours) == list(pops)  # same order (sorted keys)
    m = re.search(r"attack-phase exchanges=(\d+) served before first flag=(\d+)", out)
    assert (res["leakage"]["attack_phase_exchanges"], res["leakage"]["served_before_flag"]) == \
        (int(m[1]), int(m[2]))
    assert f"accounts missing from the report: {res['missing_from_report']['count']}" in out


def test_extra_metrics(scanned):
    _labels, scan, _events, res = scanned
    o = res["overall"]
    assert (o["tp"], o["fn"], o["fp"], o["tn"]) == (6, 2, 2, 6)
    assert res["missing_from_report"] == {"count": 2, "attack": 1, "benign": 1,
                                          "examples": [PAYLOAD, "a4"]}
    assert res["unlabelled_in_report"] == 1
    benign = {p["population"]: (p["accounts"], p["flagged"]) for p in res["benign_populations"]}
    assert benign == {"eval_harness": (2, 1), "normal": (4, 1), "researcher": (1, 0),
                      "pop<script>x</script>": (1, 0)}
    camps = {c["campaign"]: c for c in res["campaigns"]}
    # c1: 2 of 4 flagged is not more than half; c2 2/2; c3 2/2
    assert {k: c["detected"] for k, c in camps.items()} == {"c1": False, "c2": True, "c3": True}
    assert o["campaign_recall"] == pytest.approx(2 / 3)
    assert camps["c1"]["first_flagged_ts"] == iso(10)
    assert camps["c3"]["first_flagged_ts"] == iso(90)
    t = res["time_to_detect"]
    assert t["median_s"] == pytest.approx(TTD_MEDIAN_S)
    assert t["p90_s"] == pytest.approx(TTD_P90_S)
    assert (t["flagged"], t["never_flagged"], t["flagged_before_attack_phase"]) == (6, 2, 1)
    assert res["scan_summary"]["accounts"] == 16
    saved = json.loads((scan.parent / "ev" / "evaluation.json").read_text())
    assert saved == res


def test_html_escapes_attacker_text(scanned):
    scan = scanned[1]
    page = (scan.parent / "ev" / "report.html").read_text(encoding="utf-8")
    assert "evil&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "pop&lt;script&gt;x&lt;/script&gt;" in page
    assert "<script" not in page.lower()
    # self-contained: inline SVG charts, nothing fetched
    assert page.count("<svg") == 5
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=", page, re.I)
    assert "default-src 'none'" in page


def _frames(rows, events):
    """In-memory labels/report/events; rows are (account, label, population, campaign,
    attack_start_ts, first_flagged_ts or None), every score 0.5 (a full tie)."""
    labels = pl.DataFrame([r[:5] for r in rows], orient="row",
                          schema=["account_id", "label", "population", "campaign", "attack_start_ts"])
    report = pl.DataFrame([(r[0], "0.5", "true" if r[5] else "false", r[5] or "") for r in rows],
                          schema=["account_id", "score", "flagged", "first_flagged_ts"], orient="row")
    ev = pl.DataFrame(events, schema=["account_id", "ts_ms"], orient="row")
    return labels, report, ev


def test_time_to_detect_and_leakage_hand_computed():
    # x: no attack_start_ts -> the phase starts at its first exchange (minute 10)
    # y: turncoat turning at minute 30; z: never flagged; w: flagged, no exchange, no start
    rows = [
        ("x", "attack", "p", "c", "", iso(25)),
        ("y", "attack", "p", "c", str(ms(30)), iso(70)),
        ("z", "attack", "p", "d", "", None),
        ("w", "attack", "p", "d", "", iso(5)),
        ("n", "benign", "q", "", "", None),
    ]
    events = [("x", ms(m)) for m in (10, 20, 25, 40)] \
        + [("y", ms(m)) for m in (0, 10, 30, 70, 80)] \
        + [("z", ms(m)) for m in (0, 1)] + [("n", ms(3))]
    labels, report, ev = _frames(rows, events)
    res = compute(labels, report, ev).result
    t = res["time_to_detect"]
    # x: 25 - 10 = 15 min; y: 70 - 30 = 40 min; w: unmeasured
    assert (t["measured"], t["unmeasured"], t["never_flagged"]) == (2, 1, 1)
    assert t["median_s"] == pytest.approx(27.5 * 60)
    assert t["median_min"] == pytest.approx(27.5)
    # attack phase: x all 4 (10, 20, 25 <= flag), y 30, 70, 80 (30, 70 <= flag; ts == flag counts
    # as before), z both (never flagged) -> 9 exchanges, 7 before the flag
    assert res["leakage"]["attack_phase_exchanges"] == 9
    assert res["leakage"]["served_before_flag"] == 7
    assert res["overall"]["harvest_leakage"] == pytest.approx(7 / 9)
    assert res["overall"]["auroc"] == pytest.approx(0.5)  # all scores tie


def test_without_events_leakage_and_delays_are_null(tmp_path):
    labels, scan, _ = write_fixture(tmp_path)
    res = evaluate(labels, scan)
    assert res["leakage"] is None and res["time_to_detect"] is None
    assert res["overall"]["harvest_leakage"] is None
    assert res["result_line"].endswith("leak=nan benign_suspended=0")
    assert "no inputs" in res["inputs"]["events_note"]
    assert all(c["median_ttd_s"] is None for c in res["campaigns"])
    json.loads((scan / "eval" / "evaluation.json").read_text())  # strict JSON, no NaN


def test_inputs_taken_from_summary(tmp_path, scanned):
    labels, scan, events = write_fixture(tmp_path)
    summary = json.loads((scan / "summary.json").read_text())
    summary["inputs"] = ["events.jsonl"]  # relative to the scan directory's parent
    (scan / "summary.json").write_text(json.dumps(summary))
    res = evaluate(labels, scan, out_dir=tmp_path / "o")
    assert res["inputs"]["events"] == [str(events)]
    assert res["leakage"] == scanned[3]["leakage"]


def test_missing_explicit_events_raises(tmp_path):
    labels, scan, _ = write_fixture(tmp_path)
    with pytest.raises(FileNotFoundError):
        evaluate(labels, scan, events=tmp_path / "nope.jsonl")


def test_dedupe_keeps_first():
    df = pl.DataFrame({"request_id": ["r1", "r2", "r1", None, None],
                       "account_id": ["a", "a", "b", "c", "c"], "ts_ms": [1, 2, 3, 4, 4]})
    out, dropped = dedupe_events(df)
    assert dropped == 1
    assert sorted(out.rows()) == [("a", 1), ("a", 2), ("c", 4), ("c", 4)]


def test_parse_ts():
    s, bad = parse_ts_us(pl.Series(["", "1793525400123", "2026-11-01T09:30:00.123Z",
                                    "2026-11-01T11:30:00.123+02:00", "2026-11-01 09:30:00", "junk"]))
    assert s.to_list() == [None, 1793525400123000, 1793525400123000, 1793525400123000,
                           1793525400000000, None]
    assert bad == 1


def test_render_table_does_not_interpret_markup(scanned):
    from rich.console import Console

    res = json.loads(json.dumps(scanned[3]))  # a copy: other tests share the result
    res["populations"][0]["population"] = "[bold red]x[/]"
    console = Console(record=True, width=160)
    console.print(render_table(res))
    text = console.export_text()
    assert "[bold red]x[/]" in text
    assert "0.750" in text and "recall" in text  # recall 6/8


def test_benign_accounts_per_action_and_suspended_headline():
    # strongest action per account; "none" for an account missing from the report
    rows = [("b1", "benign", "tutor", "none"), ("b2", "benign", "tutor", "monitor"),
            ("b3", "benign", "tutor", "challenge"), ("b4", "benign", "eval", "suspend"),
            ("b5", "benign", "eval", "throttle"), ("b6", "benign", "eval", "suspend"),
            ("a1", "attack", "sweep", "suspend"), ("a2", "attack", "sweep", "monitor"),
            ("b7", "benign", "eval", None)]
    labels = pl.DataFrame([(a, lab, pop, "", "") for a, lab, pop, _ in rows], orient="row",
                          schema=["account_id", "label", "population", "campaign", "attack_start_ts"])
    flagged = {"challenge", "throttle", "suspend"}
    report = pl.DataFrame([(a, "0.5", "true" if act in flagged else "false", "", act.upper())
                           for a, _l, _p, act in rows if act is not None], orient="row",
                          schema=["account_id", "score", "flagged", "first_flagged_ts", "action"])
    res = compute(labels, report).result
    o = res["overall"]
    assert o["benign_suspended"] == 2
    assert o["benign_by_action"] == {"monitored": 1, "challenged": 1, "throttled": 1, "suspended": 2}
    assert res["actions"]["benign"] == {"none": 2, "monitor": 1, "challenge": 1, "throttle": 1,
                                        "suspend": 2, "unknown": 0}
    assert res["actions"]["attack"]["suspend"] == 1 and res["actions"]["attack"]["monitor"] == 1
    per_pop = {p["population"]: (p["flagged"], p["monitored"], p["challenged"], p["throttled"],
                                 p["suspended"]) for p in res["benign_populations"]}
    assert per_pop == {"eval": (3, 0, 0, 1, 2), "tutor": (1, 1, 1, 0, 0)}
    assert res["result_line"].endswith(" benign_suspended=2")


def test_brier_score_and_reliability_bins_hand_computed():
    # scores and labels: (0.9, 1) (0.8, 1) (0.2, 0) (0.1, 0) (0.85, 0) (0.05, 1)
    rows = [("a", "attack", 0.9), ("b", "attack", 0.8), ("c", "benign", 0.2),
            ("d", "benign", 0.1), ("e", "benign", 0.85), ("f", "attack", 0.05)]
    labels = pl.DataFrame([(a, lab, "p", "", "") for a, lab, _ in rows], orient="row",
                          schema=["account_id", "label", "population", "campaign", "attack_start_ts"])
    report = pl.DataFrame([(a, str(s), "false", "") for a, _l, s in rows], orient="row",
                          schema=["account_id", "score", "flagged", "first_flagged_ts"])
    res = compute(labels, report).result
    brier = (0.1**2 + 0.2**2 + 0.2**2 + 0.1**2 + 0.85**2 + 0.95**2) / 6
    assert res["overall"]["brier"] == pytest.approx(brier)
    c = res["calibration"]
    assert c["brier"] == pytest.approx(brier) and c["clipped"] == 0
    bins = {(round(b["lo"], 1), round(b["hi"], 1)): (b["accounts"], b["attack"]) for b in c["bins"]}
    # 0.05 -> [0.0, 0.1); 0.1 -> [0.1, 0.2); 0.2 -> [0.2, 0.3); 0.8, 0.85 -> [0.8, 0.9); 0.9 -> [0.9, 1.0]
    assert bins == {(0.0, 0.1): (1, 1), (0.1, 0.2): (1, 0), (0.2, 0.3): (1, 0),
                    (0.8, 0.9): (2, 1), (0.9, 1.0): (1, 1)}
    top = next(b for b in c["bins"] if round(b["lo"], 1) == 0.8)
    assert top["mean_score"] == pytest.approx(0.825) and top["attack_rate"] == pytest.approx(0.5)
    ece = (abs(0.05 - 1) + abs(0.1 - 0) + abs(0.2 - 0) + 2 * abs(0.825 - 0.5) + abs(0.9 - 1)) / 6
    assert c["ece"] == pytest.approx(ece)


def test_scores_outside_the_unit_interval_are_clipped_and_counted():
    labels = pl.DataFrame([("a", "attack", "p", "", ""), ("b", "benign", "p", "", "")], orient="row",
                          schema=["account_id", "label", "population", "campaign", "attack_start_ts"])
    report = pl.DataFrame([("a", "7", "true", ""), ("b", "-1", "false", "")], orient="row",
                          schema=["account_id", "score", "flagged", "first_flagged_ts"])
    c = compute(labels, report).result["calibration"]
    assert c["clipped"] == 2 and c["brier"] == pytest.approx(0.0)


def test_render_table_fits_80_columns_with_the_action_and_calibration_rows(scanned):
    from rich.console import Console

    res = json.loads(json.dumps(scanned[3]))  # a copy: other tests share the result
    res["populations"][0]["population"] = "target_only_sweep/c35_target"
    res["time_to_detect"]["p90_s"] = 999.9 * 60
    console = Console(record=True, width=200)
    console.print(render_table(res))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    text = "\n".join(lines)
    assert "benign suspended" in text and "Brier score" in text
