"""Partner indicators -> signals on our own accounts; sightings back to the partner.

**Matching** (:func:`match_indicators`). Each live partner indicator (newest version, not
revoked, inside ``[valid_from, valid_until)``) is compared with our log:

- identifier kinds: we hash our own canonical values with the coalition key the indicator names
  and compare; an account matches once ``min_hits`` of its exchanges (1 for infrastructure, 3
  for a prompt-template band) carry the value;
- behaviour: the account's running ``dg-behaviour-v1`` shares enter the indicator's box.

Confidence decays with age: ``confidence/100 * 0.5 ** ((t - valid_from) / half_life)`` at match
time ``t``; below ``min_confidence`` an indicator no longer matches. Rule indicators are not
matched here: ``distillguard share rules`` turns them into rule files for ``scan --rules``.

**Linking** (:func:`link_accounts`). Evidence for "account X belongs to partner campaign C" is
the noisy-OR over indicator kinds of ``weight[kind] * confidence`` (best indicator per kind),
taken in event time: the strength at time ``t`` uses only matches made by ``t``. An account is
*linked* at ``LINK_THRESHOLD`` and *flagged* (``challenge``) at ``FLAG_THRESHOLD``. The weights
make one strong identifier (a payment fingerprint) or two independent medium ones (network +
template, template + behaviour) enough to link; weak ones (ASN, client string) only add up.

**Applying** (:func:`apply_matches`): a linked account gets reason code ``partner_indicator``,
its score raised by noisy-OR with the strength, its action raised to at least ``monitor``
(linked) or ``challenge`` (flagged), and, when that flag comes earlier than the scan's own,
``first_flagged_ts`` / ``events_before_flag`` from the match.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import polars as pl

from . import stix
from .behaviour import first_hits, running_shares
from .keys import KeyRing
from .observe import identifier_rows, observe

REASON = "partner_indicator"
KIND_WEIGHT = {"payment": 0.9, "email_domain": 0.3, "ip_prefix": 0.45, "asn": 0.1, "client": 0.25,
               "prompt_band": 0.45, "behaviour": 0.4}
LINK_THRESHOLD = 0.5
FLAG_THRESHOLD = 0.7
MIN_CONFIDENCE = 0.1
DAY_MS = 86_400_000
ACTIONS = ("none", "monitor", "challenge", "throttle", "suspend")
MATCH_SCHEMA = {"account_id": pl.String, "indicator_id": pl.String, "campaign_ref": pl.String, "confidence": pl.Float64,
                "first_match_ts": pl.Int64, "kind": pl.String, "hits": pl.Int64, "last_match_ts": pl.Int64,
                "events_at_match": pl.Int64, "partner": pl.String}


@dataclass
class PartnerIndicator:
    id: str
    kind: str
    campaigns: list[str]
    confidence: float  # 0..1 at valid_from
    valid_from: int
    valid_until: int | None
    half_life_ms: float
    min_hits: int
    key_id: str | None = None
    key_check: str | None = None
    values: list[str] = field(default_factory=list)
    conds: list[tuple[str, str, float]] = field(default_factory=list)
    partner: str = ""

    def live_until(self, min_confidence: float) -> int:
        """End of the window in which the decayed confidence stays >= ``min_confidence``."""
        if self.confidence <= min_confidence or self.confidence <= 0:
            return self.valid_from
        t = self.valid_from + int(self.half_life_ms * math.log2(self.confidence / min_confidence))
        return min(t, self.valid_until) if self.valid_until is not None else t


def load_indicators(objs: Iterable[dict], *, skipped: dict | None = None) -> list[PartnerIndicator]:
    """Live identifier and behaviour indicators of a set of STIX objects (every version given)."""
    latest = stix.latest_versions(objs)
    campaigns: dict[str, list[str]] = {}
    for o in latest.values():
        if o.get("type") == "relationship" and o.get("relationship_type") == "indicates" and not o.get("revoked") \
                and isinstance(o.get("source_ref"), str) and str(o.get("target_ref", "")).startswith("campaign--"):
            campaigns.setdefault(o["source_ref"], []).append(o["target_ref"])
    out = []
    skipped = skipped if skipped is not None else {}
    for o in latest.values():
        if o.get("type") != "indicator":
            continue
        e = stix.ext(o)
        kind = e.get("kind")
        if o.get("revoked"):
            skipped["revoked"] = skipped.get("revoked", 0) + 1
            continue
        if not isinstance(kind, str) or kind not in KIND_WEIGHT:
            continue
        try:
            pi = _bounded_indicator(o, e, kind, campaigns)
        except ValueError as err:
            # One bad indicator is skipped and counted by what was wrong; the rest are used.
            why = "bad_" + str(err).split(":", 1)[0]
            skipped[why] = skipped.get(why, 0) + 1
            continue
        try:
            if kind == "behaviour":
                t, conds, any_of = stix.parse_range_pattern(o["pattern"])
                if t != "distillguard-behaviour" or any_of:
                    raise ValueError("not a behaviour box")
                pi.conds = conds
            else:
                k2, pi.values = stix.parse_identifier_pattern(o["pattern"])
                if k2 != kind:
                    raise ValueError("kind mismatch")
                if len(pi.values) > MAX_PATTERN_VALUES:
                    raise ValueError("too many values")
        except Exception:  # noqa: BLE001 - the pattern parser's errors are not all ValueErrors; one bad pattern skips one indicator
            skipped["unparsable"] = skipped.get("unparsable", 0) + 1
            continue
        out.append(pi)
    return out


# Bounds on every field a partner sets (partner input is untrusted).
MAX_HALF_LIFE_DAYS = 3650.0
MAX_MIN_HITS = 100_000
MAX_PATTERN_CHARS = 1 << 20
MAX_PATTERN_VALUES = 10_000


def _number(v, lo: float, hi: float, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{what}: not a number")
    x = float(v)
    if not (math.isfinite(x) and lo <= x <= hi):
        raise ValueError(f"{what}: outside [{lo:g}, {hi:g}]")
    return x


def _bounded_indicator(o: dict, e: dict, kind: str, campaigns: dict) -> PartnerIndicator:
    """A :class:`PartnerIndicator` from one STIX indicator, every field range-checked.

    ``ValueError("<field>: ...")`` when a field is out of bounds: confidence 0-100 (STIX's
    own range; 1000 would otherwise give a link strength of 9), half-life (0, 10 years],
    min_hits 1-100,000 (an integer), a pattern of at most 1 MiB and 10,000 values, valid times.
    """
    conf = _number(o.get("confidence", 50), 0, 100, "confidence")
    half = _number(e.get("half_life_days", 14), 1e-6, MAX_HALF_LIFE_DAYS, "half_life_days")
    hits = _number(e.get("min_hits", 1), 1, MAX_MIN_HITS, "min_hits")
    if not hits.is_integer():
        raise ValueError("min_hits: not an integer")
    pattern = o.get("pattern")
    if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN_CHARS or pattern.count("=") > MAX_PATTERN_VALUES:
        raise ValueError("pattern: missing, or over the size limit")
    try:
        vf = stix.ms(o["valid_from"])
        vu = stix.ms(o["valid_until"]) if o.get("valid_until") else None
    except (KeyError, ValueError, TypeError, AttributeError, OverflowError):
        raise ValueError("valid_time: unreadable") from None
    key_id, key_check = e.get("key_id"), e.get("key_check")
    if not all(x is None or isinstance(x, str) for x in (key_id, key_check)):
        raise ValueError("key_id: not a string")
    partner = o.get("created_by_ref", "")
    return PartnerIndicator(
        id=o["id"], kind=kind, campaigns=sorted(set(campaigns.get(o["id"], []))) or [""],
        confidence=conf / 100.0, valid_from=vf, valid_until=vu, half_life_ms=half * DAY_MS, min_hits=int(hits),
        key_id=key_id, key_check=key_check, partner=partner if isinstance(partner, str) else "",
    )


def _events_at(obs: pl.DataFrame, rows: pl.DataFrame, ts_col: str, out_col: str) -> pl.DataFrame:
    """Add the account's number of exchanges with ``ts <= rows[ts_col]``."""
    if rows.is_empty():
        return rows.with_columns(pl.lit(None, dtype=pl.Int64).alias(out_col))
    counts = obs.select("account_id", "ts").sort("account_id", "ts").with_columns(
        pl.int_range(1, pl.len() + 1).over("account_id").cast(pl.Int64).alias("_n")).group_by("account_id", "ts").agg(pl.col("_n").max()).sort("ts")
    r = rows.with_row_index("_i").sort(ts_col)
    j = r.join_asof(counts.rename({"ts": "_ts"}), left_on=ts_col, right_on="_ts", by="account_id", strategy="backward",
                    check_sortedness=False)
    return j.sort("_i").select(*rows.columns, pl.col("_n").fill_null(0).alias(out_col))


def match_indicators(bundle_paths: Sequence[str | Path] | None, events_paths: Sequence[str] | None, key: KeyRing | None, *,
                     objects: Iterable[dict] | None = None, obs: pl.DataFrame | None = None,
                     min_confidence: float = MIN_CONFIDENCE, info: dict | None = None) -> pl.DataFrame:
    """Match partner indicators against our log.

    Parameters
    ----------
    bundle_paths : partner bundle files (every version of every object; newest wins).
    events_paths : our log (files, globs, directories).
    key : the coalition key ring (must hold the keys the indicators name).
    objects, obs : already loaded STIX objects / :func:`.observe.observe` frame, instead of paths.
        Indicators and relationships that the ``stix2`` library does not parse are ignored.
    min_confidence : decayed confidence below which an indicator stops matching.
    info : filled with counts (indicators live, skipped for unknown key, revoked, ...).

    Returns
    -------
    polars.DataFrame, one row per (account, indicator, campaign):
    ``account_id, indicator_id, campaign_ref, confidence`` (0-1, decayed, at the match),
    ``first_match_ts`` (epoch ms: the exchange that completed the match), ``kind``, ``hits``,
    ``last_match_ts``, ``events_at_match`` (the account's exchanges up to the match), ``partner``.
    """
    info = info if info is not None else {}
    objs = list(objects) if objects is not None else stix.load_objects(bundle_paths or [])
    objs = stix.checked([o for o in objs if o.get("type") in ("indicator", "relationship")], info)
    inds = load_indicators(objs, skipped=info)
    if obs is None:
        obs = observe(events_paths or [])
    info["indicators"] = len(inds)
    rows: list[pl.DataFrame] = []

    ident = [i for i in inds if i.kind != "behaviour"]
    usable = []
    for i in ident:
        if key is None or i.key_id not in key.keys:
            info["unknown_key"] = info.get("unknown_key", 0) + 1
            continue
        if i.key_check and key.check_value(i.key_id) != i.key_check:
            info["key_mismatch"] = info.get("key_mismatch", 0) + 1
            continue
        usable.append(i)
    if usable and obs.height:
        kinds = sorted({i.kind for i in usable})
        long = identifier_rows(obs, kinds)
        table = pl.DataFrame([
            {"indicator_id": i.id, "kind": i.kind, "key_id": i.key_id, "hmac": v, "conf0": i.confidence, "vf": i.valid_from,
             "vu": i.live_until(min_confidence), "half": i.half_life_ms, "min_hits": i.min_hits, "campaigns": i.campaigns,
             "partner": i.partner}
            for i in usable for v in i.values
        ], schema={"indicator_id": pl.String, "kind": pl.String, "key_id": pl.String, "hmac": pl.String, "conf0": pl.Float64,
                   "vf": pl.Int64, "vu": pl.Int64, "half": pl.Float64, "min_hits": pl.Int64, "campaigns": pl.List(pl.String),
                   "partner": pl.String})
        uniq = long.select("kind", "value").unique()
        hashed = []
        for kid in table["key_id"].unique().to_list():
            h = key.hasher(kid)
            hashed.append(uniq.with_columns(pl.lit(kid).alias("key_id"), pl.Series("hmac", [h.raw(k, v) for k, v in uniq.iter_rows()], dtype=pl.String)))
        hv = pl.concat(hashed).join(table, on=["kind", "key_id", "hmac"], how="inner")
        if hv.height:
            hits = long.join(hv.select("kind", "value", "indicator_id", "conf0", "vf", "vu", "half", "min_hits", "campaigns", "partner"),
                             on=["kind", "value"], how="inner").filter((pl.col("ts") >= pl.col("vf")) & (pl.col("ts") < pl.col("vu")))
            g = hits.sort("ts").group_by("account_id", "indicator_id").agg(
                pl.col("ts").alias("tss"), pl.col("kind").first(), pl.col("conf0").first(), pl.col("vf").first(),
                pl.col("half").first(), pl.col("min_hits").first(), pl.col("campaigns").first(), pl.col("partner").first(),
                pl.col("ts").n_unique().alias("hits"), pl.col("ts").max().alias("last_match_ts"))
            g = g.filter(pl.col("hits") >= pl.col("min_hits")).with_columns(
                pl.col("tss").list.unique(maintain_order=True).list.get(pl.col("min_hits") - 1).alias("first_match_ts"))
            rows.append(g.select("account_id", "indicator_id", "campaigns", "kind", "conf0", "vf", "half", "first_match_ts",
                                 "hits", "last_match_ts", "partner"))

    beh = [i for i in inds if i.kind == "behaviour"]
    if beh and obs.height:
        run = running_shares(obs)
        for i in beh:
            h = first_hits(run, i.conds, i.min_hits, i.valid_from, i.live_until(min_confidence))
            if h.height:
                rows.append(h.select(
                    "account_id", pl.lit(i.id).alias("indicator_id"), pl.lit(i.campaigns, dtype=pl.List(pl.String)).alias("campaigns"),
                    pl.lit("behaviour").alias("kind"), pl.lit(i.confidence).alias("conf0"), pl.lit(i.valid_from).alias("vf"),
                    pl.lit(i.half_life_ms).alias("half"), pl.col("ts").alias("first_match_ts"),
                    pl.col("exchanges").cast(pl.Int64).alias("hits"), pl.col("ts").alias("last_match_ts"), pl.lit(i.partner).alias("partner")))
    if not rows:
        return pl.DataFrame(schema=MATCH_SCHEMA)
    m = pl.concat([r.with_columns(pl.col("hits").cast(pl.Int64), pl.col("first_match_ts").cast(pl.Int64),
                                  pl.col("last_match_ts").cast(pl.Int64), pl.col("vf").cast(pl.Int64)) for r in rows])
    m = m.with_columns(
        (pl.col("conf0") * pl.lit(0.5).pow((pl.col("first_match_ts") - pl.col("vf")) / pl.col("half"))).alias("confidence"),
    ).explode("campaigns").rename({"campaigns": "campaign_ref"})
    m = _events_at(obs, m, "first_match_ts", "events_at_match")
    return m.select(list(MATCH_SCHEMA)).sort("first_match_ts", "account_id", "indicator_id")


def link_accounts(matches: pl.DataFrame, *, weights: dict | None = None, link_threshold: float = LINK_THRESHOLD,
                  flag_threshold: float = FLAG_THRESHOLD) -> pl.DataFrame:
    """Per (account, partner campaign): evidence strength over time.

    Returns ``account_id, campaign_ref, strength`` (final), ``link_ts`` / ``flag_ts`` (first
    time the strength reached the link / flag threshold, null if never), ``events_at_link``,
    ``events_at_flag``, ``indicator_ids`` (those matched by the end). No look-ahead: the strength
    at ``t`` uses the matches completed by ``t``.
    """
    w = dict(KIND_WEIGHT, **(weights or {}))
    out = []
    if matches.height:
        for (acct, camp), g in matches.sort("first_match_ts").group_by(["account_id", "campaign_ref"], maintain_order=True):
            best: dict[str, float] = {}
            link_ts = flag_ts = ev_link = ev_flag = None
            s = 0.0
            for r in g.iter_rows(named=True):
                best[r["kind"]] = max(best.get(r["kind"], 0.0), w.get(r["kind"], 0.0) * float(r["confidence"]))
                s = 1.0 - math.prod(1.0 - v for v in best.values())
                if link_ts is None and s >= link_threshold:
                    link_ts, ev_link = r["first_match_ts"], r["events_at_match"]
                if flag_ts is None and s >= flag_threshold:
                    flag_ts, ev_flag = r["first_match_ts"], r["events_at_match"]
            out.append({"account_id": acct, "campaign_ref": camp, "strength": round(s, 4), "link_ts": link_ts, "flag_ts": flag_ts,
                        "events_at_link": ev_link, "events_at_flag": ev_flag,
                        "indicator_ids": sorted(set(g["indicator_id"].to_list()))})
    return pl.DataFrame(out, schema={"account_id": pl.String, "campaign_ref": pl.String, "strength": pl.Float64,
                                     "link_ts": pl.Int64, "flag_ts": pl.Int64, "events_at_link": pl.Int64,
                                     "events_at_flag": pl.Int64, "indicator_ids": pl.List(pl.String)})


def best_links(matches: pl.DataFrame, **kw) -> pl.DataFrame:
    """One row per account: its strongest partner campaign (see :func:`link_accounts`)."""
    links = link_accounts(matches, **kw)
    return links.sort(["strength", "link_ts"], descending=[True, False], nulls_last=True).unique("account_id", keep="first")


def apply_matches(accounts_df: pl.DataFrame, matches: pl.DataFrame, *, weights: dict | None = None,
                  link_threshold: float = LINK_THRESHOLD, flag_threshold: float = FLAG_THRESHOLD,
                  allow_accounts: Iterable[str] = (), add_campaign_column: bool = False) -> pl.DataFrame:
    """Raise the scan's verdicts of accounts linked to a partner campaign.

    ``accounts_df`` has the columns of accounts.csv (as read by ``pl.read_csv``: typed or all
    strings); the result has the same columns and types (plus ``partner_campaign`` with
    ``add_campaign_column``). Accounts in ``allow_accounts`` (analyst-confirmed legitimate)
    are left as they are.
    """
    from .report_io import typed_accounts

    if accounts_df.is_empty():
        return accounts_df
    orig_schema = accounts_df.schema
    acc = typed_accounts(accounts_df)
    links = best_links(matches, weights=weights, link_threshold=link_threshold, flag_threshold=flag_threshold).filter(
        pl.col("strength") >= link_threshold)
    if allow_accounts:
        links = links.filter(~pl.col("account_id").is_in(list(allow_accounts)))
    j = acc.join(links.select("account_id", "campaign_ref", "strength", "flag_ts", "events_at_flag"), on="account_id", how="left")
    lvl = pl.col("action").replace_strict({a: i for i, a in enumerate(ACTIONS)}, default=0, return_dtype=pl.Int64)
    linked = pl.col("strength").is_not_null()
    flag_now = linked & pl.col("flag_ts").is_not_null()
    new_lvl = (pl.when(flag_now).then(pl.max_horizontal(lvl, pl.lit(2)))
               .when(linked).then(pl.max_horizontal(lvl, pl.lit(1))).otherwise(lvl))
    earlier = flag_now & (pl.col("first_flag_ms").is_null() | (pl.col("flag_ts") < pl.col("first_flag_ms")))
    j = j.with_columns(
        pl.when(linked).then((1 - (1 - pl.col("score")) * (1 - pl.col("strength"))).round(4)).otherwise(pl.col("score")).alias("score"),
        new_lvl.alias("_lvl"),
        pl.when(earlier).then(pl.col("flag_ts")).otherwise(pl.col("first_flag_ms")).alias("first_flag_ms"),
        pl.when(earlier).then(pl.col("events_at_flag")).otherwise(pl.col("events_before_flag")).alias("events_before_flag"),
        pl.when(linked).then(pl.when(pl.col("reasons") == "").then(pl.lit(REASON)).otherwise(pl.lit(REASON + ";") + pl.col("reasons")))
        .otherwise(pl.col("reasons")).alias("reasons"),
    ).with_columns(
        pl.col("_lvl").replace_strict(dict(enumerate(ACTIONS)), return_dtype=pl.String).alias("action"),
        (pl.col("_lvl") >= 2).alias("flagged"),
    )
    ts_text = pl.from_epoch(pl.col("first_flag_ms"), time_unit="ms").dt.replace_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").fill_null("")
    j = j.with_columns(ts_text.alias("first_flagged_ts"))
    cols = list(orig_schema)
    out = j.select(cols + (["campaign_ref"] if add_campaign_column else []))
    if add_campaign_column:
        out = out.rename({"campaign_ref": "partner_campaign"})
    casts = []
    for c, dt in orig_schema.items():
        if c == "flagged" and dt == pl.String:
            casts.append(pl.when(pl.col("flagged")).then(pl.lit("true")).otherwise(pl.lit("false")).alias("flagged"))
        elif dt == pl.String:
            casts.append(pl.col(c).cast(pl.String))
        else:
            casts.append(pl.col(c).cast(dt))
    return out.with_columns(casts)


# ---------------------------------------------------------------------------- sightings


def _sighting_objects(provider_name: str, tlp: str) -> tuple[dict, list[dict]]:
    me = stix.provider_identity(provider_name)
    return me, [me, stix.DG_IDENTITY, stix.EXT_PROPS, stix.tlp_marking(tlp)]


def sightings_bundle(matches: pl.DataFrame, provider_name: str, *, as_of_ms: int, tlp: str = "amber",
                     links: pl.DataFrame | None = None) -> dict:
    """STIX sightings for the partner: per matched indicator, how many of our accounts it hit.

    No account id or other identifier of ours is in a sighting: counts and times only.
    """
    me, objs = _sighting_objects(provider_name, tlp)
    marking = stix.TLP2_IDS[tlp.lower().removeprefix("tlp:")]
    linked: dict[str, set] = {}
    if links is not None and links.height:
        for r in links.filter(pl.col("link_ts").is_not_null()).iter_rows(named=True):
            for i in r["indicator_ids"]:
                linked.setdefault(i, set()).add(r["account_id"])
    if matches.height:
        per = matches.group_by("indicator_id").agg(pl.col("account_id").n_unique().alias("n"), pl.col("first_match_ts").min().alias("t0"),
                                                   pl.col("last_match_ts").max().alias("t1"), pl.col("hits").sum().alias("hits"))
        for r in per.sort("indicator_id").iter_rows(named=True):
            objs.append({
                "type": "sighting", "spec_version": "2.1", "id": stix.sid("sighting", f"{me['id']}|{r['indicator_id']}|hit"),
                "created": stix.ts(r["t0"]), "modified": stix.ts(max(as_of_ms, r["t0"])), "created_by_ref": me["id"],
                "description": f"{provider_name} saw this indicator on {r['n']} account(s) of its own.",
                "first_seen": stix.ts(r["t0"]), "last_seen": stix.ts(max(r["t1"], r["t0"])), "count": int(min(r["hits"], 999_999_999)),
                "sighting_of_ref": r["indicator_id"], "where_sighted_refs": [me["id"]], "object_marking_refs": [marking],
                "extensions": {stix.EXT_PROPS["id"]: {"extension_type": "property-extension", "sighting_type": "hit",
                                                      "accounts": int(r["n"]), "linked_accounts": len(linked.get(r["indicator_id"], ()))}},
            })
    return stix.bundle(objs, f"{me['id']}|sightings|{as_of_ms}|{len(objs)}")


def false_positive_bundle(account_ids: Iterable[str], matches: pl.DataFrame, provider_name: str, *, when_ms: int,
                          tlp: str = "amber", note: str = "") -> dict:
    """False-positive sightings: the partner indicators that matched accounts an analyst found legitimate.

    One sighting per indicator (``sighting_type: false-positive``) with the number of such
    accounts; the accounts themselves are not named.
    """
    me, objs = _sighting_objects(provider_name, tlp)
    marking = stix.TLP2_IDS[tlp.lower().removeprefix("tlp:")]
    ids = set(account_ids)
    m = matches.filter(pl.col("account_id").is_in(list(ids)))
    if m.height:
        per = m.group_by("indicator_id").agg(pl.col("account_id").n_unique().alias("n"), pl.col("first_match_ts").min().alias("t0"),
                                             pl.col("last_match_ts").max().alias("t1"))
        for r in per.sort("indicator_id").iter_rows(named=True):
            t0 = min(r["t0"], when_ms)
            objs.append({
                "type": "sighting", "spec_version": "2.1", "id": stix.sid("sighting", f"{me['id']}|{r['indicator_id']}|fp|{when_ms}"),
                "created": stix.ts(when_ms), "modified": stix.ts(when_ms), "created_by_ref": me["id"],
                "description": (f"False positive: this indicator matched {r['n']} account(s) that an analyst of {provider_name} "
                                f"found to be legitimate customer(s). {note}").strip(),
                "first_seen": stix.ts(t0), "last_seen": stix.ts(max(r["t1"], t0)), "count": int(r["n"]),
                "sighting_of_ref": r["indicator_id"], "where_sighted_refs": [me["id"]], "object_marking_refs": [marking],
                "extensions": {stix.EXT_PROPS["id"]: {"extension_type": "property-extension", "sighting_type": "false-positive",
                                                      "accounts": int(r["n"]), "note": note or "analyst review"}},
            })
    return stix.bundle(objs, f"{me['id']}|fp|{when_ms}|{len(objs)}")


def revoke_for_false_positives(own_objs: Iterable[dict], sighting_objs: Iterable[dict], *, when_ms: int,
                               min_reports: int = 1) -> list[dict]:
    """The indicator owner's answer to false-positive sightings: new, revoked versions.

    Returns the new versions (same id and ``created``, ``modified = when``, ``revoked: true``)
    of our indicators that received at least ``min_reports`` false-positive sightings.
    """
    latest = stix.latest_versions(own_objs)
    fp: dict[str, int] = {}
    for s in stix.latest_versions(sighting_objs).values():
        if s.get("type") == "sighting" and stix.ext(s).get("sighting_type") == "false-positive":
            fp[s["sighting_of_ref"]] = fp.get(s["sighting_of_ref"], 0) + 1
    out = []
    for iid, n in sorted(fp.items()):
        o = latest.get(iid)
        if o is None or o.get("type") != "indicator" or o.get("revoked") or n < min_reports:
            continue
        new = dict(o)
        new["modified"] = stix.ts(max(when_ms, stix.ms(o["modified"]) + 1))
        new["revoked"] = True
        out.append(new)
    return out
