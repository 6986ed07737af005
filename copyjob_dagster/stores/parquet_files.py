"""Parquet files of a folder table: written whole and atomically (temporary file, fsync,
rename), in row groups of a bounded size, named after the window they hold, and rewritten
without a window's rows. The folder store and its change writers share these."""

import contextlib
import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from copyjob_dagster.stores.base import Window

TEMPORARY_SUFFIX = ".tmp"
INITIAL_PART = "part-initial.parquet"
# The writer dictionary-encodes a column until its dictionary outgrows this, then writes the rest
# of the row group plain. Arrow's 1 MB lets columns of mostly distinct values (keys, timestamps,
# amounts) build a dictionary they then drop: on the benchmark's orders table that is half the
# write's time (2.0 s of 2,000,000 rows against 1.1 s) for a 139 MB file against 118 MB. Columns
# of few distinct values (a status, a country) stay dictionary-encoded. A column whose
# dictionary outgrows it in the file's first row group is written plain from the start
# (`dictionary_columns`): the writer would build and drop it again in every row group, hashing
# 8,000 values or more of each for nothing (0.1 s of a 2,000,000-row orders table's 0.6 s).
DICTIONARY_PAGE_BYTES = 64 * 1024
# Rows per row group, gathered from the reader's batches. 100,000 (DuckDB writes 122,880) raised
# the peak RSS of a 2,000,000-row copy from PostgreSQL by 14 MB, for no speed that showed.
ROW_GROUP_ROWS = 50_000
ROW_GROUP_BYTES = 32 << 20


def window_expression(window: Window) -> ds.Expression:
    cursor = ds.field(window.column)
    expression = cursor.is_valid()
    if window.low is not None:
        expression &= (cursor >= window.low) if window.low_inclusive else (cursor > window.low)
    if window.high is not None:
        expression &= cursor <= window.high
    return expression


def remove_strays(folder: Path) -> None:
    """Remove what a killed writer left; never a finished file."""
    for stray in folder.glob(f"*{TEMPORARY_SUFFIX}"):
        stray.unlink()


def window_id(window: Window) -> str:
    bound = f"{type(window.low).__name__}:{window.low}:{window.low_inclusive}"
    if window.backfill:  # a backfill never replaces a live window's file, nor it one of them
        bound += f":backfill:{window.high}"
    return hashlib.sha256(bound.encode()).hexdigest()[:16]


def parts(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.parquet") if p.is_file())


def write_file(target: Path, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
    """Write batches to `target` atomically: temporary file, fsync, rename, fsync the folder."""
    temporary = target.with_name(target.name + TEMPORARY_SUFFIX)
    rows = 0
    try:
        with contextlib.ExitStack() as stack:
            writer = None
            for group in row_groups(batches):
                table = pa.Table.from_batches(group, schema)
                if writer is None:  # opened on the first row group, which tells its dictionaries
                    writer = stack.enter_context(_writer(temporary, schema, table))
                writer.write_table(table)
                rows += table.num_rows
            if writer is None:
                stack.enter_context(_writer(temporary, schema, schema.empty_table()))
        _fsync(temporary)
        os.replace(temporary, target)
        _fsync(target.parent)
    finally:
        temporary.unlink(missing_ok=True)
    return rows


def _writer(path: Path, schema: pa.Schema, first: pa.Table) -> pq.ParquetWriter:
    return pq.ParquetWriter(
        path,
        schema,
        use_dictionary=dictionary_columns(first),
        dictionary_pagesize_limit=DICTIONARY_PAGE_BYTES,
    )


def dictionary_columns(first: pa.Table) -> list[str] | bool:
    """The columns worth a dictionary, judged on the file's first row group: those whose
    distinct values fit DICTIONARY_PAGE_BYTES there, and those Arrow holds as a dictionary.
    Every column (True) where one is nested: the writer names nested columns by their path."""
    chosen = []
    for field, column in zip(first.schema, first.columns, strict=True):
        t = field.type
        if pa.types.is_dictionary(t):
            chosen.append(field.name)
        elif pa.types.is_nested(t):
            return True
        elif _dictionary_bytes(column) <= DICTIONARY_PAGE_BYTES:
            chosen.append(field.name)
    return chosen


def _dictionary_bytes(column: pa.ChunkedArray) -> int:
    try:
        distinct = pc.unique(column)
    except pa.ArrowNotImplementedError:  # a type Arrow does not hash: the writer's own way
        return 0
    try:
        width = distinct.type.bit_width
    except ValueError:  # strings and bytes: their values, and offsets as Parquet's lengths
        return distinct.nbytes
    return len(distinct) * max(width // 8, 1)


def row_groups(batches: Iterable[pa.RecordBatch]) -> Iterator[list[pa.RecordBatch]]:
    """The batches gathered into row groups of about ROW_GROUP_ROWS rows, or ROW_GROUP_BYTES
    where rows are wide. pyarrow writes a row group per call, and a reader's batches may be
    small (PostgreSQL's CSV gives about 7,000 rows a block): files of tiny row groups are slow
    to write and to read."""
    group: list[pa.RecordBatch] = []
    rows = size = 0
    for batch in batches:
        if batch.num_rows:
            group.append(batch)
            rows += batch.num_rows
            size += batch.nbytes
        if rows >= ROW_GROUP_ROWS or size >= ROW_GROUP_BYTES:
            yield group
            group, rows, size = [], 0, 0
    if group:
        yield group


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
