"""The ``serve`` command. Registered on the main CLI with ``app.command()(serve)``; also
``python -m distillguard.serve`` (same options)."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import List, Optional

import typer


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8080, help="Port to listen on."),
    state_dir: Path = typer.Option(Path("distillguard-state"), "--state-dir", help="Embedded store (DuckDB) and quarantine.jsonl."),
    rules: Optional[Path] = typer.Option(None, help="Directory of YAML rules (default: the packaged rules)."),
    model: Optional[Path] = typer.Option(None, help="Model JSON (default: the packaged model)."),
    policy: Optional[Path] = typer.Option(None, help="Policy YAML: thresholds, allow-lists, shadow / shadow_rules."),
    tick_seconds: float = typer.Option(60.0, help="Decision tick in event time, as in scan (<= 900)."),
    refresh_ms: int = typer.Option(2000, help="Recompute decisions at least this often (wall clock) while exchanges arrive."),
    min_refresh_ms: int = typer.Option(250, help="Earliest refresh after the previous one when event time crosses a tick."),
    replay_horizon_hours: float = typer.Option(48.0, help="Replay this much event time at each refresh; older history is folded "
                                                          "into account totals (0 = replay everything, as scan does)."),
    ingest_workers: int = typer.Option(2, min=1, help="NDJSON bodies reduced at once; bodies waiting for a worker are coalesced."),
    shadow: bool = typer.Option(False, help="Shadow the whole policy: compute, log and export decisions; enforce none."),
    shadow_rule: List[str] = typer.Option([], "--shadow-rule", help="Rule id whose verdicts are computed but not enforced (repeatable)."),
    redis_url: Optional[str] = typer.Option(None, envvar="DISTILLGUARD_REDIS_URL", help="redis://host:port/db: consume the raw stream, replicate via the compact stream, publish decision keys."),
    redis_prefix: str = typer.Option("dg:", help="Prefix of every Redis key and stream."),
    consumer_name: Optional[str] = typer.Option(None, help="Consumer name in the group (default host-pid)."),
    no_consume: bool = typer.Option(False, "--no-consume", help="Redis mode: follow the compact stream but read no raw entries."),
    decision_ttl: int = typer.Option(900, help="TTL (s) of decision keys in Redis."),
    webhook_url: List[str] = typer.Option([], "--webhook-url", help="POST signed action changes here (repeatable); secret in DISTILLGUARD_WEBHOOK_SECRET."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Serve without tokens (loopback only; development)."),
    max_event_age_days: float = typer.Option(3660.0, help="Refuse records older than this many days before now (ts_out_of_range)."),
    max_clock_skew_minutes: float = typer.Option(1440.0, help="Refuse records more than this many minutes after now (ts_out_of_range)."),
    header_timeout: float = typer.Option(10.0, help="Seconds a client has to send its request line and headers."),
    body_timeout: float = typer.Option(60.0, help="Seconds a client has to send a request body."),
    max_connections: int = typer.Option(1000, min=1, help="Open connections at most (and below the file-descriptor limit); more are closed on arrival."),
    max_connections_per_client: int = typer.Option(256, min=1, help="Open connections from one address at most."),
    max_inflight_mb: float = typer.Option(256.0, help="Request bodies held in memory at once, all requests together (MB; past it: 503)."),
    access_log: bool = typer.Option(False, help="uvicorn access log (request lines only; tokens are never logged)."),
    log_level: str = typer.Option("info"),
) -> None:
    """Run the online service: POST exchanges, GET decisions (see docs/serve.md)."""
    try:
        import uvicorn

        from .app import build_service, create_app
        from .fastpath import protocol_or_auto
    except ImportError as e:  # the `serve` extra is not installed: one line naming it, before any work
        from ..errors import missing_extra_error

        raise missing_extra_error("serve", e.name or str(e)) from e
    from .auth import ENV_VAR, TokenAuth
    from .config import ServeConfig

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not 0 < tick_seconds <= 900:
        raise typer.BadParameter("tick-seconds must be in (0, 900]")
    try:
        auth = TokenAuth.from_env()
    except ValueError as e:  # the message names the entry's position, never its text
        raise typer.BadParameter(str(e))
    if no_auth:
        if not _loopback(host):
            raise typer.BadParameter("--no-auth is only allowed on a loopback address")
        auth = None
    elif not auth.configured:
        raise typer.BadParameter(f"no API tokens: set {ENV_VAR}='token:ingest+decide,...' (or --no-auth on loopback)")
    # Paths, rules, model, policy and the port are checked before the state store is created.
    from ..cli import check_scan_options
    from ..errors import check_port_free, writable_dir

    writable_dir(state_dir, "state directory", "--state-dir")
    check_scan_options(rules, model, policy)
    check_port_free(host, port)
    kw = {} if consumer_name is None else {"consumer_name": consumer_name}
    try:
        cfg = ServeConfig(state_dir=state_dir, tick_ms=int(tick_seconds * 1000), rules_dir=rules, model_path=model, policy_path=policy,
                          refresh_ms=refresh_ms, min_refresh_ms=min_refresh_ms, ingest_workers=ingest_workers,
                          replay_horizon_ms=int(replay_horizon_hours * 3_600_000) or None, shadow=shadow, shadow_rules=tuple(shadow_rule),
                          redis_url=redis_url, redis_prefix=redis_prefix, decision_ttl_s=decision_ttl,
                          webhook_urls=tuple(webhook_url), max_event_age_days=max_event_age_days,
                          max_clock_skew_minutes=max_clock_skew_minutes, header_timeout_s=header_timeout, body_timeout_s=body_timeout,
                          max_connections=max_connections, max_connections_per_client=max_connections_per_client,
                          max_inflight_bytes=int(max_inflight_mb * 1024 * 1024), **kw)
    except ValueError as e:
        raise typer.BadParameter(str(e))
    try:
        service = build_service(cfg, auth, consume=not no_consume)
    except ValueError as e:  # a bad policy file (countermeasures, shadow rules): one line, not a traceback
        raise typer.BadParameter(str(e))
    app = create_app(service)
    # decision lookups are answered inside uvicorn's HTTP protocol (serve/fastpath.py), the rest via ASGI
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), access_log=access_log, server_header=False,
                backlog=min(2048, max_connections),
                http=protocol_or_auto(service))
