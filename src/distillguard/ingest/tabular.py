"""Parquet and CSV readers: stream a file as validated EVENT_SCHEMA tables.

Each reader yields ``(table, rejects)`` pairs (see :mod:`.reader`). Damage never raises:
an unreadable file, or the unreadable rest of one, becomes one ``unreadable_file`` reject
(line 0 when nothing could be read, else the first row not read); a damaged compressed CSV
stream becomes ``truncated_stream`` / ``corrupt_stream``.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import os
from typing import Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from ..schema import EVENT_SCHEMA, FIELD_KINDS
from .columnar import assemble, coerce_text, coerce_typed, row_json
from .streams import Progress, StreamError, iter_chunks

log = logging.getLogger(__name__)

Rejects = list[tuple[int, str, bytes]]
CSV_BLOCK = 8 << 20
HEADER_PEEK = 1 << 20  # a header longer than this is not looked for (binary input has no lines)


def _error_text(exc: BaseException) -> bytes:
    return f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")


def read_parquet(path: str, source_index: int, progress: Progress, batch_rows: int) -> Iterator[tuple[pa.Table, Rejects]]:
    """Stream a Parquet file; row ``k`` (1-based) is reported as line ``k``."""
    try:
        pf = pq.ParquetFile(path)
        names = set(pf.schema_arrow.names)
        total = max(pf.metadata.num_rows, 1)
    except Exception as exc:  # noqa: BLE001 - any failure to open is the file's fault
        yield EVENT_SCHEMA.empty_table(), [(0, "unreadable_file", _error_text(exc))]
        return
    size = os.path.getsize(path)
    columns = [n for n in FIELD_KINDS if n in names]
    row = 0
    reported = 0
    # Every column is read (not only the event fields), so a quarantined row keeps the row as it was.
    batches = pf.iter_batches(batch_size=batch_rows)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            break
        except Exception as exc:  # noqa: BLE001 - a corrupt page / row group
            yield EVENT_SCHEMA.empty_table(), [(row + 1, "unreadable_file", _error_text(exc))]
            break
        n = batch.num_rows
        lines = np.arange(row + 1, row + n + 1, dtype=np.int64)
        yield _guarded(_validate_parquet_batch, batch, columns, lines, source_index)
        row += n
        if progress is not None:
            now = size * row // total
            progress(now - reported)
            reported = now
    if progress is not None and reported < size:
        progress(size - reported)


def _validate_parquet_batch(batch: pa.RecordBatch, columns: list[str], lines: np.ndarray, source_index: int):
    cols, bad = {}, {}
    for name in columns:
        cols[name], bad[name] = coerce_typed(FIELD_KINDS[name], batch.column(name))
    return assemble(cols, bad, batch.num_rows, lines, source_index, row_json(batch))


def _guarded(validate, batch: pa.RecordBatch, *args) -> tuple[pa.Table, Rejects]:
    """Run a batch validator; if it fails (a bug, or a type nobody foresaw), quarantine
    the batch's rows with ``internal_error`` instead of stopping the run."""
    try:
        return validate(batch, *args)
    except Exception as exc:  # noqa: BLE001
        log.exception("validating a batch failed; its rows go to quarantine")
        lines = args[-2]
        raw_of = row_json(batch)
        note = f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")
        rejects = []
        for i in range(batch.num_rows):
            try:
                raw = raw_of(i)
            except Exception:  # noqa: BLE001
                raw = note
            rejects.append((int(lines[i]), "internal_error", raw))
        return EVENT_SCHEMA.empty_table(), rejects


class _ChunkReader(io.RawIOBase):
    """File-like view of a chunk iterator, for Arrow's CSV reader.

    Bytes after the last newline are held back until more data (or a clean end) comes,
    so a stream that breaks mid-row does not hand Arrow a cut-off row that would parse.
    """

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buf = b""
        self._held = b""
        self._done = False
        self.error: StreamError | None = None
        self.tail = b""
        self.total = 0  # bytes handed to Arrow

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf and not self._done:
            try:
                data = self._held + next(self._chunks)
            except StopIteration:
                self._buf, self._held, self._done = self._held, b"", True
                break
            except StreamError as exc:
                # Arrow sees a clean end of file; the reader reports the damage.
                self.error, self.tail, self._held, self._done = exc, self._held, b"", True
                break
            cut = data.rfind(b"\n") + 1
            self._buf, self._held = data[:cut], data[cut:]
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        self.total += n
        return n


def read_csv(path: str, compression: str | None, source_index: int, progress: Progress) -> Iterator[tuple[pa.Table, Rejects]]:
    """Stream a CSV file with a header row; data row ``k`` is line ``k + 1``.

    Empty cells are null; cells are cast per field kind (see :mod:`.columnar`). A row
    with the wrong number of cells is rejected as ``bad_csv_row``. Line numbers count
    records, so they equal physical lines unless quoted cells hold newlines.
    """
    invalid: dict[int, bytes] = {}
    unknown_rows: Rejects = []

    def on_invalid(row) -> str:
        text = (row.text or "").encode("utf-8", "replace")
        if row.number is not None and row.number > 0:
            invalid[int(row.number)] = text
        else:
            unknown_rows.append((0, "bad_csv_row", text))
        return "skip"

    header, chunks = _peek_header(iter_chunks(path, compression, progress))
    source = _ChunkReader(chunks)
    # Every header column is read as bytes, so a quarantined row keeps its cells as they were read
    # (also the columns that are not event fields); missing event fields become null columns.
    names = list(dict.fromkeys([h for h in header if h] + list(FIELD_KINDS)))
    next_line = 2  # line of the next data row (the header is line 1)
    try:
        reader = pcsv.open_csv(
            io.BufferedReader(source, buffer_size=1 << 20),
            read_options=pcsv.ReadOptions(block_size=CSV_BLOCK, use_threads=False),
            parse_options=pcsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(
                include_columns=names,
                include_missing_columns=True,
                column_types={name: pa.binary() for name in names},  # UTF-8 checked per cell
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except Exception as exc:  # noqa: BLE001 - empty file, binary garbage, ...
        reader = None
        failure: Exception | None = exc
    else:
        failure = None
    while reader is not None:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except Exception as exc:  # noqa: BLE001 - malformed CSV further down
            failure = exc
            break
        n = batch.num_rows
        lines, next_line = _csv_lines(next_line, n, invalid)
        rejects = _drain_invalid(invalid, next_line) + unknown_rows
        unknown_rows = []
        table, row_rejects = _guarded(_validate_csv_batch, batch, lines, source_index)
        yield table, sorted(rejects + row_rejects, key=lambda r: r[0])
    rejects = _drain_invalid(invalid, None) + unknown_rows
    if source.error is not None:
        # A damaged stream explains any parse failure at its end.
        rejects.append((next_line, source.error.reason, source.tail or source.error.detail.encode()))
    elif failure is not None and source.total > 0:  # an empty file simply has no rows
        rejects.append((next_line if reader is not None else 0, "unreadable_file", _error_text(failure)))
    if rejects:
        yield EVENT_SCHEMA.empty_table(), rejects


def _peek_header(chunks: Iterator[bytes]) -> tuple[list[str], Iterator[bytes]]:
    """The header row's column names, and the chunk stream with nothing consumed."""
    head: list[bytes] = []
    size = 0
    try:
        for c in chunks:
            head.append(c)
            size += len(c)
            if b"\n" in c or size > HEADER_PEEK:
                break
    except StreamError as exc:
        def replay() -> Iterator[bytes]:
            yield from head
            raise exc
        return [], replay()
    data = b"".join(head)
    cut = data.find(b"\n")
    names: list[str] = []
    if 0 <= cut <= HEADER_PEEK:
        try:
            names = next(csv.reader([data[:cut].rstrip(b"\r").decode("utf-8")]), [])
        except (UnicodeDecodeError, csv.Error):
            names = []
    return names, itertools.chain([data] if data else [], chunks)


def _csv_lines(start: int, n: int, invalid: dict[int, bytes]) -> tuple[np.ndarray, int]:
    """Line numbers of ``n`` good rows from ``start`` on, skipping rejected rows."""
    skip = sorted(k for k in invalid if k >= start)
    cand = np.arange(start, start + n + len(skip), dtype=np.int64)
    if skip:
        cand = cand[~np.isin(cand, np.asarray(skip, np.int64))]
    lines = cand[:n]
    nxt = int(lines[-1]) + 1 if n else start
    return lines, nxt


def _drain_invalid(invalid: dict[int, bytes], before: int | None) -> Rejects:
    keys = sorted(k for k in invalid if before is None or k < before)
    return [(k, "bad_csv_row", invalid.pop(k)) for k in keys]


def _validate_csv_batch(batch: pa.RecordBatch, lines: np.ndarray, source_index: int):
    n = batch.num_rows
    cols, bad = {}, {}
    utf8_bad = np.zeros(n, bool)
    for name, kind in FIELD_KINDS.items():
        raw = batch.column(name)
        if raw.null_count == n:
            continue
        try:
            text = raw.cast(pa.string())
        except pa.ArrowInvalid:
            vals = raw.to_pylist()
            out = []
            for i, v in enumerate(vals):
                try:
                    out.append(None if v is None else v.decode("utf-8"))
                except UnicodeDecodeError:
                    out.append(None)
                    utf8_bad[i] = True
            text = pa.array(out, pa.string())
        cols[name], bad[name] = coerce_text(kind, text)

    def raw_of(i: int) -> bytes:
        row = {}
        for name in batch.schema.names:  # every column of the header, as read
            v = batch.column(name)[i].as_py()
            if v is not None:
                row[name] = v.decode("utf-8", "replace")
        return orjson.dumps(row)

    pre = [("invalid_utf8" if b else None) for b in utf8_bad] if utf8_bad.any() else None
    return assemble(cols, bad, n, lines, source_index, raw_of, pre)


__all__ = ["read_parquet", "read_csv", "row_json"]
