"""One call that adds partner indicators to a finished scan (``scan --indicators``).

:func:`apply_indicators_to_scan` reads the scan's log again (``summary.json`` ``inputs``),
matches the partner bundles, rewrites ``accounts.csv`` through :func:`.match.apply_matches`
(reason code ``partner_indicator``), writes ``partner_matches.csv`` and ``partner_links.csv``
(local files: they name our accounts), optionally ``partner_sightings.json`` (STIX, for the
partner: counts only), and records what it did in ``summary.json`` under ``partner_indicators``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import polars as pl

from . import stix
from .keys import KeyRing
from .match import apply_matches, best_links, match_indicators, sightings_bundle
from .observe import inputs_of_scan, observe


def apply_indicators_to_scan(scan_dir: str | Path, bundle_paths: Sequence[str | Path], key: KeyRing | str | Path | None = None, *,
                             events: Sequence[str] | None = None, provider: str | None = None, tlp: str = "amber",
                             allow_accounts: Sequence[str] = ()) -> dict:
    """Apply partner indicators to the report in ``scan_dir`` (in place); returns the summary block."""
    out = Path(scan_dir)
    ring = key if isinstance(key, KeyRing) else KeyRing.load(key)
    obs = observe(events or inputs_of_scan(out))
    info: dict = {}
    objs = stix.load_objects(bundle_paths)
    matches = match_indicators(None, None, ring, objects=objs, obs=obs, info=info)
    raw = pl.read_csv(out / "accounts.csv", infer_schema=False)
    new = apply_matches(raw, matches, allow_accounts=allow_accounts)
    new = new.with_columns(pl.col("score").cast(pl.Float64).alias("_s")).sort(["_s", "account_id"], descending=[True, False]).drop("_s")
    new.write_csv(out / "accounts.csv")
    matches.write_csv(out / "partner_matches.csv")
    links = best_links(matches)
    links.with_columns(pl.col("indicator_ids").list.join(";")).write_csv(out / "partner_links.csv")
    as_of = int(obs["ts"].max()) if obs.height else 0
    if provider:
        (out / "partner_sightings.json").write_text(stix.dumps(sightings_bundle(matches, provider, as_of_ms=as_of, tlp=tlp, links=links)))
    linked = links.filter(pl.col("link_ts").is_not_null())
    block = {
        "bundles": [str(Path(p)) for p in bundle_paths],
        "indicators_live": info.get("indicators", 0),
        "indicators_skipped": {k: v for k, v in info.items() if k != "indicators"},
        "matched_accounts": int(matches["account_id"].n_unique()) if matches.height else 0,
        "linked_accounts": int(linked.height),
        "flagged_by_indicators": int(linked.filter(pl.col("flag_ts").is_not_null()).height),
    }
    sp = out / "summary.json"
    if sp.exists():
        s = json.loads(sp.read_text())
        flagged = new["flagged"].cast(pl.String).str.to_lowercase() == "true"
        s["flagged_accounts"] = int(flagged.sum())
        s["actions"] = {k: int(v) for k, v in new.group_by("action").len().iter_rows()}
        s["partner_indicators"] = block
        sp.write_text(json.dumps(s, indent=2) + "\n")
    return block
