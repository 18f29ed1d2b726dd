"""``distillguard serve``: the online service (FastAPI + uvicorn) around the scan's detection code.

Modules (each import is light; the detection stack is loaded only where it is used, so the
gateway plugin can be imported inside a LiteLLM proxy without Polars or DuckDB):

- :mod:`.config`         ``ServeConfig``: every knob, from the CLI or a YAML file
- :mod:`.store`          the embedded store (DuckDB): accepted rows, offsets; the request-id index (in memory)
- :mod:`.engine`         ingest -> compact rows -> the scan's ``account_ticks`` + ``replay``
- :mod:`.app`            the HTTP API (``/v1/events``, ``/v1/traces``, ``/v1/decisions``, ...)
- :mod:`.auth`           bearer tokens with scopes from ``DISTILLGUARD_API_TOKENS``
- :mod:`.metrics`        Prometheus metrics
- :mod:`.redis_stream`   Redis Streams transport and decision publication
- :mod:`.webhooks`       signed webhooks when an account's action changes
- :mod:`.otel`           OpenTelemetry GenAI spans (OTLP/JSON) -> exchange records
- :mod:`.litellm_plugin` LiteLLM proxy guardrail + logger
- :mod:`.cli`            the ``serve`` command (``python -m distillguard.serve``)
"""
