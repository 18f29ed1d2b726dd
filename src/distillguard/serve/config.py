"""Every knob of the online service in one dataclass (CLI flags and the policy YAML fill it)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class ServeConfig:
    """Configuration of one service replica.

    Detection knobs are the scan's own (``tick_ms`` is ``ReplayConfig.tick_ms``, rules, model
    and policy are the same files), so a log replayed through the service and scanned with the
    same settings gives the same flags.
    """

    state_dir: Path = Path("distillguard-state")
    # Detection (same meaning as in ``scan``).
    tick_ms: int = 60_000
    rules_dir: Path | None = None
    model_path: Path | None = None
    policy_path: Path | None = None
    # Refresh: decisions are recomputed when new exchanges are pending and either ``refresh_ms``
    # of wall-clock time passed since the last refresh, or the newest event time crossed a tick
    # boundary and at least ``min_refresh_ms`` passed.
    refresh_ms: int = 2_000
    min_refresh_ms: int = 250
    # Back-pressure: the refresher waits at least (1/refresh_max_busy - 1) times its last refresh's
    # duration, so it takes at most this share of the wall clock (one core) and ingest keeps the
    # rest. Only slow refreshes (heavy backfill, long history) are spaced out by it.
    refresh_max_busy: float = 1 / 3
    # Replay horizon: per-tick history older than this (event time, behind the newest exchange)
    # is folded into one row per account and its cluster epochs are not replayed again, so a
    # refresh costs what the horizon holds, not everything the service ever saw. Account totals
    # are kept; None replays everything (as ``distillguard scan`` does).
    replay_horizon_ms: int | None = 48 * 3_600_000
    # Safe roll-out: shadow the whole policy (compute, log, export; enforce nothing) or some rules
    # (decisions enforced as if those rules did not exist; the full decision is still exported).
    shadow: bool = False
    shadow_rules: tuple[str, ...] = ()
    # Ingest limits.
    max_body_bytes: int = 64 * 1024 * 1024
    # Plausible event time (``ingest.EventTimeWindow``, relative to the time of ingest): a record
    # older or newer than this is refused (``ts_out_of_range``), so no clock error or hostile
    # record can stretch the replay or move its horizon.
    # Connections (``distillguard serve``'s protocol, serve/fastpath.py): a client gets this long
    # to send its request line and headers, and this long for the whole body; past the cap on
    # open connections a new one is closed at once (file descriptors are kept for real clients).
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_connections: int = 1000
    max_connections_per_client: int = 256
    # Request bodies held in memory at once, all requests together (past it: 503, retry later).
    max_inflight_bytes: int = 256 * 1024 * 1024
    max_event_age_days: float = 3660.0
    max_clock_skew_minutes: float = 1440.0
    max_rejects_listed: int = 100
    # NDJSON bodies reduced at once (each reduction coalesces the bodies waiting for it, up to
    # this many bytes): two keep both cores busy while a group commit is being written.
    ingest_workers: int = 2
    ingest_coalesce_bytes: int = 32 << 20
    # Redis (production transport); None = embedded mode only.
    redis_url: str | None = None
    redis_prefix: str = "dg:"
    raw_stream: str = "events"          # gateways XADD exchange records here (consumer group)
    compact_stream: str = "compact"     # replicas publish compact rows here; every replica reads all
    consumer_group: str = "distillguard"
    consumer_name: str = field(default_factory=lambda: f"{os.uname().nodename}-{os.getpid()}")
    claim_idle_ms: int = 30_000         # pending raw entries idle this long are re-claimed
    read_count: int = 500
    decision_ttl_s: int = 900
    # Webhooks.
    webhook_urls: tuple[str, ...] = ()
    webhook_timeout_s: float = 5.0
    webhook_retries: int = 5

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        self.shadow_rules = tuple(self.shadow_rules)
        self.webhook_urls = tuple(self.webhook_urls)
        if self.policy_path:
            # Shadow settings may live in the policy file next to the thresholds (the scan's
            # Policy ignores these keys): ``shadow: true`` and/or ``shadow_rules: [dg-001, ...]``.
            d = yaml.safe_load(Path(self.policy_path).read_text()) or {}
            self.shadow = self.shadow or bool(d.get("shadow", False))
            self.shadow_rules = tuple(dict.fromkeys([*self.shadow_rules, *map(str, d.get("shadow_rules", []) or [])]))
        if self.replay_horizon_ms is not None and self.replay_horizon_ms < 2 * 3_600_000:
            raise ValueError("replay_horizon_ms must be at least two hours (the trailing window is one)")
        from ..ingest.timestamps import EventTimeWindow

        EventTimeWindow(self.max_event_age_days, self.max_clock_skew_minutes)  # ValueError when out of range
        if not (self.header_timeout_s > 0 and self.body_timeout_s > 0):
            raise ValueError("header_timeout_s and body_timeout_s must be positive")
        if min(self.max_connections, self.max_connections_per_client, self.max_inflight_bytes) < 1:
            raise ValueError("max_connections, max_connections_per_client and max_inflight_bytes must be at least 1")
        if not 0 < self.tick_ms <= 900_000:
            raise ValueError("tick_ms must be in (0, 900000]: the spec refreshes decisions at least every 15 minutes")

    def key(self, *parts: str) -> str:
        """A Redis key under this deployment's prefix."""
        return self.redis_prefix + ":".join(parts)
