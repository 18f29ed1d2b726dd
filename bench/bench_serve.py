"""Benchmarks of ``distillguard serve`` (a script, not a timed test).

    python3 bench/bench_serve.py [--log events.jsonl | --hours 12 --scale 0.5] [--rate 2000 --seconds 20]

Measures, on loopback:

1. **Ingest** (exchanges/s): validate + reduce + durable commit, in-process (``Engine.ingest``) and
   over HTTP (``POST /v1/events`` NDJSON batches from concurrent clients to one replica).
2. **Refresh**: a full recompute of all decisions from the stored state, and an incremental one
   after a small batch (the scan's ``account_ticks`` on affected accounts + ``replay``).
3. **Decision latency** under load: an open-loop client sends ``GET /v1/decisions/{account}`` at a
   fixed rate over keep-alive connections; latency is measured from each request's *scheduled*
   send time (no coordinated omission), so queueing counts. Client and server share the machine.
4. **Memory per tracked account**: RSS growth of a replica holding the state, per account and per
   exchange, plus the size of the in-memory frames.

Prints a JSON summary (and writes it with ``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

TOKENS = "bench-ingest-0001:ingest,bench-decide-0001:decide,bench-admin-00001:admin"


def rss_mb(pid: int | None = None) -> float:
    try:
        with open(f"/proc/{pid or os.getpid()}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(state: Path, port: int, log: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "DISTILLGUARD_API_TOKENS": TOKENS}
    p = subprocess.Popen([sys.executable, "-m", "distillguard.serve", "--port", str(port), "--state-dir", str(state),
                          "--log-level", "warning", *extra], env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(log.read_text()[-2000:])
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return p
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("service did not start")


def stop(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()


def bench_ingest_inprocess(lines: list[bytes], work: Path, batch: int) -> dict:
    from distillguard.serve.config import ServeConfig
    from distillguard.serve.engine import Engine

    e = Engine(ServeConfig(state_dir=work / "inproc", refresh_ms=10**9))
    acc = 0
    bodies = [b"\n".join(lines[i:i + batch]) for i in range(0, len(lines), batch)]  # NDJSON request bodies
    t0 = time.perf_counter()
    for body in bodies:
        acc += e.ingest(body).accepted
    dt = time.perf_counter() - t0
    rss_before = rss_mb()
    t1 = time.perf_counter()
    e.refresh()
    full = time.perf_counter() - t1
    accounts = len(e.decisions)
    sizes = {"rows": e._rows.estimated_size(), "ticks": e._ticks.estimated_size(), "links": e._links.estimated_size(),
             "firsts": e._firsts.estimated_size(), "decisions_json": sum(len(b) + len(a) for a, b in e.decisions.items())}
    # Incremental: 200 new exchanges of existing accounts.
    t2 = time.perf_counter()
    e.ingest(lines[:200])  # all duplicates: nothing to recompute
    e.refresh()
    noop = time.perf_counter() - t2
    ev = e._rows.select("account_id", "ts").sort("ts").tail(200)
    new = [json.dumps({"request_id": f"bench-inc-{k}", "ts": int(t) + 1, "account_id": a, "prompt": f"incremental {k}"}).encode()
           for k, (a, t) in enumerate(ev.iter_rows())]
    e.ingest(new)
    t3 = time.perf_counter()
    e.refresh()
    inc = time.perf_counter() - t3
    inc_parts = dict(e.last_breakdown)
    e.close()
    span_h = (int(ev["ts"].max()) - int(e._rows["ts"].min())) / 3.6e6
    return {"exchanges": acc, "seconds": round(dt, 2), "exchanges_per_s": round(acc / dt), "batch": batch,
            "refresh_full_s": round(full, 3), "refresh_incremental_s": round(inc, 3), "refresh_incremental_parts": inc_parts, "refresh_noop_s": round(noop, 3),
            "event_time_span_h": round(span_h, 2), "accounts": accounts, "frame_bytes": sizes,
            "frame_bytes_per_account": round(sum(sizes.values()) / max(1, accounts)),
            "rss_mb_after_ingest": round(rss_before, 1)}


def bench_ingest_http(lines: list[bytes], url: str, batch: int, clients: int) -> dict:
    bodies = [b"\n".join(lines[i:i + batch]) for i in range(0, len(lines), batch)]
    q = list(range(len(bodies)))
    lock = threading.Lock()
    accepted = [0]

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=120, headers={"Authorization": "Bearer bench-ingest-0001"}) as c:
            while True:
                with lock:
                    if not q:
                        return
                    k = q.pop(0)
                r = c.post("/v1/events", content=bodies[k])
                r.raise_for_status()
                with lock:
                    accepted[0] += r.json()["accepted"]

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    return {"exchanges": accepted[0], "seconds": round(dt, 2), "exchanges_per_s": round(accepted[0] / dt), "batch": batch,
            "clients": clients}


async def _latency(host: str, port: int, accounts: list[str], rate: float, seconds: float, conns: int) -> dict:
    """Open-loop GETs at ``rate``/s over ``conns`` keep-alive connections."""
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(await asyncio.open_connection(host, port))
    lat: list[float] = []
    errors = [0]
    statuses: dict[int, int] = {}
    auth = b"Authorization: Bearer bench-decide-0001\r\n"

    async def one(acct: str, scheduled: float) -> None:
        reader, writer = await pool.get()
        try:
            writer.write(b"GET /v1/decisions/" + acct.encode() + b" HTTP/1.1\r\nHost: b\r\n" + auth + b"\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            n = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            await reader.readexactly(n)
            lat.append(time.perf_counter() - scheduled)
            statuses[status] = statuses.get(status, 0) + 1
        except Exception:
            errors[0] += 1
            reader, writer = await asyncio.open_connection(host, port)
        finally:
            pool.put_nowait((reader, writer))

    tasks = []
    t0 = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        scheduled = t0 + i / rate
        d = scheduled - time.perf_counter()
        if d > 0:
            await asyncio.sleep(d)
        tasks.append(asyncio.create_task(one(random.choice(accounts), scheduled)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    a = np.array(lat) * 1000
    return {"target_rate": rate, "achieved_rate": round(len(a) / wall, 1), "requests": n, "errors": errors[0],
            "statuses": statuses, "connections": conns,
            "p50_ms": round(float(np.percentile(a, 50)), 3), "p90_ms": round(float(np.percentile(a, 90)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3), "p999_ms": round(float(np.percentile(a, 99.9)), 3),
            "max_ms": round(float(a.max()), 3)}


def bench_handler(lines: list[bytes], work: Path, n: int = 50_000) -> dict:
    """Server-side cost of one decision lookup: the ASGI fast path called in-process (no socket)."""
    from distillguard.serve.app import build_service, create_app
    from distillguard.serve.auth import TokenAuth
    from distillguard.serve.config import ServeConfig

    svc = build_service(ServeConfig(state_dir=work / "handler", refresh_ms=10**9), TokenAuth(TOKENS))
    svc.engine.ingest(lines[:20_000])
    svc.engine.refresh()
    app = create_app(svc, start_engine=False)
    accts = list(svc.engine.decisions)
    hdrs = [(b"host", b"b"), (b"authorization", b"Bearer bench-decide-0001")]

    async def run() -> float:
        async def send(msg):
            pass

        async def receive():
            return {"type": "http.request", "body": b""}

        t0 = time.perf_counter()
        for i in range(n):
            scope = {"type": "http", "method": "GET", "path": "/v1/decisions/" + accts[i % len(accts)], "headers": hdrs}
            await app(scope, receive, send)
        return time.perf_counter() - t0

    dt = asyncio.run(run())
    svc.engine.close()
    return {"lookups": n, "us_per_lookup": round(dt / n * 1e6, 2)}


def bench_hey(url: str, rate: float, seconds: float, workers: int = 20) -> dict | None:
    """The same load from ``hey`` (Go, if installed): ``workers`` keep-alive clients at rate/workers each.

    ``hey`` paces each worker (closed loop per worker), so this latency is per request as sent,
    without the open-loop queueing of ``_latency``; it shows the server's cost when the client
    itself is not the bottleneck.
    """
    exe = shutil.which("hey")
    if exe is None:
        return None
    r = subprocess.run([exe, "-z", f"{seconds}s", "-c", str(workers), "-q", str(max(1, int(rate / workers))), "-o", "csv",
                        "-H", "Authorization: Bearer bench-decide-0001", url], capture_output=True, text=True, timeout=seconds + 120)
    rows = [x.split(",") for x in r.stdout.splitlines()[1:] if x.strip()]
    if not rows:
        return {"error": r.stderr[-500:]}
    a = np.array([float(x[0]) for x in rows]) * 1000
    codes: dict[str, int] = {}
    for x in rows:
        codes[x[6]] = codes.get(x[6], 0) + 1
    return {"tool": "hey", "target_rate": rate, "achieved_rate": round(len(a) / seconds, 1), "requests": len(a), "statuses": codes,
            "workers": workers, "p50_ms": round(float(np.percentile(a, 50)), 3), "p90_ms": round(float(np.percentile(a, 90)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3), "p999_ms": round(float(np.percentile(a, 99.9)), 3),
            "max_ms": round(float(a.max()), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", type=Path, help="events.jsonl to use (default: simulate one)")
    ap.add_argument("--hours", type=float, default=12)
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--refresh-ms", type=int, default=2000, help="the service's refresh cadence during HTTP ingest (its default)")
    ap.add_argument("--min-refresh-ms", type=int, default=None, help="earliest refresh on an event-time tick (default: --refresh-ms)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--skip-ingest", action="store_true", help="only latency (state loaded over HTTP) and the handler cost")
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dg-bench-serve-"))
    out: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "loadavg_start": os.getloadavg()}}
    try:
        log = a.log
        if log is None:
            from distillguard.sim import simulate

            t = time.perf_counter()
            info = simulate(work / "traffic", seed=7, hours=a.hours, scale=a.scale)
            log = work / "traffic" / "events.jsonl"
            out["log"] = {"events": info["events"], "accounts": info["accounts"], "hours": a.hours, "scale": a.scale,
                          "simulate_s": round(time.perf_counter() - t, 1)}
        lines = log.read_bytes().split(b"\n")
        lines = [x for x in lines if x.strip()]
        print(f"log: {len(lines)} records", file=sys.stderr)

        print("1/4 in-process ingest + refresh, handler cost ...", file=sys.stderr)
        if not a.skip_ingest:
            out["ingest_inprocess"] = bench_ingest_inprocess(lines, work, a.batch)
        out["decision_handler"] = bench_handler(lines, work)

        print("2/4 HTTP ingest ...", file=sys.stderr)
        port = free_port()
        svc_log = work / "service.log"
        # Refresh cadence as in live traffic: every ``--refresh-ms`` of wall clock while exchanges
        # arrive. (Live, event time crosses a one-minute tick once a minute; a backfill at this
        # rate crosses one every few ms, and the tick rule would refresh back to back.)
        p = start_service(work / "http-state", port, svc_log, "--refresh-ms", str(a.refresh_ms),
                          "--min-refresh-ms", str(a.min_refresh_ms if a.min_refresh_ms is not None else a.refresh_ms))
        rss0 = rss_mb(p.pid)
        try:
            url = f"http://127.0.0.1:{port}"
            out["ingest_http"] = bench_ingest_http(lines, url, a.batch, a.clients)
            out["ingest_http"]["refresh_ms"] = a.refresh_ms
            m = httpx.get(url + "/metrics", headers={"Authorization": "Bearer bench-admin-00001"}, timeout=60).text
            out["ingest_http"]["refreshes_during_ingest"] = next(
                (int(float(x.split()[-1])) for x in m.splitlines() if x.startswith("distillguard_refresh_seconds_count")), None)
            t = time.perf_counter()
            h = httpx.post(url + "/v1/admin/refresh", headers={"Authorization": "Bearer bench-admin-00001"}, timeout=600).json()
            out["ingest_http"]["refresh_after_s"] = round(time.perf_counter() - t, 3)
            time.sleep(1.0)
            rss1 = rss_mb(p.pid)
            # Freed pages stay resident a few seconds before the allocator returns them (Polars'
            # jemalloc: 5 s, see ``distillguard/__init__``): the settled figure is the state held.
            time.sleep(6.0)
            rss2 = rss_mb(p.pid)
            accounts = h["accounts"]
            out["memory"] = {"accounts": accounts, "exchanges": h["exchanges"], "rss_mb_empty": round(rss0, 1),
                             "rss_mb_loaded": round(rss1, 1), "rss_mb_loaded_settled": round(rss2, 1),
                             "rss_bytes_per_account": round((rss1 - rss0) * 2**20 / max(1, accounts)),
                             "rss_bytes_per_account_settled": round((rss2 - rss0) * 2**20 / max(1, accounts)),
                             "rss_bytes_per_exchange": round((rss1 - rss0) * 2**20 / max(1, h["exchanges"]))}

            print("3/4 decision latency under load ...", file=sys.stderr)
            ds = httpx.get(url + "/v1/decisions", headers={"Authorization": "Bearer bench-decide-0001"}, timeout=60).json()["decisions"]
            accts = [d["account_id"] for d in ds]
            asyncio.run(_latency("127.0.0.1", port, accts, 200, 2, 8))  # warm-up
            out["latency"] = asyncio.run(_latency("127.0.0.1", port, accts, a.rate, a.seconds, a.connections))
            out["latency_half_rate"] = asyncio.run(_latency("127.0.0.1", port, accts, a.rate / 2, a.seconds / 2, a.connections))
            hey = bench_hey(f"{url}/v1/decisions/{accts[0]}", a.rate, a.seconds)
            if hey is not None:
                out["latency_hey"] = hey
        finally:
            t = time.perf_counter()
            stop(p)
            out["graceful_stop_s"] = round(time.perf_counter() - t, 2)
        out["machine"]["loadavg_end"] = os.getloadavg()
        print("4/4 done", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(out, indent=2)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
