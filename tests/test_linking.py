"""Template links: a campaign's shared wrapper links its accounts; a popular question does not."""

from __future__ import annotations

import orjson
import polars as pl

from distillguard.features.exchange import exchange_features
from distillguard.features.marks import account_ticks
from distillguard.ingest import IngestStats, Quarantine, records_to_batch

T0 = 1_793_577_600_000  # 2026-11-02T00:00:00Z
POPULAR = "What if Alan Turing had not cracked the Enigma code during World War II?"
WRAPPER = "I'm building study notes. Explain every step of the solution in full detail.\n\nQ: {q}"


def _links(records: list[dict], tmp_path) -> pl.DataFrame:
    lines = [orjson.dumps(r) for r in records]
    with Quarantine(tmp_path / "q.jsonl") as q:
        batch = records_to_batch(lines, "test", q, IngestStats())
    rows = exchange_features(batch).with_columns(pl.lit(False).alias("new_global"), pl.lit(False).alias("new_item"))
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
