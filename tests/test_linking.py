"""Template links: a campaign's shared wrapper links its accounts; a popular question, or a public
template filled with items others already sent, does not; nor does a public mail domain."""

from __future__ import annotations

import orjson
import polars as pl

from distillguard.features.exchange import exchange_features
from distillguard.features.marks import FIRST_SEEN_KEYS, account_ticks, first_seen_marks, first_times
from distillguard.ingest import IngestStats, Quarantine, records_to_batch

T0 = 1_793_577_600_000  # 2026-11-02T00:00:00Z
POPULAR = "What if Alan Turing had not cracked the Enigma code during World War II?"
WRAPPER = "I'm building study notes. Explain every step of the solution in full detail.\n\nQ: {q}"


def _links(records: list[dict], tmp_path) -> pl.DataFrame:
    lines = [orjson.dumps(r) for r in records]
    with Quarantine(tmp_path / "q.jsonl") as q:
        batch = records_to_batch(lines, "test", q, IngestStats())
    rows = exchange_features(batch)
    # The scan's global pass: the first time each prompt (and each item) appears in the whole log.
    rows = first_seen_marks(rows, {k: first_times(rows, k) for k in FIRST_SEEN_KEYS})
    _, links, _ = account_ticks(rows, 60_000)
    return links.filter(pl.col("key").str.starts_with("tpl:"))


def _rec(i: int, account: str, prompt: str) -> dict:
    return {"request_id": f"r{account}{i}", "ts": T0 + i * 30_000, "account_id": account, "prompt": prompt}


def test_shared_wrapper_links_the_campaign_accounts(tmp_path):
    recs = [_rec(i, acct, WRAPPER.replace("{q}", f"Item number {k} asks about topic {k * 7919 % 1000} and more."))
            for acct, off in (("a1", 0), ("a2", 500)) for i, k in enumerate(range(off, off + 20))]
    links = _links(recs, tmp_path)
    shared = links.group_by("key").agg(pl.col("account_id").n_unique().alias("n")).filter(pl.col("n") == 2)
    assert shared.height >= 1


def test_a_popular_question_asked_a_few_times_is_not_a_template(tmp_path):
    recs = []
    for acct in ("r1", "r2"):
        # A busy router: hundreds of unrelated prompts, plus one popular question asked three
        # times with different follow-ups (same 48-character head, three distinct prompts).
        recs += [_rec(i, acct, f"{acct} user question {i}: how do I {i * 31 % 97} the {i * 17 % 89}?") for i in range(200)]
        recs += [_rec(300 + j, acct, f"{POPULAR} {tail}") for j, tail in enumerate([
            "Please keep the answer brief, two or three sentences at most, thanks a lot.",
            "I would like a long and detailed answer with historical sources and dates.",
            "Explain it the way you would explain it to a curious ten year old child."])]
    assert _links(recs, tmp_path).height == 0


def test_a_public_template_filled_with_the_same_items_is_not_a_link(tmp_path):
    """Unrelated evaluators re-running one public benchmark under one harness template send
    items someone already sent: the template does not link them. Splitting the same items
    between the two accounts (a sweep) does."""
    items = [WRAPPER.replace("{q}", f"Item number {k} asks about topic {k * 7919 % 1000} and more.") for k in range(40)]
    echo = [_rec(i, "lab_a", p) for i, p in enumerate(items)] + [_rec(100 + i, "lab_b", p) for i, p in enumerate(items)]
    assert _links(echo, tmp_path).group_by("key").agg(pl.col("account_id").n_unique().alias("n")).filter(pl.col("n") == 2).height == 0
    split = [_rec(i, "lab_a", p) for i, p in enumerate(items[:20])] + [_rec(100 + i, "lab_b", p) for i, p in enumerate(items[20:])]
    assert _links(split, tmp_path).group_by("key").agg(pl.col("account_id").n_unique().alias("n")).filter(pl.col("n") == 2).height >= 1


def test_a_mail_domain_seen_from_many_networks_is_public():
    from distillguard.features.linking import DOMAIN_PUBLIC_NETWORKS, LinkGraph, link_pairs

    # One relay domain whose users pair up on many ISPs (a_i and b_i on ASN 100 + i); one
    # company domain on its own network.
    rows = [(f"{x}{i}", f"dom:relay.example|{100 + i}") for i in range(DOMAIN_PUBLIC_NETWORKS) for x in "ab"]
    rows += [("c0", "dom:acme.example|7"), ("c1", "dom:acme.example|7")]
    pairs = link_pairs(pl.DataFrame({"account_id": [a for a, _ in rows], "key": [k for _, k in rows],
                                     "first_ts": [T0] * len(rows)}))
    index = {a: i for i, a in enumerate(sorted({a for a, _ in rows}))}
    labels, linked = LinkGraph.build(pairs, index).components_at(T0)
    assert not linked[index["a0"]] and not linked[index["b0"]]
    assert linked[index["c0"]] and labels[index["c0"]] == labels[index["c1"]]
