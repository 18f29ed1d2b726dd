"""The exchange-log contract (shared/spec/events.md) as one Arrow schema.

Every reader produces record batches of exactly ``EVENT_SCHEMA``; every later stage
(features, replay, the online service) reads only these names. Timestamps are normalised
to integer epoch milliseconds (UTC) at ingestion so that later stages never parse text.
"""

from __future__ import annotations

import pyarrow as pa

# Field name -> (arrow type, JSON kind accepted by the validator).
# JSON kinds: "str", "int", "num", "bool", "ts" (RFC 3339 string or integer epoch ms),
# "strs" (an array of strings; no null elements).
REQUIRED: dict[str, str] = {"request_id": "str", "ts": "ts", "account_id": "str"}

OPTIONAL: dict[str, str] = {
    "org_id": "str",
    "api_key_id": "str",
    "account_created_at": "ts",
    "payment_fingerprint": "str",
    "email_domain": "str",
    "client_ip": "str",
    "asn": "int",
    "country": "str",
    "user_agent": "str",
    "model": "str",
    "operation": "str",
    "temperature": "num",
    "top_p": "num",
    "n": "int",
    "max_tokens": "int",
    "seed": "int",
    "stream": "bool",
    "logprobs": "bool",
    "top_logprobs": "int",
    "reasoning_effort": "str",
    "tool_count": "int",
    "system_prompt": "str",
    "prompt": "str",
    "prompt_sha256": "str",
    "conversation_id": "str",
    "turn": "int",
    "status": "int",
    "finish_reason": "str",
    "input_tokens": "int",
    "output_tokens": "int",
    "reasoning_tokens": "int",
    "latency_ms": "int",
    # Agent traffic (events.md, 2026-12-07).
    "tool_names": "strs",
    "message_count": "int",
    "last_role": "str",
    "output_tool_calls": "int",
}

FIELD_KINDS: dict[str, str] = {**REQUIRED, **OPTIONAL}

_ARROW = {
    "str": pa.string(),
    "int": pa.int64(),
    "num": pa.float64(),
    "bool": pa.bool_(),
    "ts": pa.int64(),  # epoch milliseconds, UTC
    "strs": pa.list_(pa.string()),
}

# Provenance columns added by ingestion (not part of the public contract).
SOURCE_COL = "_source"  # index into the list of input files
LINE_COL = "_line"  # 1-based line / row number within that file

EVENT_SCHEMA = pa.schema(
    [pa.field(name, _ARROW[kind], nullable=name not in REQUIRED) for name, kind in FIELD_KINDS.items()]
    + [pa.field(SOURCE_COL, pa.int32(), nullable=False), pa.field(LINE_COL, pa.int64(), nullable=False)]
)

EVENT_FIELDS: tuple[str, ...] = tuple(FIELD_KINDS)

ACTIONS: tuple[str, ...] = ("none", "monitor", "challenge", "throttle", "suspend")
FLAG_ACTIONS = frozenset({"challenge", "throttle", "suspend"})

ACCOUNTS_COLUMNS = [
    "account_id", "score", "flagged", "action", "cluster_id",
    "first_flagged_ts", "events", "events_before_flag", "reasons",
]
CLUSTERS_COLUMNS = ["cluster_id", "accounts", "events", "score", "flagged", "first_flagged_ts", "reasons"]
LABELS_COLUMNS = ["account_id", "label", "population", "campaign", "attack_start_ts"]
