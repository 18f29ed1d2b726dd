"""The command line: demo end to end on a small slice, and usage errors."""

from __future__ import annotations

from typer.testing import CliRunner

from distillguard.cli import app

runner = CliRunner()


def test_demo_small(tmp_path):
    r = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--hours", "2", "--scale", "0.15"])
    assert r.exit_code == 0, r.output
    assert "RESULT recall=" in r.output
    assert (tmp_path / "demo" / "scan" / "eval" / "report.html").exists()
    assert (tmp_path / "demo" / "traffic" / "labels.csv").read_text().startswith("account_id,label,population,campaign,attack_start_ts")


def test_scan_missing_input_is_a_usage_error(tmp_path):
    r = runner.invoke(app, ["scan", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2


def test_tick_must_respect_the_spec(tmp_path):
    f = tmp_path / "e.jsonl"
    f.write_text("")
    r = runner.invoke(app, ["scan", str(f), "--out", str(tmp_path / "o"), "--tick-seconds", "1200"])
    assert r.exit_code != 0


def test_python_dash_m_runs_the_same_cli(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "distillguard", "scan", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2  # the usage error of `distillguard scan`, from the same Typer app
    assert "no input files match" in (r.stdout + r.stderr)
