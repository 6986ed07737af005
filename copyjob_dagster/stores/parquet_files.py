"""Parquet files of a folder table: written whole and atomically (temporary file, fsync,
rename), in row groups of a bounded size, named after the window they hold, and rewritten
without a window's rows. The folder store and its change writers share these."""

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from copyjob_dagster.stores.base import Window

TEMPORARY_SUFFIX = ".tmp"
INITIAL_PART = "part-initial.parquet"
# The writer dictionary-encodes a column until its dictionary outgrows this, then writes the rest
# of the row group plain. Arrow's 1 MB lets columns of mostly distinct values (keys, timestamps,
# amounts) build a dictionary they then drop: on the benchmark's orders table that is half the
# write's time (2.0 s of 2,000,000 rows against 1.1 s) for a 139 MB file against 118 MB. Columns
# of few distinct values (a status, a country) stay dictionary-encoded.
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
        with pq.ParquetWriter(
            temporary, schema, dictionary_pagesize_limit=DICTIONARY_PAGE_BYTES
        ) as writer:
            for group in row_groups(batches):
                table = pa.Table.from_batches(group, schema)
                writer.write_table(table)
                rows += table.num_rows
        _fsync(temporary)
        os.replace(temporary, target)
        _fsync(target.parent)
    finally:
        temporary.unlink(missing_ok=True)
    return rows


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
