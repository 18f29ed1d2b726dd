"""The ``distillguard`` command line (Typer + Rich).

Errors: every command, including those of mounted sub-apps (``app.add_typer``) and commands
registered later, runs inside :class:`DistillguardGroup.invoke`, which turns any error a user
can cause into one line on stderr and an exit code (:mod:`distillguard.errors`). A command
only has to raise :class:`~distillguard.errors.UserError` (or let an ``OSError`` propagate).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from typer.core import TyperGroup

from . import __version__
from .errors import (EXIT_INTERRUPTED, NoValidRecords, UserError, debug_enabled, explain, need_dir, need_file, one_line,
                     parse_size, require_extra, writable_dir)
from .ui import step

console = Console(soft_wrap=True)  # a line written to a pipe or file is never cut mid-sentence
err_console = Console(stderr=True)


class DistillguardGroup(TyperGroup):
    """The root command group: the one place where a user-caused error becomes one line + exit code."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # Typer's own: usage errors (exit 2) and explicit exits
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - mapped to one line below
            if debug_enabled():
                raise
            message, code = explain(exc)
            err_console.print("error: " + one_line(message), style="red", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(code) from None


# The root callback's docstring (below) is the top-level help, exit codes included.
app = typer.Typer(cls=DistillguardGroup, add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False)


def _version(value: bool) -> None:
    if value:
        console.print(f"distillguard {__version__}", markup=False, highlight=False)
        raise typer.Exit(0)


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of an error (also DISTILLGUARD_DEBUG=1)."),
) -> None:
    """Detect distillation at scale in LLM API exchange logs.

    Exit codes: 0 done, 1 internal error, 2 usage error, 3 scan read no valid record, 130 interrupted.
    """
    if debug:
        os.environ["DISTILLGUARD_DEBUG"] = "1"


def _data_note() -> str:
    """Which corpora ``simulate`` draws on: the full public data sets, or the bundled subset."""
    from .paths import BUNDLED_DATA, shared_data_dir

    full = shared_data_dir()
    if full is not None:
        return f"data: the full public corpora in {full}"
    return (f"data: the bundled subset in {BUNDLED_DATA} (set DISTILLGUARD_SHARED to a shared/ folder "
            f"with data/ for the full corpora)")


def check_scan_options(rules: Optional[Path], model: Optional[Path], policy: Optional[Path]) -> None:
    """Load the rules, model and policy a scan (or the service) will use, before any work.

    An explicit ``--rules DIR`` without a rule is an error: it would silently switch every
    reviewed rule off.
    """
    from .scoring.model import AccountModel
    from .scoring.policy import Policy
    from .scoring.rules import load_rules

    if rules is not None:
        need_dir(rules, "rules directory", "--rules")
        try:
            loaded = load_rules(rules)
        except Exception as e:  # noqa: BLE001 - a rule file the user pointed at is malformed
            raise UserError(f"rules in {rules} cannot be loaded ({type(e).__name__}: {e})", "fix the rule file or drop --rules") from e
        if not loaded:
            raise UserError(f"no rules (*.yaml) in {rules}", "point --rules at a directory of rule YAML files, or drop it to use the packaged rules")
    if model is not None:
        need_file(model, "model file", "--model")
        try:
            AccountModel.from_json(model)
        except Exception as e:  # noqa: BLE001
            raise UserError(f"model file {model} is not a distillguard model ({type(e).__name__}: {e})", "use a file written by 'distillguard train'") from e
    if policy is not None:
        need_file(policy, "policy file", "--policy")
        try:
            Policy.from_yaml(policy)
        except Exception as e:  # noqa: BLE001
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise UserError(f"policy file {policy} is not a valid policy ({type(e).__name__}: {first})",
                            "see the policy keys in README.md (Use)") from e


def _check_indicators(indicators: List[Path], coalition_key: Optional[Path]) -> None:
    require_extra("share")
    from .share.keys import KeyRing
    from .share.stix import load_objects

    for p in indicators:
        need_file(p, "indicator bundle", "--indicators")
    try:
        load_objects(indicators)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"--indicators: not a STIX bundle ({type(e).__name__}: {one_line(str(e), 160)})",
                        "pass bundles written by 'distillguard share export' or 'share pull'") from e
    try:
        KeyRing.load(coalition_key)
    except (ValueError, OSError, KeyError) as e:
        raise UserError(f"coalition key: {e}".replace("--key FILE", "--coalition-key FILE")) from e


def _publish(staging: Path, out: Path) -> None:
    """Move a finished report from ``staging`` into ``out``, one atomic rename per file."""
    out.mkdir(parents=True, exist_ok=True)
    for entry in sorted(staging.iterdir()):
        target = out / entry.name
        if target.is_dir() and not entry.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
    staging.rmdir()


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
    max_event_age_days: float = typer.Option(3660.0, help="Plausible event time: oldest accepted, in days before now (older: ts_out_of_range)."),
    max_clock_skew_minutes: float = typer.Option(527040.0, help="Plausible event time: newest accepted, in minutes after now (default a year: logs from other clocks)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Scan logs and write accounts.csv, clusters.csv, quarantine.jsonl and summary.json.

    Exit code 3 (report still written) when no record was valid.
    """
    from .ingest import EventTimeWindow, expand_inputs
    from .replay import ReplayConfig
    from .scan import scan as run_scan

    # Everything a user can get wrong is checked here, before any work.
    if not 0 < tick_seconds <= 900:
        raise UserError(f"--tick-seconds {tick_seconds:g} is out of range", "use a value in (0, 900]: decisions refresh at least every 15 minutes")
    if engine not in ("local", "spark"):
        raise UserError(f"--engine {engine!r} is unknown", "use 'local' or 'spark'")
    if engine == "spark":
        require_extra("spark")
    memory_limit = parse_size(memory_limit)
    try:
        expand_inputs(inputs)
    except FileNotFoundError as e:
        raise UserError(str(e), "check the paths or globs given to scan") from e
    writable_dir(out, "output directory", "--out")
    if workdir is not None:
        writable_dir(workdir, "work directory", "--workdir")
    check_scan_options(rules, model, policy)
    if indicators:
        _check_indicators(indicators, coalition_key)

    # The report is written into a staging folder next to OUT and moved in at the end, so an
    # interrupted or failed scan leaves OUT as it was.
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    cfg = ReplayConfig(tick_ms=int(tick_seconds * 1000))
    try:
        window = EventTimeWindow(max_event_age_days, max_clock_skew_minutes)
    except ValueError as e:
        raise UserError(f"event-time window: {e}", "give --max-event-age-days and --max-clock-skew-minutes as positive numbers") from e
    try:
        if engine == "spark":
            from .spark import run_spark_scan

            s = run_spark_scan(inputs, staging, master=spark_master or "local[2]", tick_ms=cfg.tick_ms,
                               rules_dir=rules, model_path=model, policy_path=policy, config=cfg, event_window=window)
        else:
            s = run_scan(inputs, staging, rules_dir=rules, model_path=model, policy_path=policy, config=cfg,
                         memory_limit=memory_limit, workdir=workdir, show_progress=not quiet, event_window=window)
        if indicators:
            from .share import apply_indicators_to_scan

            apply_indicators_to_scan(staging, indicators, coalition_key, provider=provider)
        _publish(staging, out)
    except KeyboardInterrupt:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"interrupted: no report written ({out} left as it was)", code=EXIT_INTERRUPTED) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not quiet:
        console.print(f"read {s['records_read']:,} records: {s['valid']:,} valid, {s['quarantined']:,} quarantined, "
                      f"{s['duplicates_dropped']:,} duplicates; {s['accounts']:,} accounts, {s['flagged_accounts']:,} flagged, "
                      f"{s['clusters']:,} clusters ({s['flagged_clusters']:,} flagged) in {s['wall_seconds']:.1f} s", markup=False)
        console.print(f"report: {out}", markup=False)
    if s["valid"] == 0:
        what = "the input is empty" if s["records_read"] == 0 else f"all {s['records_read']:,} record(s) were quarantined"
        raise NoValidRecords(f"no valid record: {what}; the report is in {out}, reasons in {out / 'quarantine.jsonl'} "
                             f"(the format is in docs/events.md)")


SPLITS = ("dev", "holdout")


@app.command()
def simulate(
    out: Path = typer.Option(..., "--out", "-o", help="Directory for events.jsonl and labels.csv."),
    seed: int = typer.Option(7), hours: float = typer.Option(24.0), scale: float = typer.Option(1.0),
    split: str = typer.Option("dev", help="dev (for tuning) or holdout (for reporting): disjoint prompts and attack variants."),
    inject_bad: float = typer.Option(0.0, help="Fraction of malformed and duplicate lines to add (robustness demos)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Write a labeled, realistic traffic benchmark built from real public corpora."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .sim import simulate as run_sim

    if split not in SPLITS:
        raise UserError(f"--split {split!r} is unknown", "use 'dev' (for tuning) or 'holdout' (for reporting)")
    if not hours > 0 or not scale > 0:
        raise UserError("--hours and --scale must be positive")
    if not 0 <= inject_bad < 1:
        raise UserError(f"--inject-bad {inject_bad:g} is out of range", "use a fraction in [0, 1)")
    writable_dir(out, "output directory", "--out")
    if not quiet:
        err_console.print(_data_note(), markup=False, highlight=False)
    # The simulator reports how many exchanges it has written; the bar shows the count and time.
    with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("exchanges"), TimeElapsedColumn(),
                  disable=quiet, console=err_console) as bar:
        task = bar.add_task("simulating", total=None)
        res = run_sim(out, seed=seed, hours=hours, scale=scale, split=split, inject_bad=inject_bad,
                      progress=lambda n: bar.update(task, completed=n))
    if not quiet:
        console.print_json(json.dumps(res, default=str))


def _check_labels(labels: Path, scan_dir: Path) -> None:
    import csv

    need_file(labels, "labels file", "the LABELS argument (labels.csv comes first, the scan directory second)")
    need_dir(scan_dir, "scan directory", "the SCAN_DIR argument (the output directory of 'distillguard scan')")
    if not (scan_dir / "accounts.csv").is_file():
        raise UserError(f"{scan_dir} holds no accounts.csv", "pass the --out directory of a finished 'distillguard scan'")
    try:
        with open(labels, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{labels} is not a labels CSV ({e})", "pass the labels.csv written by 'distillguard simulate'") from e
    missing = [c for c in ("account_id", "label") if c not in header]
    if missing:
        raise UserError(f"{labels} is not a labels CSV (no column {', '.join(missing)})",
                        "it needs account_id,label[,population,campaign,attack_start_ts], as 'distillguard simulate' writes")


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

    _check_labels(labels, scan_dir)
    writable_dir(out or scan_dir / "eval", "output directory", "--out")
    with step("evaluating (reads the scanned log for leakage and time to detect)"):
        res = run_eval(labels, scan_dir, events=events or None, out_dir=out)
    o = res["overall"]
    if o["accounts"] == 0 or res["missing_from_report"]["count"] >= o["accounts"]:
        raise UserError(f"none of the accounts in {labels} is in {scan_dir / 'accounts.csv'}",
                        "the labels and the scan come from different logs")
    console.print(render_table(res, plain=not console.is_terminal))
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
    console.print(_data_note(), markup=False, highlight=False)
    console.rule("1/3 simulate")
    simulate(out=sim_dir, seed=seed, hours=hours, scale=scale, split=split, inject_bad=0.0, quiet=True)
    console.rule("2/3 scan")
    scan([str(sim_dir / "events.jsonl")], out=scan_dir, rules=None, model=None, policy=None, tick_seconds=60.0,
         memory_limit="1GB", workdir=None, engine="local", spark_master=None, indicators=None, coalition_key=None,
         provider=None, max_event_age_days=3660.0, max_clock_skew_minutes=527040.0, quiet=False)
    console.rule("3/3 evaluate")
    evaluate(sim_dir / "labels.csv", scan_dir, events=[str(sim_dir / "events.jsonl")], out=None)
    console.print(f"demo finished in {time.time() - t0:.0f} s", markup=False)


@app.command()
def train(
    events: List[str] = typer.Argument(..., help="Labeled traffic (e.g. a dev-split simulation's events.jsonl)."),
    labels: Path = typer.Option(..., help="labels.csv for those events."),
    out: Path = typer.Option(..., help="Where to write the model JSON (then: scan --model FILE). "
                                      "To replace the packaged model on purpose: --out src/distillguard/models/account_lr.json"),
    c: float = typer.Option(0.05, "--C", help="Inverse L2 regularisation strength (in standard units)."),
) -> None:
    """Refit the learned layer (sign-constrained logistic model) from labeled traffic."""
    from .ingest import expand_inputs
    from .train import train as run_train

    need_file(labels, "labels file", "--labels")
    try:
        expand_inputs(events)
    except FileNotFoundError as e:
        raise UserError(str(e), "check the paths given to train") from e
    if out.exists() and out.is_dir():
        raise UserError(f"--out {out} is a directory", "give the model file's path, e.g. --out my_model.json")
    writable_dir(out.parent if str(out.parent) else Path("."), "model directory", "--out")
    if not c > 0:
        raise UserError("--C must be positive")
    with step("training (reads the log, computes account features, fits)"):
        m = run_train(events, labels, out, C=c)
    for f, w in sorted(zip(m.features, m.coef), key=lambda t: -abs(t[1])):
        console.print(f"{f:16s} {w:+.3f}", markup=False)
    console.print(f"intercept {m.intercept:+.3f}; train AUROC {m.meta.get('train_auroc', float('nan')):.4f}; written to {out}", markup=False)


def _register_subapps() -> None:
    """Mount the parts that need an optional extra. Each one checks its extra itself when it
    runs (``errors.require_extra``), before any work, so ``--help`` lists everything.

    A new command plugs in with ``app.command("name")(function)`` or a sub-app with
    ``app.add_typer(sub_app, name=...)``; its errors get the one-line handling of
    :class:`DistillguardGroup` for free.
    """
    from .console import cli as console_cli
    from .serve.cli import serve as serve_cmd
    from .provenance.cli import provenance_app
    from .share.cli import share_app

    app.add_typer(share_app, name="share", help="Coalition exchange: STIX 2.1 indicators over TAXII 2.1.")
    app.add_typer(provenance_app, name="provenance", help="Proof of distillation: test texts or a suspect model for our marks.")

    app.command("serve")(serve_cmd)
    app.command("console")(console_cli.console)
    app.command("tune")(console_cli.tune)


_register_subapps()

if __name__ == "__main__":  # pragma: no cover
    app()
