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
from pathlib import Path

import yaml

from ..scoring.rules import parse_rule, rule_documents
from . import stix

ACCOUNT_TYPE = "distillguard-account"
RULE_SCHEME = "dg-rule-v1"
LEVEL_CONFIDENCE = {"informational": 20, "low": 40, "medium": 60, "high": 85, "critical": 95}
_META = ("id", "title", "description", "level", "reason", "scope", "tags", "falsepositives", "status", "author", "weight")


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


def write_rules(objs: list[dict], out_dir: str | Path, *, include_packaged: bool = True, source: str = "partner") -> list[Path]:
    """Write the rule indicators of ``objs`` (newest versions, not revoked) as YAML files.

    With ``include_packaged`` the packaged rules are written too, so ``out_dir`` can replace
    the default rules directory (``scan --rules out_dir``). A partner rule whose id exists
    locally with different conditions is kept under ``<id>-<source>``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
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
        doc = rule_doc_from_indicator(o)
        rid = str(doc.get("id"))
        if rid in local:
            if rule_pattern(local[rid]) == rule_pattern(doc):
                continue
            doc["id"] = rid = f"{rid}-{source}"
        parse_rule(doc, rid)
        p = out / f"{rid}.yaml"
        p.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
        local[rid] = doc
        written.append(p)
    return written
