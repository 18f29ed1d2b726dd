"""STIX 2.1 building blocks of the coalition exchange: fixed objects, ids, patterns, reading.

Everything distillguard adds to STIX travels through two extension-definitions (no ``x_``
custom properties, no custom object types outside them):

- ``distillguard-observables`` (``new-sco``) defines the observable types that indicator
  patterns refer to: ``distillguard-identifier`` (a keyed hash of a linkable identifier),
  ``distillguard-behaviour`` (an account's behavioural shares) and ``distillguard-account``
  (the account features distillguard's detection rules read).
- ``distillguard-properties`` (``property-extension``) carries distillguard's extra properties
  on indicators, campaigns and sightings (identifier kind, key id, decay half-life, rule
  metadata, sighting type ...).

Fixed objects (same id and content in every bundle, from every provider, so they merge): the
distillguard identity that authors the extensions, the two extension-definitions, the TLP 2.0
marking-definitions (OASIS ids), the attack-pattern for MITRE ATLAS AML.T0024.002 and the
course-of-action objects for the four responses.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

NS = uuid.UUID("5b1d3a8e-7c1f-5e55-9a0b-64697374696c")  # distillguard STIX id namespace
FIXED_CREATED = "2026-01-01T00:00:00.000Z"

# ---------------------------------------------------------------------------- ids and time


def sid(stix_type: str, key: str) -> str:
    """A deterministic STIX id: the same key always names the same object.

    The UUID is a hash of the key (UUIDv5 construction) carrying the version-4 bits, because
    STIX 2.1 asks for UUIDv4 in the ids of domain objects; it is as unpredictable as a random
    one to anyone without the key text, and stable across exports so versions line up.
    """
    b = bytearray(uuid.uuid5(NS, stix_type + "|" + key).bytes)
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    return f"{stix_type}--{uuid.UUID(bytes=bytes(b))}"


def ts(ms: int | float) -> str:
    """Epoch milliseconds -> STIX timestamp (UTC, millisecond precision)."""
    d = datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ms) % 1000:03d}Z"


def ms(text: str) -> int:
    """STIX / RFC 3339 timestamp -> epoch milliseconds."""
    d = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return int(round(d.timestamp() * 1000))


# ---------------------------------------------------------------------------- fixed objects

DG_IDENTITY = {
    "type": "identity", "spec_version": "2.1", "id": sid("identity", "distillguard-project"),
    "created": FIXED_CREATED, "modified": FIXED_CREATED, "name": "distillguard",
    "description": "Open-source detector of LLM distillation at scale; author of the distillguard STIX extensions.",
    "identity_class": "system",
}

OBSERVABLES_SCHEMA = """distillguard-observables 1.0.0 (new-sco). Observable types referenced by indicator patterns.
distillguard-identifier: kind (string: payment | email_domain | ip_prefix | asn | client | prompt_band),
  value (string: lower-case hex HMAC-SHA256 under the coalition key named by the indicator's key_id, of
  "dg-id-v1|" + kind + "|" + canonical value; canonical forms and the prompt_band scheme dg-sig-v1 are
  defined in distillguard docs/sharing.md and distillguard/share/keys.py, signature.py).
distillguard-behaviour: exchanges (integer: the account's exchanges so far) and <dim>_share (number in [0,1])
  for dim in reason, maxout, rubric, exam, code, single, multi_n, logprobs, effort, long_out, tools
  (scheme dg-behaviour-v1: shares of the account's exchanges with each per-exchange flag).
distillguard-account: exchanges and the account features of distillguard's detection rules
  (distillguard/features/account.py FEATURES, plus members for clusters), as computed by distillguard's scan."""

PROPERTIES_SCHEMA = """distillguard-properties 1.0.0 (property-extension). Properties under extensions[<this id>]:
indicator: kind (identifier kind | behaviour | rule), scheme (dg-id-v1 | dg-sig-v1 | dg-behaviour-v1 | dg-rule-v1),
  key_id, key_check (first 32 hex of HMAC-SHA256(key, "distillguard coalition key check v1")), min_hits (integer:
  exchanges of one account that must match before the indicator counts), half_life_days (number: confidence halves
  every half_life_days after valid_from), support_accounts, support_exchanges (integers: evidence at the exporter),
  rule (object: id, title, description, level, reason, scope, tags, falsepositives, weight, min_events).
campaign: accounts, exchanges (integers), score (number), reasons (list of string), recommended_action
  (none | monitor | challenge | throttle | suspend), cluster_ref (HMAC of the exporter's cluster id).
sighting: sighting_type (hit | false-positive), accounts (integer: distinct accounts matched),
  linked_accounts (integer: accounts the matcher linked to the campaign), note (string)."""

EXT_OBSERVABLES = {
    "type": "extension-definition", "spec_version": "2.1", "id": sid("extension-definition", "distillguard-observables-1"),
    "created": FIXED_CREATED, "modified": FIXED_CREATED, "created_by_ref": DG_IDENTITY["id"],
    "name": "distillguard-observables",
    "description": "Observable types for keyed-hash identifiers, behavioural fingerprints and account features of LLM API customers.",
    "schema": OBSERVABLES_SCHEMA, "version": "1.0.0", "extension_types": ["new-sco"],
}
EXT_PROPS = {
    "type": "extension-definition", "spec_version": "2.1", "id": sid("extension-definition", "distillguard-properties-1"),
    "created": FIXED_CREATED, "modified": FIXED_CREATED, "created_by_ref": DG_IDENTITY["id"],
    "name": "distillguard-properties",
    "description": "Properties distillguard adds to indicators, campaigns and sightings (identifier kind, key id, decay, rule metadata, sighting type).",
    "schema": PROPERTIES_SCHEMA, "version": "1.0.0", "extension_types": ["property-extension"],
}

TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
TLP2_IDS = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}


def tlp_marking(level: str) -> dict:
    """The OASIS TLP 2.0 marking-definition object for ``level`` (clear/green/amber/amber+strict/red)."""
    level = level.lower().removeprefix("tlp:")
    if level not in TLP2_IDS:
        raise ValueError(f"TLP level must be one of {sorted(TLP2_IDS)}")
    return {
        "type": "marking-definition", "spec_version": "2.1", "id": TLP2_IDS[level],
        "created": "2022-10-01T00:00:00.000Z", "name": "TLP:" + level.upper(),
        "extensions": {TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": level}},
    }


ATLAS_ID = "AML.T0024.002"
ATTACK_PATTERN = {
    "type": "attack-pattern", "spec_version": "2.1", "id": sid("attack-pattern", "mitre-atlas|" + ATLAS_ID),
    "created": FIXED_CREATED, "modified": FIXED_CREATED, "created_by_ref": DG_IDENTITY["id"],
    "name": "Extract AI Model (distillation through the inference API)",
    "description": ("Harvesting a model's outputs at scale through its public API (reasoning traces, graded answers, "
                    "capability sweeps) to train a competing model: MITRE ATLAS AML.T0024.002, Exfiltration via AI "
                    "Inference API: Extract AI Model."),
    "external_references": [{"source_name": "mitre-atlas", "external_id": ATLAS_ID,
                             "description": "Exfiltration via AI Inference API: Extract AI Model"}],
    "kill_chain_phases": [{"kill_chain_name": "mitre-atlas", "phase_name": "exfiltration"}],
}

RESPONSES = {
    "monitor": "Watch-list the accounts: keep full logs, review by an analyst, no customer-visible action.",
    "challenge": "Challenge the accounts: step-up verification (identity, payment, use-case attestation) before further use.",
    "throttle": "Throttle the accounts: cap request rate and output length, withhold reasoning traces and log-probabilities.",
    "suspend": "Suspend the accounts and linked accounts pending review; revoke their API keys.",
}
COURSES_OF_ACTION = {
    a: {"type": "course-of-action", "spec_version": "2.1", "id": sid("course-of-action", "distillguard|" + a),
        "created": FIXED_CREATED, "modified": FIXED_CREATED, "created_by_ref": DG_IDENTITY["id"],
        "name": f"{a.capitalize()} distillation accounts", "description": d}
    for a, d in RESPONSES.items()
}


def relationship(src: str, rel: str, dst: str, created: str, modified: str, *, created_by: str | None = None,
                 markings: list[str] | None = None, description: str | None = None) -> dict:
    r = {"type": "relationship", "spec_version": "2.1", "id": sid("relationship", f"{src}|{rel}|{dst}"),
         "created": created, "modified": modified, "relationship_type": rel, "source_ref": src, "target_ref": dst}
    if description:
        r["description"] = description
    if created_by:
        r["created_by_ref"] = created_by
    if markings:
        r["object_marking_refs"] = markings
    return r


def fixed_objects(tlp: str) -> list[dict]:
    """The objects every distillguard bundle carries."""
    objs = [DG_IDENTITY, EXT_OBSERVABLES, EXT_PROPS, tlp_marking(tlp), ATTACK_PATTERN, *COURSES_OF_ACTION.values()]
    for coa in COURSES_OF_ACTION.values():
        objs.append(relationship(coa["id"], "mitigates", ATTACK_PATTERN["id"], FIXED_CREATED, FIXED_CREATED,
                                 created_by=DG_IDENTITY["id"]))
    return objs


def provider_identity(name: str) -> dict:
    return {"type": "identity", "spec_version": "2.1", "id": sid("identity", "provider|" + name),
            "created": FIXED_CREATED, "modified": FIXED_CREATED, "name": name,
            "description": f"{name}: LLM API provider, member of the distillation-defence coalition.",
            "identity_class": "organization", "sectors": ["technology"]}


def bundle(objects: Iterable[dict], key: str) -> dict:
    objs = list(objects)
    return {"type": "bundle", "id": sid("bundle", key), "objects": objs}


def dumps(b: dict) -> str:
    return json.dumps(b, indent=1, sort_keys=False, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------- patterns

_IDENT = "distillguard-identifier"
_BEHAV = "distillguard-behaviour"
_ACCT = "distillguard-account"


def _q(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _num(v: float) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(round(v, 4))


def identifier_pattern(kind: str, values: list[str]) -> str:
    if len(values) == 1:
        return f"[{_IDENT}:kind = {_q(kind)} AND {_IDENT}:value = {_q(values[0])}]"
    return f"[{_IDENT}:kind = {_q(kind)} AND {_IDENT}:value IN ({', '.join(map(_q, values))})]"


def range_pattern(obj_type: str, conds: list[tuple[str, str, float]], any_of: list[tuple[str, str, float]] = ()) -> str:
    parts = [f"{obj_type}:{f} {op} {_num(v)}" for f, op, v in conds]
    if any_of:
        parts.append("(" + " OR ".join(f"{obj_type}:{f} {op} {_num(v)}" for f, op, v in any_of) + ")")
    return "[" + " AND ".join(parts) + "]"


_CMP = re.compile(r"^([a-z0-9-]+):([a-z_0-9]+)\s*(>=|<=|=|>|<)\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)$")


def parse_range_pattern(pattern: str) -> tuple[str, list[tuple[str, str, float]], list[tuple[str, str, float]]]:
    """Inverse of :func:`range_pattern`: ``(object type, AND-conditions, OR-group)``."""
    p = pattern.strip()
    if not (p.startswith("[") and p.endswith("]")):
        raise ValueError(f"not a single-observation pattern: {pattern!r}")
    body = p[1:-1].strip()
    any_of: list[tuple[str, str, float]] = []
    m = re.search(r"\(([^()]*)\)\s*$", body)
    if m:
        for c in m.group(1).split(" OR "):
            any_of.append(_cmp(c))
        body = body[:m.start()].strip()
        body = re.sub(r"\s+AND\s*$", "", body)
    conds = [_cmp(c) for c in body.split(" AND ") if c.strip()]
    types = {t for t, *_ in conds + any_of}
    if len(types) != 1:
        raise ValueError(f"pattern mixes object types: {pattern!r}")
    t = types.pop()
    return t, [c[1:] for c in conds], [c[1:] for c in any_of]


def _cmp(text: str) -> tuple[str, str, str, float]:
    m = _CMP.match(text.strip())
    if not m:
        raise ValueError(f"unsupported comparison {text!r}")
    return m.group(1), m.group(2), m.group(3), float(m.group(4))


def parse_identifier_pattern(pattern: str) -> tuple[str, list[str]]:
    """``(kind, [hmac values])`` of an identifier indicator's pattern (via stix2-patterns)."""
    from stix2patterns.v21.pattern import Pattern

    comps = Pattern(pattern).inspect().comparisons.get(_IDENT)
    if not comps:
        raise ValueError("not a distillguard-identifier pattern")
    kind, values = None, []
    for path, op, val in comps:
        if path == ["kind"] and op == "=":
            kind = val.strip("'")
        elif path == ["value"] and op == "=":
            values.append(val.strip("'"))
        elif path == ["value"] and op == "IN":
            values += [v.strip().strip("'") for v in val.strip("()").split(",") if v.strip()]
    if kind is None or not values:
        raise ValueError("identifier pattern lacks kind or value")
    return kind, values


# ---------------------------------------------------------------------------- reading


# Partner input is untrusted: bounds on what one run reads (``share match``, ``rules``, ``pull``).
MAX_BUNDLE_BYTES = 64 << 20
MAX_OBJECTS = 50_000


def load_objects(paths: Iterable[str | Path], *, max_bytes: int = MAX_BUNDLE_BYTES, max_objects: int = MAX_OBJECTS) -> list[dict]:
    """STIX objects from bundle files, TAXII envelopes or JSON lists (every version kept).

    Items that are not JSON objects are dropped. Raises ``ValueError`` (one line, naming the
    file) for a file over ``max_bytes``, one that is not JSON, an ``objects`` that is not a
    list, or more than ``max_objects`` objects in all.
    """
    out: list[dict] = []
    for p in paths:
        size = Path(p).stat().st_size
        if size > max_bytes:
            raise ValueError(f"{p}: {size} bytes, over the {max_bytes}-byte limit for a partner bundle")
        try:
            d = json.loads(Path(p).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise ValueError(f"{p}: not a JSON bundle ({type(e).__name__})") from None
        if isinstance(d, dict):
            items = d.get("objects", []) or []
        elif isinstance(d, list):
            items = d
        else:
            raise ValueError(f"{p}: not a STIX bundle, TAXII envelope or list of objects")
        if not isinstance(items, list):
            raise ValueError(f"{p}: 'objects' is not a list")
        out += [o for o in items if isinstance(o, dict)]
        if len(out) > max_objects:
            raise ValueError(f"{p}: more than {max_objects} STIX objects in all (the limit of one run)")
    return out


def checked(objs: Iterable[dict], info: dict | None = None) -> list[dict]:
    """Partner input is untrusted: keep only objects the ``stix2`` library parses as STIX 2.1
    (property types, timestamps, ids, indicator pattern syntax); count the rest in
    ``info["invalid_objects"]``."""
    try:
        import stix2
        from stix2.exceptions import STIXError
    except ImportError as e:  # pragma: no cover - optional dependency
        raise RuntimeError("reading partner bundles needs the 'stix2' package: pip install 'distillguard[share]'") from e

    out = []
    for o in objs:
        try:
            stix2.parse(o, allow_custom=True, version="2.1")
        except (STIXError, ValueError, TypeError, KeyError, AttributeError):
            if info is not None:
                info["invalid_objects"] = info.get("invalid_objects", 0) + 1
            continue
        out.append(o)
    return out


def latest_versions(objs: Iterable[dict]) -> dict[str, dict]:
    """id -> the object's newest version (largest ``modified``; unversioned objects as they are)."""
    best: dict[str, dict] = {}
    when: dict[str, int] = {}
    for o in objs:
        i = o.get("id") if isinstance(o, dict) else None
        if not i or not isinstance(i, str):
            continue
        try:
            t = ms(o.get("modified", o.get("created", FIXED_CREATED)))
        except (ValueError, TypeError, AttributeError, OverflowError):
            continue  # an unreadable version never replaces a readable one
        if i not in best or t >= when[i]:
            best[i], when[i] = o, t
    return best


def ext(o: dict) -> dict:
    """distillguard's extension properties of an object ({} if none)."""
    exts = o.get("extensions")
    e = exts.get(EXT_PROPS["id"]) if isinstance(exts, dict) else None
    return e if isinstance(e, dict) else {}


def validate(bundle_obj: dict | str, strict: bool = True) -> tuple[bool, list[str]]:
    """Validate with the OASIS ``stix2-validator``; returns (valid, messages)."""
    try:
        from stix2validator import ValidationOptions, validate_string
    except ImportError as e:  # pragma: no cover - optional dependency
        raise RuntimeError("validation needs the 'stix2-validator' package: pip install 'distillguard[share]'") from e

    text = bundle_obj if isinstance(bundle_obj, str) else json.dumps(bundle_obj)
    r = validate_string(text, ValidationOptions(version="2.1", strict=strict))
    msgs = [str(e) for e in (r.errors or [])] + [str(w) for w in (r.warnings or [])]
    return bool(r.is_valid), msgs
