"""Two providers, one campaign: what sharing indicators buys provider B (docs/sharing.md).

From one simulation (``distillguard.sim``), every account goes to provider A or B by a hash of
its id, so each provider sees half of the benign population and half of every campaign. One
campaign (by default the largest ``hydra`` one: linked accounts behind proxies, shared cards,
one harvesting script) is the subject. Optionally B's half of that campaign starts
``shift_hours`` later (the operator adds B once A's half is running), which is the situation
sharing is for; with ``shift_hours=0`` both halves run at the same time.

Then: A scans its log and exports its indicators (valid from when A knew them, plus a sharing
latency); B scans its own log alone; B matches A's indicators against its log. B's flag time
for the campaign is the earliest flag of any of its campaign accounts, and the exchanges
harvested before the flag are the sum of ``events_before_flag`` over them, alone and with
A's indicators (``flag with indicators = min(scan flag, indicator flag)``: both are computed
in event time without look-ahead).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl
import xxhash

from ..scan import scan
from ..sim import simulate
from . import stix
from .export import ExportConfig, export_bundle, write_bundle
from .keys import KeyRing
from .match import apply_matches, best_links, match_indicators
from .observe import observe
from .report_io import read_accounts

HOUR_MS = 3_600_000


def provider_of(account_id: str) -> str:
    return "A" if xxhash.xxh64_intdigest(account_id.encode("utf-8"), seed=2026) % 2 == 0 else "B"


def split_log(sim_dir: Path, out_dir: Path, campaign: str, shift_ms: int) -> dict:
    """Write ``A.jsonl`` and ``B.jsonl``; B's share of ``campaign`` shifted by ``shift_ms``."""
    labels = pl.read_csv(sim_dir / "labels.csv", infer_schema=False)
    camp_accts = set(labels.filter(pl.col("campaign") == campaign)["account_id"].to_list())
    end_ms = None
    fa, fb = open(out_dir / "A.jsonl", "wb"), open(out_dir / "B.jsonl", "wb")
    shifted: list[bytes] = []
    n = {"A": 0, "B": 0, "dropped": 0}
    with open(sim_dir / "events.jsonl", "rb") as fh, fa, fb:
        for line in fh:
            rec = orjson.loads(line)
            t = stix.ms(rec["ts"]) if isinstance(rec["ts"], str) else int(rec["ts"])
            end_ms = t if end_ms is None else max(end_ms, t)
            side = provider_of(rec["account_id"])
            if side == "B" and shift_ms and rec["account_id"] in camp_accts:
                rec["ts"] = t + shift_ms
                shifted.append(rec)
                continue
            (fa if side == "A" else fb).write(line)
            n[side] += 1
        for rec in shifted:
            if rec["ts"] <= end_ms:
                fb.write(orjson.dumps(rec) + b"\n")
                n["B"] += 1
            else:
                n["dropped"] += 1
    return n


def pick_campaign(labels: pl.DataFrame, population: str) -> str:
    c = labels.filter(pl.col("population") == population).group_by("campaign").len().sort(["len", "campaign"], descending=[True, False])
    if c.is_empty():
        raise ValueError(f"no {population} campaign in this simulation")
    return c["campaign"][0]


def campaign_outcome(acc: pl.DataFrame, accounts: set[str]) -> dict:
    a = acc.filter(pl.col("account_id").is_in(list(accounts)))
    flagged = a.filter(pl.col("flagged"))
    first = flagged["first_flag_ms"].min() if flagged.height else None
    return {"accounts": a.height, "flagged_accounts": flagged.height, "first_flag_ms": first,
            "first_flag": stix.ts(first) if first is not None else None,
            "exchanges": int(a["events"].sum()), "harvested_before_flag": int(a["events_before_flag"].sum())}


def two_provider_demo(work_dir: str | Path, *, seed: int = 7, hours: float = 6.0, scale: float = 0.3, split: str = "dev",
                      population: str = "hydra", shift_hours: float = 2.0, latency_minutes: float = 15.0,
                      key: KeyRing | None = None) -> dict:
    """Run the demonstration; returns the numbers (and leaves every file under ``work_dir``)."""
    w = Path(work_dir)
    w.mkdir(parents=True, exist_ok=True)
    simulate(w / "sim", seed=seed, hours=hours, scale=scale, split=split)
    labels = pl.read_csv(w / "sim" / "labels.csv", infer_schema=False)
    campaign = pick_campaign(labels, population)
    counts = split_log(w / "sim", w, campaign, int(shift_hours * HOUR_MS))
    for p in "AB":
        scan([str(w / f"{p}.jsonl")], w / f"scan{p}", show_progress=False)
    key = key or KeyRing.from_secret("demo-coalition-key-not-for-production", "demo-1")
    bundle, stats = export_bundle(w / "scanA", key, config=ExportConfig(provider="Provider A", latency_ms=int(latency_minutes * 60_000)))
    write_bundle(bundle, w / "A-indicators.json")
    obs_b = observe([str(w / "B.jsonl")])
    info: dict = {}
    matches = match_indicators(None, None, key, objects=bundle["objects"], obs=obs_b, info=info)
    matches.write_csv(w / "B-matches.csv")
    acc_b = read_accounts(w / "scanB")
    raw_b = pl.read_csv(w / "scanB" / "accounts.csv", infer_schema=False)
    with_ind = apply_matches(raw_b, matches)
    with_ind.write_csv(w / "B-accounts-with-indicators.csv")
    from .report_io import typed_accounts
    acc_bi = typed_accounts(with_ind)

    lab = labels.with_columns(pl.col("account_id").map_elements(provider_of, return_dtype=pl.String).alias("provider"))
    camp_b = set(lab.filter((pl.col("campaign") == campaign) & (pl.col("provider") == "B"))["account_id"].to_list())
    camp_a = set(lab.filter((pl.col("campaign") == campaign) & (pl.col("provider") == "A"))["account_id"].to_list())
    benign_b = set(lab.filter((pl.col("label") == "benign") & (pl.col("provider") == "B"))["account_id"].to_list())
    attack_b = set(lab.filter((pl.col("label") == "attack") & (pl.col("provider") == "B"))["account_id"].to_list())
    links = best_links(matches)
    linked = links.filter(pl.col("link_ts").is_not_null())
    alone, withi = campaign_outcome(acc_b, camp_b), campaign_outcome(acc_bi, camp_b)
    a_out = campaign_outcome(read_accounts(w / "scanA"), camp_a)
    res = {
        "campaign": campaign, "population": population, "seed": seed, "hours": hours, "scale": scale, "split": split,
        "shift_hours": shift_hours, "latency_minutes": latency_minutes, "lines": counts,
        "provider_A": a_out, "B_alone": alone, "B_with_A_indicators": withi,
        "export": stats, "match_info": info,
        "B_benign_accounts": len(benign_b),
        "B_benign_linked": int(linked.filter(pl.col("account_id").is_in(list(benign_b))).height),
        "B_benign_flagged_by_indicators": int(linked.filter(pl.col("account_id").is_in(list(benign_b)) & pl.col("flag_ts").is_not_null()).height),
        "B_benign_flagged_alone": int(acc_b.filter(pl.col("account_id").is_in(list(benign_b)) & pl.col("flagged")).height),
        "B_benign_flagged_with": int(acc_bi.filter(pl.col("account_id").is_in(list(benign_b)) & pl.col("flagged")).height),
        "B_attack_accounts_linked": int(linked.filter(pl.col("account_id").is_in(list(attack_b))).height),
        "B_campaign_accounts_linked": int(linked.filter(pl.col("account_id").is_in(list(camp_b))).height),
    }
    if alone["first_flag_ms"] is not None and withi["first_flag_ms"] is not None:
        res["flag_earlier_minutes"] = round((alone["first_flag_ms"] - withi["first_flag_ms"]) / 60_000, 1)
    (w / "demo.json").write_text(stix.dumps(res))
    return res
