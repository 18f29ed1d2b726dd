"""A newcomer's first hour, scripted: a fresh clone, a fresh virtual environment, the README's
set-up commands, then the ordinary mistakes. Every mistake must end in one line and the
documented exit code, never a traceback.

The README installs with ``pip install -e .``, which downloads the dependencies; here the fresh
venv sees the test environment's packages through a ``.pth`` entry and installs only the clone
itself (``--no-deps``), so the run takes about a minute. Everything else is as a user types it, through the venv's own ``distillguard``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _readme_commands() -> list[str]:
    """The two set-up commands of the README (the first two bash blocks of its Set-up section)."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Set-up"):text.index("## Use")]
    blocks = [b.split("```", 1)[0].strip() for b in section.split("```bash\n")[1:]]
    return blocks[:2]


def _local_build_backend() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        major = int(version("setuptools").split(".")[0])
        version("wheel")
    except (PackageNotFoundError, ValueError):
        return False
    return major >= 68


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory):
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout to clone")
    home = tmp_path_factory.mktemp("newcomer")
    clone = home / "distillguard"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DISTILLGUARD_SHARED", "DISTILLGUARD_DEBUG",
                                                             "VIRTUAL_ENV")}
    setup, tests = _readme_commands()
    assert setup.startswith("python3 -m venv .venv && .venv/bin/pip install -e . && "), setup
    assert tests.startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && "), tests
    # The README's `python3 -m venv .venv`, with this interpreter, then its `pip install -e .`
    # without downloading: the dependencies come from the test environment.
    subprocess.run([sys.executable, "-m", "venv", ".venv"], cwd=clone, check=True, timeout=300, env=env)
    venv_site = Path(subprocess.run([str(clone / ".venv/bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                    capture_output=True, text=True, check=True, env=env).stdout.strip())
    (venv_site / "zz_test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # The build backend: this environment's when it meets pyproject's build requirements, else
    # pip's isolated build (fetches setuptools and wheel once, then from pip's cache).
    offline = ["--no-build-isolation", "--no-index"] if _local_build_backend() else []
    subprocess.run([str(clone / ".venv/bin/pip"), "install", "-q", "--no-deps", *offline, "-e", "."],
                   cwd=clone, check=True, timeout=300, env=env)
    return clone, env


def dg(newcomer, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    clone, env = newcomer
    return subprocess.run([str(clone / ".venv/bin/distillguard"), *map(str, args)], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(r: subprocess.CompletedProcess, code: int, *words: str) -> None:
    out = r.stdout + r.stderr
    assert r.returncode == code, out
    assert "Traceback" not in out, out
    errors = [ln for ln in out.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, out
    assert all(w in errors[0] for w in words), errors[0]


def test_newcomer_first_hour(newcomer):
    clone, env = newcomer
    # The installed command is the clone's, not the test environment's.
    r = subprocess.run([str(clone / ".venv/bin/python"), "-c", "import distillguard; print(distillguard.__file__)"],
                       capture_output=True, text=True, env=env, cwd="/")
    assert r.stdout.strip().startswith(str(clone)), r.stdout

    # README command 1: the demo, on the bundled data (a fresh clone has no ../shared).
    r = dg(newcomer, "demo", timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "data: the bundled subset" in r.stdout and "RESULT recall=" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
    # README command 2 runs the suite; here only that it collects (the suite is what runs this).
    r = subprocess.run([str(clone / ".venv/bin/python"), "-m", "pytest", "-q", "--collect-only", "tests/test_cli.py"],
                       cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr

    sim, scan = clone / "demo-out" / "traffic", clone / "demo-out" / "scan"
    small = clone / "small.jsonl"
    small.write_text("".join((sim / "events.jsonl").read_text().splitlines(keepends=True)[:200]))
    r = dg(newcomer, "--version")
    assert r.returncode == 0 and r.stdout.startswith("distillguard ")

    # The mistakes of issue 24, as typed.
    one_line_error(dg(newcomer, "scan", small, "--out", "o", "--rules", "norules"), 2, "norules")
    (clone / "existing-file").write_text("x")
    one_line_error(dg(newcomer, "scan", small, "--out", "existing-file"), 2, "existing-file")
    one_line_error(dg(newcomer, "evaluate", "nothere.csv", scan), 2, "nothere.csv")
    one_line_error(dg(newcomer, "evaluate", sim / "events.jsonl", scan), 2, "labels")
    one_line_error(dg(newcomer, "evaluate", sim / "labels.csv", "noscan"), 2, "noscan")
    one_line_error(dg(newcomer, "evaluate", scan, sim / "labels.csv"), 2, "labels")
    one_line_error(dg(newcomer, "simulate", "--out", "s", "--split", "prod"), 2, "--split")
    (clone / "policy.yaml").write_text("thresholds: [1,\n  oops: {\n")
    one_line_error(dg(newcomer, "scan", small, "--out", "o", "--policy", "policy.yaml"), 2, "policy")
    one_line_error(dg(newcomer, "scan", small, "--out", "o", "--memory-limit", "lots"), 2, "--memory-limit")
    one_line_error(dg(newcomer, "scan", small, "--out", "o", "--indicators", "nothere.json"), 2, "nothere.json")
    assert not (clone / "o").exists()
    model = clone / "src" / "distillguard" / "models" / "account_lr.json"
    before = model.read_bytes()
    r = dg(newcomer, "train", sim / "events.jsonl", "--labels", sim / "labels.csv")
    assert r.returncode == 2 and "--out" in r.stdout + r.stderr and "Traceback" not in r.stdout + r.stderr
    assert model.read_bytes() == before
    env_pw = {**env, "DISTILLGUARD_ADMIN_PASSWORD": "…"}
    r = subprocess.run([str(clone / ".venv/bin/distillguard"), "console", str(scan)], cwd=clone, env=env_pw,
                       capture_output=True, text=True, timeout=120)
    one_line_error(r, 2, "DISTILLGUARD_ADMIN_PASSWORD")

    # Nothing usable: exit 3, the report and the quarantine still written.
    (clone / "binary.jsonl").write_bytes(bytes(range(256)) * 16)
    (clone / "wrong.csv").write_text("user,question\nu1,what is 2+2\n")
    (clone / "empty.jsonl").write_text("")
    for name in ("binary.jsonl", "wrong.csv", "empty.jsonl"):
        out = clone / f"out-{name}"
        one_line_error(dg(newcomer, "scan", name, "--out", out, "--quiet"), 3, "no valid record")
        assert (out / "summary.json").exists() and (out / "quarantine.jsonl").exists()
    q = [json.loads(ln) for ln in (clone / "out-wrong.csv" / "quarantine.jsonl").read_text().splitlines()]
    assert json.loads(q[0]["record"]) == {"user": "u1", "question": "what is 2+2"}
