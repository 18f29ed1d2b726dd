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

from .export import ExportConfig, export_bundle, write_bundle
from .hook import apply_indicators_to_scan
from .keys import KeyRing, canonical
from .match import (REASON, apply_matches, best_links, false_positive_bundle, link_accounts, match_indicators,
                    revoke_for_false_positives, sightings_bundle)
from .signature import band_keys, band_keys_batch

__all__ = [
    "ExportConfig", "KeyRing", "REASON", "apply_indicators_to_scan", "apply_matches", "band_keys", "band_keys_batch",
    "best_links", "canonical", "export_bundle", "false_positive_bundle", "link_accounts", "match_indicators",
    "revoke_for_false_positives", "sightings_bundle", "write_bundle",
]
