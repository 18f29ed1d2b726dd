"""OpenTelemetry GenAI spans (OTLP/JSON) -> exchange records (shared/spec/events.md).

Each span carrying at least one ``gen_ai.*`` attribute is one exchange; other spans (HTTP,
database, ...) are ignored and counted. The mapping is the events.md table:

====================================  ==================================================
record field                          span
====================================  ==================================================
``request_id``                        attribute ``distillguard.request_id`` / ``request_id``,
                                      else ``<traceId>-<spanId>`` (stable across re-exports)
``ts``                                ``startTimeUnixNano`` (to epoch ms)
``latency_ms``                        ``endTimeUnixNano - startTimeUnixNano``
``account_id``                        ``distillguard.account_id`` / ``account_id`` /
                                      ``enduser.id`` / ``user.id`` (span, then resource)
``client_ip``                         ``client.address``
``user_agent``                        ``user_agent.original``
``model`` ``operation``               ``gen_ai.request.model``, ``gen_ai.operation.name``
``temperature`` ``top_p`` ``n``       ``gen_ai.request.temperature`` / ``.top_p`` / ``.choice.count``
``max_tokens`` ``seed`` ``stream``    ``gen_ai.request.max_tokens`` / ``.seed`` / ``.stream``
``tool_count``                        number of ``gen_ai.tool.definitions``
``tool_names``                        ``name`` of each ``gen_ai.tool.definitions`` entry
``message_count``                     length of ``gen_ai.input.messages``
``last_role``                         role of the last entry of ``gen_ai.input.messages``
``output_tool_calls``                 tool-call parts of ``gen_ai.output.messages``
``system_prompt``                     text parts of ``gen_ai.system_instructions``
``prompt``                            text of the last user message of ``gen_ai.input.messages``
``conversation_id``                   ``gen_ai.conversation.id``
``status``                            ``error.type`` when it is an HTTP status; 200 when the span
                                      has neither ``error.type`` nor an error status
``finish_reason``                     ``gen_ai.response.finish_reasons[0]``
``input_tokens`` ``output_tokens``    ``gen_ai.usage.input_tokens`` / ``.output_tokens``
``reasoning_tokens``                  ``gen_ai.usage.reasoning.output_tokens``
====================================  ==================================================

Any other contract field may be attached as an attribute under its own name (optionally
prefixed ``distillguard.``), e.g. ``payment_fingerprint``. Records are then validated exactly
like JSON records: a span without an account or a start time is quarantined, not dropped.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..schema import FIELD_KINDS

ACCOUNT_KEYS = ("distillguard.account_id", "account_id", "enduser.id", "user.id")

DIRECT = {
    "client.address": "client_ip",
    "user_agent.original": "user_agent",
    "gen_ai.request.model": "model",
    "gen_ai.operation.name": "operation",
    "gen_ai.request.temperature": "temperature",
    "gen_ai.request.top_p": "top_p",
    "gen_ai.request.choice.count": "n",
    "gen_ai.request.max_tokens": "max_tokens",
    "gen_ai.request.seed": "seed",
    "gen_ai.request.stream": "stream",
    "gen_ai.conversation.id": "conversation_id",
    "gen_ai.usage.input_tokens": "input_tokens",
    "gen_ai.usage.output_tokens": "output_tokens",
    "gen_ai.usage.reasoning.output_tokens": "reasoning_tokens",
}


def any_value(v: dict | None) -> Any:
    """Python value of an OTLP/JSON ``AnyValue``."""
    if not isinstance(v, dict):
        return None
    if "stringValue" in v:
        return v["stringValue"]
    if "boolValue" in v:
        return v["boolValue"]
    if "intValue" in v:  # int64 is a JSON string in OTLP/JSON
        try:
            return int(v["intValue"])
        except (TypeError, ValueError):
            return v["intValue"]
    if "doubleValue" in v:
        d = v["doubleValue"]
        return float(d) if isinstance(d, (int, float, str)) and d not in ("NaN", "Infinity", "-Infinity") else d
    if "arrayValue" in v:
        return [any_value(x) for x in (v["arrayValue"] or {}).get("values", []) or []]
    if "kvlistValue" in v:
        return {kv.get("key"): any_value(kv.get("value")) for kv in (v["kvlistValue"] or {}).get("values", []) or []}
    if "bytesValue" in v:
        return v["bytesValue"]
    return None


def attributes(items: list | None) -> dict[str, Any]:
    return {a["key"]: any_value(a.get("value")) for a in items or [] if isinstance(a, dict) and "key" in a}


def _structured(v: Any) -> Any:
    """GenAI message attributes are JSON strings on spans; accept decoded values too."""
    if isinstance(v, str):
        try:
            return orjson.loads(v)
        except ValueError:
            return v
    return v


def _text_of(parts: Any) -> str | None:
    if isinstance(parts, str):
        return parts
    if isinstance(parts, dict):
        parts = [parts]
    if not isinstance(parts, list):
        return None
    texts = []
    for p in parts:
        if isinstance(p, str):
            texts.append(p)
        elif isinstance(p, dict) and p.get("type", "text") == "text":
            t = p.get("content", p.get("text"))
            if isinstance(t, str):
                texts.append(t)
    return "\n".join(texts) if texts else None


def last_user_text(messages: Any) -> str | None:
    messages = _structured(messages)
    if isinstance(messages, str):
        return messages
    if not isinstance(messages, list):
        return None
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            return _text_of(m.get("parts", m.get("content")))
    return None


def _nanos_to_ms(v: Any) -> int | None:
    try:
        return int(v) // 1_000_000
    except (TypeError, ValueError):
        return None


def span_to_record(span: dict, resource: dict[str, Any]) -> dict | None:
    """The exchange record of one span, or None when the span is not a GenAI span."""
    attrs = attributes(span.get("attributes"))
    if not any(k.startswith("gen_ai.") for k in attrs):
        return None
    rec: dict[str, Any] = {}
    for scope in (resource, attrs):  # span attributes win over resource attributes
        for k, v in scope.items():
            name = k[len("distillguard."):] if k.startswith("distillguard.") else k
            if name in FIELD_KINDS and v is not None:
                rec[name] = v
    rid = rec.get("request_id")
    if rid is None and span.get("traceId") and span.get("spanId"):
        rec["request_id"] = f"{span['traceId']}-{span['spanId']}"
    start, end = _nanos_to_ms(span.get("startTimeUnixNano")), _nanos_to_ms(span.get("endTimeUnixNano"))
    if "ts" not in rec and start is not None:
        rec["ts"] = start
    if "latency_ms" not in rec and start is not None and end is not None and end >= start:
        rec["latency_ms"] = end - start
    if "account_id" not in rec:
        for k in ACCOUNT_KEYS:
            v = attrs.get(k, resource.get(k))
            if v is not None:
                rec["account_id"] = v
                break
    for k, field in DIRECT.items():
        if k in attrs and attrs[k] is not None and field not in rec:
            rec[field] = attrs[k]
    tools = _structured(attrs.get("gen_ai.tool.definitions"))
    if isinstance(tools, list):
        if "tool_count" not in rec:
            rec["tool_count"] = len(tools)
        names = [t.get("name") if isinstance(t, dict) else None for t in tools]
        if "tool_names" not in rec and all(isinstance(x, str) for x in names):  # else unknown, not wrong
            rec["tool_names"] = names
    messages = _structured(attrs.get("gen_ai.input.messages"))
    if isinstance(messages, list):
        if "message_count" not in rec:
            rec["message_count"] = len(messages)
        if "last_role" not in rec and messages and isinstance(messages[-1], dict):
            rec["last_role"] = messages[-1].get("role")
    outputs = _structured(attrs.get("gen_ai.output.messages"))
    if isinstance(outputs, list) and "output_tool_calls" not in rec:
        rec["output_tool_calls"] = sum(
            1 for m in outputs if isinstance(m, dict)
            for p in (m.get("parts") or []) if isinstance(p, dict) and p.get("type") == "tool_call")
    if "system_prompt" not in rec and attrs.get("gen_ai.system_instructions") is not None:
        t = _text_of(_structured(attrs["gen_ai.system_instructions"]))
        if t is not None:
            rec["system_prompt"] = t
    if "prompt" not in rec and attrs.get("gen_ai.input.messages") is not None:
        t = last_user_text(attrs["gen_ai.input.messages"])
        if t is not None:
            rec["prompt"] = t
    fr = attrs.get("gen_ai.response.finish_reasons")
    if "finish_reason" not in rec and fr:
        fr = _structured(fr)
        if isinstance(fr, list) and fr and isinstance(fr[0], str):
            rec["finish_reason"] = fr[0]
        elif isinstance(fr, str):
            rec["finish_reason"] = fr
    if "status" not in rec:
        err = attrs.get("error.type")
        failed = (span.get("status") or {}).get("code") in (2, "STATUS_CODE_ERROR")
        if err is not None and str(err).isdigit():
            rec["status"] = int(str(err))
        elif err is None and not failed:
            rec["status"] = 200
    return rec


def otlp_to_records(doc: Any) -> tuple[list, int]:
    """(records, ignored spans) of an OTLP/JSON ``ExportTraceServiceRequest``.

    A body that is not an export request yields one non-object record, which the validator
    quarantines as ``not_an_object``.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans", []), list):
        return [doc], 0
    out: list = []
    ignored = 0
    for rs in doc.get("resourceSpans") or []:
        if not isinstance(rs, dict):
            out.append(rs)
            continue
        resource = attributes((rs.get("resource") or {}).get("attributes"))
        for ss in rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []:
            for span in (ss or {}).get("spans") or []:
                if not isinstance(span, dict):
                    out.append(span)
                    continue
                rec = span_to_record(span, resource)
                if rec is None:
                    ignored += 1
                else:
                    out.append(rec)
    return out, ignored
