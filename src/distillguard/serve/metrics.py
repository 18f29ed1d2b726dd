"""Prometheus metrics of one service replica (own registry: several apps can live in one process).

No label ever carries a token, an account id or any other unbounded value.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter("distillguard_events", "Exchange records received, by outcome", ["outcome"], registry=r)
        self.quarantine = Counter("distillguard_quarantined", "Records rejected, by reason code", ["reason"], registry=r)
        self.quarantine_written = Counter("distillguard_quarantine_lines_written", "Lines written to quarantine.jsonl (all parts)", registry=r)
        self.quarantine_rotations = Counter("distillguard_quarantine_rotations", "quarantine.jsonl rotations", registry=r)
        self.ingest_seconds = Histogram("distillguard_ingest_seconds", "Time to validate, reduce and commit one request body",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.refresh_seconds = Histogram("distillguard_refresh_seconds", "Time of one decision refresh (ticks + replay)",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.refresh_errors = Counter("distillguard_refresh_errors", "Refreshes that failed (state kept, retried)", registry=r)
        self.decision_lookups = Counter("distillguard_decision_lookups", "GET /v1/decisions lookups", ["found"], registry=r)
        self.accounts = Gauge("distillguard_accounts", "Accounts tracked", registry=r)
        self.exchanges = Gauge("distillguard_exchanges", "Accepted exchanges held in state", registry=r)
        self.pending = Gauge("distillguard_pending_exchanges", "Accepted exchanges not yet in decisions", registry=r)
        self.actions = Gauge("distillguard_accounts_by_action", "Accounts per current action (enforced / computed)",
                             ["action", "view"], registry=r)
        self.action_changes = Counter("distillguard_action_changes", "Decision action changes", ["to"], registry=r)
        self.last_refresh = Gauge("distillguard_last_refresh_timestamp_seconds", "Wall time of the last refresh", registry=r)
        self.event_time = Gauge("distillguard_event_time_max_seconds", "Newest event time in the decisions", registry=r)
        self.auth_failures = Counter("distillguard_auth_failures", "Requests refused by authentication", ["reason"], registry=r)
        self.webhooks = Counter("distillguard_webhook_deliveries", "Webhook delivery attempts", ["result"], registry=r)
        self.redis_entries = Counter("distillguard_redis_entries", "Redis stream entries processed", ["stream", "how"], registry=r)
        self.redis_errors = Counter("distillguard_redis_errors", "Redis transport errors (retried)", ["where"], registry=r)
        self.redis_published = Counter("distillguard_redis_decisions_published", "Decision keys written to Redis", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
