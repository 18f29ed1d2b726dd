"""The ``distillguard`` command line (Typer + Rich)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False, help="Detect distillation at scale in LLM API exchange logs.")
console = Console()


@app.command()
def scan(
    inputs: List[str] = typer.Argument(..., help="Log files, globs or directories (JSONL[.gz|.zst], Parquet, CSV)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory for the report files."),
    rules: Optional[Path] = typer.Option(None, help="Directory of YAML rules (default: the packaged rules)."),
    model: Optional[Path] = typer.Option(None, help="Model JSON (default: the packaged model)."),
    policy: Optional[Path] = typer.Option(None, help="Policy YAML: thresholds and allow-lists."),
    tick_seconds: float = typer.Option(60.0, help="Decision refresh interval in event time (<= 900)."),
    memory_limit: str = typer.Option("1GB", help="DuckDB memory limit of the out-of-core de-dup stage; it spills to disk past it."),
    workdir: Optional[Path] = typer.Option(None, help="Where spill files go (default: system temp)."),
    engine: str = typer.Option("local", help="local (this machine) or spark (PySpark, the spark extra; docs/spark.md)."),
    spark_master: Optional[str] = typer.Option(None, help="Spark master for --engine spark (default local[2])."),
    indicators: Optional[List[Path]] = typer.Option(None, "--indicators", help="Partner STIX bundles to match (see `share`)."),
    coalition_key: Optional[Path] = typer.Option(None, "--coalition-key", help="Coalition HMAC key file (default $DG_COALITION_KEY)."),
    provider: Optional[str] = typer.Option(None, help="This provider's name in sightings."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Scan logs and write accounts.csv, clusters.csv, quarantine.jsonl and summary.json."""
    from .replay import ReplayConfig
    from .scan import scan as run_scan

    if not 0 < tick_seconds <= 900:
        raise typer.BadParameter("tick-seconds must be in (0, 900]: the spec refreshes decisions at least every 15 minutes")
    if engine not in ("local", "spark"):
        raise typer.BadParameter("engine must be 'local' or 'spark'")
    cfg = ReplayConfig(tick_ms=int(tick_seconds * 1000))
    try:
        if engine == "spark":
            from .spark import run_spark_scan

            s = run_spark_scan(inputs, out, master=spark_master or "local[2]", tick_ms=cfg.tick_ms,
                               rules_dir=rules, model_path=model, policy_path=policy, config=cfg)
        else:
            s = run_scan(inputs, out, rules_dir=rules, model_path=model, policy_path=policy, config=cfg,
                         memory_limit=memory_limit, workdir=workdir, show_progress=not quiet)
    except FileNotFoundError as e:
        console.print("error: " + str(e), style="red", markup=False)
        raise typer.Exit(2)
    if indicators:
        from .share import apply_indicators_to_scan

        apply_indicators_to_scan(out, indicators, coalition_key, provider=provider)
    if not quiet:
        console.print(f"read {s['records_read']:,} records: {s['valid']:,} valid, {s['quarantined']:,} quarantined, "
                      f"{s['duplicates_dropped']:,} duplicates; {s['accounts']:,} accounts, {s['flagged_accounts']:,} flagged, "
                      f"{s['clusters']:,} clusters ({s['flagged_clusters']:,} flagged) in {s['wall_seconds']:.1f} s", markup=False)
        console.print(f"report: {out}", markup=False)


@app.command()
def simulate(
    out: Path = typer.Option(..., "--out", "-o", help="Directory for events.jsonl and labels.csv."),
    seed: int = typer.Option(7), hours: float = typer.Option(24.0), scale: float = typer.Option(1.0),
    split: str = typer.Option("dev", help="dev (for tuning) or holdout (for reporting): disjoint prompts and attack variants."),
    inject_bad: float = typer.Option(0.0, help="Fraction of malformed and duplicate lines to add (robustness demos)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Write a labeled, realistic traffic benchmark built from real public corpora."""
    from rich.progress import Progress

    from .sim import simulate as run_sim

    with Progress(disable=quiet) as bar:
        task = bar.add_task("simulating", total=None)
        res = run_sim(out, seed=seed, hours=hours, scale=scale, split=split, inject_bad=inject_bad,
                      progress=lambda n: bar.update(task, completed=n))
    if not quiet:
        console.print_json(json.dumps(res, default=str))


@app.command()
def evaluate(
    labels: Path = typer.Argument(..., help="labels.csv (account_id,label,population,campaign,attack_start_ts)"),
    scan_dir: Path = typer.Argument(..., help="A scan output directory."),
    events: Optional[List[str]] = typer.Option(None, help="The log the scan read (default: summary.json 'inputs')."),
    out: Optional[Path] = typer.Option(None, help="Where evaluation.json and report.html go (default SCAN_DIR/eval)."),
) -> None:
    """Score a scan against labels: recall, false positives per population, AUROC, leakage, time to detect."""
    from .evaluate import evaluate as run_eval
    from .evaluate import render_table

    res = run_eval(labels, scan_dir, events=events or None, out_dir=out)
    console.print(render_table(res))
    # One line whatever the terminal width: scripts grep it.
    console.print("RESULT " + res["result_line"], markup=False, soft_wrap=True)
    console.print(f"report: {(out or scan_dir / 'eval') / 'report.html'}", markup=False)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", "-o"),
    seed: int = typer.Option(7), hours: float = typer.Option(24.0), scale: float = typer.Option(1.0),
    split: str = typer.Option("holdout"),
) -> None:
    """Simulate (real corpora) -> scan -> evaluate, end to end, and print the table."""
    t0 = time.time()
    sim_dir, scan_dir = out / "traffic", out / "scan"
    console.rule("1/3 simulate")
    simulate(out=sim_dir, seed=seed, hours=hours, scale=scale, split=split, inject_bad=0.0, quiet=True)
    console.rule("2/3 scan")
    scan([str(sim_dir / "events.jsonl")], out=scan_dir, rules=None, model=None, policy=None, tick_seconds=60.0,
         memory_limit="1GB", workdir=None, engine="local", spark_master=None, indicators=None, coalition_key=None,
         provider=None, quiet=False)
    console.rule("3/3 evaluate")
    evaluate(sim_dir / "labels.csv", scan_dir, events=[str(sim_dir / "events.jsonl")], out=None)
    console.print(f"demo finished in {time.time() - t0:.0f} s", markup=False)


@app.command()
def train(
    events: List[str] = typer.Argument(..., help="Labeled traffic (e.g. a dev-split simulation's events.jsonl)."),
    labels: Path = typer.Option(..., help="labels.csv for those events."),
    out: Path = typer.Option(Path("src/distillguard/models/account_lr.json"), help="Where to write the model JSON."),
    c: float = typer.Option(0.05, "--C", help="Inverse L2 regularisation strength (in standard units)."),
) -> None:
    """Refit the learned layer (sign-constrained logistic model) from labeled traffic."""
    from .train import train as run_train

    m = run_train(events, labels, out, C=c)
    for f, w in sorted(zip(m.features, m.coef), key=lambda t: -abs(t[1])):
        console.print(f"{f:16s} {w:+.3f}", markup=False)
    console.print(f"intercept {m.intercept:+.3f}; train AUROC {m.meta.get('train_auroc', float('nan')):.4f}; written to {out}", markup=False)


def _register_subapps() -> None:
    """Optional parts register only when their extra is installed (`pip install distillguard[share]`)."""
    try:
        from .share.cli import share_app
    except ImportError as e:  # the core scan must work without the optional extras
        missing = str(e)

        @app.command(name="share")
        def share_missing() -> None:
            """Coalition exchange (needs the `share` extra)."""
            console.print(f"share needs the optional extra: pip install 'distillguard[share]' ({missing})", markup=False)
            raise typer.Exit(2)
    else:
        app.add_typer(share_app, name="share", help="Coalition exchange: STIX 2.1 indicators over TAXII 2.1.")
    from .serve.cli import serve as serve_cmd  # light import; exits with a clear message without the extra

    app.command("serve")(serve_cmd)
    try:
        from .console import cli as console_cli
    except ImportError:  # the `console` extra is not installed
        pass
    else:
        app.command("console")(console_cli.console)
        app.command("tune")(console_cli.tune)


_register_subapps()

if __name__ == "__main__":  # pragma: no cover
    app()
