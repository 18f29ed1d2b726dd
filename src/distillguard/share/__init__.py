"""Coalition exchange of distillation indicators: STIX 2.1 bundles over TAXII 2.1 (docs/sharing.md).

Public API:

- keys:      :class:`KeyRing` (coalition HMAC keys, rotation), :func:`canonical`
- signature: ``dg-sig-v1`` prompt-template band keys (:func:`band_keys`, :func:`band_keys_batch`)
- export:    :func:`export_bundle` (scan -> STIX bundle), :class:`ExportConfig`, :func:`write_bundle`
- match:     :func:`match_indicators`, :func:`link_accounts`, :func:`apply_matches`,
             :func:`sightings_bundle`, :func:`false_positive_bundle`, :func:`revoke_for_false_positives`
- hook:      :func:`apply_indicators_to_scan` (what ``scan --indicators`` calls)
- taxii:     :func:`publish`, :func:`pull`
- psi:       :func:`psi_overlap` and the three protocol steps
- rules:     detection rules <-> indicators (:func:`write_rules`)
- cli:       ``share_app`` (Typer), mounted as ``distillguard share``
"""

from .keys import KeyRing, canonical

# The rest loads Polars: imported on first use (PEP 562), so the gateway plugin can read mark keys
# (provenance/keys.py uses KeyRing) inside a LiteLLM proxy without it.
_LAZY = {
    "ExportConfig": "export", "export_bundle": "export", "write_bundle": "export", "apply_indicators_to_scan": "hook",
    "REASON": "match", "apply_matches": "match", "best_links": "match", "false_positive_bundle": "match",
    "link_accounts": "match", "match_indicators": "match", "revoke_for_false_positives": "match",
    "sightings_bundle": "match", "band_keys": "signature", "band_keys_batch": "signature",
}


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{mod}", __name__), name)


__all__ = [
    "ExportConfig", "KeyRing", "REASON", "apply_indicators_to_scan", "apply_matches", "band_keys", "band_keys_batch",
    "best_links", "canonical", "export_bundle", "false_positive_bundle", "link_accounts", "match_indicators",
    "revoke_for_false_positives", "sightings_bundle", "write_bundle",
]
