"""Ingestion: exchange logs (JSONL / Parquet / CSV, or in-memory records) -> EVENT_SCHEMA.

Every input record ends up either as a row of :data:`distillguard.schema.EVENT_SCHEMA`
or as a line of ``quarantine.jsonl`` with its file, line and reason; bad input never
raises. Modules:

- :mod:`.inputs`       patterns -> files, file -> format
- :mod:`.streams`      decompression with damage detection, blocks of whole lines
- :mod:`.records`      the strict per-record validator (reference semantics, reason codes)
- :mod:`.jsonl_block`  the fast, Arrow-based JSON-lines validator (same results)
- :mod:`.timestamps`   vectorised RFC 3339 / epoch-ms normalisation
- :mod:`.columnar`     the same rules as column operations (Parquet, CSV)
- :mod:`.tabular`      Parquet and CSV readers
- :mod:`.reader`       ``read_events``
- :mod:`.bodies`       ``records_to_batch`` for the online service
- :mod:`.quarantine`, :mod:`.stats`
"""

from .bodies import records_to_batch
from .inputs import detect_format, expand_inputs
from .jsonl_block import JsonBlockParser, parse_block, parse_block_slow
from .quarantine import Quarantine, truncate_record
from .reader import read_events
from .records import MAX_DEPTH, MAX_LINE_BYTES, BlockResult, validate_lines
from .stats import IngestStats
from .timestamps import parse_ts_column

__all__ = [
    "BlockResult",
    "IngestStats",
    "JsonBlockParser",
    "MAX_DEPTH",
    "MAX_LINE_BYTES",
    "Quarantine",
    "detect_format",
    "expand_inputs",
    "parse_block",
    "parse_block_slow",
    "parse_ts_column",
    "read_events",
    "records_to_batch",
    "truncate_record",
    "validate_lines",
]
