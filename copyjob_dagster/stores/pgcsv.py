"""CSV between Arrow and PostgreSQL's COPY, written and parsed by Arrow's native code.

Writing: Arrow batches into `COPY ... FROM STDIN (FORMAT csv)`.

Arrow writes each batch in native code, so no value passes through Python. Every value that is
not NULL is quoted: PostgreSQL's CSV reads an unquoted empty field as NULL and a quoted one as
an empty string, and a quoted `\\.` is data, never the end-of-data marker. Booleans (`true`),
numbers (shortest exact text for floats, `nan` and `inf` included), decimals, dates, times and
timestamps (aware ones as UTC wall time, the sessions' time zone) are written in forms
PostgreSQL reads back exactly.
Binary values are written as bytea's hex form (`\\x00ff`), hex-encoded in one call per batch.
Types Arrow's writer does not spell exactly (durations, nested types) keep the row-by-row path.

Reading: `COPY (SELECT ...) TO STDOUT (FORMAT csv)` parsed by Arrow's streaming CSV reader into
the columns' own Arrow types, for columns whose PostgreSQL text form Arrow parses exactly
(integers, floats, decimals, booleans, dates and timestamps in ISO style with the session in
UTC, and text, including the text forms of JSON, UUIDs, intervals and unbounded NUMERIC that the
row path reads too). PostgreSQL's CSV quotes empty strings, so an unquoted empty field is NULL.
"""

import io
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as csv

from copyjob_dagster.stores import types

_OPTIONS = csv.WriteOptions(include_header=False, quoting_style="all_valid", batch_size=8192)
# Twice pgcopy's CHUNK_BYTES: its chunks (that much, plus the row that passed it) stream.
READ_BLOCK_BYTES = 2 << 20


def writes_exactly(schema: pa.Schema) -> bool:
    """Whether every column's type is one the CSV path writes exactly."""
    return all(types.csv_spells_exactly(field.type) for field in schema)


def csv_bytes(batch: pa.RecordBatch) -> bytes:
    """The batch as CSV rows; refuses text PostgreSQL cannot hold, naming the column."""
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)) and pc.any(
            pc.match_substring(column, "\x00")
        ).as_py():
            raise psycopg.DataError(
                f"column {name!r}: PostgreSQL text cannot contain NUL (0x00) bytes"
            )
    columns = [_spelled(column) for column in batch.columns]
    sink = io.BytesIO()
    csv.write_csv(pa.RecordBatch.from_arrays(columns, names=batch.schema.names), sink, _OPTIONS)
    return sink.getvalue()


def _spelled(column: pa.Array) -> pa.Array:
    t = column.type
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return hex_text(column)
    if pa.types.is_timestamp(t) and t.tz is not None:
        # UTC wall time, read in the session's time zone, UTC: Arrow formats aware values
        # through the time zone database, five times slower.
        return column.cast(pa.timestamp(t.unit))
    return column


def hex_text(column: pa.Array, prefix: str = "\\x") -> pa.Array:
    """Binary values as hex text (bytea's `\\x00ff` by default): the data buffer hex-encoded at
    once, offsets doubled."""
    if column.offset:
        column = pa.concat_arrays([column])  # a slice: make its buffers start at its first value
    large = pa.types.is_large_binary(column.type)
    validity, offsets, data = column.buffers()
    ends = np.frombuffer(offsets, dtype=np.int64 if large else np.int32, count=len(column) + 1)
    hexed = data.to_pybytes()[ends[0] : ends[-1]].hex().encode() if data is not None else b""
    doubled = pa.py_buffer(((ends - ends[0]) * 2).tobytes())
    strings = pa.Array.from_buffers(
        pa.large_string() if large else pa.string(),
        len(column),
        [validity, doubled, pa.py_buffer(hexed)],
    )
    return pc.binary_join_element_wise(prefix, strings, "") if prefix else strings


def reads_exactly(schema: pa.Schema) -> bool:
    """Whether every column's PostgreSQL CSV text parses exactly into its Arrow type."""
    return all(
        pa.types.is_boolean(t)
        or pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_decimal(t)
        or pa.types.is_string(t)
        or pa.types.is_date32(t)
        or (pa.types.is_timestamp(t) and t.tz in (None, "UTC"))
        for t in schema.types
    )


def csv_batches(
    chunks: Iterator[bytes], schema: pa.Schema, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """Parse PostgreSQL CSV, fed by `chunks` of whole rows, into batches of at most
    `batch_rows` rows.

    Arrow's streaming reader needs every row within one block ("straddling object straddles two
    block boundaries" otherwise). A chunk no larger than a block holds only rows that fit one,
    so runs of such chunks stream through one reader; a larger chunk (a value of megabytes, up
    to PostgreSQL's 1 GB) is parsed alone, in a block of its own size: memory follows the
    largest row, never the table.
    """
    filled = (chunk for chunk in chunks if chunk)  # Arrow refuses an empty CSV
    for oversized, run in itertools.groupby(
        filled, key=lambda chunk: len(chunk) > READ_BLOCK_BYTES
    ):
        if oversized:
            for chunk in run:
                yield from _parsed(pa.BufferReader(chunk), schema, batch_rows, len(chunk))
        else:
            stream = io.BufferedReader(_ChunkReader(run), READ_BLOCK_BYTES)
            yield from _parsed(stream, schema, batch_rows, READ_BLOCK_BYTES)


def _parsed(
    stream: io.IOBase | pa.NativeFile, schema: pa.Schema, batch_rows: int, block_bytes: int
) -> Iterator[pa.RecordBatch]:
    reader = csv.open_csv(
        stream,
        read_options=csv.ReadOptions(
            column_names=schema.names, block_size=block_bytes, use_threads=False
        ),
        parse_options=csv.ParseOptions(newlines_in_values=True),
        convert_options=csv.ConvertOptions(
            column_types=schema,
            true_values=["t"],
            false_values=["f"],
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    for batch in reader:
        batch = pa.RecordBatch.from_arrays(batch.columns, schema=schema)
        for start in range(0, batch.num_rows, batch_rows):
            yield batch.slice(start, batch_rows)


class _ChunkReader(io.RawIOBase):
    """A readable stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._chunk = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._chunk:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._chunk = memoryview(chunk)
        size = min(len(buffer), len(self._chunk))
        buffer[:size] = self._chunk[:size]
        self._chunk = self._chunk[size:]
        return size
