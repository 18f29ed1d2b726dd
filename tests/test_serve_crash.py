"""kill -9 in the middle of a stream: no acknowledged exchange is lost and none counts twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

pytest.importorskip("uvicorn")
from serve_util import (H_ADMIN, H_DECIDE, H_INGEST, SECRET_TOKENS, compare, decisions_of, env_with_tokens,  # noqa: E402
                        free_port, lines_of, scan_accounts, scan_summary, sim_and_scan)


def _start(state, log_path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    fh = open(log_path, "ab")
    p = subprocess.Popen([sys.executable, "-m", "distillguard.serve", "--host", "127.0.0.1", "--port", str(port),
                          "--state-dir", str(state), "--refresh-ms", "5000", "--access-log"],
                         env=env_with_tokens(), stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"service exited with {p.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return p, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    p.kill()
    raise RuntimeError("service did not come up")


def test_kill9_mid_stream_then_restart_matches_an_uninterrupted_run(tmp_path_factory, tmp_path):
    log, out = sim_and_scan(tmp_path_factory)
    lines = lines_of(log)
    batches = [b"\n".join(lines[i:i + 300]) for i in range(0, len(lines), 300)]
    state, svc_log = tmp_path / "state", tmp_path / "service.log"
    proc, url = _start(state, svc_log)
    acked: set[int] = set()
    stop_at = len(batches) // 2

    def pump() -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            for k, body in enumerate(batches):
                try:
                    r = c.post("/v1/events", content=body, headers=H_INGEST)
                except httpx.HTTPError:
                    return  # the service died under this request: not acknowledged
                if r.status_code == 200:
                    acked.add(k)

    t = threading.Thread(target=pump)
    t.start()
    while len(acked) < stop_at and t.is_alive():
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)  # mid-stream: the pump is sending the next batch
    proc.wait(timeout=30)
    t.join(timeout=60)
    assert stop_at <= len(acked) < len(batches)

    proc, url = _start(state, svc_log)  # same store
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            dup = c.post("/v1/events", content=batches[0], headers=H_INGEST).json()
            assert dup["accepted"] == 0  # acknowledged before the crash: kept, and not counted twice
            for k, body in enumerate(batches):
                if k not in acked:
                    r = c.post("/v1/events", content=body, headers=H_INGEST)
                    assert r.status_code == 200
            for k in sorted(acked)[-3:]:  # a client retrying acknowledged batches
                assert c.post("/v1/events", content=batches[k], headers=H_INGEST).json()["accepted"] == 0
            health = c.post("/v1/admin/refresh", headers=H_ADMIN).json()
            docs = c.get("/v1/decisions", headers=H_DECIDE).json()["decisions"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    s = scan_summary(out)
    assert health["exchanges"] == s["valid"]
    assert sum(d["events"] for d in docs) == s["valid"]
    diffs = compare(scan_accounts(out), decisions_of(docs))
    assert not diffs, "\n".join(diffs[:20])
    text = svc_log.read_text(errors="replace")
    assert "POST /v1/events" in text  # the access log ran, and never carries a token
    assert not any(tok in text for tok in SECRET_TOKENS)
