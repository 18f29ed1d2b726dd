"""Shared fixtures for the console tests: a small hand-made scan directory and a live server."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

PAYLOAD = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">&lt;b&gt;'
EVIL_ID = 'acct_<b>evil</b>"\'&'
ADMIN_PW = "admin-pass-123"
APPEAL_TOKEN = "support-token-xyz"


def make_scan(root: Path) -> Path:
    """A scan directory over a tiny log: 3 flagged accounts in one cluster, 2 quiet ones."""
    root.mkdir(parents=True, exist_ok=True)
    ev = root / "events.jsonl"
    t0 = 1793577600000  # 2026-11-02T00:00:00Z
    rows = []
    accts = ["acct_top", "acct_two", EVIL_ID, "acct_calm1", "acct_calm2"]
    for i in range(240):
        a = accts[i % 5]
        prompt = PAYLOAD if (a == "acct_top" and i % 7 == 0) else f"Explain step by step, show your full reasoning: problem {i}"
        if a.startswith("acct_calm"):
            prompt = f"hi, what's a good recipe for dinner {i}?"
        rows.append({"request_id": f"r{i}", "ts": t0 + i * 60_000, "account_id": a, "payment_fingerprint": "pf_shared" if not a.startswith("acct_calm") else f"pf_{a}",
                     "client_ip": "203.0.113.7", "user_agent": "python-httpx/0.27", "model": "frontier-large", "operation": "chat",
                     "prompt": prompt, "turn": 1, "status": 200, "output_tokens": 800})
    ev.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "accounts.csv").write_text(
        "account_id,score,flagged,action,cluster_id,first_flagged_ts,events,events_before_flag,reasons\n"
        "acct_top,0.99,true,suspend,cl-1,2026-11-02T00:30:00.000Z,48,10,reasoning_extraction;model:reason_share\n"
        "acct_two,0.9,true,throttle,cl-1,2026-11-02T00:40:00.000Z,48,12,reasoning_extraction\n"
        f'"{EVIL_ID.replace(chr(34), chr(34) * 2)}",0.8,true,challenge,cl-1,2026-11-02T00:50:00.000Z,48,14,cluster:reasoning_extraction\n'
        "acct_calm1,0.4,false,monitor,,,48,48,\n"
        "acct_calm2,0.01,false,none,,,48,48,\n")
    (root / "clusters.csv").write_text("cluster_id,accounts,events,score,flagged,first_flagged_ts,reasons\n"
                                       "cl-1,3,144,0.99,true,2026-11-02T00:30:00.000Z,reasoning_extraction\n")
    (root / "summary.json").write_text(json.dumps({"inputs": [str(ev)], "accounts": 5, "flagged_accounts": 3, "clusters": 1,
                                                   "flagged_clusters": 1, "tick_seconds": 60, "event_time_start": "2026-11-02T00:00:00.000Z",
                                                   "event_time_end": "2026-11-02T04:00:00.000Z", "model": "test"}))
    (root / "quarantine.jsonl").write_text("")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The console app served by uvicorn in a thread on a free loopback port."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("console did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
