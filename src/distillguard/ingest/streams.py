"""Byte streams of input files: decompression, damage detection, blocks of whole lines.

Decompression is done with incremental decompressor objects (not ``gzip.open`` /
``zstandard.stream_reader``) because they say whether the last member/frame was complete:
a truncated ``.gz``/``.zst`` keeps everything decoded before the damage and ends with a
:class:`StreamError`. Output per call is bounded, so a decompression bomb costs time, not
memory.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Iterator

import zstandard

from .quarantine import RECORD_LIMIT

RAW_CHUNK = 4 << 20  # file bytes read per call
ZSTD_FEED = 1 << 16  # zstd input per decompress call (its output is unbounded per call)
MAX_OUT = 8 << 20  # gzip output per decompress call
_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"

Progress = Callable[[int], None] | None


class StreamError(Exception):
    """The byte stream ended early or is corrupt; ``reason`` is the quarantine code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def iter_chunks(path: str, compression: str | None, progress: Progress = None) -> Iterator[bytes]:
    """Decompressed bytes of ``path``, chunk by chunk.

    Parameters
    ----------
    path : str
    compression : {None, "gz", "zst"}
    progress : callable, optional
        Called with the number of file bytes consumed after each read.

    Raises
    ------
    StreamError
        After the last good chunk, when the stream is truncated (``truncated_stream``),
        undecodable (``corrupt_stream``) or the file cannot be read (``unreadable_file``).
    """
    try:
        fh = open(path, "rb")
    except OSError as exc:  # permissions, a directory, vanished since the check
        raise StreamError("unreadable_file", f"{type(exc).__name__}: {exc}") from None
    with fh:
        raw = _raw_chunks(fh, progress)
        if compression is None:
            yield from raw
        elif compression == "gz":
            yield from _gunzip(raw)
        elif compression == "zst":
            yield from _unzstd(raw)
        else:
            raise ValueError(f"unknown compression {compression!r}")


def _raw_chunks(fh, progress: Progress) -> Iterator[bytes]:
    while True:
        try:
            data = fh.read(RAW_CHUNK)
        except OSError as exc:  # I/O error mid-file: keep what was read
            raise StreamError("unreadable_file", f"{type(exc).__name__}: {exc}") from None
        if not data:
            return
        if progress is not None:
            progress(len(data))
        yield data


def _gunzip(raw: Iterator[bytes]) -> Iterator[bytes]:
    d = zlib.decompressobj(wbits=31)
    started = False  # bytes fed to the current member
    for data in raw:
        while data:
            started = True
            try:
                out = d.decompress(data, MAX_OUT)
                while d.unconsumed_tail and not d.eof:
                    if out:
                        yield out
                    out = d.decompress(d.unconsumed_tail, MAX_OUT)
            except zlib.error as exc:
                raise StreamError("corrupt_stream", f"gzip: {exc}") from None
            if out:
                yield out
            if d.eof:  # member finished; what follows is another member or padding
                data = d.unused_data
                if data and not data.startswith(_GZIP_MAGIC):
                    if data.strip(b"\x00"):
                        raise StreamError("corrupt_stream", "gzip: trailing garbage after the last member")
                    data = b""
                d = zlib.decompressobj(wbits=31)
                started = False
            else:
                data = b""
    if started and not d.eof:
        tail = d.flush()
        if tail:
            yield tail
        raise StreamError("truncated_stream", "gzip stream ends before its end-of-stream marker")


def _unzstd(raw: Iterator[bytes]) -> Iterator[bytes]:
    dctx = zstandard.ZstdDecompressor()
    d = dctx.decompressobj()
    started = False
    for data in raw:
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            piece = view[pos : pos + ZSTD_FEED]
            pos += len(piece)
            started = True
            try:
                out = d.decompress(piece)
            except zstandard.ZstdError as exc:
                raise StreamError("corrupt_stream", f"zstd: {exc}") from None
            if out:
                yield out
            while d.eof:  # frame finished: the rest of this piece opens the next frame
                rest = d.unused_data
                d = dctx.decompressobj()
                started = False
                if not rest:
                    break
                started = True
                try:
                    out = d.decompress(rest)
                except zstandard.ZstdError as exc:
                    raise StreamError("corrupt_stream", f"zstd: {exc}") from None
                if out:
                    yield out
    if started and not d.eof:
        raise StreamError("truncated_stream", "zstd stream ends inside a frame")


@dataclass
class LineBlock:
    """Complete lines (the last one may lack its newline at the end of the stream)."""

    data: bytes


@dataclass
class LineReject:
    """A line rejected before parsing: over-long, or cut off by a damaged stream.

    ``lines`` is how many input lines it stands for (1, or 0 for a stream that broke
    exactly at a line boundary).
    """

    reason: str
    raw: bytes
    lines: int = 1


def iter_line_blocks(
    chunks: Iterator[bytes], *, block_bytes: int, max_line: int
) -> Iterator[LineBlock | LineReject]:
    """Regroup a byte stream into blocks of whole lines, in order.

    Items carry no line numbers: the consumer counts lines of each block as it
    validates it (the blocks are validated in parallel), and 1 per reject.

    Memory stays within about ``2 * block_bytes``: a partial line longer than
    ``max_line`` left over when a block is cut is reported as ``too_long`` and skipped
    up to its newline without being kept (a long line inside a block is rejected by the
    validators). A UTF-8 byte-order mark at the very start is dropped. A
    :class:`StreamError` becomes a final reject carrying the partial last line, after
    every complete line before it was yielded.
    """
    parts: list[bytes] = []  # pending data; only the last part may lack a newline
    size = 0
    skipping = False  # inside an over-long line, discarding up to its newline
    first = True
    try:
        for chunk in chunks:
            if first:
                first = False
                if chunk.startswith(_BOM):
                    chunk = chunk[len(_BOM) :]
            if skipping:
                i = chunk.find(b"\n")
                if i < 0:
                    continue
                chunk = chunk[i + 1 :]
                skipping = False
            parts.append(chunk)
            size += len(chunk)
            if size < block_bytes:
                continue
            block, rest = _cut(parts)
            if block:
                yield LineBlock(block)
            parts, size = ([rest], len(rest)) if rest else ([], 0)
            if size > max_line:
                yield LineReject("too_long", rest[: RECORD_LIMIT + 4])
                parts, size, skipping = [], 0, True
    except StreamError as exc:
        block, rest = _cut(parts)
        if block:
            yield LineBlock(block)
        yield LineReject(exc.reason, rest[: RECORD_LIMIT + 4], lines=1 if rest else 0)
        return
    if parts and not skipping:
        yield LineBlock(b"".join(parts))


def _cut(parts: list[bytes]) -> tuple[bytes, bytes]:
    """(whole lines, trailing partial line) of the concatenation of ``parts``."""
    for k in range(len(parts) - 1, -1, -1):
        i = parts[k].rfind(b"\n")
        if i >= 0:
            head = parts[:k] + [memoryview(parts[k])[: i + 1]]  # joined without an extra copy
            tail = parts[k][i + 1 :] + b"".join(parts[k + 1 :])
            return b"".join(head), tail
    return b"", b"".join(parts)
