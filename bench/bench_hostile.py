"""Time and peak memory of ``distillguard scan`` under hostile timestamps (issue 23, case 1).

Each case is 100 ordinary records (ten accounts, two pairs sharing a payment fingerprint, so
the replay has cluster epochs) plus the hostile records; the CLI runs as a child process, its
peak RSS read from ``/proc`` and capped (``--cap-mb``, ``--cap-s``: a run past the cap is
killed and reported as such, so measuring the old code cannot take the machine down).

    PYTHONPATH=src python bench/bench_hostile.py [--cap-mb 4000] [--cap-s 120]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T0 = 1793577600000  # 2026-11-02T00:00:00Z


def good_records(n: int = 100) -> list[dict]:
    prompts = ["Explain step by step how to solve x^2 - 5x + 6 = 0.", "Write a haiku about rain.",
               "Summarise the causes of the French revolution.", "Translate 'good morning' into Dutch.",
               "Show your full reasoning: is 97 prime?"]
    out = []
    for i in range(n):
        a = i % 10
        out.append({"request_id": f"good-{i}", "ts": T0 + i * 60_000, "account_id": f"acct-{a}",
                    "payment_fingerprint": f"pf-{a // 2}" if a < 4 else f"pf-solo-{a}",
                    "prompt": prompts[i % len(prompts)] + f" ({i})", "output_tokens": 300 + i})
    return out


CASES = {
    "good_only": [],
    "year_9999": [{"request_id": "x", "ts": "9999-12-31T23:59:59Z", "account_id": "a"}],
    "one_year_later": [{"request_id": "x", "ts": T0 + 365 * 86_400_000, "account_id": "acct-1"}],
    "ten_years_later": [{"request_id": "x", "ts": T0 + 3650 * 86_400_000, "account_id": "acct-1"}],
    "all_extremes": [
        {"request_id": "x1", "ts": "0001-01-01T00:00:00Z", "account_id": "acct-0"},
        {"request_id": "x2", "ts": "9999-12-31T23:59:59Z", "account_id": "acct-1"},
        {"request_id": "x3", "ts": 0, "account_id": "acct-2"},
        {"request_id": "x4", "ts": -1000, "account_id": "acct-3"},
    ],
}


def run_capped(cmd: list[str], cap_mb: float, cap_s: float, env: dict) -> dict:
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak, killed = 0, None
    while p.poll() is None:
        try:
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        if peak / 1024 > cap_mb:
            killed = f"killed at {peak / 1024:.0f} MB"
        elif time.perf_counter() - t > cap_s:
            killed = f"killed after {cap_s:.0f} s"
        if killed:
            p.kill()
            p.wait()
            break
        time.sleep(0.05)
    err = p.stderr.read().decode(errors="replace")[-300:] if p.stderr else ""
    return {"seconds": round(time.perf_counter() - t, 2), "peak_rss_mb": round(peak / 1024), "rc": p.returncode,
            "outcome": killed or ("ok" if p.returncode == 0 else "error: " + err.strip().splitlines()[-1:][0] if err.strip() else "error")}


def indicator(i: int, conf: int = 80) -> dict:
    ts = "2026-11-02T00:00:00.000Z"
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--00000000-0000-4000-8000-{i:012d}",
            "created": ts, "modified": ts, "name": "t", "description": "partner note " * 60, "pattern_type": "stix",
            "valid_from": ts, "confidence": conf,
            "pattern": f"[distillguard-identifier:kind = 'asn' AND distillguard-identifier:value = '{i:064x}']",
            "extensions": {"extension-definition--b7c5d792-3c25-45c9-92f3-b62becce6488": {
                "extension_type": "property-extension", "kind": "asn", "key_id": "k1", "half_life_days": 30, "min_hits": 1}}}


def share_cases(d: Path, env: dict, cap_mb: float, cap_s: float) -> dict:
    """``share match`` on a bundle of 100,000 indicators (~140 MB, case 5)."""
    log = d / "good.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in good_records()))
    big = d / "big.json"
    with open(big, "w") as f:
        f.write('{"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000009", "objects": [')
        f.write(",".join(json.dumps(indicator(i)) for i in range(100_000)))
        f.write("]}")
    key = d / "key.json"
    subprocess.run([sys.executable, "-m", "distillguard", "share", "keygen", "--out", str(key), "--key-id", "k1"], env=env, check=True,
                   capture_output=True)
    cmd = [sys.executable, "-m", "distillguard", "share", "match", str(big), "--events", str(log), "--out", str(d / "m"), "--key", str(key)]
    r = run_capped(cmd, cap_mb, cap_s, env)
    r["bundle_mb"] = round(big.stat().st_size / 1e6)
    return {"share_match_100k_indicators": r}


def serve_case(log: Path, state: Path) -> dict:
    """Case 2: the service's decisions before and after one record dated 9999-12-31 (and, where it
    is refused, one a day ahead of the wall clock), in-process; counts the accounts whose current
    action, flag or first flag changed."""
    import resource

    import orjson

    from distillguard.serve.config import ServeConfig
    from distillguard.serve.engine import Engine

    keep = ("action", "computed_action", "max_action", "flagged", "first_flagged_ts", "events", "events_before_flag")
    eng = Engine(ServeConfig(state_dir=state, refresh_ms=600_000))
    try:
        eng.ingest(log.read_bytes())
        eng.refresh(force=True)
        before = {a: {k: v for k, v in orjson.loads(b).items() if k in keep} for a, b in eng.decisions.items()}
        out = {"accounts": len(before), "suspended_before": sum(d["action"] == "suspend" for d in before.values())}
        recs = [b'{"request_id":"far-1","ts":"9999-12-31T23:59:59Z","account_id":"zz-far"}',
                orjson.dumps({"request_id": "near-1", "ts": int(time.time() * 1000) + 23 * 3_600_000, "account_id": "zz-near"})]
        out["hostile_accepted"] = [eng.ingest(r + b"\n").accepted for r in recs]
        t = time.perf_counter()
        eng.refresh(force=True)
        out["refresh_s"] = round(time.perf_counter() - t, 2)
        after = {a: {k: v for k, v in orjson.loads(b).items() if k in keep} for a, b in eng.decisions.items()}
        out["changed_accounts"] = sum(after.get(a) != d for a, d in before.items())
        out["suspended_after"] = sum(d["action"] == "suspend" for a, d in after.items() if a in before)
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    finally:
        eng.close()
    return out


def loris_case(n: int, env: dict) -> dict:
    """Case 6: ``n`` idle partial-header connections from 127.0.0.1 against ``distillguard serve``
    (file-descriptor limit 1024); a client on 127.0.0.2 then asks ``/healthz``. Reports whether it
    is answered during the attack, and how many attacker connections are still open 12 s later."""
    import resource
    import socket

    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    p_no = port.getsockname()[1]
    port.close()
    state = tempfile.mkdtemp()
    env = {**env, "DISTILLGUARD_API_TOKENS": "tok-bench-00001:ingest+decide+admin"}
    proc = subprocess.Popen([sys.executable, "-m", "distillguard.serve", "--host", "127.0.0.1", "--port", str(p_no), "--state-dir", state],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)))

    def healthz() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", p_no), timeout=3, source_address=("127.0.0.2", 0)) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                return s.makefile("rb").readline().split()[1:2] == [b"200"]
        except OSError:
            return False

    try:
        for _ in range(600):
            if healthz():
                break
            time.sleep(0.1)
        socks = []
        for _ in range(n):
            try:
                s = socket.create_connection(("127.0.0.1", p_no), timeout=3)
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
                socks.append(s)
            except OSError:
                break
        time.sleep(1.0)
        during = healthz()
        time.sleep(12)
        still = 0
        for s in socks:
            s.settimeout(0.01)
            try:
                still += s.recv(1) != b""
            except (TimeoutError, socket.timeout):
                still += 1
            except OSError:
                pass
            s.close()
        return {"attack_connections": len(socks), "healthz_during_attack": during, "attack_open_after_12s": still,
                "healthz_after": healthz()}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cap-mb", type=float, default=4000)
    ap.add_argument("--cap-s", type=float, default=120)
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--share", action="store_true", help="also share match on 100k partner indicators")
    ap.add_argument("--serve-log", type=Path, help="only case 2: replay this log into the service, then one far-future record")
    ap.add_argument("--loris", type=int, help="only case 6: this many idle partial-header connections against serve")
    args = ap.parse_args()
    if args.loris:
        print(json.dumps(loris_case(args.loris, dict(os.environ)), indent=2))
        return
    if args.serve_log:
        with tempfile.TemporaryDirectory() as d:
            print(json.dumps(serve_case(args.serve_log, Path(d) / "state"), indent=2))
        return
    env = dict(os.environ)
    results = {}
    with tempfile.TemporaryDirectory() as d:
        if args.share:
            results.update(share_cases(Path(d), env, args.cap_mb, args.cap_s))
            print(results, flush=True)
        for name in args.cases:
            log = Path(d) / f"{name}.jsonl"
            log.write_text("".join(json.dumps(r) + "\n" for r in good_records() + CASES[name]))
            cmd = [sys.executable, "-m", "distillguard", "scan", str(log), "--out", str(Path(d) / f"out-{name}"), "-q"]
            results[name] = run_capped(cmd, args.cap_mb, args.cap_s, env)
            q = Path(d) / f"out-{name}" / "summary.json"
            if q.exists():
                s = json.loads(q.read_text())
                results[name]["valid"], results[name]["quarantined"] = s["valid"], s["quarantined"]
            print(name, results[name], flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
