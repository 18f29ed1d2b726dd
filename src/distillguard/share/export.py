"""``distillguard share export``: a scan's flagged campaigns as a STIX 2.1 bundle.

What goes in (see docs/sharing.md for the full object map):

- the provider's identity, the TLP 2.0 marking, distillguard's extension-definitions, the
  ATLAS AML.T0024.002 attack-pattern and the four course-of-action objects;
- one **campaign** per flagged cluster (its flagged members) and, optionally, per flagged
  account outside any cluster;
- **indicators**, each related to its campaign(s) by ``indicates``:
  keyed hashes of linkable infrastructure (payment fingerprints, company e-mail domains,
  /24 and /48 network prefixes, ASNs, client strings), ``dg-sig-v1`` prompt-template band keys,
  one behavioural fingerprint per campaign, and the detection rules that fired.

What never goes in: prompt text, account ids, payment fingerprints, addresses, domains or
client strings in the clear. Identifiers are HMACs under the coalition key (:mod:`.keys`).

**Time.** An indicator is valid from the moment the exporter *knew* it: the value had been
used by flagged members of the campaign (uses before an account was flagged count from its
flag time) often enough, ``min support``, after any ``latency``. A value that a legitimate
customer (an account the exporter never flags and has not linked to a flagged cluster) has used
before then is not shared; one such use afterwards ends the indicator's validity there (the
exporter would revoke it). So a partner replaying the same
period matches nothing the exporter could not have published at that time. Confidence is the
campaign score times a support factor; partners decay it with age (``half_life_days``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import polars as pl

from . import stix
from .behaviour import first_hits, running_shares
from .keys import KeyRing
from .observe import BEHAVIOUR_DIMS, BEHAVIOUR_SCHEME, IDENTIFIER_KINDS, identifier_rows, inputs_of_scan, observe
from .report_io import read_accounts, read_clusters
from .rules import load_rule_docs, rule_indicator
from .signature import SCHEME as SIG_SCHEME

DAY_MS = 86_400_000

# kind -> (time to live in days, confidence half-life in days): networks rotate fast, cards slowly.
KIND_TTL = {
    "payment": (90, 30), "email_domain": (60, 30), "ip_prefix": (14, 3), "asn": (14, 7),
    "client": (30, 7), "prompt_band": (30, 14), "behaviour": (30, 14), "rule": (365, 180),
}
KIND_LABEL = {
    "payment": "Payment fingerprint", "email_domain": "Sign-up e-mail domain", "ip_prefix": "Network prefix",
    "asn": "Autonomous system", "client": "Client (User-Agent) string", "prompt_band": "Prompt-template signature band",
}
# Mailbox providers shared by millions of unrelated people: never evidence of a link.
FREE_MAIL = frozenset("""gmail.com googlemail.com outlook.com hotmail.com live.com msn.com yahoo.com yahoo.co.jp
yahoo.co.uk icloud.com me.com mac.com aol.com proton.me protonmail.com qq.com 163.com 126.com gmx.de gmx.net web.de
yandex.ru mail.ru naver.com daum.net zoho.com tutanota.com orange.fr libero.it free.fr t-online.de""".split())


@dataclass
class ExportConfig:
    provider: str = "Provider"
    tlp: str = "amber"
    include_singletons: bool = True
    min_campaign_score: float = 0.0
    latency_ms: int = 0                  # sharing delay added to every knowledge time
    min_support_exchanges: int = 3       # identifier: uses by flagged members (or >= 2 members)
    band_min_accounts: int = 2           # template band: members and uses needed
    band_min_exchanges: int = 5
    band_min_exchanges_single: int = 10  # ... for a one-account campaign
    band_cap: int = 32                   # most band keys per campaign (strongest support first)
    behaviour_basis: int = 50            # member exchanges the fingerprint is computed from
    behaviour_min_exchanges: int = 20    # a partner matches accounts with at least this many
    behaviour_tolerances: tuple[float, ...] = (0.15, 0.1, 0.05)
    kind_ttl: dict = field(default_factory=lambda: dict(KIND_TTL))
    kinds: tuple[str, ...] = IDENTIFIER_KINDS + ("prompt_band", "behaviour", "rule")


def _campaigns(acc: pl.DataFrame, clusters: pl.DataFrame, cfg: ExportConfig, as_of: int) -> pl.DataFrame:
    """One row per campaign: key, members (flagged by ``as_of``), score, reasons, action, first flag."""
    flagged = acc.filter(pl.col("flagged") & pl.col("first_flag_ms").is_not_null() & (pl.col("first_flag_ms") <= as_of))
    cl = clusters.filter(pl.col("flagged")).select("cluster_id", pl.col("score").alias("c_score"), pl.col("reasons").alias("c_reasons"))
    in_cl = flagged.join(cl, on="cluster_id", how="inner")
    rows = in_cl.group_by("cluster_id").agg(
        pl.col("account_id").sort().alias("members"),
        pl.max_horizontal(pl.col("c_score").first(), pl.col("score").max()).alias("score"),
        (pl.col("c_reasons").first() + pl.lit(";") + pl.col("reasons").str.join(";")).alias("reasons"),
        pl.col("action").alias("actions"),
        pl.col("first_flag_ms").min().alias("first_flag_ms"),
    ).with_columns(("cl|" + pl.col("cluster_id")).alias("key")).drop("cluster_id")
    parts = [rows]
    if cfg.include_singletons:
        single = flagged.join(cl.select("cluster_id"), on="cluster_id", how="anti")
        parts.append(single.select(
            pl.concat_list(pl.col("account_id")).alias("members"), "score", "reasons",
            pl.concat_list(pl.col("action")).alias("actions"), "first_flag_ms",
            ("acct|" + pl.col("account_id")).alias("key"),
        ))
    out = pl.concat([p.select("key", "members", "score", "reasons", "actions", "first_flag_ms") for p in parts])
    order = ["none", "monitor", "challenge", "throttle", "suspend"]
    rank = {a: i for i, a in enumerate(order)}
    return out.filter(pl.col("score") >= cfg.min_campaign_score).with_columns(
        pl.col("actions").map_elements(lambda a: max(a, key=lambda x: rank.get(x, 0)), return_dtype=pl.String).alias("action")
    ).drop("actions").sort("first_flag_ms", "key")


def _identifier_candidates(long: pl.DataFrame, members: pl.DataFrame, never: pl.DataFrame, camp_size: pl.DataFrame,
                           cfg: ExportConfig, as_of: int) -> pl.DataFrame:
    """Per (campaign, kind, value): knowledge time, validity end, support; only shareable values."""
    if cfg.kinds and "email_domain" in cfg.kinds:
        long = long.filter(~((pl.col("kind") == "email_domain") & pl.col("value").is_in(list(FREE_MAIL))))
    per_acct = long.group_by("kind", "value", "account_id").agg(pl.col("ts").min().alias("first"), pl.col("ts").sort().alias("tss"))
    # First use by an account the exporter never flags: the value is not campaign-specific from then on.
    nf = per_acct.join(never, on="account_id", how="semi").group_by("kind", "value").agg(pl.col("first").min().alias("nf_first"))
    obs = per_acct.join(members, on="account_id", how="inner").explode("tss").with_columns(
        pl.max_horizontal("tss", "flag_ms").alias("eff"))
    obs = obs.sort("key", "kind", "value", "eff").with_columns(
        pl.int_range(1, pl.len() + 1).over("key", "kind", "value").alias("cum_n"),
        pl.col("account_id").is_first_distinct().cum_sum().over("key", "kind", "value").alias("cum_acc"),
    ).join(camp_size, on="key")
    band = pl.col("kind") == "prompt_band"
    enough = (
        pl.when(band & (pl.col("size") == 1)).then(pl.col("cum_n") >= cfg.band_min_exchanges_single)
        .when(band).then((pl.col("cum_acc") >= cfg.band_min_accounts) & (pl.col("cum_n") >= cfg.band_min_exchanges))
        .otherwise((pl.col("cum_acc") >= 2) | (pl.col("cum_n") >= cfg.min_support_exchanges))
    )
    known = obs.filter(enough).group_by("key", "kind", "value").agg((pl.col("eff").min() + cfg.latency_ms).alias("known"))
    support = obs.group_by("key", "kind", "value").agg(pl.col("account_id").n_unique().alias("support_accounts"),
                                                        pl.len().alias("support_exchanges"))
    ttl = pl.col("kind").replace_strict({k: v[0] * DAY_MS for k, v in cfg.kind_ttl.items()}, return_dtype=pl.Int64)
    c = known.join(support, on=["key", "kind", "value"]).join(nf, on=["kind", "value"], how="left").filter(
        (pl.col("known") <= as_of) & (pl.col("nf_first").is_null() | (pl.col("nf_first") > pl.col("known")))
    ).with_columns(pl.min_horizontal(pl.col("known") + ttl, pl.col("nf_first")).alias("until"))
    # Strongest bands first, at most band_cap per campaign.
    c = c.sort(["key", "kind", "support_exchanges", "known", "value"], descending=[False, False, True, False, False]).with_columns(
        pl.int_range(1, pl.len() + 1).over("key", "kind").alias("_r"))
    return c.filter((pl.col("kind") != "prompt_band") | (pl.col("_r") <= cfg.band_cap)).drop("_r")


def _shares(df: pl.DataFrame) -> dict[str, float]:
    n = max(1, df.height)
    return {d: float(df[d].sum()) / n for d in BEHAVIOUR_DIMS}


def _ranges(shares: dict[str, float], tol: float) -> list[tuple[str, str, float]]:
    conds = []
    for d in BEHAVIOUR_DIMS:
        s = shares[d]
        lo, hi = round(max(0.0, s - tol), 3), round(min(1.0, s + tol), 3)
        if lo > 0:
            conds.append((f"{d}_share", ">=", lo))
        if hi < 1:
            conds.append((f"{d}_share", "<=", hi))
    return conds


def _behaviour(obs: pl.DataFrame, members: pl.DataFrame, never_ids: pl.DataFrame, cfg: ExportConfig, as_of: int):
    """Per campaign: (known time, conditions, basis size) of a fingerprint no never-flagged account matches."""
    out = {}
    mem_obs = obs.join(members, on="account_id", how="inner").with_columns(pl.max_horizontal("ts", "flag_ms").alias("eff")).sort("eff")
    never_run = running_shares(obs.join(never_ids, on="account_id", how="semi"))
    for (key,), g in mem_obs.partition_by("key", as_dict=True).items():
        if g.height < cfg.behaviour_basis:
            continue
        known = int(g["eff"][cfg.behaviour_basis - 1]) + cfg.latency_ms
        if known > as_of:
            continue
        basis = g.filter(pl.col("eff") <= known - cfg.latency_ms)
        shares = _shares(basis)
        for tol in cfg.behaviour_tolerances:
            conds = [("exchanges", ">=", float(cfg.behaviour_min_exchanges))] + _ranges(shares, tol)
            if first_hits(never_run, conds, cfg.behaviour_min_exchanges).is_empty():
                out[key] = (known, conds, basis.height, tol)
                break
    return out


def _reason_codes(text: str) -> set[str]:
    codes = set()
    for r in (text or "").split(";"):
        r = r.strip()
        while r.split(":", 1)[0] in ("cluster", "window", "account") and ":" in r:
            r = r.split(":", 1)[1]
        if r:
            codes.add(r)
    return codes


def export_bundle(scan_dir: str | Path, keyring: KeyRing, *, events: Sequence[str] | None = None,
                  config: ExportConfig | None = None, as_of_ms: int | None = None,
                  rules_dir: str | Path | None = None) -> tuple[dict, dict]:
    """Build the STIX bundle of a scan's flagged campaigns.

    Parameters
    ----------
    scan_dir : a ``distillguard scan`` output directory.
    keyring : the coalition keys; the active key hashes every identifier.
    events : the log the scan read (default: ``summary.json`` ``inputs``).
    config : provider name, TLP level, support thresholds, TTLs (:class:`ExportConfig`).
    as_of_ms : export time in event time (default: the last exchange of the log); only what
        was known by then is exported and objects carry it as ``modified``.
    rules_dir : the rules the scan ran (default: the packaged rules).

    Returns
    -------
    (bundle dict, stats dict): stats counts campaigns and indicators per kind.
    """
    cfg = config or ExportConfig()
    kid = keyring.active
    hasher = keyring.hasher(kid)
    key_check = keyring.check_value(kid)
    acc = read_accounts(scan_dir)
    clusters = read_clusters(scan_dir)
    obs = observe(events or inputs_of_scan(scan_dir), until_ms=as_of_ms)
    if as_of_ms is None:
        as_of_ms = int(obs["ts"].max()) if obs.height else 0
    as_of = int(as_of_ms)
    provider = stix.provider_identity(cfg.provider)
    pid = provider["id"]
    marking = stix.TLP2_IDS[cfg.tlp.lower().removeprefix("tlp:")]
    modified = stix.ts(as_of)

    camps = _campaigns(acc, clusters, cfg, as_of)
    members = camps.select("key", "members").explode("members").rename({"members": "account_id"}).join(
        acc.select("account_id", pl.col("first_flag_ms").alias("flag_ms")), on="account_id")
    members = members.unique("account_id", keep="first")  # an account belongs to one campaign
    camp_size = members.group_by("key").agg(pl.len().alias("size"))
    # "Legitimate" customers, against whom every shared value is checked: accounts never flagged by
    # as_of and not linked into a flagged cluster (an unflagged member of a flagged cluster is
    # neither evidence for nor against the campaign's infrastructure).
    flagged_ids = acc.filter(pl.col("flagged") & (pl.col("first_flag_ms") <= as_of)).select("account_id")
    flagged_clusters = clusters.filter(pl.col("flagged") & (pl.col("cluster_id") != ""))["cluster_id"].to_list()
    linked_ids = acc.filter(pl.col("cluster_id").is_in(flagged_clusters)).select("account_id")
    never = obs.select("account_id").unique().join(flagged_ids, on="account_id", how="anti").join(linked_ids, on="account_id", how="anti")

    objects: list[dict] = [provider, *stix.fixed_objects(cfg.tlp)]
    stats: dict = {"campaigns": 0, "indicators": {}, "as_of": stix.ts(as_of), "key_id": kid}
    camp_obj: dict[str, dict] = {}
    member_span = obs.join(members, on="account_id").group_by("key").agg(
        pl.col("ts").min().alias("t0"), pl.col("ts").max().alias("t1"), pl.len().alias("n"))
    span = {r["key"]: r for r in member_span.iter_rows(named=True)}
    for c in camps.iter_rows(named=True):
        key = c["key"]
        if key not in span:
            continue
        ref = hasher.raw("campaign", key)
        created = stix.ts(c["first_flag_ms"])
        reasons = sorted(_reason_codes(c["reasons"]))
        score = float(c["score"])
        o = {
            "type": "campaign", "spec_version": "2.1", "id": stix.sid("campaign", f"{pid}|{key}"),
            "created": created, "modified": modified, "created_by_ref": pid,
            "name": f"Distillation campaign {ref[:12]}",
            "description": (f"{len(c['members'])} linked account(s) of {cfg.provider} harvesting model outputs "
                            f"({span[key]['n']} exchanges); evidence: {', '.join(reasons) or 'score'}; "
                            f"recommended response: {c['action']}."),
            "first_seen": stix.ts(span[key]["t0"]), "last_seen": stix.ts(max(span[key]["t1"], span[key]["t0"])),
            "objective": "Harvest model outputs (answers, reasoning traces, gradings) to train a competing model.",
            "confidence": max(1, min(100, int(round(100 * score)))),
            "object_marking_refs": [marking],
            "extensions": {stix.EXT_PROPS["id"]: {
                "extension_type": "property-extension", "accounts": len(c["members"]), "exchanges": int(span[key]["n"]),
                "score": round(score, 4), "reasons": reasons, "recommended_action": c["action"], "cluster_ref": ref}},
        }
        camp_obj[key] = o
        objects.append(o)
        objects.append(stix.relationship(o["id"], "uses", stix.ATTACK_PATTERN["id"], created, modified,
                                         created_by=pid, markings=[marking]))
        coa = stix.COURSES_OF_ACTION.get(c["action"] if c["action"] in stix.COURSES_OF_ACTION else "monitor")
        objects.append(stix.relationship(o["id"], "related-to", coa["id"], created, modified, created_by=pid, markings=[marking],
                                         description="Recommended response to this campaign."))
    stats["campaigns"] = len(camp_obj)
    score_of = {c["key"]: float(c["score"]) for c in camps.iter_rows(named=True)}

    # Identifiers and template bands.
    id_kinds = [k for k in cfg.kinds if k in IDENTIFIER_KINDS or k == "prompt_band"]
    if id_kinds and camp_obj:
        cand = _identifier_candidates(identifier_rows(obs, id_kinds), members.filter(pl.col("key").is_in(list(camp_obj))),
                                      never, camp_size, cfg, as_of)
        per_value: dict[tuple[str, str], dict] = {}
        for r in cand.sort("known", "kind", "value", "key").iter_rows(named=True):
            k = (r["kind"], r["value"])
            conf = 100 * score_of[r["key"]] * r["support_accounts"] / (r["support_accounts"] + 0.25)
            e = per_value.setdefault(k, {"keys": [], "known": r["known"], "until": r["until"], "conf": 0.0,
                                         "sa": 0, "se": 0})
            e["keys"].append(r["key"])
            e["known"] = min(e["known"], r["known"])
            e["until"] = min(e["until"], r["until"])
            e["conf"] = max(e["conf"], conf)
            e["sa"] += r["support_accounts"]
            e["se"] += r["support_exchanges"]
        # Band keys of one template become known together: one indicator per (campaigns, validity).
        groups: dict[tuple, dict] = {}
        for (kind, value), e in per_value.items():
            if e["until"] <= e["known"]:
                continue
            gk = (kind, value) if kind != "prompt_band" else (kind, tuple(sorted(e["keys"])), e["known"], e["until"])
            g = groups.setdefault(gk, {**e, "kind": kind, "values": []})
            g["values"].append(hasher.raw(kind, value))
            g["conf"] = max(g["conf"], e["conf"])
            g["sa"], g["se"] = max(g["sa"], e["sa"]), max(g["se"], e["se"])
        for g in groups.values():
            e, kind = g, g["kind"]
            hs = sorted(g["values"])
            h = hs[0] if len(hs) == 1 else hashlib.sha256("|".join(hs).encode()).hexdigest()
            ttl, half = cfg.kind_ttl[kind]
            scheme = SIG_SCHEME if kind == "prompt_band" else "dg-id-v1"
            ind = {
                "type": "indicator", "spec_version": "2.1", "id": stix.sid("indicator", f"{pid}|{kind}|{h}"),
                "created": stix.ts(e["known"]), "modified": modified, "created_by_ref": pid,
                "name": f"{KIND_LABEL[kind]} of a distillation campaign ({h[:12]})",
                "description": (f"Keyed hash{'es' if len(hs) > 1 else ''} (coalition key '{kid}', scheme {scheme}) of "
                                f"{len(hs)} {KIND_LABEL[kind].lower()}{'s' if len(hs) > 1 else ''} used by {e['sa']} account(s) of a "
                                f"flagged distillation campaign and by no account the provider considers legitimate. "
                                f"Match with distillguard share match."),
                "indicator_types": ["malicious-activity"],
                "pattern": stix.identifier_pattern(kind, hs), "pattern_type": "stix", "pattern_version": "2.1",
                "valid_from": stix.ts(e["known"]), "valid_until": stix.ts(e["until"]),
                "confidence": max(1, min(100, int(round(e["conf"])))),
                "kill_chain_phases": [{"kill_chain_name": "mitre-atlas", "phase_name": "exfiltration"}],
                "object_marking_refs": [marking],
                "extensions": {stix.EXT_PROPS["id"]: {
                    "extension_type": "property-extension", "kind": kind, "scheme": scheme, "key_id": kid, "key_check": key_check,
                    "min_hits": 3 if kind == "prompt_band" else 1, "half_life_days": half,
                    "support_accounts": int(e["sa"]), "support_exchanges": int(e["se"])}},
            }
            objects.append(ind)
            for key in e["keys"]:
                objects.append(stix.relationship(ind["id"], "indicates", camp_obj[key]["id"], max(ind["created"], camp_obj[key]["created"]),
                                                 modified, created_by=pid, markings=[marking]))
            stats["indicators"][kind] = stats["indicators"].get(kind, 0) + 1

    # Behavioural fingerprints.
    if "behaviour" in cfg.kinds and camp_obj:
        ttl, half = cfg.kind_ttl["behaviour"]
        for key, (known, conds, basis, tol) in _behaviour(obs, members.filter(pl.col("key").is_in(list(camp_obj))),
                                                          never, cfg, as_of).items():
            ind = {
                "type": "indicator", "spec_version": "2.1", "id": stix.sid("indicator", f"{pid}|behaviour|{key}"),
                "created": stix.ts(known), "modified": modified, "created_by_ref": pid,
                "name": f"Behavioural fingerprint of distillation campaign {camp_obj[key]['name'].split()[-1]}",
                "description": (f"Shares of the campaign's exchanges with each {BEHAVIOUR_SCHEME} flag (from {basis} exchanges), "
                                f"within +/-{tol}; no account the provider considers legitimate matches it."),
                "indicator_types": ["malicious-activity"],
                "pattern": stix.range_pattern("distillguard-behaviour", conds), "pattern_type": "stix", "pattern_version": "2.1",
                "valid_from": stix.ts(known), "valid_until": stix.ts(known + ttl * DAY_MS),
                "confidence": max(1, min(100, int(round(100 * score_of[key] * 0.8)))),
                "kill_chain_phases": [{"kill_chain_name": "mitre-atlas", "phase_name": "exfiltration"}],
                "object_marking_refs": [marking],
                "extensions": {stix.EXT_PROPS["id"]: {
                    "extension_type": "property-extension", "kind": "behaviour", "scheme": BEHAVIOUR_SCHEME,
                    "min_hits": cfg.behaviour_min_exchanges, "half_life_days": half, "support_exchanges": basis}},
            }
            objects.append(ind)
            objects.append(stix.relationship(ind["id"], "indicates", camp_obj[key]["id"], max(ind["created"], camp_obj[key]["created"]),
                                             modified, created_by=pid, markings=[marking]))
            stats["indicators"]["behaviour"] = stats["indicators"].get("behaviour", 0) + 1

    # Detection rules that fired for the exported campaigns.
    if "rule" in cfg.kinds and camp_obj:
        docs = load_rule_docs(rules_dir)
        ttl, half = cfg.kind_ttl["rule"]
        fired: dict[str, tuple[dict, int, list[str]]] = {}
        for c in camps.iter_rows(named=True):
            if c["key"] not in camp_obj:
                continue
            codes = _reason_codes(c["reasons"])
            for doc in docs:
                if str(doc.get("reason")) in codes:
                    t_known = c["first_flag_ms"] + cfg.latency_ms
                    if t_known > as_of:
                        continue
                    d, t, keys = fired.get(str(doc["id"]), (doc, t_known, []))
                    fired[str(doc["id"])] = (d, min(t, t_known), keys + [c["key"]])
        for rid, (doc, t, keys) in sorted(fired.items()):
            ind = rule_indicator(doc, provider_id=pid, created=stix.ts(t), modified=modified, marking=marking,
                                 half_life_days=half, ttl_days=ttl, valid_from_ms=t)
            objects.append(ind)
            objects.append(stix.relationship(ind["id"], "indicates", stix.ATTACK_PATTERN["id"], ind["created"], modified,
                                             created_by=pid, markings=[marking]))
            for key in keys:
                objects.append(stix.relationship(ind["id"], "indicates", camp_obj[key]["id"], max(ind["created"], camp_obj[key]["created"]),
                                                 modified, created_by=pid, markings=[marking]))
            stats["indicators"]["rule"] = stats["indicators"].get("rule", 0) + 1

    # One version per id (a relationship can arise twice).
    seen: dict[str, dict] = {}
    for o in objects:
        seen.setdefault(o["id"], o)
    b = stix.bundle(seen.values(), f"{pid}|{as_of}|{len(seen)}")
    return b, stats


def write_bundle(b: dict, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(stix.dumps(b), encoding="utf-8")
    return p
