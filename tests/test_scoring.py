"""Policy, learned layer and cluster linking."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from distillguard.features.account import FEATURES
from distillguard.features.linking import components_at, link_pairs
from distillguard.scoring.model import SIGNS, AccountModel, fit
from distillguard.scoring.policy import Policy


def test_policy_needs_evidence_for_strong_actions_and_caps_allow_list():
    p = Policy()
    score = np.array([0.1, 0.5, 0.7, 0.95, 0.95, 0.95])
    events = np.array([500, 500, 500, 30, 100, 5000])
    assert p.levels(score, events).tolist() == [0, 1, 2, 2, 3, 4]
    allowed = np.array([False, False, False, False, False, True])
    assert p.levels(score, events, allowed).tolist()[-1] == 1  # monitor, never enforced


def test_policy_acts_on_its_own_only_after_the_account_was_observed_long_enough():
    p = Policy(sustain_minutes=15)
    minute = 60_000
    first_seen = np.zeros(5, dtype=np.int64)
    tick = np.array([1, 5, 14, 15, 40]) * minute
    lvl = np.array([3, 2, 4, 2, 4], dtype=np.int8)
    # Held at monitor for the first 15 minutes of the account's traffic, then as decided.
    assert p.sustained(tick, first_seen, lvl).tolist() == [1, 1, 1, 2, 4]
    # Low levels are never raised, and the hold can be switched off.
    assert p.sustained(tick, first_seen, np.zeros(5, dtype=np.int8)).tolist() == [0] * 5
    assert Policy(sustain_minutes=0).sustained(tick, first_seen, lvl).tolist() == lvl.tolist()
    # Only bursts are held: exchanges at a person's pace (at most two a minute) are not; the
    # same handful within a minute is a script's first calls, and is.
    events = np.array([2, 50, 9, 10, 400])
    assert p.sustained(tick, first_seen, lvl, events).tolist() == [3, 1, 4, 2, 4]
    assert p.sustained(tick, first_seen, lvl, np.array([5, 5, 29, 10, 400])).tolist() == [1, 2, 1, 2, 4]


def test_policy_judges_a_handful_of_exchanges_only_when_near_certain_and_all_extraction():
    p = Policy()
    lvl = p.levels(np.array([0.99, 0.99, 0.99, 0.85, 0.99, 0.99]), np.full(6, 7))
    events = np.array([7, 7, 3, 7, 12, 7])
    asks = np.array([1.0, 0.5, 1.0, 1.0, 0.0, 0.9])  # share of prompts asking for reasoning / maximal output / grading
    score = np.array([0.99, 0.99, 0.99, 0.85, 0.99, 0.99])
    # near-certain + all extraction -> challenge at most; mixed traffic, too few events or a
    # merely high score -> monitor; ten events or more -> the ordinary thresholds.
    assert p.evidence_gate(lvl, score, events, asks).tolist() == [2, 1, 1, 1, 2, 2]
    assert Policy(few_events_min=10).evidence_gate(lvl, score, events, asks).tolist() == [1, 1, 1, 1, 2, 1]


def test_policy_from_yaml(tmp_path):
    f = tmp_path / "policy.yaml"
    f.write_text("thresholds: {challenge: 0.7}\nallow: {accounts: [acct_1], orgs: [org_9]}\nmin_events_suspend: 10\nsustain_minutes: 30\n"
                 "few_events_min: 6\nfew_events_score: 0.99\nburst_per_minute: 3\n")
    p = Policy.from_yaml(f)
    assert p.challenge == 0.7 and p.allow_accounts == {"acct_1"} and p.allow_orgs == {"org_9"} and p.min_events_suspend == 10
    assert p.sustain_minutes == 30 and p.few_events_min == 6 and p.few_events_score == 0.99 and p.few_events_extract == 0.8
    assert p.burst_per_minute == 3 and p.model_only_max == "throttle"
    f.write_text("model_only_max: challenge\n")
    assert Policy.from_yaml(f).model_only_max == "challenge"


def test_policy_caps_the_learned_layer_alone_below_suspend():
    lvl = np.array([0, 1, 2, 3, 4], dtype=np.int8)
    assert Policy().model_only(lvl).tolist() == [0, 1, 2, 3, 3]
    assert Policy(model_only_max="suspend").model_only(lvl).tolist() == lvl.tolist()
    assert Policy(model_only_max="monitor").model_only(lvl).tolist() == [0, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="model_only_max"):
        Policy(model_only_max="ban")


def test_fit_respects_sign_constraints_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((2000, len(FEATURES)))
    i_reason, i_tools = FEATURES.index("reason_share"), FEATURES.index("tools_share")
    # A data set in which tools *raise* risk: the model must refuse that direction (zero it).
    y = ((X[:, i_reason] + X[:, i_tools]) > 1.0).astype(int)
    m = fit(X, y)
    assert m.coef[i_reason] > 0
    assert m.coef[i_tools] == 0.0
    for f, c in zip(FEATURES, m.coef):
        if SIGNS[f] is None:
            assert c == 0.0
    m.to_json(tmp_path / "m.json")
    m2 = AccountModel.from_json(tmp_path / "m.json")
    df = pl.DataFrame({f"x_{f}": X[:50, k] for k, f in enumerate(FEATURES)})
    assert np.allclose(m.predict_proba(df), m2.predict_proba(df))


def test_packaged_model_is_calibrated_in_direction():
    m = AccountModel.from_json()
    base = {f"x_{f}": [0.0] for f in FEATURES}
    chat = pl.DataFrame(base | {"x_novelty": [0.8], "x_single_share": [0.5]})
    harvest = pl.DataFrame(base | {"x_novelty": [1.0], "x_single_share": [1.0], "x_reason_share": [0.9], "x_exam_share": [0.9],
                                   "x_extract_share": [1.0], "x_maxout_share": [0.5], "x_log_extract": [7.0]})
    assert m.predict_proba(harvest)[0] > 0.9 > 0.1 > m.predict_proba(chat)[0]


def test_predict_proba_equals_the_sklearn_estimator():
    # The scan scores with numpy (no scikit-learn import); it must be the estimator's arithmetic.
    # Bit-identical up to scikit-learn 1.8; 1.9 evaluates the logistic differently (1 ulp on ~1 %
    # of rows), so the check allows a few ulps. Scan and service share this function either way.
    m = AccountModel.from_json()
    rng = np.random.default_rng(3)
    X = np.vstack([rng.random((4000, len(FEATURES))), rng.normal(0, 8, (4000, len(FEATURES)))])
    df = pl.DataFrame({f"x_{f}": X[:, k] for k, f in enumerate(FEATURES)})
    expected = m.estimator().predict_proba(m.matrix(df))[:, 1]
    np.testing.assert_allclose(m.predict_proba(df), expected, rtol=1e-14, atol=1e-300)


def test_linking_respects_time_and_caps_common_keys():
    rows = pl.DataFrame({
        "account_id": ["a", "b", "c", "d"] + [f"u{i}" for i in range(300)],
        "key": ["pf:1", "pf:1", "net:x|ua", "net:x|ua"] + ["dom:isp.example|1"] * 300,
        "first_ts": [0, 10, 0, 100] + [0] * 300,
    })
    pairs = link_pairs(rows)
    idx = {a: i for i, a in enumerate(sorted(set(rows["account_id"])))}
    labels, linked = components_at(pairs, 50, idx)
    assert labels[idx["a"]] == labels[idx["b"]] and linked[idx["a"]]
    assert not linked[idx["c"]]  # d showed the key only later: no link yet at t=50
    labels, linked = components_at(pairs, 100, idx)
    assert labels[idx["c"]] == labels[idx["d"]] and labels[idx["c"]] != labels[idx["a"]]
    assert not linked[idx["u0"]]  # 300 accounts on one key: too common to mean coordination


def test_volume_is_counted_over_a_trailing_day_so_a_longer_log_does_not_raise_risk():
    """``log_extract`` is the learned layer's one count: it reads the trailing day's sums
    (``d_``), so an account with a steady behaviour has the same value on day 1 and on day 5,
    while the running sums keep growing; a log shorter than a day counts everything. It counts
    novel extraction-shaped prompts beyond half of the stream only: a router's users' homework
    is ordinary, whatever the router's size."""
    from distillguard.features.account import SUM_COLUMNS, derive, snapshots, tick_aggregates

    hour = 3_600_000
    ticks = tick_aggregates(pl.DataFrame({
        "account_id": ["a"] * 120, "tick": [(k + 1) * hour for k in range(120)],  # 5 days, one tick an hour
        **{c: [0.0] * 120 for c in SUM_COLUMNS},
        "first_ts": [hour] * 120, "last_ts": [(k + 1) * hour for k in range(120)], "created": [0] * 120,
    }).with_columns(pl.lit(30.0).alias("n"), pl.lit(30.0).alias("single"), pl.lit(25.0).alias("extract"),
                    pl.lit(30.0).alias("new_exact"), pl.lit(30.0).alias("ident"), pl.lit(30.0).alias("text")))
    snaps = derive(snapshots(ticks, hour))
    day = snaps.filter(pl.col("tick") == 24 * hour).row(0, named=True)
    day5 = snaps.filter(pl.col("tick") == 120 * hour).row(0, named=True)
    assert day5["extract"] == 5 * day["extract"] == 3000.0  # the running sums grow ...
    assert day5["d_extract"] == day["d_extract"] == 600.0  # ... the trailing day's do not
    # Counted beyond half of the stream: 600 asks of 720 exchanges in the day -> 600 - 360.
    assert day5["x_log_extract"] == day["x_log_extract"] == pytest.approx(np.log1p(240.0))
    early = snaps.filter(pl.col("tick") == 6 * hour).row(0, named=True)
    assert early["d_extract"] == early["extract"] == 150.0 and early["x_log_extract"] == pytest.approx(np.log1p(60.0))
    # A frame without the day's sums (e.g. built by hand) falls back to the running sums.
    no_day = snaps.drop("d_n", "d_extract", "d_new_exact")
    assert derive(no_day).filter(pl.col("tick") == 120 * hour)["x_log_extract"][0] == pytest.approx(np.log1p(1200.0))
    # A mixed stream whose extraction-shaped share is at most half counts no volume at all.
    mixed = derive(snaps.with_columns(pl.col("d_extract") * 0.5))
    assert (mixed["x_log_extract"] == 0.0).all()


def test_severity_follows_harvested_yield_and_bounded_purposes():
    p = Policy()
    lvl = np.array([4, 4, 4, 3, 3, 2, 4], dtype=np.int8)
    yield_ = np.array([800, 800, 300, 300, 50, 0, 5000])
    suspend_rule = np.array([True, False, True, False, False, False, True])
    bounded = np.array([False, False, False, False, False, False, True])
    # suspend: a rule that may suspend + yield at scale; otherwise throttle while the yield is
    # real, challenge when it is not (request shape alone); a bounded purpose -> monitor.
    assert p.severity(lvl, yield_, suspend_rule, bounded).tolist() == [4, 3, 3, 3, 2, 2, 1]
    # A product serving people: monitor, or challenge against a fired harvest rule.
    product = np.ones(2, dtype=bool)
    assert p.severity(np.array([4, 4], dtype=np.int8), np.full(2, 5000), np.ones(2, dtype=bool), product=product,
                      hidden=np.array([True, False])).tolist() == [2, 1]
    # Levels are only ever lowered.
    assert p.severity(np.array([0, 1], dtype=np.int8), np.zeros(2), np.ones(2, dtype=bool)).tolist() == [0, 1]


def _sums(**kw) -> pl.DataFrame:
    from distillguard.features.account import SUM_COLUMNS

    base = {c: 0.0 for c in SUM_COLUMNS} | {f"d_{c}": 0.0 for c in ("n", "extract", "new_exact")}
    base |= {"first_seen": 1_793_577_600_000, "created": None}
    return pl.DataFrame([base | kw], schema_overrides={"created": pl.Int64})


def test_evaluation_run_and_product_evidence():
    from distillguard.features.account import evaluation_run, harvest_yield, serves_people

    day = 86_400_000
    # 500 benchmark items, each asking for a parseable answer, over three hours: an evaluation run.
    ev = dict(n=500, text=500, ident=500, new_exact=500, new_global=500, fmt=480, reason=500, extract=500, new_hour=3,
              d_n=500, d_extract=500, d_new_exact=500)
    assert _sums(**ev).select(evaluation_run()).item()
    assert _sums(**ev).select(harvest_yield()).item() == 250.0
    # ... not once it demands the whole trace, grows past the item bound, or goes on for a day.
    assert not _sums(**(ev | {"trace": 200})).select(evaluation_run()).item()
    assert not _sums(**(ev | {"new_exact": 5000, "n": 5000, "text": 5000, "ident": 5000, "fmt": 4800})).select(evaluation_run()).item()
    assert not _sums(**(ev | {"new_hour": 20})).select(evaluation_run()).item()
    assert not _sums(**(ev | {"fmt": 0})).select(evaluation_run()).item()
    # A tutoring product: tenure and follow-up turns. Unknown tenure, a young account or no
    # follow-ups are no evidence.
    tutor = dict(n=2000, multi=400, single=1600, text=2000, ident=2000, new_exact=900, first_seen=1_793_577_600_000)
    assert _sums(**tutor, created=1_793_577_600_000 - 400 * day).select(serves_people()).item()
    assert not _sums(**tutor).select(serves_people()).item()
    assert not _sums(**tutor, created=1_793_577_600_000 - 20 * day).select(serves_people()).item()
    assert not _sums(**(tutor | {"multi": 20, "single": 1980}), created=1_793_577_600_000 - 400 * day).select(serves_people()).item()
    # Text withheld: novel digests beyond half of the stream are the yield.
    assert _sums(n=1000, ident=1000, new_exact=1000, d_n=1000, d_new_exact=1000).select(harvest_yield()).item() == 500.0


def test_scores_are_shrunk_by_the_evidence_behind_them():
    from distillguard.scoring.model import PRIOR_SCORE, shrink_by_evidence

    p = np.array([0.9998, 0.9998, 0.9998, 0.9998, 0.2])
    n = np.array([1, 2, 10, 1000, 1000])
    s = shrink_by_evidence(p, n)
    assert s[0] < 0.5 and s[1] < 0.9 and s[0] < s[1] < s[2] < s[3] and s[3] > 0.999
    assert abs(shrink_by_evidence(np.array([0.99]), np.array([0]))[0] - PRIOR_SCORE) < 1e-12
    # Monotone in the model's probability at fixed evidence.
    grid = np.linspace(0.01, 0.99, 50)
    assert np.all(np.diff(shrink_by_evidence(grid, np.full(50, 7))) > 0)
