"""Input discovery: command-line patterns -> files, and file -> format."""

from __future__ import annotations

import glob
import os
from typing import Sequence

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".csv": "csv"}
COMPRESSIONS = {".gz": "gz", ".zst": "zst"}
# Parquet needs random access, so a compressed .parquet.gz is not an input format.
DIR_SUFFIXES = tuple(
    [s for s in FORMATS] + [s + c for s in FORMATS if FORMATS[s] != "parquet" for c in COMPRESSIONS]
)


def detect_format(path: str) -> tuple[str, str | None]:
    """Format and compression of ``path`` from its name.

    Returns
    -------
    fmt : {"jsonl", "parquet", "csv"}
        Unknown extensions are read as JSON lines.
    compression : {None, "gz", "zst"}

    Examples
    --------
    >>> detect_format("logs/day1.jsonl.zst")
    ('jsonl', 'zst')
    """
    name = os.path.basename(path).lower()
    compression = None
    for suffix, comp in COMPRESSIONS.items():
        if name.endswith(suffix):
            compression = comp
            name = name[: -len(suffix)]
            break
    for suffix, fmt in FORMATS.items():
        if name.endswith(suffix):
            return fmt, compression
    return "jsonl", compression


def expand_inputs(patterns: Sequence[str]) -> list[str]:
    """Resolve files, globs and directories to a sorted list of input files.

    Parameters
    ----------
    patterns : sequence of str
        A file (read whatever its extension; unknown ones as JSON lines), a glob
        (``*``, ``?``, ``[...]``, recursive ``**``; every matching file), or a directory
        (its own files ending in .jsonl, .ndjson, .json, .parquet or .csv, the text
        formats also with .gz / .zst; not recursive, so a scan's output folder inside an
        input folder is not read back).

    Returns
    -------
    list of str
        Sorted, without duplicates (same real path counted once).

    Raises
    ------
    FileNotFoundError
        When a pattern matches no input file (each such pattern is named).
    """
    found: dict[str, str] = {}
    unmatched: list[str] = []
    for pat in patterns:
        hits: list[str] = []
        if os.path.isdir(pat):
            hits = [
                os.path.join(pat, f)
                for f in os.listdir(pat)
                if f.lower().endswith(DIR_SUFFIXES) and os.path.isfile(os.path.join(pat, f))
            ]
        elif os.path.isfile(pat):
            hits = [pat]
        elif glob.has_magic(pat):
            hits = [p for p in glob.glob(pat, recursive=True) if os.path.isfile(p)]
        if not hits:
            unmatched.append(pat)
        for h in hits:
            found.setdefault(os.path.realpath(h), os.path.normpath(h))
    if unmatched:
        what = ", ".join(repr(p) for p in unmatched)
        raise FileNotFoundError(
            f"no input files match {what} (give files, globs such as 'logs/**/*.jsonl.gz', or "
            f"directories holding {', '.join(sorted(FORMATS))} files, optionally .gz/.zst)"
        )
    return sorted(set(found.values()))
