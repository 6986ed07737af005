"""A large table read as key ranges in parallel, written by the one writer. Never imports Dagster.

Parallel reads, one write: N readers of one snapshot each read a disjoint range of the split
column (equal widths between its MIN and MAX in that snapshot, the first and last ranges open
ended, the NULLs in the first) and hand Arrow batches to a bounded queue; the destination's
writer takes them from the queue in its one transaction as it takes a single stream's. So the
copy still commits once, and the window, counts, deletion keys and the watermark still come
from one snapshot: the split changes how rows are read, not what is read nor how it commits.
Memory stays flat: at most BATCHES_AHEAD_PER_PART batches per part wait in the queue.

Readers are threads: the work they do in parallel (the database's scan and send, reading the
socket, Arrow's CSV parsing) runs without the GIL. Only sources whose snapshot several
connections can share split (PostgreSQL, MySQL/MariaDB: see `stores/snapshots.py`).
"""

import math
import os
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import pyarrow as pa

from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.errors import SchemaError, SourceError
from copyjob_dagster.stores import (
    KeyRange,
    Source,
    SplittableSource,
    TableDescription,
    TableReader,
    Window,
    read_in_parallel,
)

ROWS_PER_PART = 500_000  # `parts: auto` reads one range per this many rows (estimated)
BATCHES_AHEAD_PER_PART = 2


@dataclass(frozen=True)
class SplitPlan:
    """How a table's rows are split: by which source column, into how many parts."""

    column: str
    parts: int | Literal["auto"]
    max_connections: int | None = None


class RangeReader(TableReader, Protocol):
    """A reader of a splittable source: it also reads one key range of the table."""

    def batches(
        self,
        columns: list[str],
        batch_rows: int,
        window: Window | None = None,
        part: KeyRange | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Stream the given columns of the rows in `window` and `part`."""
        ...

    def span(self, column: str, window: Window | None = None) -> tuple[Any, Any]:
        """The smallest and largest value of `column` (in `window`) in the snapshot."""
        ...


def plan_split(job: CopyJob, table: TableConfig, described: TableDescription) -> SplitPlan | None:
    """The table's split, its column checked against the source table; None when unsplit."""
    if table.split is None:
        return None
    incremental = table.incremental_column if job.mode == "incremental" else None
    keys = table.primary_key or list(described.primary_key)
    column = table.split.column or incremental or (keys[0] if len(keys) == 1 else None)
    where = f"job {job.name!r}, table {table.name!r}, field 'split'"
    if column is None:
        raise SchemaError(
            f"{where}: there is no column to split by (no incremental column, no one-column "
            f"primary key); name one with split: {{column: ...}}"
        )
    if column not in described.schema.names:
        raise SchemaError(f"{where}: the source table has no column {column!r}")
    column_type = described.schema.field(column).type
    if not (
        pa.types.is_integer(column_type)
        or pa.types.is_date(column_type)
        or pa.types.is_timestamp(column_type)
    ):
        raise SchemaError(
            f"{where}: column {column!r} holds {column_type} values; a split needs an integer, "
            f"date or timestamp column (name one with split: {{column: ...}})"
        )
    return SplitPlan(column, table.split.parts, job.source.max_connections)


def part_count(split: SplitPlan, source: Source, table: str, rows: int | None = None) -> int:
    """The parts to read: as configured, or for `auto` one per ROWS_PER_PART rows (`rows`, the
    table's estimate when the caller has it already), at most one per CPU and
    `source.max_connections` (the Dagster pool limits steps, not the connections a step opens)."""
    if split.parts != "auto":
        return split.parts
    wanted = math.ceil((source.estimate_rows(table) if rows is None else rows) / ROWS_PER_PART)
    caps = [len(os.sched_getaffinity(0)), split.max_connections or wanted]
    return max(1, min(wanted, *caps))


@contextmanager
def open_reader(
    source: Source, table: str, split: SplitPlan | None, rows: int | None = None
) -> Iterator[TableReader]:
    """A reader of one snapshot of `table`: split into parts when `split` says so (`rows`: the
    table's estimate, when the caller has it)."""
    parts = 1 if split is None else part_count(split, source, table, rows)
    if split is None or parts < 2:
        with source.open_reader(table) as reader:
            yield reader
        return
    if not isinstance(source, SplittableSource):
        raise SourceError(
            f"source {source.display_url}: table {table!r}: this source cannot share a snapshot "
            f"between connections, so it cannot be split; remove `split:`"
        )
    with source.open_split(table, parts) as (main, others):
        reader = SplitReader([main, *others], split.column)  # type: ignore[list-item]
        try:
            yield reader
        finally:
            reader.close()


def parts_of(reader: TableReader) -> int:
    """How many ranges the reader's rows were read in (1: a single stream)."""
    return reader.parts_read if isinstance(reader, SplitReader) else 1


def key_ranges(column: str, low: Any, high: Any, parts: int) -> list[KeyRange]:
    """At most `parts` ranges of equal width between `low` and `high` (integers, dates or
    timestamps), the outer ones open ended, the NULLs in the first."""
    bounds: list[Any] = []
    if low is not None and high is not None and parts > 1:
        if isinstance(low, int):
            steps = (low + (high - low) * index // parts for index in range(1, parts))
        else:  # dates and timestamps: a timedelta divides
            steps = (low + (high - low) * index / parts for index in range(1, parts))
        bounds = sorted({bound for bound in steps if low < bound <= high})
    edges = [None, *bounds, None]
    return [
        KeyRange(column, edges[index], edges[index + 1], nulls=index == 0)
        for index in range(len(edges) - 1)
    ]


class SplitReader:
    """A `TableReader` whose `batches` reads key ranges in parallel, one reader each; counts
    and profiles come from the first reader, as an unsplit copy's do."""

    def __init__(self, readers: list[RangeReader], column: str) -> None:
        self._readers = readers
        self._column = column
        self._running: list[Generator[pa.RecordBatch, None, None]] = []
        self.parts_read = 1

    def batches(
        self,
        columns: list[str],
        batch_rows: int,
        window: Window | None = None,
        part: KeyRange | None = None,
    ) -> Iterator[pa.RecordBatch]:
        main = self._readers[0]
        if part is not None:
            yield from main.batches(columns, batch_rows, window, part)
            return
        low, high = main.span(self._column, window)
        ranges = key_ranges(self._column, low, high, len(self._readers))
        if len(ranges) == 1:
            yield from main.batches(columns, batch_rows, window)
            return
        self.parts_read = max(self.parts_read, len(ranges))
        # Each part's batches start (and its query runs) in the part's own thread.
        parts = [
            reader.batches(columns, batch_rows, window, part)
            for reader, part in zip(self._readers, ranges, strict=False)
        ]
        parallel = read_in_parallel(parts, BATCHES_AHEAD_PER_PART)
        self._running.append(parallel)
        yield from parallel

    @property
    def version(self) -> int | None:
        return self._readers[0].version

    def count(self, *args: Any, **kwargs: Any) -> int:
        return self._readers[0].count(*args, **kwargs)

    def profile(self, *args: Any, **kwargs: Any) -> Any:
        return self._readers[0].profile(*args, **kwargs)

    def close(self) -> None:
        """Stop the parts still reading (a write that failed), before their snapshots end."""
        for parallel in self._running:
            parallel.close()
