"""Coalition sharing end to end: two providers from one simulation, A's export, validation with
the OASIS stix2-validator, privacy of the bundle, B's matching without look-ahead, the scan
hook, the CLI, and publish/pull through a real medallion TAXII 2.1 server on loopback."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time

import orjson
import polars as pl
import pytest
from typer.testing import CliRunner

from distillguard.share import stix
from distillguard.share.cli import share_app
from distillguard.share.demo import two_provider_demo
from distillguard.share.export import ExportConfig, export_bundle
from distillguard.share.hook import apply_indicators_to_scan
from distillguard.share.keys import KeyRing
from distillguard.share.match import (REASON, false_positive_bundle, match_indicators, revoke_for_false_positives,
                                      sightings_bundle)
from distillguard.share.observe import observe
from distillguard.share.report_io import read_accounts, read_clusters

KEY = KeyRing.from_secret("e2e-coalition-key-0123456789abcdef", "e2e-1")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("share-demo")
    res = two_provider_demo(d, seed=7, hours=6, scale=0.3, shift_hours=2.0, latency_minutes=15, key=KEY)
    return d, res


@pytest.fixture(scope="module")
def bundle(demo):
    d, _ = demo
    return json.loads((d / "A-indicators.json").read_text())


@pytest.fixture(scope="module")
def obs_b(demo):
    return observe([str(demo[0] / "B.jsonl")])


def test_two_provider_demo_b_flags_earlier_and_loses_less(demo):
    d, r = demo
    alone, withi = r["B_alone"], r["B_with_A_indicators"]
    print(json.dumps({k: r[k] for k in ("campaign", "provider_A", "B_alone", "B_with_A_indicators", "B_benign_linked",
                                        "B_benign_flagged_by_indicators")}, indent=1))
    assert alone["accounts"] >= 2 and r["B_campaign_accounts_linked"] >= 2
    assert withi["first_flag_ms"] is not None
    assert alone["first_flag_ms"] is None or withi["first_flag_ms"] < alone["first_flag_ms"]
    assert withi["harvested_before_flag"] < alone["harvested_before_flag"]
    # Sharing must not cost B its legitimate customers: no benign account flagged by A's indicators.
    assert r["B_benign_flagged_by_indicators"] == 0
    assert r["B_benign_flagged_with"] == r["B_benign_flagged_alone"]


def test_matching_has_no_look_ahead(demo, bundle, obs_b):
    d, r = demo
    m = pl.read_csv(d / "B-matches.csv")
    assert m.height
    vf = {o["id"]: stix.ms(o["valid_from"]) for o in bundle["objects"] if o["type"] == "indicator"}
    a_flags = read_accounts(d / "scanA").filter(pl.col("flagged"))["first_flag_ms"].min()
    for row in m.iter_rows(named=True):
        assert row["first_match_ts"] >= vf[row["indicator_id"]] >= a_flags  # known by A before B may use it
        n = obs_b.filter((pl.col("account_id") == row["account_id"]) & (pl.col("ts") <= row["first_match_ts"])).height
        assert row["events_at_match"] == n
    # Indicators carry the time A knew them: nothing before A's first flag plus the sharing latency.
    assert min(vf.values()) >= a_flags + 15 * 60_000


def test_bundle_contents(demo, bundle):
    d, _ = demo
    objs = bundle["objects"]
    by_type: dict[str, list] = {}
    for o in objs:
        by_type.setdefault(o["type"], []).append(o)
    ids = {o["id"] for o in objs}
    assert [o["name"] for o in by_type["identity"] if o["identity_class"] == "organization"] == ["Provider A"]
    ap = by_type["attack-pattern"][0]
    assert any(x["external_id"] == "AML.T0024.002" and x["source_name"] == "mitre-atlas" for x in ap["external_references"])
    assert len(by_type["course-of-action"]) == 4
    assert {o["type"] for o in objs} >= {"campaign", "indicator", "relationship", "marking-definition", "extension-definition"}
    # One campaign per flagged cluster with flagged members (+ flagged singletons).
    acc, cl = read_accounts(d / "scanA"), read_clusters(d / "scanA")
    flagged_cl = set(cl.filter(pl.col("flagged"))["cluster_id"])
    fa = acc.filter(pl.col("flagged"))
    expected = fa.filter(pl.col("cluster_id").is_in(list(flagged_cl)))["cluster_id"].n_unique() + \
        fa.filter(~pl.col("cluster_id").is_in(list(flagged_cl))).height
    assert len(by_type["campaign"]) == expected
    kinds = {stix.ext(o).get("kind") for o in by_type["indicator"]}
    assert kinds >= {"ip_prefix", "prompt_band", "behaviour", "rule", "payment", "client"}
    for o in objs:
        for k in ("source_ref", "target_ref", "created_by_ref"):
            if k in o:
                assert o[k] in ids, (o["id"], k)
        if o["type"] in ("campaign", "indicator", "relationship") and o.get("created_by_ref") != stix.DG_IDENTITY["id"]:
            assert o["object_marking_refs"] == [stix.TLP2_IDS["amber"]]
        if o["type"] == "indicator":
            assert o["valid_from"] <= o.get("valid_until", "9999") and 0 < o["confidence"] <= 100
            assert o["pattern_type"] == "stix"
        # Custom content only through the extension-definitions.
        assert not [k for k in o if k.startswith("x_")]
        for ext_id in (o.get("extensions") or {}):
            assert ext_id in ids or ext_id == stix.TLP2_EXTENSION
    campaign_ids = {o["id"] for o in by_type["campaign"]}
    rels = by_type["relationship"]
    assert all(any(r["source_ref"] == i["id"] and r["target_ref"] in campaign_ids | {ap["id"]} for r in rels)
               for i in by_type["indicator"])
    assert all(any(r["source_ref"] == c and r["relationship_type"] == "uses" and r["target_ref"] == ap["id"] for r in rels)
               for c in campaign_ids)


def test_bundle_holds_no_private_data(demo, bundle):
    d, _ = demo
    text = json.dumps(bundle, ensure_ascii=False)
    accounts, pfs, ips, doms, uas, prompts = set(), set(), set(), set(), set(), set()
    with open(d / "A.jsonl", "rb") as fh:
        for line in fh:
            r = orjson.loads(line)
            accounts.add(r["account_id"])
            for k, s in (("payment_fingerprint", pfs), ("client_ip", ips), ("email_domain", doms), ("user_agent", uas)):
                if r.get(k):
                    s.add(r[k])
            for k in ("prompt", "system_prompt"):
                p = (r.get(k) or "").strip()
                if len(p) >= 24:
                    prompts.add(p)
    assert accounts and pfs and ips and prompts
    for v in accounts | pfs | ips | uas:
        assert v not in text, v
    for dom in doms:
        assert f'"{dom}"' not in text and f"'{dom}'" not in text
    for p in prompts:
        assert p[:32] not in text and p[-32:] not in text
    # No address or network in the clear: not even a dotted quad.
    assert not re.search(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b", text)
    # The cluster ids of the exporter's report are not in it either.
    for cid in read_clusters(d / "scanA")["cluster_id"].to_list():
        assert cid not in text


def test_every_exported_bundle_validates(demo, bundle, obs_b, tmp_path):
    d, _ = demo
    m = match_indicators(None, None, KEY, objects=bundle["objects"], obs=obs_b)
    sight = sightings_bundle(m, "Provider B", as_of_ms=int(obs_b["ts"].max()))
    fp = false_positive_bundle(m["account_id"].unique().to_list()[:2], m, "Provider B", when_ms=int(obs_b["ts"].max()))
    revoked = revoke_for_false_positives(bundle["objects"], fp["objects"], when_ms=int(obs_b["ts"].max()) + 1)
    assert revoked
    for b in (bundle, sight, fp, stix.bundle(revoked, "revoked")):
        ok, msgs = stix.validate(b, strict=True)
        assert ok, msgs[:5]
        assert msgs == []  # not even a warning


def test_scan_hook_applies_indicators_in_place(demo, tmp_path):
    d, r = demo
    scan_copy = tmp_path / "scanB"
    shutil.copytree(d / "scanB", scan_copy)
    block = apply_indicators_to_scan(scan_copy, [d / "A-indicators.json"], KEY, provider="Provider B")
    assert block["linked_accounts"] >= r["B_campaign_accounts_linked"] and block["indicators_live"] > 0
    acc = pl.read_csv(scan_copy / "accounts.csv", infer_schema=False)
    assert acc.columns == pl.read_csv(d / "scanB" / "accounts.csv", infer_schema=False).columns
    assert acc.filter(pl.col("reasons").str.contains(REASON)).height == block["linked_accounts"]
    s = json.loads((scan_copy / "summary.json").read_text())
    assert s["partner_indicators"]["linked_accounts"] == block["linked_accounts"]
    assert s["flagged_accounts"] == acc.filter(pl.col("flagged") == "true").height
    sight = json.loads((scan_copy / "partner_sightings.json").read_text())
    assert any(o["type"] == "sighting" for o in sight["objects"])
    assert not any(a in json.dumps(sight) for a in acc["account_id"].to_list())


def test_key_rotation(demo, obs_b):
    d, _ = demo
    old_only = KEY
    rotated = KeyRing({"e2e-1": KEY.key("e2e-1"), "e2e-2": "f0" * 32}, "e2e-2")
    b, stats = export_bundle(d / "scanA", rotated, config=ExportConfig(provider="Provider A", latency_ms=15 * 60_000,
                                                                       kinds=("payment", "ip_prefix")))
    assert stats["key_id"] == "e2e-2"
    assert {stix.ext(o).get("key_id") for o in b["objects"] if o["type"] == "indicator"} == {"e2e-2"}
    info: dict = {}
    assert match_indicators(None, None, old_only, objects=b["objects"], obs=obs_b, info=info).is_empty()
    assert info["unknown_key"] == stats["indicators"]["payment"] + stats["indicators"]["ip_prefix"]
    both = match_indicators(None, None, rotated, objects=b["objects"], obs=obs_b)
    assert both.height > 0
    # Old indicators (old key) still match for a partner holding the rotated ring.
    old = json.loads((d / "A-indicators.json").read_text())["objects"]
    assert match_indicators(None, None, rotated, objects=old, obs=obs_b).height == \
        match_indicators(None, None, KEY, objects=old, obs=obs_b).height


def test_online_matcher_equals_batch_matching(demo, bundle):
    from distillguard.ingest import IngestStats, Quarantine, read_events
    from distillguard.share.online import OnlineMatcher

    d, _ = demo
    om = OnlineMatcher(bundle["objects"], KEY)
    with Quarantine(None) as q:
        for b in read_events([str(d / "B.jsonl")], q, IngestStats(), batch_rows=3000):
            om.update(b)
    cols = ["account_id", "indicator_id", "campaign_ref", "first_match_ts", "kind", "hits", "last_match_ts", "events_at_match"]
    batch = pl.read_csv(d / "B-matches.csv").select(cols).sort(cols)
    online = om.matches().select(cols).sort(cols)
    assert batch.height and online.equals(batch)


def test_cli_round_trip(demo, tmp_path):
    d, _ = demo
    run = CliRunner()
    keyf = tmp_path / "coalition.json"
    keyf.write_text(json.dumps({"active": "e2e-1", "keys": {"e2e-1": "e2e-coalition-key-0123456789abcdef"}}))
    r = run.invoke(share_app, ["export", str(d / "scanA"), "--out", str(tmp_path / "a.json"), "--key", str(keyf),
                               "--provider", "Provider A", "--latency-minutes", "15", "--no-validate"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "a.json").read_text()) == json.loads((d / "A-indicators.json").read_text())
    r = run.invoke(share_app, ["match", str(tmp_path / "a.json"), "--events", str(d / "B.jsonl"), "--key", str(keyf),
                               "--out", str(tmp_path / "m"), "--scan", str(d / "scanB"), "--provider", "Provider B"])
    assert r.exit_code == 0, r.output
    m = pl.read_csv(tmp_path / "m" / "matches.csv")
    assert m.height and (tmp_path / "m" / "sightings.json").exists()
    acc = pl.read_csv(tmp_path / "m" / "accounts.csv", infer_schema=False)
    assert acc.filter(pl.col("reasons").str.contains(REASON)).height > 0
    victim = m["account_id"][0]
    r = run.invoke(share_app, ["sighting", "--matches", str(tmp_path / "m" / "matches.csv"), "--false-positive", victim,
                               "--provider", "Provider B", "--out", str(tmp_path / "fp.json"), "--when", "2026-11-03T00:00:00Z"])
    assert r.exit_code == 0, r.output
    assert victim not in (tmp_path / "fp.json").read_text()
    r = run.invoke(share_app, ["revoke", str(tmp_path / "a.json"), "--sightings", str(tmp_path / "fp.json"),
                               "--out", str(tmp_path / "rev.json"), "--when", "2026-11-03T01:00:00Z"])
    assert r.exit_code == 0, r.output
    rev = json.loads((tmp_path / "rev.json").read_text())["objects"]
    assert rev and all(o["revoked"] for o in rev)
    before = set(m.filter(pl.col("account_id") == victim)["indicator_id"])
    after = match_indicators([tmp_path / "a.json", tmp_path / "rev.json"], [str(d / "B.jsonl")],
                             KeyRing.load(keyf))
    assert not before & set(after.filter(pl.col("account_id") == victim)["indicator_id"])
    r = run.invoke(share_app, ["rules", str(tmp_path / "a.json"), "--out", str(tmp_path / "rules")])
    assert r.exit_code == 0 and list((tmp_path / "rules").glob("*.yaml"))


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture()
def medallion_server(tmp_path):
    pytest.importorskip("medallion")
    from distillguard.share.taxii import medallion_data

    port = _free_port()
    col = "9cfa669c-ee94-4ece-afd2-f8edac37d8fd"
    (tmp_path / "data.json").write_text(json.dumps(medallion_data(col, port=port)))
    (tmp_path / "config.json").write_text(json.dumps({
        "backend": {"module": "medallion.backends.memory_backend", "module_class": "MemoryBackend",
                    "filename": str(tmp_path / "data.json")},
        "users": {"provider-a": "a-secret", "provider-b": "b-secret"}, "taxii": {"max_page_size": 1000}}))
    proc = subprocess.Popen([sys.executable, "-m", "medallion.scripts.run", "--host", "127.0.0.1", "--port", str(port),
                             str(tmp_path / "config.json")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/coalition/", col
    finally:
        proc.terminate()
        proc.wait(10)


def test_publish_and_pull_through_medallion(demo, bundle, medallion_server, tmp_path, obs_b):
    import requests

    from distillguard.share.taxii import publish, pull

    url, col = medallion_server
    # medallion lists a collection in time quadratic in its size: share the infrastructure
    # indicators (and everything they refer to) rather than the whole bundle.
    inds = {o["id"] for o in bundle["objects"] if o["type"] == "indicator"
            and stix.ext(o).get("kind") in ("payment", "ip_prefix", "email_domain")}
    objs = [o for o in bundle["objects"] if o["type"] not in ("indicator", "relationship") or o["id"] in inds
            or (o["type"] == "relationship" and (o["source_ref"] in inds or o["relationship_type"] != "indicates"))]
    # medallion <= 3.0.0 cannot list extension-definition objects (it reads their "version" as a
    # timestamp): publish without them; pull puts distillguard's fixed definitions back.
    res = publish(objs, url, col, user="provider-a", password="a-secret", include_extension_definitions=False)
    n_ext = sum(o["type"] == "extension-definition" for o in objs)
    assert res["failure"] == 0 and res["success"] == len(objs) - n_ext
    with pytest.raises(requests.HTTPError):
        pull(url, col, user="provider-b", password="wrong")
    got = pull(url, "indicators", tmp_path / "pulled.json", user="provider-b", password="b-secret", per_request=60)
    assert {o["id"] for o in got} == {o["id"] for o in objs}  # paged, and completed with the extension-definitions
    m = match_indicators([tmp_path / "pulled.json"], None, KEY, obs=obs_b)
    assert m.height and m.equals(match_indicators(None, None, KEY, objects=objs, obs=obs_b))
    # B reports a false positive through TAXII; A answers with revoked versions; B's next pull stops matching them.
    victim = m["account_id"][0]
    fp = false_positive_bundle([victim], m, "Provider B", when_ms=int(obs_b["ts"].max()))
    res = publish(fp["objects"], url, col, user="provider-b", password="b-secret", include_extension_definitions=False)
    assert res["failure"] == res["already_present_fixed"]  # only the fixed objects A had already sent
    sightings = [o for o in pull(url, col, user="provider-a", password="a-secret", per_request=1000) if o["type"] == "sighting"]
    assert sightings and all(stix.ext(o)["sighting_type"] == "false-positive" for o in sightings)
    revoked = revoke_for_false_positives(objs, sightings, when_ms=int(obs_b["ts"].max()) + 60_000)
    assert revoked and publish(revoked, url, col, user="provider-a", password="a-secret")["failure"] == 0
    r = CliRunner().invoke(share_app, ["pull", "--out", str(tmp_path / "pulled2.json"), "--url", url, "--collection", col,
                                       "--user", "provider-b", "--password", "b-secret"])
    ok, msgs = stix.validate((tmp_path / "pulled2.json").read_text())
    assert ok, msgs[:3]
    assert r.exit_code == 0, r.output
    m2 = match_indicators([tmp_path / "pulled2.json"], None, KEY, obs=obs_b)
    gone = {o["id"] for o in revoked}
    assert gone and not gone & set(m2["indicator_id"]) and m2.height == m.filter(~pl.col("indicator_id").is_in(list(gone))).height
