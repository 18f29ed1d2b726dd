"""``distillguard scan``: read logs -> per-exchange features -> marks -> replay -> report.

Memory stays bounded because text never outlives its batch and accounts are processed one hash
bucket at a time (``pipeline``); only the per-(account, tick) sums reach the replay.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Sequence

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from .ingest import EventTimeWindow, IngestStats, Quarantine, expand_inputs
from .pipeline import prepare
from .replay import ReplayConfig, empty_result, replay
from .report import ms_to_rfc3339, write_report
from .scoring.model import AccountModel
from .scoring.policy import Policy
from .scoring.rules import load_rules


def scan(inputs: Sequence[str], out_dir: str | Path, *, rules_dir: str | Path | None = None,
         model_path: str | Path | None = None, policy_path: str | Path | None = None,
         config: ReplayConfig | None = None, memory_limit: str = "1GB", workdir: str | Path | None = None,
         show_progress: bool = True, event_window: EventTimeWindow | None = None) -> dict:
    """Scan exchange logs and write the report files into ``out_dir``.

    Parameters
    ----------
    inputs : files, globs or directories of JSONL (.gz/.zst), Parquet or CSV logs.
    out_dir : where accounts.csv, clusters.csv, quarantine.jsonl and summary.json go.
    rules_dir, model_path, policy_path : override the packaged rules, model and default policy.
    memory_limit : DuckDB's memory limit; past it, sorting and aggregation spill to ``workdir``.
    event_window : plausible event time (default ``EventTimeWindow.for_scan()``: ten years before now to a
        year after); records outside it are quarantined as ``ts_out_of_range``.

    Returns
    -------
    The summary dict written to summary.json.
    """
    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = expand_inputs(inputs)
    total_bytes = sum(Path(p).stat().st_size for p in paths)
    rules = load_rules(rules_dir)
    model = AccountModel.from_json(model_path)
    policy = Policy.from_yaml(policy_path) if policy_path else Policy()
    cfg = config or ReplayConfig()
    stats = IngestStats()
    spill = Path(tempfile.mkdtemp(prefix="distillguard-", dir=workdir))
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                   disable=not show_progress, transient=False)
    try:
        with Quarantine(out / "quarantine.jsonl") as q, (bar if show_progress else nullcontext()):
            read_task = bar.add_task("reading + exchange signals", total=total_bytes)
            rep_task = bar.add_task("replay", total=100, visible=False)

            marks: list[tuple[str, float]] = [("reading + exchange signals", time.perf_counter())]

            def stage(name: str, frac: float) -> None:
                if name != marks[-1][0]:
                    marks.append((name, time.perf_counter()))
                bar.update(read_task, completed=total_bytes)
                bar.update(rep_task, visible=True, completed=100 * frac, description=name)

            prep = prepare(paths, spill, q, stats, tick_ms=cfg.tick_ms, memory_limit=memory_limit,
                           window=(event_window or EventTimeWindow.for_scan()).pinned(),
                           read_progress=lambda nb: bar.advance(read_task, nb), stage_progress=lambda s, f: stage(s, 0.3 * f))
            if prep.valid:
                acc, clusters = replay(prep.tick_parts, prep.links, prep.attrs, model, rules, policy, cfg,
                                       progress=lambda s, f: stage("replay: " + s, 0.3 + 0.7 * f))
            else:
                acc, clusters = empty_result()
            stage("done", 1.0)
            # Where the time went, per stage (stages are named as on the progress bars).
            stage_seconds: dict[str, float] = {}
            for (name, t), (_, t_next) in zip(marks, marks[1:]):
                stage_seconds[name] = round(stage_seconds.get(name, 0.0) + t_next - t, 3)
        kept, t_min, t_max = prep.valid, prep.t_min, prep.t_max
        summary = {
            "records_read": stats.read,
            "valid": int(kept),
            "quarantined": stats.quarantined,
            "duplicates_dropped": int(stats.valid - kept),
            "quarantine_reasons": dict(stats.reasons.most_common()),
            "event_time_start": ms_to_rfc3339(t_min),
            "event_time_end": ms_to_rfc3339(t_max),
            "inputs": [str(Path(p).resolve()) for p in paths],
            "tick_seconds": cfg.tick_ms / 1000,
            "rules": [r.id for r in rules],
            "model": (model.meta or {}).get("version", "unversioned"),
            "stage_seconds": stage_seconds,
        }
        summary["wall_seconds"] = round(time.time() - t0, 3)
        summary = write_report(out, acc, clusters, summary)
        summary["wall_seconds"] = round(time.time() - t0, 3)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary
    finally:
        shutil.rmtree(spill, ignore_errors=True)
