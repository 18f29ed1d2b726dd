"""The service as a hypothesis state machine: ingest, kill -9 (also mid-request), restart, resend.

Against a real ``distillguard serve`` process: whatever the order of steps, every exchange
acknowledged with a 200 is kept across kills, none is counted twice, a resent record is a
duplicate, and the decisions' event counts add up to exactly the durable exchanges.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import orjson
import pytest

pytest.importorskip("uvicorn")
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test  # noqa: E402

from serve_util import H_ADMIN, H_DECIDE, H_INGEST  # noqa: E402
from test_serve_crash import _start  # noqa: E402

NOW = int(time.time() * 1000)
POOL = [orjson.dumps({"request_id": f"sm-{i}", "ts": NOW - 3_600_000 + 7_000 * i, "account_id": f"acct-{i % 5}",
                      "prompt": f"Explain item {i} step by step.", "output_tokens": 100 + i}) for i in range(80)]
batches = st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=20)


def _body(ids: list[int]) -> bytes:
    return b"\n".join(POOL[i] for i in ids) + b"\n"


def make_machine(tmp_path):
    class Service(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.state = tmp_path / f"state-{time.monotonic_ns()}"
            self.log = tmp_path / "service.log"
            self.proc, self.url = _start(self.state, self.log)
            self.durable: set[int] = set()   # acknowledged: must be there
            self.maybe: set[int] = set()     # sent, answer lost to a kill: there or not, never twice

        def _post(self, ids: list[int]) -> dict | None:
            try:
                r = httpx.post(self.url + "/v1/events", content=_body(ids), headers=H_INGEST, timeout=30)
            except httpx.HTTPError:
                return None
            assert r.status_code == 200, r.text
            return r.json()

        def _check_ack(self, ids: list[int], res: dict) -> None:
            new = set(ids) - self.durable
            sure_new = new - self.maybe
            assert res["received"] == len(ids) and res["rejected"] == 0
            assert len(sure_new) <= res["accepted"] <= len(new), (res, len(sure_new), len(new))
            assert res["accepted"] + res["duplicate"] == len(ids)
            self.durable |= set(ids)
            self.maybe -= set(ids)

        @precondition(lambda self: self.proc is not None)
        @rule(ids=batches)
        def ingest(self, ids):
            res = self._post(ids)
            assert res is not None
            self._check_ack(ids, res)

        @precondition(lambda self: self.proc is not None and self.durable)
        @rule(data=st.data())
        def resend_acknowledged(self, data):
            ids = data.draw(st.lists(st.sampled_from(sorted(self.durable)), min_size=1, max_size=10))
            res = self._post(ids)
            assert res is not None and res["accepted"] == 0 and res["duplicate"] == len(ids)

        @precondition(lambda self: self.proc is not None)
        @rule(ids=batches, delay=st.floats(0.0, 0.05))
        def kill_during_ingest(self, ids, delay):
            out: dict = {}
            t = threading.Thread(target=lambda: out.update(res=self._post(ids)))
            t.start()
            time.sleep(delay)
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            t.join(timeout=60)
            self.proc = None
            if out.get("res") is not None:
                self._check_ack(ids, out["res"])
            else:
                self.maybe |= set(ids) - self.durable

        @precondition(lambda self: self.proc is None)
        @rule()
        def restart(self):
            self.proc, self.url = _start(self.state, self.log)

        @invariant()
        def counts_add_up(self):
            if self.proc is None:
                return
            health = httpx.post(self.url + "/v1/admin/refresh", headers=H_ADMIN, timeout=60).json()
            docs = httpx.get(self.url + "/v1/decisions", headers=H_DECIDE, timeout=30).json()["decisions"]
            n = sum(d["events"] for d in docs)
            assert health["exchanges"] == n
            assert len(self.durable) <= n <= len(self.durable | self.maybe)

        def teardown(self):
            if self.proc is not None:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=30)

    return Service


def test_service_state_machine(tmp_path):
    machine = make_machine(tmp_path)
    run_state_machine_as_test(machine, settings=settings(max_examples=3, stateful_step_count=6, deadline=None,
                                                         suppress_health_check=list(HealthCheck)))
