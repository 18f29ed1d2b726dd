"""Counters kept while reading exchange logs."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field


@dataclass
class IngestStats:
    """Running totals of one ingestion run.

    ``read == valid + quarantined`` holds at every point between batches: each input record
    is either yielded as a valid row or written to quarantine. Blank lines are not records
    and are not counted. Duplicate ``request_id`` values are counted as valid here; they
    are dropped (and counted) downstream.

    Attributes
    ----------
    read : int
        Records seen (non-blank lines, data rows, synthetic records for unreadable files).
    valid : int
        Records yielded as rows of :data:`distillguard.schema.EVENT_SCHEMA`.
    quarantined : int
        Records rejected, each with one line in ``quarantine.jsonl``.
    reasons : collections.Counter
        Reason code (e.g. ``"missing:account_id"``) -> number of quarantined records.
    """

    read: int = 0
    valid: int = 0
    quarantined: int = 0
    reasons: collections.Counter = field(default_factory=collections.Counter)

    def add_valid(self, n: int) -> None:
        """Count ``n`` accepted records."""
        self.read += n
        self.valid += n

    def add_rejected(self, reason: str, n: int = 1) -> None:
        """Count ``n`` quarantined records with the same reason."""
        self.read += n
        self.quarantined += n
        self.reasons[reason] += n

    def as_dict(self) -> dict:
        """Plain-JSON view (reasons sorted by count, then code) for summary.json."""
        reasons = dict(sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        return {"read": self.read, "valid": self.valid, "quarantined": self.quarantined, "reasons": reasons}
