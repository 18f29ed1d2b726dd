"""Provenance results as a STIX 2.1 bundle for partner providers (``provenance export``).

One ``report`` per probe or test result, authored by the provider, marked with TLP, referring to
the ATLAS AML.T0024.002 attack-pattern. The numbers travel in a property extension of their own
(``distillguard-provenance``); accounts named by a canary hit travel only as HMACs under the
coalition key (share/keys.py, kind ``account``), so a partner holding the key can match them to
its own customers and nobody else learns them. The mark key never leaves the provider.
"""

from __future__ import annotations

import time

from ..share import stix
from ..share.keys import KeyRing

PROVENANCE_SCHEMA = """distillguard-provenance 1.0.0 (property-extension) on report objects:
suspect (object: endpoint, model, or source for texts scored offline), requests (integer),
watermark (object: tokens, scored, green, gamma, green_share, p_value, log10_p: the radioactivity test of
Sander et al. 2024 on de-duplicated (context, token) pairs, exact binomial p-value),
canaries (list of object: account_hmac = HMAC-SHA256 under the coalition key key_id of "dg-id-v1|account|" + account id,
mark_id, p_value), key_id, key_check (as in distillguard-properties), mark_key_id (the provider's mark key id)."""

EXT_PROVENANCE = {
    "type": "extension-definition", "spec_version": "2.1", "id": stix.sid("extension-definition", "distillguard-provenance-1"),
    "created": stix.FIXED_CREATED, "modified": stix.FIXED_CREATED, "created_by_ref": stix.DG_IDENTITY["id"],
    "name": "distillguard-provenance",
    "description": "Results of testing a suspect model for a provider's watermark and canaries (proof of distillation).",
    "schema": PROVENANCE_SCHEMA, "version": "1.0.0", "extension_types": ["property-extension"],
}


def provenance_bundle(result: dict, keyring: KeyRing, provider: str, tlp: str = "amber") -> dict:
    """The bundle of one ``probe`` or ``test`` result document."""
    now = stix.ts(time.time() * 1000)
    me = stix.provider_identity(provider)
    marking = stix.tlp_marking(tlp)["id"]
    hasher = keyring.hasher()
    suspect = {k: result[k] for k in ("endpoint", "model", "source") if result.get(k)}
    wm = result.get("watermark") or {}
    found = (result.get("canaries") or {}).get("found", [])
    props = {"extension_type": "property-extension", "suspect": suspect, "requests": int(result.get("requests", 0)),
             "watermark": {k: v for k, v in wm.items() if v is not None},
             "canaries": [{"account_hmac": hasher.raw("account", str(f["account_id"])), "mark_id": f["mark_id"],
                           "p_value": f["p_value"]} for f in found],
             "key_id": keyring.active, "key_check": keyring.check_value(), "mark_key_id": str(result.get("key_id", ""))}
    name = suspect.get("model") or suspect.get("source") or "texts"
    p = wm.get("p_value")
    desc = (f"Watermark radioactivity test: p = {p:.3g} over {wm.get('scored', 0)} distinct scored pairs. " if p is not None else "") + \
           f"Canary hits naming {len(found)} account(s) of {provider}."
    report = {"type": "report", "spec_version": "2.1", "id": stix.sid("report", f"provenance|{provider}|{name}|{now}"),
              "created": now, "modified": now, "published": now, "created_by_ref": me["id"],
              "name": f"Distillation provenance test of {name}", "description": desc, "report_types": ["attack-pattern"],
              "object_refs": [stix.ATTACK_PATTERN["id"], me["id"]], "object_marking_refs": [marking],
              "extensions": {EXT_PROVENANCE["id"]: props}}
    return stix.bundle([*stix.fixed_objects(tlp), EXT_PROVENANCE, me, report], f"provenance|{report['id']}")
