"""Detection rules as STIX indicators, and back (scheme ``dg-rule-v1``).

A distillguard rule (``rules/*.yaml``) becomes an indicator whose STIX pattern states its
detection block over the ``distillguard-account`` observable::

    [distillguard-account:exchanges >= 40 AND distillguard-account:reason_share >= 0.5 AND ...
     AND (distillguard-account:shape_share >= 0.15 OR distillguard-account:young >= 0.6)]

and whose distillguard extension properties carry the rest of the rule (id, title, level,
reason, scope, tags, false positives). A partner turns the indicators of a bundle back into
YAML rule files (:func:`write_rules`, ``distillguard share rules``) and runs them on its own logs
with ``distillguard scan --rules DIR``. The pattern is the source of truth for the conditions.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Iterable

import yaml

from ..scoring.policy import Policy
from ..scoring.rules import LEVEL_WEIGHT, parse_rule, rule_documents
from . import stix

ACCOUNT_TYPE = "distillguard-account"
RULE_SCHEME = "dg-rule-v1"
LEVEL_CONFIDENCE = {"informational": 20, "low": 40, "medium": 60, "high": 85, "critical": 95}
# A reviewed rule's own ceiling (`max_action`) and `substream` travel with it: both can only lower what it does.
_META = ("id", "title", "description", "level", "reason", "scope", "tags", "falsepositives", "status", "author", "weight",
         "max_action", "substream")


def load_rule_docs(directory: str | Path | None = None) -> list[dict]:
    """The YAML documents of a rules directory (default: the packaged rules), validated."""
    docs = rule_documents(directory)
    for doc, path in docs:
        parse_rule(doc, path)
    return [doc for doc, _ in docs]


def rule_pattern(doc: dict) -> str:
    # The scan's own rule parser reads the conditions, so the exported pattern cannot drift from it.
    rule = parse_rule(doc)
    conds = [("exchanges", ">=", float(rule.min_events))] + list(rule.conditions)
    return stix.range_pattern(ACCOUNT_TYPE, conds, list(rule.any_of))


def rule_digest(doc: dict) -> str:
    return hashlib.sha256(rule_pattern(doc).encode() + str(doc.get("id")).encode()).hexdigest()[:16]


def rule_indicator(doc: dict, *, provider_id: str, created: str, modified: str, marking: str, half_life_days: float,
                   ttl_days: float, valid_from_ms: int) -> dict:
    meta = {k: doc[k] for k in _META if k in doc}
    meta["min_events"] = int((doc.get("detection") or {}).get("min_events", 1))
    return {
        "type": "indicator", "spec_version": "2.1",
        "id": stix.sid("indicator", f"{provider_id}|rule|{doc['id']}|{rule_digest(doc)}"),
        "created": created, "modified": modified, "created_by_ref": provider_id,
        "name": f"distillguard rule {doc['id']}: {doc['title']}",
        "description": " ".join(str(doc.get("description", "")).split()),
        "indicator_types": ["malicious-activity"],
        "pattern": rule_pattern(doc), "pattern_type": "stix", "pattern_version": "2.1",
        "valid_from": stix.ts(valid_from_ms), "valid_until": stix.ts(valid_from_ms + int(ttl_days * 86_400_000)),
        "confidence": LEVEL_CONFIDENCE.get(str(doc.get("level")), 50),
        "kill_chain_phases": [{"kill_chain_name": "mitre-atlas", "phase_name": "exfiltration"}],
        "object_marking_refs": [marking],
        "extensions": {stix.EXT_PROPS["id"]: {"extension_type": "property-extension", "kind": "rule", "scheme": RULE_SCHEME,
                                              "half_life_days": half_life_days, "rule": meta}},
    }


def rule_doc_from_indicator(ind: dict) -> dict:
    """The YAML rule document an indicator carries (conditions from its pattern)."""
    meta = dict(stix.ext(ind).get("rule") or {})
    t, conds, any_of = stix.parse_range_pattern(ind["pattern"])
    if t != ACCOUNT_TYPE:
        raise ValueError(f"{ind['id']}: not a distillguard rule pattern")
    det: dict = {}
    rest = []
    for f, op, v in conds:
        if f == "exchanges" and op == ">=":
            det["min_events"] = int(v)
        else:
            rest.append((f, op, v))
    det["all"] = {f: f"{op} {_fmt(v)}" for f, op, v in rest}
    if any_of:
        det["any"] = {f: f"{op} {_fmt(v)}" for f, op, v in any_of}
    doc = {k: meta[k] for k in _META if k in meta}
    doc["detection"] = det
    return doc


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


# Partner rules are sandboxed: a partner rule reaches at most this action by itself unless its id
# is approved locally (``share rules --approve``): the file carries ``sandbox_max_action`` (the replay
# takes the decision without the rule, or with it capped there, whichever is higher, and never
# lets it convict a cluster), and its weight stays under the policy's next threshold.
PARTNER_MAX_ACTION = "monitor"
_SAFE_ID = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_RULE_ID = 80


def safe_rule_id(rid: str) -> str:
    """A rule id usable as a file name inside the rules directory: letters, digits, ``_.-``
    only (``../x``, ``/etc/x`` and ``a\\b`` lose their separators), no leading dot, bounded length."""
    sid = _SAFE_ID.sub("_", str(rid)).lstrip(".")[:MAX_RULE_ID]
    return sid or "rule-" + hashlib.sha256(str(rid).encode("utf-8", "surrogatepass")).hexdigest()[:12]


def sandbox_weight(max_action: str = PARTNER_MAX_ACTION, policy: Policy | None = None) -> float:
    """Largest rule weight whose score alone stays below the action after ``max_action``."""
    p = policy or Policy()
    nxt = {"none": p.monitor, "monitor": p.challenge, "challenge": p.throttle, "throttle": p.suspend}
    if max_action not in nxt:
        raise ValueError(f"partner rules may reach at most none, monitor, challenge or throttle, not {max_action!r}")
    return round(max(0.0, nxt[max_action] - 0.01), 4)


def _weight(doc: dict) -> float:
    level_w = LEVEL_WEIGHT.get(str(doc.get("level")), 1.0)
    w = doc.get("weight", level_w)
    return float(w) if isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) else level_w


def write_rules(objs: list[dict], out_dir: str | Path, *, include_packaged: bool = True, source: str = "partner",
                approved: Iterable[str] = (), max_action: str = PARTNER_MAX_ACTION, policy: Policy | None = None,
                skipped: dict | None = None) -> list[Path]:
    """Write the rule indicators of ``objs`` (newest versions, not revoked) as YAML files.

    With ``include_packaged`` the packaged rules are written too, so ``out_dir`` can replace
    the default rules directory (``scan --rules out_dir``). A partner rule whose id exists
    locally with different conditions is kept under ``<id>-<source>``.

    Partner input is untrusted: file names come from :func:`safe_rule_id` and are confined to
    ``out_dir``; unless its (partner) id is in ``approved``, a partner rule gets ``max_action``
    (what it may do by itself) and a weight under :func:`sandbox_weight`; a rule that does not parse is skipped and
    counted in ``skipped`` by reason, the rest are written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = out.resolve()
    approved = set(approved)
    cap = sandbox_weight(max_action, policy)
    skipped = skipped if skipped is not None else {}
    written: list[Path] = []
    local: dict[str, dict] = {}
    if include_packaged:
        for doc in load_rule_docs():
            local[str(doc["id"])] = doc
            p = out / f"{doc['id']}.yaml"
            p.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
            written.append(p)
    for o in stix.latest_versions(objs).values():
        if o.get("type") != "indicator" or o.get("revoked") or stix.ext(o).get("kind") != "rule":
            continue
        try:
            doc = rule_doc_from_indicator(o)
            given = str(doc.get("id"))
            rid = safe_rule_id(given)
            if rid in local:
                if rule_pattern(local[rid]) == rule_pattern(doc):
                    continue
                rid = safe_rule_id(f"{rid}-{source}")
            doc["id"] = rid
            doc.pop("sandbox_max_action", None)  # a partner cannot lift its own sandbox
            if given not in approved and rid not in approved:
                doc["sandbox_max_action"] = max_action
                doc["weight"] = min(_weight(doc), cap)
            parse_rule(doc, rid)
        except Exception as err:  # noqa: BLE001 - one bad partner rule is skipped, the rest written
            why = type(err).__name__
            skipped[why] = skipped.get(why, 0) + 1
            continue
        p = out / f"{rid}.yaml"
        if p.resolve().parent != root:  # never outside --out, whatever the id held
            skipped["unsafe_path"] = skipped.get("unsafe_path", 0) + 1
            continue
        p.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
        local[rid] = doc
        written.append(p)
    return written


def rules_dry_run(scan_dir: str | Path, rules_dir: str | Path, *, labels: str | Path | None = None,
                  policy_path: str | Path | None = None) -> dict:
    """Rescan the inputs of an existing scan with ``rules_dir`` and compare the flags.

    Returns counts: accounts, flagged before/after, newly flagged, no longer flagged; with
    ``labels`` (``account_id,label``; label ``benign`` or anything else) the benign accounts
    flagged before/after and their rates: what a partner's rules would do to your own
    false-positive rate, before you use them.
    """
    import json
    import tempfile

    import polars as pl

    from ..scan import scan

    scan_dir = Path(scan_dir)
    summary = json.loads((scan_dir / "summary.json").read_text(encoding="utf-8"))
    before = pl.read_csv(scan_dir / "accounts.csv", infer_schema=False).select("account_id", pl.col("flagged") == "true")
    with tempfile.TemporaryDirectory(prefix="dg-dry-run-") as out:
        scan(summary["inputs"], out, rules_dir=rules_dir, policy_path=policy_path, show_progress=False)
        after = pl.read_csv(Path(out) / "accounts.csv", infer_schema=False).select("account_id", pl.col("flagged") == "true")
    j = before.join(after, on="account_id", how="full", coalesce=True, suffix="_after").fill_null(False)
    res = {"accounts": j.height, "flagged_before": int(j["flagged"].sum()), "flagged_after": int(j["flagged_after"].sum()),
           "newly_flagged": int((~j["flagged"] & j["flagged_after"]).sum()), "unflagged": int((j["flagged"] & ~j["flagged_after"]).sum()),
           "benign": None}
    if labels is not None:
        lab = pl.read_csv(labels, infer_schema=False).select("account_id", (pl.col("label") == "benign").alias("benign"))
        b = j.join(lab, on="account_id", how="inner").filter(pl.col("benign"))
        n = max(1, b.height)
        res.update(benign=b.height, benign_flagged_before=int(b["flagged"].sum()), benign_flagged_after=int(b["flagged_after"].sum()))
        res.update(benign_flag_rate_before=res["benign_flagged_before"] / n, benign_flag_rate_after=res["benign_flagged_after"] / n)
    return res
