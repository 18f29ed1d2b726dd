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

Reason codes (``quarantine.jsonl`` ``reason``; ``F`` is a field name):

=====================  ===================================================================
``invalid_json``       not JSON (including two objects on one line, or trailing garbage)
``invalid_utf8``       bytes that are not UTF-8 (or a lone surrogate in an in-memory str)
``not_an_object``      JSON, but an array / string / number / null instead of an object
``too_long``           line over 1 MiB (never loaded whole)
``too_deep``           nesting deeper than 10,000 (parsers recurse)
``missing:F``          required field absent or null
``empty:F``            required string field is ``""``
``type:F``             wrong JSON type (bool for a number, "5" for an integer, 2.5 for an
                       integer, NaN / Infinity / overflowing numbers, nested values, ...)
``bad_ts:F``           timestamp text not RFC 3339 with offset, or outside years 1-9999
``ts_out_of_range``    a valid ``ts`` outside the policy's plausible window
                       (``timestamps.EventTimeWindow``: ingest time minus a maximum age, plus
                       a maximum clock skew); scan and service alike
``bad_id:account_id``  an account id holding a control character (``\u0000`` ...): it
                       would be written raw into reports (checked with the window)
``bad_csv_row``        CSV row with the wrong number of cells
``truncated_stream``   .gz / .zst ends early: a synthetic record at the line reached,
                       holding the partial last line; everything before is kept
``corrupt_stream``     .gz / .zst data that cannot be decoded (same handling)
``unreadable_file``    Parquet (or CSV) that cannot be read, or its unreadable rest
``internal_error``     a validator bug; the block's lines are kept in quarantine
=====================  ===================================================================

Blank lines (empty or only spaces, tabs, ``\r``) are not records: neither read nor
quarantined, but they do count for line numbers.
"""

from .bodies import ndjson_records, records_to_batch
from .inputs import detect_format, expand_inputs
from .jsonl_block import JsonBlockParser, parse_block, parse_block_slow
from .quarantine import Quarantine, truncate_record
from .reader import read_events
from .records import MAX_DEPTH, MAX_LINE_BYTES, BlockResult, validate_lines
from .stats import IngestStats
from .timestamps import EventTimeWindow, parse_ts_column

__all__ = [
    "BlockResult",
    "EventTimeWindow",
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
    "ndjson_records",
    "records_to_batch",
    "truncate_record",
    "validate_lines",
]
