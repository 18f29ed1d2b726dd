"""``distillguard console`` and ``distillguard tune``, ready to register on the main Typer app:

    from .console import cli as console_cli
    app.command("console")(console_cli.console)
    app.command("tune")(console_cli.tune)
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import List, Optional

import typer

LOOPBACK_NAMES = {"localhost"}


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def console(
    scan_dir: Path = typer.Argument(..., help="A scan output directory (accounts.csv, clusters.csv, summary.json)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Loopback address to bind (127.0.0.1, ::1 or localhost)."),
    port: int = typer.Option(8765, "--port", help="TCP port."),
    db: Optional[Path] = typer.Option(None, "--db", help="Store file (default SCAN_DIR/console.duckdb)."),
    events: Optional[List[str]] = typer.Option(None, "--events", help="The log the scan read (default: summary.json 'inputs')."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Reload the scan data into the store (labels, users, audit are kept)."),
) -> None:
    """Serve the analyst console on loopback. First start: set DISTILLGUARD_ADMIN_PASSWORD."""
    import os

    from ..errors import UserError, check_port_free, need_dir, require_extra

    require_extra("console")
    import uvicorn

    from .app import create_app
    from .store import build_store

    # Everything a user can get wrong is checked before the store is built.
    if not _is_loopback(host):
        raise UserError(f"the console serves on loopback only (got --host {host})",
                        "use 127.0.0.1, ::1 or localhost, and put an authenticating reverse proxy in front for remote use")
    need_dir(scan_dir, "scan directory", "SCAN_DIR (the --out directory of 'distillguard scan')")
    password = os.environ.get("DISTILLGUARD_ADMIN_PASSWORD")
    if password is not None and len(password) < 8:
        raise UserError("DISTILLGUARD_ADMIN_PASSWORD is shorter than 8 characters", "export a longer password and start again")
    check_port_free(host, port)
    try:
        path = build_store(scan_dir, db, events=events, rebuild=rebuild, log=typer.echo)
        app = create_app(path)
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        raise UserError(str(e)) from e
    typer.echo(f"console: http://{host}:{port}/  (store {path})")
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False, server_header=False)


def tune(
    scan_dir: Path = typer.Argument(..., help="The scan directory whose console store holds the analysts' decisions."),
    db: Optional[Path] = typer.Option(None, "--db", help="Store file (default SCAN_DIR/console.duckdb)."),
    events: Optional[List[str]] = typer.Option(None, "--events", help="The labelled log (default: the store's scan inputs)."),
    base_labels: Optional[Path] = typer.Option(None, "--base-labels", help="Benchmark labels.csv to train on as well (analyst labels override)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where the new model goes (default SCAN_DIR/tuned_model.json)."),
    apply: bool = typer.Option(False, "--apply", help="Write the new model (without it: show the change only)."),
    C: float = typer.Option(0.05, "--C", help="Inverse L2 strength."),
) -> None:
    """Refit the learned layer and the challenge threshold from analyst decisions; show before/after metrics."""
    from .tune import format_report, tune as run_tune

    store = db or scan_dir / "console.duckdb"
    if not Path(store).exists():
        typer.echo(f"error: {store} not found: run 'distillguard console' first", err=True)
        raise typer.Exit(2)
    try:
        res = run_tune(store, events, out or scan_dir / "tuned_model.json", apply=apply, base_labels=base_labels, C=C)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    typer.echo(format_report(res))
    if not apply:
        typer.echo("not applied: rerun with --apply to write the model, then scan with --model " + str(res["out_model"]))
