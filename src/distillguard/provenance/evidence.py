"""The evidence log: an append-only, hash-chained record of every mark served.

One JSON line per mark: ``seq``, ``ts`` (UTC, ms), ``account``, ``request_id``, ``mark``
(``canary`` / ``watermark``), ``mark_id``, ``key_id``, ``prev`` (the previous entry's hash) and
``hash`` = SHA-256 of ``prev`` + the entry's canonical JSON without ``hash``. No prompt or
response text is ever written. :func:`verify` recomputes the chain: an edited entry no longer
matches its hash, a removed or reordered one breaks the ``seq`` / ``prev`` links. Cutting entries
off the *end* leaves a valid shorter chain; publish or escrow the head (``verify`` prints it) and
pass it back as ``expect_head`` to detect that as well.

Appends take an exclusive ``flock`` on the file and read the head from its tail, so several
gateway workers can share one log. Entries are flushed to the OS per append (not fsync'd: a
power loss may drop the last entries, never corrupt earlier ones). On a request path use
:class:`EvidenceWriter`: it timestamps the entry at once and appends it from a background thread,
so a slow disk never delays a response (bench/bench_response_hook.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

GENESIS = "0" * 64
FIELDS = ("seq", "ts", "account", "request_id", "mark", "mark_id", "key_id", "prev")


def _digest(entry: dict) -> str:
    body = json.dumps({k: entry[k] for k in FIELDS}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((entry["prev"] + body).encode("utf-8")).hexdigest()


def _last_line(f) -> bytes | None:
    f.seek(0, os.SEEK_END)
    end = f.tell()
    if end == 0:
        return None
    back = min(end, 4096)
    while True:
        f.seek(end - back)
        chunk = f.read(back).rstrip(b"\n")
        i = chunk.rfind(b"\n")
        if i >= 0 or back == end:
            return chunk[i + 1:]
        back = min(end, back * 4)


class EvidenceLog:
    """Appends entries to one log file (thread- and process-safe)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._f = open(self.path, "a+b")

    def append(self, *, account: str, request_id: str, mark: str, mark_id: str, key_id: str, ts_ms: int | None = None) -> dict:
        with self._lock:
            fcntl.flock(self._f.fileno(), fcntl.LOCK_EX)
            try:
                last = _last_line(self._f)
                if last:
                    head = json.loads(last)
                    seq, prev = int(head["seq"]) + 1, str(head["hash"])
                else:
                    seq, prev = 0, GENESIS
                e = {"seq": seq, "ts": int(time.time() * 1000) if ts_ms is None else int(ts_ms), "account": str(account),
                     "request_id": str(request_id), "mark": str(mark), "mark_id": str(mark_id), "key_id": str(key_id), "prev": prev}
                e["hash"] = _digest(e)
                self._f.seek(0, os.SEEK_END)
                self._f.write(json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n")
                self._f.flush()
            finally:
                fcntl.flock(self._f.fileno(), fcntl.LOCK_UN)
        return e

    def close(self) -> None:
        self._f.close()


class EvidenceWriter:
    """Appends entries to an :class:`EvidenceLog` from a background thread, in submission order."""

    def __init__(self, path: str | Path):
        self.log = EvidenceLog(path)
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="distillguard-evidence", daemon=True)
        self._thread.start()

    def submit(self, **entry) -> None:
        """Queue one entry (``account``, ``request_id``, ``mark``, ``mark_id``, ``key_id``); time is now."""
        entry.setdefault("ts_ms", int(time.time() * 1000))
        with self._cv:
            self._pending += 1
        self._q.put(entry)

    def _run(self) -> None:
        while True:
            e = self._q.get()
            if e is None:
                return
            try:
                self.log.append(**e)
            except Exception:  # pragma: no cover - a full disk must not kill the gateway; logged
                import logging

                logging.getLogger("distillguard.evidence").exception("evidence entry not written: %s", e.get("mark_id"))
            with self._cv:
                self._pending -= 1
                self._cv.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted entry is written; False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        self.flush()
        self._q.put(None)
        self._thread.join(timeout=10)
        self.log.close()


@dataclass
class Verification:
    ok: bool
    entries: int
    head: str
    problem: str = ""
    line: int = 0  # 1-based line of the first problem, 0 when ok

    def as_dict(self) -> dict:
        return {"ok": self.ok, "entries": self.entries, "head": self.head, "problem": self.problem, "line": self.line}


def verify(path: str | Path, expect_head: str | None = None) -> Verification:
    """Check the whole chain of ``path`` (and, given ``expect_head``, that nothing was cut off its end)."""
    prev, n = GENESIS, 0
    with open(path, "rb") as f:
        for n_line, raw in enumerate(f, 1):
            try:
                e = json.loads(raw)
                ok_shape = isinstance(e, dict) and all(k in e for k in (*FIELDS, "hash"))
            except ValueError:
                ok_shape = False
            if not ok_shape:
                return Verification(False, n, prev, "not an evidence entry", n_line)
            if e["seq"] != n or e["prev"] != prev:
                return Verification(False, n, prev, f"chain broken (seq {e['seq']}, expected {n}): an entry was removed or reordered", n_line)
            if _digest(e) != e["hash"]:
                return Verification(False, n, prev, "hash mismatch: the entry was edited", n_line)
            prev, n = e["hash"], n + 1
    if expect_head is not None and prev != expect_head:
        return Verification(False, n, prev, "head differs from the expected one: entries were cut off or added at the end", n + 1)
    return Verification(True, n, prev)


def read_entries(path: str | Path) -> list[dict]:
    """All entries (unverified; call :func:`verify` first for evidence)."""
    with open(path, "rb") as f:
        return [json.loads(x) for x in f if x.strip()]
