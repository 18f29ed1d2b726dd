"""The quarantine: where every rejected input record goes, with its place and reason.

One JSON object per line, exactly as shared/spec/report.md specifies::

    {"source": FILE, "line": N, "reason": "...", "record": "<raw text, truncated to 2 KB>"}
"""

from __future__ import annotations

import collections
import threading
from pathlib import Path
from typing import IO

import orjson

RECORD_LIMIT = 2048  # bytes of raw record text kept per quarantine line (report.md: 2 KB)
QUARANTINE_FILE = "quarantine.jsonl"


def truncate_record(raw: bytes | str, limit: int = RECORD_LIMIT) -> str:
    """Raw record text as it is written to quarantine: at most ``limit`` bytes of UTF-8.

    Bytes that are not valid UTF-8 (and lone surrogates in a ``str``) become U+FFFD, so
    the result is always valid text; the cut never splits a character, and the result
    encodes to at most ``limit`` bytes even after those replacements.

    Parameters
    ----------
    raw : bytes or str
        The record as read.
    limit : int, default 2048

    Returns
    -------
    str
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    elif not isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw)
    # Every input byte yields at least one output byte, so a prefix of ``limit`` bytes
    # holds all that can be kept; cut it before a character that straddles the limit.
    if len(raw) > limit:
        cut = limit
        while cut > limit - 3 and (raw[cut] & 0xC0) == 0x80:
            cut -= 1
        if (raw[cut] & 0xC0) == 0x80:  # not UTF-8 here anyway: plain byte cut
            cut = limit
        raw = raw[:cut]
    text = bytes(raw).decode("utf-8", "replace")
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    # Replacement characters (3 bytes each) pushed it over: cut again, on a boundary.
    return encoded[:limit].decode("utf-8", "ignore")


class Quarantine:
    """Writer of ``quarantine.jsonl``; also counts what it was given.

    Use as a context manager. Safe to share between threads (the online service may
    validate several request bodies at once).

    Parameters
    ----------
    path : str, Path or None
        File to write (conventionally ``DIR/quarantine.jsonl``). An existing directory
        means ``quarantine.jsonl`` inside it. ``None`` keeps nothing on disk but still
        counts. The file is created (empty) on construction so that a clean run still
        leaves the file the report promises.
    max_records : int or None, default None
        Stop *writing* after this many lines (counting continues); a guard against
        hostile input filling the disk. ``None`` writes everything.

    Attributes
    ----------
    count : int
        Records added.
    written : int
        Lines written to disk.
    reasons : collections.Counter
        Reason code -> records added.
    """

    def __init__(self, path: str | Path | None, *, max_records: int | None = None):
        self.path: Path | None = None
        self._fh: IO[bytes] | None = None
        if path is not None:
            p = Path(path)
            if p.is_dir():
                p = p / QUARANTINE_FILE
            p.parent.mkdir(parents=True, exist_ok=True)
            self.path = p
            self._fh = open(p, "wb")
        self.max_records = max_records
        self.count = 0
        self.written = 0
        self.reasons: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def add(self, source: str, line: int, reason: str, raw: bytes | str) -> None:
        """Record one rejected input record.

        Parameters
        ----------
        source : str
            Input file (or request origin for the online service).
        line : int
            1-based line / row number in ``source`` (0 when no line applies).
        reason : str
            Short machine-readable code, e.g. ``"type:asn"``.
        raw : bytes or str
            The record as read; truncated to 2 KB in the file.
        """
        text = truncate_record(raw)
        out = orjson.dumps({"source": str(source), "line": int(line), "reason": reason, "record": text})
        with self._lock:
            self.count += 1
            self.reasons[reason] += 1
            if self._fh is not None and (self.max_records is None or self.written < self.max_records):
                self._fh.write(out + b"\n")
                self.written += 1

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> "Quarantine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
