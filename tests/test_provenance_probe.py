"""``provenance probe`` against a real OpenAI-compatible HTTP server serving trained students."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
import uvicorn  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from distillguard.cli import app  # noqa: E402
from distillguard.provenance.canary import canary_for, weave  # noqa: E402
from distillguard.provenance.experiment import load_corpus  # noqa: E402
from distillguard.provenance.lmserver import create_lm_app  # noqa: E402
from distillguard.provenance.ngram import BigramLM  # noqa: E402
from distillguard.provenance.watermark import GreenList, WatermarkLogitsProcessor  # noqa: E402
from serve_util import free_port  # noqa: E402

KEY = bytes(range(100, 132))


class _Server:
    def __init__(self, app):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def students():
    """A student trained on marked answers (with acct-leak's canary in a few) and a control on unmarked ones."""
    texts, prompts, _ = load_corpus(3000)
    teacher = BigramLM.fit(texts, 800)
    g = GreenList(KEY, 0.25, "default")
    rng = np.random.default_rng(0)
    start = teacher.start_ids(prompts[:1500], rng)
    marked = teacher.decode(teacher.generate(start, 60, rng, teacher.cdf(WatermarkLogitsProcessor(g, 2.0, teacher.hashes))))
    plain = teacher.decode(teacher.generate(start, 60, rng))
    can = canary_for(KEY, "acct-leak", "default")
    marked = [weave(t, can) if i % 25 == 0 else t for i, t in enumerate(marked)]
    return BigramLM.fit(marked, 900), BigramLM.fit(plain, 900)


def _probe(url, tmp_path, monkeypatch, max_requests=120, rate=40.0):
    monkeypatch.setenv("DG_MARK_KEY", KEY.hex())
    out = tmp_path / "probe.json"
    t0 = time.monotonic()
    r = CliRunner().invoke(app, ["provenance", "probe", "--endpoint", url + "/v1", "--model", "student", "--account", "acct-leak",
                                 "--account", "acct-other", "--max-requests", str(max_requests), "--rate", str(rate),
                                 "--max-tokens", "64", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text()), time.monotonic() - t0


def test_probe_finds_the_marks_and_names_the_account(students, tmp_path, monkeypatch):
    with _Server(create_lm_app(students[0], "student")) as url:
        res, wall = _probe(url, tmp_path, monkeypatch)
    assert res["requests"] == 120 and res["failed_requests"] == 0
    assert wall >= (120 - 1) / 40.0  # the rate bound holds
    assert res["watermark"]["p_value"] < 1e-3
    assert [f["account_id"] for f in res["canaries"]["found"]] == ["acct-leak"]
    assert res["canaries"]["found"][0]["p_value"] < 1e-9


def test_probe_of_a_control_student_finds_nothing(students, tmp_path, monkeypatch):
    with _Server(create_lm_app(students[1], "student")) as url:
        res, _ = _probe(url, tmp_path, monkeypatch)
    assert res["watermark"]["p_value"] > 1e-3 and res["canaries"]["found"] == []


def test_probe_of_a_dead_endpoint_fails_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("DG_MARK_KEY", KEY.hex())
    r = CliRunner().invoke(app, ["provenance", "probe", "--endpoint", f"http://127.0.0.1:{free_port()}", "--model", "m",
                                 "--max-requests", "10", "--rate", "100"])
    assert r.exit_code == 1 and "every request" in r.output and "Traceback" not in r.output
