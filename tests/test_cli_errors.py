"""Every error a user can cause: one line naming what was wrong and what to do, a non-zero exit
code a script can rely on, no traceback (``--debug`` shows it). Driven through the real CLI:
Typer's runner in-process, a subprocess where a signal, a missing module or a busy port is needed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from typer.testing import CliRunner

from distillguard import __version__
from distillguard.cli import app
from distillguard.errors import EXIT_INTERRUPTED, EXIT_NO_VALID_RECORDS, EXIT_USAGE
from distillguard.paths import MODELS_DIR

runner = CliRunner()
SRC = str(Path(__file__).resolve().parents[1] / "src")


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(r, code: int, *words: str) -> str:
    """Exit ``code``, exactly one ``error:`` line that names ``words``, no traceback."""
    out = r.output if hasattr(r, "output") else r.stdout + r.stderr
    rc = r.exit_code if hasattr(r, "exit_code") else r.returncode
    assert rc == code, out
    assert "Traceback" not in out, out
    errors = [ln for ln in out.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, out
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]


def cli(*args: str, env: dict | None = None, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    return subprocess.run([sys.executable, "-m", "distillguard", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=e, **kw)


@pytest.fixture(scope="module")
def traffic(tmp_path_factory):
    """A small labelled log and its scan (about 7,000 exchanges)."""
    d = tmp_path_factory.mktemp("traffic")
    r = run("simulate", "--out", d / "sim", "--hours", "2", "--scale", "0.15", "--split", "holdout", "--quiet")
    assert r.exit_code == 0, r.output
    r = run("scan", d / "sim" / "events.jsonl", "--out", d / "scan", "--quiet")
    assert r.exit_code == 0, r.output
    return d


@pytest.fixture(scope="module")
def small(traffic):
    p = traffic / "small.jsonl"
    p.write_text("".join((traffic / "sim" / "events.jsonl").read_text().splitlines(keepends=True)[:300]))
    return p


# --- version, completion, debug -------------------------------------------------------------

def test_version():
    r = run("--version")
    assert r.exit_code == 0 and r.output.strip() == f"distillguard {__version__}"


def test_shell_completion_is_offered():
    r = run("--help")
    assert r.exit_code == 0 and "--install-completion" in r.output and "--show-completion" in r.output


def test_debug_flag_and_env_show_the_traceback(tmp_path, small):
    f = tmp_path / "afile"
    f.write_text("x")
    plain = cli("scan", small, "--out", f)
    assert_one_line_error(plain, EXIT_USAGE, "exists and is not a directory")
    for r in (cli("--debug", "scan", small, "--out", f), cli("scan", small, "--out", f, env={"DISTILLGUARD_DEBUG": "1"})):
        assert r.returncode != 0 and "Traceback" in r.stderr and "UserError" in r.stderr


# --- scan: paths checked before any work ------------------------------------------------------

def test_scan_mistyped_rules_dir(tmp_path, small):
    r = run("scan", small, "--out", tmp_path / "o", "--rules", tmp_path / "norules")
    assert_one_line_error(r, EXIT_USAGE, "norules", "--rules")
    assert not (tmp_path / "o").exists()


def test_scan_explicit_rules_dir_without_rules(tmp_path, small):
    (tmp_path / "empty").mkdir()
    r = run("scan", small, "--out", tmp_path / "o", "--rules", tmp_path / "empty")
    assert_one_line_error(r, EXIT_USAGE, "no rules")
    assert not (tmp_path / "o").exists()


def test_scan_out_is_an_existing_file(tmp_path, small):
    (tmp_path / "existing").write_text("keep me")
    r = run("scan", small, "--out", tmp_path / "existing")
    assert_one_line_error(r, EXIT_USAGE, "--out")
    assert (tmp_path / "existing").read_text() == "keep me"


def test_scan_malformed_policy_yaml(tmp_path, small):
    bad = tmp_path / "policy.yaml"
    bad.write_text("thresholds: [1,\n  oops: {\n")
    r = run("scan", small, "--out", tmp_path / "o", "--policy", bad)
    assert_one_line_error(r, EXIT_USAGE, "policy")
    r = run("scan", small, "--out", tmp_path / "o", "--policy", tmp_path / "nope.yaml")
    assert_one_line_error(r, EXIT_USAGE, "nope.yaml")


def test_scan_bad_model_file(tmp_path, small):
    m = tmp_path / "model.json"
    m.write_text("{}")
    assert_one_line_error(run("scan", small, "--out", tmp_path / "o", "--model", m), EXIT_USAGE, "model")


def test_scan_memory_limit_is_not_a_size(tmp_path, small):
    assert_one_line_error(run("scan", small, "--out", tmp_path / "o", "--memory-limit", "lots"), EXIT_USAGE, "--memory-limit")


def test_scan_missing_indicators_fail_before_the_scan(tmp_path, small):
    t0 = time.perf_counter()
    r = run("scan", small, "--out", tmp_path / "o", "--indicators", tmp_path / "nothere.json")
    assert_one_line_error(r, EXIT_USAGE, "nothere.json")
    assert not (tmp_path / "o").exists()  # no scan ran
    assert time.perf_counter() - t0 < 20


def test_scan_missing_input(tmp_path):
    assert_one_line_error(run("scan", tmp_path / "nope.jsonl", "--out", tmp_path / "o"), EXIT_USAGE, "nope.jsonl")


# --- scan: exit code 3 when nothing was usable; quarantine keeps the original row ------------

def _quarantine(out: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out / "quarantine.jsonl").read_text().splitlines()]


def test_scan_binary_file_exits_3_and_writes_the_report(tmp_path):
    f = tmp_path / "binary.jsonl"
    f.write_bytes(bytes(range(256)) * 40 + b"\n\x00\xff\xfe\n")
    r = run("scan", f, "--out", tmp_path / "o", "--quiet")
    assert_one_line_error(r, EXIT_NO_VALID_RECORDS, "no valid record", "quarantine")
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["valid"] == 0 and s["quarantined"] == s["records_read"] > 0
    assert len(_quarantine(tmp_path / "o")) == s["quarantined"]


def test_scan_empty_file_exits_3(tmp_path):
    f = tmp_path / "empty.jsonl"
    f.write_text("")
    r = run("scan", f, "--out", tmp_path / "o", "--quiet")
    assert_one_line_error(r, EXIT_NO_VALID_RECORDS, "empty")
    assert {p.name for p in (tmp_path / "o").iterdir()} >= {"accounts.csv", "clusters.csv", "quarantine.jsonl", "summary.json"}


def test_scan_csv_with_wrong_columns_keeps_the_rows(tmp_path):
    f = tmp_path / "wrong.csv"
    f.write_text("user,question\nu1,what is 2+2\nu2,\"hello, world\"\n")
    r = run("scan", f, "--out", tmp_path / "o", "--quiet")
    assert_one_line_error(r, EXIT_NO_VALID_RECORDS, "quarantined")
    q = _quarantine(tmp_path / "o")
    assert [json.loads(x["record"]) for x in q] == [{"user": "u1", "question": "what is 2+2"},
                                                     {"user": "u2", "question": "hello, world"}]


def test_scan_parquet_with_wrong_columns_keeps_the_rows(tmp_path):
    f = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"user": ["u1", "u2"], "n_tokens": [5, 7]}), f)
    r = run("scan", f, "--out", tmp_path / "o", "--quiet")
    assert_one_line_error(r, EXIT_NO_VALID_RECORDS)
    assert [json.loads(x["record"]) for x in _quarantine(tmp_path / "o")] == [{"user": "u1", "n_tokens": 5},
                                                                              {"user": "u2", "n_tokens": 7}]


def test_scan_ok_exits_0(tmp_path, small):
    r = run("scan", small, "--out", tmp_path / "o", "--quiet")
    assert r.exit_code == 0, r.output
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]  # the staging folder is gone


def test_ctrl_c_leaves_no_partial_report(tmp_path, traffic):
    big = tmp_path / "big.jsonl"
    text = (traffic / "sim" / "events.jsonl").read_bytes()
    big.write_bytes(text * 6)  # long enough to be interrupted mid-scan
    out = tmp_path / "o"
    e = {**os.environ, "PYTHONPATH": SRC}
    p = subprocess.Popen([sys.executable, "-m", "distillguard", "scan", str(big), "--out", str(out), "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    deadline = time.time() + 60
    while time.time() < deadline and not any(".partial-" in q.name for q in tmp_path.iterdir()):
        time.sleep(0.01)
    assert p.poll() is None, "the scan ended before it could be interrupted"
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=60)
    r = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    assert_one_line_error(r, EXIT_INTERRUPTED, "interrupted", "no report written")
    assert not out.exists()
    assert not [q for q in tmp_path.iterdir() if ".partial-" in q.name]


# --- evaluate, simulate, train -----------------------------------------------------------------

def test_evaluate_missing_labels(tmp_path, traffic):
    assert_one_line_error(run("evaluate", tmp_path / "nothere.csv", traffic / "scan"), EXIT_USAGE, "nothere.csv")


def test_evaluate_non_label_file(traffic):
    assert_one_line_error(run("evaluate", traffic / "sim" / "events.jsonl", traffic / "scan"), EXIT_USAGE, "not a labels CSV")


def test_evaluate_missing_scan_dir(tmp_path, traffic):
    assert_one_line_error(run("evaluate", traffic / "sim" / "labels.csv", tmp_path / "noscan"), EXIT_USAGE, "noscan")


def test_evaluate_swapped_arguments(traffic):
    assert_one_line_error(run("evaluate", traffic / "scan", traffic / "sim" / "labels.csv"), EXIT_USAGE, "labels")


def test_evaluate_labels_of_another_log(tmp_path, traffic):
    other = tmp_path / "labels.csv"
    other.write_text("account_id,label,population,campaign,attack_start_ts\nacct_zz,attack,hydra,c1,\nacct_yy,benign,chat_user,,\n")
    assert_one_line_error(run("evaluate", other, traffic / "scan", "--out", tmp_path / "e"), EXIT_USAGE, "different logs")


def test_evaluate_table_fits_80_columns(traffic, tmp_path):
    # Not a TTY (a subprocess with pipes): the plain layout, every value present.
    r = cli("evaluate", traffic / "sim" / "labels.csv", traffic / "scan", "--out", tmp_path / "e")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "─" not in r.stdout and "┃" not in r.stdout
    table = lines[: next(i for i, ln in enumerate(lines) if ln.startswith("RESULT"))]
    assert all(len(ln) <= 80 for ln in table), max(table, key=len)
    recall = next(ln for ln in table if ln.startswith("recall"))
    assert recall.split()[-1].replace(".", "").isdigit()
    # A terminal of 80 columns: the rich layout keeps every value.
    from distillguard.evaluate import render_table

    res = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    con = Console(record=True, width=80, force_terminal=True)
    con.print(render_table(res))
    text = con.export_text()
    assert all(len(ln) <= 80 for ln in text.splitlines())
    assert f"{res['overall']['recall']:.3f}" in text and f"{res['overall']['fpr']:.4f}" in text
    assert all(p["population"] in text for p in res["populations"])


def test_simulate_unknown_split(tmp_path):
    assert_one_line_error(run("simulate", "--out", tmp_path / "s", "--split", "prod"), EXIT_USAGE, "--split", "holdout")


def test_train_needs_out_and_never_writes_the_package(traffic):
    model = MODELS_DIR / "account_lr.json"
    before = model.read_bytes()
    r = run("train", traffic / "sim" / "events.jsonl", "--labels", traffic / "sim" / "labels.csv")
    assert r.exit_code == EXIT_USAGE and "--out" in r.output and "Traceback" not in r.output
    assert model.read_bytes() == before


def test_train_missing_labels(tmp_path, traffic):
    r = run("train", traffic / "sim" / "events.jsonl", "--labels", tmp_path / "no.csv", "--out", tmp_path / "m.json")
    assert_one_line_error(r, EXIT_USAGE, "no.csv")


# --- serve and console: checked before any state is created ----------------------------------

@pytest.fixture()
def busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.close()


def test_serve_unwritable_state_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        r = run("serve", "--no-auth", "--state-dir", ro / "state")
        assert_one_line_error(r, EXIT_USAGE, "--state-dir")
    finally:
        ro.chmod(0o700)
    f = tmp_path / "file"
    f.write_text("x")
    assert_one_line_error(run("serve", "--no-auth", "--state-dir", f), EXIT_USAGE, "--state-dir")


def test_serve_busy_port_creates_no_state(tmp_path, busy_port):
    r = run("serve", "--no-auth", "--port", str(busy_port), "--state-dir", tmp_path / "state")
    assert_one_line_error(r, EXIT_USAGE, "in use")
    assert not (tmp_path / "state").exists()


def test_serve_mistyped_rules(tmp_path):
    r = run("serve", "--no-auth", "--state-dir", tmp_path / "state", "--rules", tmp_path / "norules")
    assert_one_line_error(r, EXIT_USAGE, "--rules")


def test_console_short_password_from_the_docs_example(traffic, tmp_path):
    r = cli("console", traffic / "scan", "--db", tmp_path / "c.duckdb", env={"DISTILLGUARD_ADMIN_PASSWORD": "…"})
    assert_one_line_error(r, EXIT_USAGE, "DISTILLGUARD_ADMIN_PASSWORD")
    assert not (tmp_path / "c.duckdb").exists()


def test_console_busy_port_prints_no_url(traffic, tmp_path, busy_port):
    r = cli("console", traffic / "scan", "--db", tmp_path / "c.duckdb", "--port", busy_port,
            env={"DISTILLGUARD_ADMIN_PASSWORD": "a long passphrase"})
    assert_one_line_error(r, EXIT_USAGE, "in use")
    assert "http://" not in r.stdout


# --- optional extras: one line naming the extra, before any work -----------------------------

BLOCK = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Block())
from distillguard.cli import app
app(prog_name="distillguard")
"""


def cli_without(modules: set[str], *args) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-c", BLOCK.format(blocked=modules), *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=e)


def test_console_without_its_extra(traffic, tmp_path):
    r = cli_without({"uvicorn"}, "console", traffic / "scan", "--db", tmp_path / "c.duckdb")
    assert_one_line_error(r, EXIT_USAGE, "pip install 'distillguard[console]'")
    assert not (tmp_path / "c.duckdb").exists()


def test_share_export_without_its_extra(traffic, tmp_path):
    t0 = time.perf_counter()
    r = cli_without({"stix2validator"}, "share", "export", traffic / "scan", "--out", tmp_path / "b.json",
                    "--provider", "acme")
    assert_one_line_error(r, EXIT_USAGE, "pip install 'distillguard[share]'")
    assert not (tmp_path / "b.json").exists() and time.perf_counter() - t0 < 30


def test_serve_without_its_extra(tmp_path):
    r = cli_without({"uvicorn"}, "serve", "--no-auth", "--state-dir", tmp_path / "s")
    assert_one_line_error(r, EXIT_USAGE, "pip install 'distillguard[serve]'")


def test_share_export_bad_time_and_missing_key(traffic, tmp_path):
    key = tmp_path / "k.json"
    assert run("share", "keygen", "--out", key, "--key-id", "2026-12").exit_code == 0
    r = run("share", "export", traffic / "scan", "--out", tmp_path / "b.json", "--key", key, "--provider", "acme",
            "--as-of", "yesterday")
    assert_one_line_error(r, EXIT_USAGE, "yesterday", "RFC 3339")
    r = run("share", "export", traffic / "scan", "--out", tmp_path / "b.json", "--key", tmp_path / "nokey.json",
            "--provider", "acme")
    assert_one_line_error(r, EXIT_USAGE, "nokey.json")
    assert not (tmp_path / "b.json").exists()
