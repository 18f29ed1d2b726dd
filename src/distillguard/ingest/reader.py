"""``read_events``: every input file -> validated EVENT_SCHEMA record batches.

JSON lines are cut into blocks of whole lines by one thread (reading, decompressing) and
validated by a small pool of workers (Arrow and numpy release the GIL), in order, with a
bounded number of blocks in flight, so memory stays at a few blocks whatever the file size.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ..schema import EVENT_SCHEMA, LINE_COL
from .inputs import detect_format
from .jsonl_block import JsonBlockParser
from .quarantine import Quarantine
from .records import MAX_LINE_BYTES, BlockResult
from .stats import IngestStats
from .streams import LineBlock, LineReject, iter_chunks, iter_line_blocks
from .tabular import read_csv, read_parquet
from .timestamps import EventTimeWindow, split_out_of_range

log = logging.getLogger(__name__)

BLOCK_BYTES = 8 << 20  # JSONL bytes per validation task
def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # respects CPU pinning / container limits
    except (AttributeError, OSError):
        return os.cpu_count() or 1


WORKERS = max(1, min(4, _cpus()))
IN_FLIGHT = WORKERS + 1  # items queued or being validated

Rejects = list[tuple[int, str, bytes]]


def read_events(
    paths: Sequence[str],
    quarantine: Quarantine,
    stats: IngestStats,
    *,
    batch_rows: int = 131072,
    progress: Callable[[int], None] | None = None,
    window: EventTimeWindow | None = None,
) -> Iterator[pa.RecordBatch]:
    """Read, validate and normalise exchange logs.

    Parameters
    ----------
    paths : sequence of str
        Input files (see :func:`expand_inputs`); the format comes from the extension:
        JSON lines (``.jsonl``/``.ndjson``/``.json``, also ``.gz``/``.zst``), Parquet, CSV.
    quarantine : Quarantine
        Receives every rejected record with its file, line and reason.
    stats : IngestStats
        Updated as records are read; ``read == valid + quarantined``.
    batch_rows : int, default 131072
        Most rows per yielded batch. Batches follow the reading blocks (8 MB of JSON
        text, a Parquet / CSV batch) to avoid copying, so they are often smaller.
    progress : callable, optional
        Called with the number of file bytes (compressed, as on disk) consumed.
    window : EventTimeWindow, optional
        Plausible event time (policy); valid records outside it are quarantined as
        ``ts_out_of_range``. None accepts every parseable time (years 1-9999).

    Yields
    ------
    pyarrow.RecordBatch
        Exactly :data:`distillguard.schema.EVENT_SCHEMA`; ``_source`` is the index of
        the file in ``paths``, ``_line`` its 1-based line (row) number.

    Raises
    ------
    FileNotFoundError
        Before reading anything, if a path is not a readable file.
    """
    paths = [os.fspath(p) for p in paths]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"input file(s) not found: {', '.join(map(repr, missing))}")
    out = _Rebatcher(batch_rows)
    for index, path in enumerate(paths):
        for table, rejects in _read_file(path, index, progress, batch_rows):
            table, late = split_out_of_range(table, window)
            if late:
                rejects = sorted([*rejects, *late], key=lambda r: r[0])
            for line, reason, raw in rejects:
                quarantine.add(path, line, reason, raw)
                stats.add_rejected(reason)
            if table.num_rows:
                stats.add_valid(table.num_rows)
                yield from out.push(table)
    yield from out.flush()


def _read_file(path: str, index: int, progress, batch_rows: int) -> Iterator[tuple[pa.Table, Rejects]]:
    fmt, compression = detect_format(path)
    if fmt == "parquet":
        if compression is not None:
            yield EVENT_SCHEMA.empty_table(), [(0, "unreadable_file", b"compressed Parquet is not supported")]
            return
        yield from read_parquet(path, index, progress, batch_rows)
    elif fmt == "csv":
        yield from read_csv(path, compression, index, progress)
    else:
        yield from read_jsonl(path, compression, index, progress)


def read_jsonl(path: str, compression: str | None, index: int, progress=None) -> Iterator[tuple[pa.Table, Rejects]]:
    """Stream one JSON-lines file as ``(valid rows, rejects)`` pairs, in file order."""
    parser = JsonBlockParser(use_threads=False)  # parallelism comes from the pool
    items = iter_line_blocks(iter_chunks(path, compression, progress), block_bytes=BLOCK_BYTES, max_line=MAX_LINE_BYTES)
    pending: deque[Future | LineReject] = deque()
    line_no = 1  # number of the first line of the next item
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="ingest") as pool:
        for item in items:
            if isinstance(item, LineBlock):
                pending.append(pool.submit(_parse_safely, parser, item.data, index))
            else:
                pending.append(item)
            while len(pending) > IN_FLIGHT:
                table, rejects, line_no = _in_order(pending.popleft(), line_no)
                yield table, rejects
        while pending:
            table, rejects, line_no = _in_order(pending.popleft(), line_no)
            yield table, rejects


def _in_order(item: Future | LineReject, line_no: int) -> tuple[pa.Table, Rejects, int]:
    """Result of the next item with absolute line numbers; the next item's first line."""
    if isinstance(item, LineReject):
        return EVENT_SCHEMA.empty_table(), [(line_no, item.reason, item.raw)], line_no + item.lines
    res, n_lines = item.result()
    shift = line_no - 1
    table = res.table
    if shift and table.num_rows:
        i = table.schema.get_field_index(LINE_COL)
        table = table.set_column(i, EVENT_SCHEMA.field(LINE_COL), pc.add(table.column(i), pa.scalar(shift, pa.int64())))
    rejects = [(line + shift, reason, raw) for line, reason, raw in res.rejects]
    return table, rejects, line_no + n_lines


def _parse_safely(parser: JsonBlockParser, data: bytes, index: int) -> tuple[BlockResult, int]:
    """Validate a block (line numbers from 1); returns the result and the block's lines.

    Fast path; on an unexpected error the reference path; never raises for input.
    """
    try:
        res = parser.parse(data, 1, index)
        return res, res.n_lines
    except Exception:  # noqa: BLE001 - a bug must not lose the block: retry slowly
        log.exception("fast JSON path failed; retrying the block slowly")
    try:
        res = JsonBlockParser(fast=False).parse(data, 1, index)
        return res, res.n_lines
    except Exception as exc:  # noqa: BLE001 - keep the count honest, record why
        n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        log.exception("slow JSON path failed")
        lines = data.split(b"\n")
        rejects = [(i + 1, "internal_error", line) for i, line in enumerate(lines[:n_lines]) if line.strip(b" \t\r")]
        if rejects:
            rejects[0] = (rejects[0][0], "internal_error", f"{type(exc).__name__}: {exc} | ".encode() + rejects[0][2])
        return BlockResult(EVENT_SCHEMA.empty_table(), rejects), n_lines


class _Rebatcher:
    """Regroups tables into record batches of at most ``batch_rows`` rows.

    A single-chunk table of at least ``batch_rows // 16`` rows (a typical JSONL block) is
    passed on zero-copy, sliced if too long; smaller pieces are gathered and combined,
    which copies only small data.
    """

    def __init__(self, batch_rows: int):
        self.batch_rows = max(1, int(batch_rows))
        self.min_rows = max(1, self.batch_rows // 16)
        self.tables: list[pa.Table] = []
        self.rows = 0

    def push(self, table: pa.Table) -> Iterator[pa.RecordBatch]:
        if table.num_rows >= self.min_rows and _single_chunk(table):
            yield from self.flush()
            yield from self._slices(table)
            return
        self.tables.append(table)
        self.rows += table.num_rows
        if self.rows >= self.min_rows:
            yield from self.flush()

    def flush(self) -> Iterator[pa.RecordBatch]:
        if self.rows:
            yield from self._slices(pa.concat_tables(self.tables).combine_chunks())
        self.tables, self.rows = [], 0

    def _slices(self, table: pa.Table) -> Iterator[pa.RecordBatch]:
        batch = table.to_batches()[0]
        for start in range(0, batch.num_rows, self.batch_rows):
            yield batch.slice(start, self.batch_rows)


def _single_chunk(table: pa.Table) -> bool:
    return all(col.num_chunks == 1 for col in table.columns)
