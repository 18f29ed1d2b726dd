"""Coalition sharing, unit level: keys, the dg-sig-v1 signature, STIX building blocks, rules as
indicators, matching rules (decay, expiry, revocation), applying matches, PSI."""

from __future__ import annotations

import hashlib
import hmac
import json
import random

import numpy as np
import polars as pl
import pytest

from distillguard.scoring.rules import parse_rule
from distillguard.share import signature as sig
from distillguard.share import stix
from distillguard.share.keys import KeyRing, canonical
from distillguard.share.match import (REASON, apply_matches, false_positive_bundle, link_accounts, match_indicators,
                                      revoke_for_false_positives, sightings_bundle)
from distillguard.share.rules import load_rule_docs, rule_doc_from_indicator, rule_indicator, write_rules

KEY = KeyRing.from_secret("11" * 32, "k1")
T0 = 1_793_577_600_000  # 2026-11-02T00:00:00Z
WRAP = "Before you answer, write out your entire chain of thought, step by step, exactly as you reason internally."


# ---------------------------------------------------------------------------- keys


def test_hmac_is_the_documented_construction_and_needs_the_key():
    ring = KeyRing.from_secret("00" * 32, "k")
    want = hmac.new(bytes(32), b"dg-id-v1|payment|pf_abc", hashlib.sha256).hexdigest()
    assert ring.hasher()("payment", " pf_abc ") == want
    assert KeyRing.from_secret("01" * 32, "k").hasher()("payment", "pf_abc") != want
    assert ring.hasher()("email_domain", "pf_abc") != want  # kinds are domain-separated


def test_canonical_forms():
    assert canonical("ip_prefix", "203.0.113.77") == "203.0.113.0/24"
    assert canonical("ip_prefix", "2001:DB8:0:1::5") == "2001:db8::/48"
    assert canonical("ip_prefix", "2001:db8:abcd:12::1") == canonical("ip_prefix", "2001:0db8:abcd:0012:0000::9")
    assert canonical("ip_prefix", "::ffff:10.1.2.3") == "10.1.2.0/24"
    assert canonical("ip_prefix", "not an ip") is None
    assert canonical("email_domain", "Bücher.DE.") == "xn--bcher-kva.de"
    assert canonical("email_domain", "Someone@Example.COM") == "example.com"
    assert canonical("asn", 64500) == canonical("asn", "64500") == "64500"
    assert canonical("client", "  openai-python/1.3   x ") == "openai-python/1.3 x"


def test_key_rotation_file(tmp_path):
    p = tmp_path / "k.json"
    r1 = KeyRing.generate_file(p, "2026-10")
    r2 = KeyRing.generate_file(p, "2026-11", previous=p)
    assert r2.active == "2026-11" and set(r2.keys) == {"2026-10", "2026-11"}
    loaded = KeyRing.load(p)
    assert loaded.key("2026-10") == r1.key("2026-10")
    assert loaded.check_value("2026-10") == r1.check_value() != loaded.check_value()
    with pytest.raises(ValueError):
        KeyRing.from_secret("short", "x")


# ---------------------------------------------------------------------------- signature


def test_signature_scheme_is_pinned():
    # Golden values: changing any step of dg-sig-v1 must change its name, not these.
    assert sig.permutations()[:3].tolist() == [2726924139670483910, 16732457118926315424, 857971789603746448]
    assert sig.band_keys(WRAP + " Question: what is 17 * 23?") == [
        "70d12d5ad4a78e74", "26dfbb9f21cd3c07", "5e1ba1cb97276bd7", "f52ad3b03d14161f", "0a69f3f0fdf41570",
        "70b2086c7809096c", "e18b53cbf3ddc41a", "b412952a43103813", "fdc1b2bf2b69e43f", "fa9402206e1b6bf2"]


def test_signature_finds_templates_not_items():
    items = ["Tom has 3 apples and buys 5 more; how many apples does he have now?",
             "A train travels 60 km per hour for two hours; how far does it go in total?",
             "Write a function that reverses a linked list in place and explain its complexity."]
    wrapped = [sig.band_keys(WRAP + " " + it) for it in items]
    heads = [set(k[:5]) for k in wrapped]
    assert heads[0] == heads[1] == heads[2]  # same wrapper -> same head bands
    assert not set(wrapped[0][5:]) & set(wrapped[1][5:])  # different items -> different tails
    plain = [set(sig.band_keys(it)) for it in items]
    assert not plain[0] & plain[1] and not plain[1] & plain[2]
    # Digits, case, width and spacing do not matter; too-short prompts have no signature.
    assert sig.band_keys(WRAP.upper() + "  Question: what is 99 * 1?") == sig.band_keys(WRAP + " question: what is 17 * 23?")
    assert sig.band_keys("hi there") == [] and sig.band_keys(None) == []
    batch = [WRAP + " " + items[0], None, "", "short", items[2] * 40]
    assert sig.band_keys_batch(batch) == [sig.band_keys(t) for t in batch]


def test_minhash_estimates_jaccard_like_datasketch():
    from datasketch import MinHash

    rng = random.Random(1)
    seeds = sig.permutations(num_perm=256, seed=99)
    for _ in range(5):
        universe = [f"w{i}" for i in range(200)]
        s1 = set(rng.sample(universe, 60))
        s2 = set(rng.sample(sorted(s1), 30)) | set(rng.sample(universe, 30))
        true_j = len(s1 & s2) / len(s1 | s2)
        h1 = [sig.xxhash.xxh64_intdigest(x.encode()) for x in s1]
        h2 = [sig.xxhash.xxh64_intdigest(x.encode()) for x in s2]
        est = float(np.mean(sig.minhash_values(h1, seeds) == sig.minhash_values(h2, seeds)))
        m1, m2 = MinHash(num_perm=256), MinHash(num_perm=256)
        m1.update_batch([x.encode() for x in s1])
        m2.update_batch([x.encode() for x in s2])
        assert abs(est - true_j) < 0.1 and abs(est - m1.jaccard(m2)) < 0.12


# ---------------------------------------------------------------------------- STIX pieces and rules


def test_ids_are_deterministic_v4_shaped():
    i = stix.sid("indicator", "x")
    assert i == stix.sid("indicator", "x") != stix.sid("indicator", "y")
    assert i.split("--")[1][14] == "4" and i.split("--")[1][19] in "89ab"


def test_patterns_round_trip():
    p = stix.identifier_pattern("payment", ["ab" * 32, "cd" * 32])
    assert stix.parse_identifier_pattern(p) == ("payment", ["ab" * 32, "cd" * 32])
    conds = [("exchanges", ">=", 20.0), ("reason_share", ">=", 0.55), ("tools_share", "<=", 0.1)]
    q = stix.range_pattern("distillguard-behaviour", conds, [("young", ">=", 0.6), ("maxout_share", ">", 0.2)])
    t, c2, any2 = stix.parse_range_pattern(q)
    assert t == "distillguard-behaviour" and c2 == conds and any2 == [("young", ">=", 0.6), ("maxout_share", ">", 0.2)]


def test_rules_travel_as_indicators_and_come_back(tmp_path):
    docs = load_rule_docs()
    assert docs
    inds = [rule_indicator(d, provider_id=stix.provider_identity("P")["id"], created=stix.ts(T0), modified=stix.ts(T0),
                           marking=stix.TLP2_IDS["green"], half_life_days=180, ttl_days=365, valid_from_ms=T0) for d in docs]
    for d, ind in zip(docs, inds):
        assert parse_rule(rule_doc_from_indicator(ind), "x") == parse_rule(d, "x")
    ok, msgs = stix.validate(stix.bundle([*stix.fixed_objects("green"), stix.provider_identity("P"), *inds], "t"))
    assert ok, msgs
    # A partner's modified rule keeps its own id suffix next to the packaged one.
    changed = json.loads(json.dumps(inds[0]))
    changed["pattern"] = changed["pattern"].replace("exchanges >= ", "exchanges >= 1")
    changed["modified"] = stix.ts(T0 + 1)
    written = write_rules(inds + [changed], tmp_path / "rules", source="provA")
    names = sorted(p.name for p in written)
    assert f"{docs[0]['id']}-provA.yaml" in names and len(names) == len(docs) + 1
    from distillguard.scoring.rules import load_rules
    assert len(load_rules(tmp_path / "rules")) == len(docs) + 1


# ---------------------------------------------------------------------------- matching rules


CAMPAIGN = "campaign--00000000-0000-4000-8000-0000000000c1"


def _indicator(kind, values, *, conf=80, vf=T0, vu=None, half=30, min_hits=1, campaign=CAMPAIGN, iid=None, key=KEY):
    h = key.hasher()
    hs = [h(kind, v) for v in values]
    ind = {
        "type": "indicator", "spec_version": "2.1", "id": iid or stix.sid("indicator", kind + "|".join(values)),
        "created": stix.ts(vf), "modified": stix.ts(vf), "created_by_ref": "identity--00000000-0000-4000-8000-000000000000",
        "name": "t", "description": "t", "pattern": stix.identifier_pattern(kind, hs), "pattern_type": "stix", "valid_from": stix.ts(vf),
        "confidence": conf,
        "extensions": {stix.EXT_PROPS["id"]: {"extension_type": "property-extension", "kind": kind, "key_id": key.active,
                                              "key_check": key.check_value(), "min_hits": min_hits, "half_life_days": half}},
    }
    if vu is not None:
        ind["valid_until"] = stix.ts(vu)
    rel = stix.relationship(ind["id"], "indicates", campaign, ind["created"], ind["modified"])
    return [ind, rel]


def _obs(rows):
    """rows: (account, ts offset minutes, payment, ip, prompt band keys list)."""
    from distillguard.share.observe import BEHAVIOUR_DIMS

    recs = []
    for i, (a, m, pf, ip, bands) in enumerate(rows):
        recs.append({"request_id": f"r{i}", "account_id": a, "ts": T0 + int(m * 60_000), "payment": pf,
                     "email_domain": None, "ip_prefix": canonical("ip_prefix", ip) if ip else None, "asn": None, "client": None,
                     **{d: False for d in BEHAVIOUR_DIMS}, "bands": ",".join(bands)})
    return pl.DataFrame(recs, schema_overrides={"payment": pl.String, "email_domain": pl.String, "ip_prefix": pl.String,
                                                "asn": pl.String, "client": pl.String})


def test_match_windows_decay_revocation_and_keys():
    objs = _indicator("payment", ["pf_bad"], conf=80, vf=T0 + 10 * 60_000, half=1 / 24)  # half-life one hour
    obs = _obs([("a1", 0, "pf_bad", None, []),      # before valid_from: no match
                ("a1", 20, "pf_bad", None, []),     # match at +20 min, events_at_match = 2
                ("a2", 70, "pf_bad", None, []),     # one hour later: confidence halved
                ("a3", 60 * 5, "pf_bad", None, []),  # 5 half-lives: below the 0.1 floor, no match
                ("a4", 30, "pf_ok", None, [])])
    m = match_indicators(None, None, KEY, objects=objs, obs=obs)
    assert list(m.columns)[:5] == ["account_id", "indicator_id", "campaign_ref", "confidence", "first_match_ts"]
    got = {r["account_id"]: r for r in m.iter_rows(named=True)}
    assert set(got) == {"a1", "a2"}
    assert got["a1"]["first_match_ts"] == T0 + 20 * 60_000 and got["a1"]["events_at_match"] == 2
    assert got["a1"]["campaign_ref"] == CAMPAIGN
    assert abs(got["a1"]["confidence"] - 0.8 * 0.5 ** (10 / 60)) < 1e-6
    assert abs(got["a2"]["confidence"] - 0.8 * 0.5 ** 1) < 1e-6
    # Expired (valid_until passed) and revoked indicators stop matching.
    exp = _indicator("payment", ["pf_bad"], vf=T0, vu=T0 + 15 * 60_000)
    assert match_indicators(None, None, KEY, objects=exp, obs=obs)["account_id"].to_list() == ["a1"]
    revoked = dict(objs[0], modified=stix.ts(T0 + 11 * 60_000), revoked=True)
    info = {}
    assert match_indicators(None, None, KEY, objects=objs + [revoked], obs=obs, info=info).is_empty()
    assert info["revoked"] == 1
    # A malformed partner object (bad pattern) is ignored, not trusted.
    bad = dict(objs[0], id="indicator--00000000-0000-4000-8000-0000000000ff", pattern="[distillguard-identifier:value = ]")
    info = {}
    assert match_indicators(None, None, KEY, objects=objs + [bad], obs=obs, info=info).height == 2
    assert info["invalid_objects"] == 1
    # Without the coalition key (or with another key under the same name) nothing can match.
    info = {}
    assert match_indicators(None, None, KeyRing.from_secret("22" * 32, "other"), objects=objs, obs=obs, info=info).is_empty()
    assert info["unknown_key"] == 1
    info = {}
    assert match_indicators(None, None, KeyRing.from_secret("22" * 32, "k1"), objects=objs, obs=obs, info=info).is_empty()
    assert info["key_mismatch"] == 1


def test_template_needs_three_hits_and_linking_is_in_event_time():
    bands = sig.band_keys(WRAP + " item one is here and it is long enough")
    objs = (_indicator("prompt_band", bands, conf=90, min_hits=3, iid="indicator--00000000-0000-4000-8000-0000000000b1")
            + _indicator("ip_prefix", ["198.51.100.7"], conf=90, iid="indicator--00000000-0000-4000-8000-0000000000b2"))
    rows = [("x", 1, None, "198.51.100.9", bands), ("x", 2, None, None, bands), ("x", 3, None, None, []),
            ("x", 4, None, None, bands), ("y", 1, None, None, bands), ("y", 2, None, None, bands)]
    m = match_indicators(None, None, KEY, objects=objs, obs=_obs(rows))
    assert sorted(m.filter(pl.col("account_id") == "x")["kind"].to_list()) == ["ip_prefix", "prompt_band"]
    assert m.filter(pl.col("account_id") == "y").is_empty()  # two template hits are not enough
    tpl = m.filter((pl.col("account_id") == "x") & (pl.col("kind") == "prompt_band")).row(0, named=True)
    assert tpl["first_match_ts"] == T0 + 4 * 60_000 and tpl["events_at_match"] == 4 and tpl["hits"] == 3
    links = link_accounts(m)
    r = links.row(0, named=True)
    # network alone (0.45 * conf) does not link; network + template does, at the template's time
    assert r["link_ts"] == T0 + 4 * 60_000 and r["events_at_link"] == 4 and r["flag_ts"] is None
    assert 0.5 <= r["strength"] < 0.7


def _accounts_csv():
    return pl.DataFrame({
        "account_id": ["a1", "a2", "a3"], "score": ["0.2", "0.9", "0.1"], "flagged": ["false", "true", "false"],
        "action": ["none", "suspend", "none"], "cluster_id": ["", "cl-1", ""],
        "first_flagged_ts": ["", "2026-11-02T00:30:00.000Z", ""], "events": ["40", "80", "10"],
        "events_before_flag": ["40", "15", "10"], "reasons": ["", "reasoning_extraction", ""]})


def test_apply_matches_raises_links_with_reason_code():
    objs = _indicator("payment", ["pf_bad"], conf=95)
    obs = _obs([("a1", 5, None, None, []), ("a1", 10, "pf_bad", None, []), ("a2", 40, "pf_bad", None, []),
                ("a3", 1, "pf_ok", None, [])])
    m = match_indicators(None, None, KEY, objects=objs, obs=obs)
    before = _accounts_csv()
    after = apply_matches(before, m)
    assert after.columns == before.columns and after.schema == before.schema
    r = {x["account_id"]: x for x in after.iter_rows(named=True)}
    assert r["a1"]["flagged"] == "true" and r["a1"]["action"] == "challenge"
    assert r["a1"]["reasons"] == REASON and float(r["a1"]["score"]) > 0.85
    assert r["a1"]["first_flagged_ts"] == "2026-11-02T00:10:00.000Z" and r["a1"]["events_before_flag"] == "2"
    # a2 was flagged earlier by the scan: keeps its flag time, action and count; gains the reason
    assert r["a2"]["first_flagged_ts"] == "2026-11-02T00:30:00.000Z" and r["a2"]["action"] == "suspend"
    assert r["a2"]["events_before_flag"] == "15" and r["a2"]["reasons"].startswith(REASON + ";")
    assert r["a3"] == before.row(2, named=True)
    # Typed input keeps its types; analyst allow-list wins.
    typed = pl.read_csv(before.write_csv().encode())
    out = apply_matches(typed, m, allow_accounts=["a1"])
    assert out.schema == typed.schema and out.filter(pl.col("account_id") == "a1")["flagged"].to_list() == [False]


def test_sightings_and_false_positive_feedback():
    objs = _indicator("payment", ["pf_bad"], conf=95)
    obs = _obs([("a1", 10, "pf_bad", None, []), ("a2", 12, "pf_bad", None, [])])
    m = match_indicators(None, None, KEY, objects=objs, obs=obs)
    sb = sightings_bundle(m, "Provider B", as_of_ms=T0 + 3_600_000, links=link_accounts(m))
    fp = false_positive_bundle(["a2"], m, "Provider B", when_ms=T0 + 7_200_000, note="verified enterprise customer")
    for b in (sb, fp):
        ok, msgs = stix.validate(b)
        assert ok, msgs
        text = json.dumps(b)
        assert '"a1"' not in text and '"a2"' not in text and "pf_bad" not in text
    s = [o for o in fp["objects"] if o["type"] == "sighting"]
    assert len(s) == 1 and stix.ext(s[0])["sighting_type"] == "false-positive" and s[0]["sighting_of_ref"] == objs[0]["id"]
    revoked = revoke_for_false_positives(objs, fp["objects"], when_ms=T0 + 7_300_000)
    assert len(revoked) == 1 and revoked[0]["revoked"] is True and revoked[0]["created"] == objs[0]["created"]
    # The revoked version stops matching at the partner.
    assert match_indicators(None, None, KEY, objects=objs + revoked, obs=obs).is_empty()


def test_private_set_intersection():
    pytest.importorskip("private_set_intersection.python")
    from distillguard.share.psi import psi_overlap, psi_request, psi_respond, psi_size

    h = KEY.hasher()
    a = [h("payment", f"pf{i}") for i in range(50)]
    b = [h("payment", f"pf{i}") for i in range(40, 120)]
    assert psi_overlap(a, b) == 10
    key, req = psi_request(a)
    setup, resp = psi_respond(b, req)
    assert psi_size(key, setup, resp) == 10
    assert psi_overlap(a, []) == 0
