"""A table read from a fixed list of Parquet/CSV files (a folder table, or one Delta table
version), and the split of a Delta table version into key ranges read at once.

A Delta table version is a list of files that are never rewritten: a later commit adds files
and removes others from its own list, not from the disk (only a vacuum, days later, deletes
them). So readers that share the list opened first all read that version, whatever commits
land while they read: a split copy's parts read key ranges of the same rows, each row in
exactly one range (`KeyRange`), and the copy holds the version's rows once each. A folder of
plain Parquet files has no such list (a file is replaced in place), so it does not split.
"""

import functools
import operator
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from copyjob_dagster.stores.base import CursorProfile, KeyRange, LiveRows, Window
from copyjob_dagster.stores.parquet_files import window_expression


class DatasetReader:
    """Streams a Parquet/CSV dataset's columns in batches; the file list is fixed at open.
    `version` is the table version the files make up, where a table format numbers them."""

    def __init__(self, dataset: ds.Dataset, version: int | None = None) -> None:
        self._dataset = dataset
        self.version = version

    def sharing(self) -> "DatasetReader":
        """Another reader of the very same files (a part of a split read)."""
        return DatasetReader(self._dataset, self.version)

    def batches(
        self,
        columns: list[str],
        batch_rows: int,
        window: Window | None = None,
        part: KeyRange | None = None,
    ) -> Iterator[pa.RecordBatch]:
        # One batch of one file ahead, and no buffering of whole Parquet files: memory stays
        # flat (Arrow's defaults hold 16 batches of 4 files, each read whole first).
        options = (
            {"fragment_scan_options": ds.ParquetFragmentScanOptions(pre_buffer=False)}
            if isinstance(self._dataset.format, ds.ParquetFileFormat)
            else {}
        )
        yield from self._dataset.to_batches(
            columns=columns,
            filter=_all_of(_window_and_part(window, part)),
            batch_size=batch_rows,
            batch_readahead=1,
            fragment_readahead=1,
            use_threads=False,  # threads read ahead of a slow writer without bound
            **options,
        )

    def span(self, column: str, window: Window | None = None) -> tuple[Any, Any]:
        """The smallest and largest value of `column` (in `window`), from one column's scan."""
        low = high = None
        where = _all_of(_window_and_part(window, None))
        for batch in self._dataset.to_batches(columns=[column], filter=where):
            found = pc.min_max(batch.column(0)).as_py()
            if found["min"] is not None:
                low = found["min"] if low is None else min(low, found["min"])
                high = found["max"] if high is None else max(high, found["max"])
        return low, high

    def count(self, window: Window | None = None, live: LiveRows | None = None) -> int:
        conditions = _window_and_part(window, None)
        if live is not None and live.current_column:
            conditions.append(ds.field(live.current_column) == True)  # noqa: E712
        if live is not None and live.deleted_column:
            conditions.append(ds.field(live.deleted_column).is_null())
        return self._dataset.count_rows(filter=_all_of(conditions))

    def profile(self, column: str, low: Any) -> CursorProfile:
        nulls, high, rows, rows_at_low = 0, None, 0, 0
        for batch in self._dataset.to_batches(columns=[column]):
            values = batch.column(0)
            nulls += values.null_count
            if low is not None:
                values = pc.filter(values, pc.greater_equal(values, low))
                rows_at_low += pc.sum(pc.equal(values, low)).as_py() or 0
            rows += len(values) - values.null_count
            batch_high = pc.max(values).as_py()
            if batch_high is not None and (high is None or batch_high > high):
                high = batch_high
        return CursorProfile(nulls, high, rows, rows_at_low)


def range_expression(part: KeyRange) -> ds.Expression | None:
    """[low, high) of the part's column, OR its NULLs when the part holds them (see
    `ranges.range_conditions`, the same for SQL)."""
    column = ds.field(part.column)
    inside = []
    if part.low is not None:
        inside.append(column >= part.low)
    if part.high is not None:
        inside.append(column < part.high)
    if not inside:
        return None if part.nulls else column.is_valid()
    condition = functools.reduce(operator.and_, inside)
    return (column.is_null() | condition) if part.nulls else condition


def _window_and_part(window: Window | None, part: KeyRange | None) -> list[ds.Expression]:
    conditions = [window_expression(window)] if window else []
    found = range_expression(part) if part is not None else None
    return [*conditions, found] if found is not None else conditions


def _all_of(conditions: list[ds.Expression]) -> ds.Expression | None:
    return functools.reduce(operator.and_, conditions) if conditions else None


class OneVersionSplit:
    """`open_split` for a store whose reader reads one table version's files (Delta): the
    parts share the first reader's file list (see the module's doc)."""

    open_reader: Any  # the store's, returning a DatasetReader

    @contextmanager
    def open_split(
        self, table: str, parts: int
    ) -> Iterator[tuple[DatasetReader, list[DatasetReader]]]:
        reader: AbstractContextManager[DatasetReader] = self.open_reader(table)
        with reader as main:
            yield main, [main.sharing() for _ in range(parts - 1)]
