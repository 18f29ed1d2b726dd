"""Shared helpers of the ``test_serve*`` modules: one simulated log + its scan per session."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import orjson

from distillguard.scan import scan
from distillguard.sim import simulate

TOKENS = "tok-ingest-0001:ingest,tok-decide-0001:decide,tok-admin-00001:admin,tok-gateway-001:ingest+decide"
H_INGEST = {"Authorization": "Bearer tok-ingest-0001"}
H_DECIDE = {"Authorization": "Bearer tok-decide-0001"}
H_ADMIN = {"Authorization": "Bearer tok-admin-00001"}
SECRET_TOKENS = ("tok-ingest-0001", "tok-decide-0001", "tok-admin-00001", "tok-gateway-001")


def sim_and_scan(tmp_path_factory) -> tuple[Path, Path]:
    """(events.jsonl, scan dir) of a small benchmark slice with 2 % bad/duplicate lines; cached per session."""
    base = tmp_path_factory.getbasetemp() / "serve-sim"
    log = base / "traffic" / "events.jsonl"
    out = base / "scan"
    if not (out / "accounts.csv").exists():
        shutil.rmtree(base, ignore_errors=True)
        simulate(base / "traffic", seed=11, hours=3, scale=0.2, split="dev", inject_bad=0.02)
        scan([str(log)], out, show_progress=False)
    return log, out


def scan_accounts(out: Path) -> dict[str, dict]:
    with open(out / "accounts.csv", newline="") as f:
        return {r["account_id"]: r for r in csv.DictReader(f)}


def scan_summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def lines_of(log: Path) -> list[bytes]:
    return open(log, "rb").read().split(b"\n")[:-1]


def compare(scan_acc: dict[str, dict], decisions: dict[str, dict]) -> list[str]:
    """Differences between accounts.csv rows and the service's decisions (empty = parity)."""
    diffs = []
    if set(scan_acc) != set(decisions):
        diffs.append(f"accounts differ: only scan {sorted(set(scan_acc) - set(decisions))[:5]}, "
                     f"only service {sorted(set(decisions) - set(scan_acc))[:5]}")
    for a in sorted(set(scan_acc) & set(decisions)):
        r, d = scan_acc[a], decisions[a]
        got = {"flagged": "true" if d["flagged"] else "false", "action": d["max_action"],
               "first_flagged_ts": d["first_flagged_ts"] or "", "events": str(d["events"]),
               "events_before_flag": str(d["events_before_flag"]), "cluster_id": d["cluster_id"] or "",
               "reasons": ";".join(d["reasons"])}
        for k, v in got.items():
            if r[k] != v:
                diffs.append(f"{a} {k}: scan={r[k]!r} service={v!r}")
        if abs(float(r["score"]) - d["score"]) > 1e-3:
            diffs.append(f"{a} score: scan={r['score']} service={d['score']}")
    return diffs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis() -> tuple[subprocess.Popen, str]:
    exe = shutil.which("redis-server")
    if exe is None:
        import pytest

        pytest.skip("redis-server not installed (CI: apt-get install -y redis-server)")
    port = free_port()
    p = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                          "--daemonize", "no", "--loglevel", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    r = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            r.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        p.kill()
        raise RuntimeError("redis-server did not start")
    return p, f"redis://127.0.0.1:{port}/0"


def decisions_of(docs: list[dict]) -> dict[str, dict]:
    return {d["account_id"]: d for d in docs}


def env_with_tokens() -> dict[str, str]:
    env = dict(os.environ)
    env["DISTILLGUARD_API_TOKENS"] = TOKENS
    return env


def parse(b: bytes) -> dict:
    return orjson.loads(b)
