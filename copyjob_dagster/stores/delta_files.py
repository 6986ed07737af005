"""Data files written into a Delta table's folder outside delta-rs, each with the add action
(size, statistics) that a commit of it needs (`delta_rewrite`).

The files are laid out as the store's delta-rs writes lay them out (`delta_layout`: row groups,
dictionary pages, compression), with the Parquet folder store's choice of dictionary columns.
Each file's statistics are taken from the Arrow data written, in the JSON form of the Delta
protocol ("Per-file Statistics"): the row count, each column's NULL count, and the lowest and
highest value of the columns whose order Delta and Arrow share exactly (integers, dates,
timestamps, text). Other columns get no bounds, which readers take as "any value": decimals
(readers parse JSON numbers as floats), floats (NaN), booleans, bytes. Text bounds are kept to
64 characters: a lowest value is cut to its prefix (still a lower bound), a longer highest value
is left out. The columns given statistics are the table's first 32, or as many as
`delta.dataSkippingNumIndexedCols` says, or those `delta.dataSkippingStatsColumns` names, as for
delta-rs's own files.
"""

import itertools
import json
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake.transaction import AddAction
from pyarrow import fs

from copyjob_dagster.stores.delta_layout import TARGET_FILE_BYTES, WRITER
from copyjob_dagster.stores.parquet_files import (
    DICTIONARY_PAGE_BYTES,
    dictionary_columns,
    row_groups,
)

# The store's delta-rs writes: compression and row groups as WRITER sets them.
COMPRESSION = (WRITER.compression or "none").lower()
TEXT_BOUND = 64
INDEXED_COLUMNS = 32


def stats_columns(schema: pa.Schema, configuration: Mapping[str, str | None]) -> list[str]:
    """The columns whose statistics a data file of the table records (see the module's doc)."""
    named = configuration.get("delta.dataSkippingStatsColumns")
    if named:
        wanted = {n.strip().strip("`") for n in named.split(",")}
        return [n for n in schema.names if n in wanted]
    count = int(configuration.get("delta.dataSkippingNumIndexedCols") or INDEXED_COLUMNS)
    return schema.names if count < 0 else schema.names[:count]


class DataFiles:
    """Writes files of the table's schema under its root, named after one write (`token`), and
    keeps the add action of each."""

    def __init__(
        self, filesystem: fs.FileSystem, schema: pa.Schema, indexed: list[str], token: str
    ) -> None:
        self.filesystem = filesystem
        self.schema = schema
        self.indexed = indexed
        self.token = token
        self.added: list[AddAction] = []
        self._numbers = itertools.count()
        self._dictionary: list[str] | bool | None = None  # judged on the first row group

    def write(self, batches: Iterable[pa.RecordBatch], split: bool = True) -> int:
        """Write the batches to new files of about TARGET_FILE_BYTES (one file if not `split`:
        a data file rewritten without some of its rows); return the rows written."""
        rows = 0
        writer: pq.ParquetWriter | None = None
        stats = _Stats(self.indexed)
        path = ""
        sink: Any = None
        for group in row_groups(batches):
            table = pa.Table.from_batches(group, self.schema)
            if writer is None:
                path = f"part-{next(self._numbers):05d}-{self.token}-c000.parquet"
                sink = self.filesystem.open_output_stream(path)
                writer = pq.ParquetWriter(
                    sink,
                    self.schema,
                    compression=COMPRESSION,
                    use_dictionary=self._dictionary_columns(table),
                    dictionary_pagesize_limit=DICTIONARY_PAGE_BYTES,
                )
            writer.write_table(table)
            stats.add(table)
            rows += table.num_rows
            if split and sink.tell() >= TARGET_FILE_BYTES:
                self._close(writer, sink, path, stats)
                writer, stats = None, _Stats(self.indexed)
        if writer is not None:
            self._close(writer, sink, path, stats)
        return rows

    def _dictionary_columns(self, first: pa.Table) -> list[str] | bool:
        """The columns worth a dictionary, judged once per write: hashing every column of
        every file again took 1.4 s of a 4.4 s merge that rewrote 2,000,000 rows."""
        if self._dictionary is None:
            self._dictionary = dictionary_columns(first)
        return self._dictionary

    def _close(self, writer: pq.ParquetWriter, sink: Any, path: str, stats: "_Stats") -> None:
        writer.close()
        size = sink.tell()
        sink.close()
        self.added.append(
            AddAction(
                path=path,
                size=size,
                partition_values={},
                modification_time=now_ms(),
                data_change=True,
                stats=stats.json(),
            )
        )


def now_ms() -> int:
    """The time as an add or remove action records it: milliseconds since the epoch."""
    return int(time.time() * 1000)


class _Stats:
    """A file's statistics, gathered row group by row group."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        self.rows = 0
        self.nulls: dict[str, int] = dict.fromkeys(columns, 0)
        self.low: dict[str, Any] = {}
        self.high: dict[str, Any] = {}
        self._unbounded: set[str] = set()

    def add(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        for name in self.columns:
            column = table.column(name)
            self.nulls[name] += column.null_count
            if name in self._unbounded or not _bounded(column.type):
                self._unbounded.add(name)
                continue
            found = pc.min_max(column).as_py()
            if found["min"] is None:
                continue
            low, high = self.low.get(name, found["min"]), self.high.get(name, found["max"])
            self.low[name], self.high[name] = min(low, found["min"]), max(high, found["max"])

    def json(self) -> str:
        low = {n: _json(v) for n, v in self.low.items()}
        high = {n: _json(v) for n, v in self.high.items() if not _too_long(v)}
        low = {n: v[:TEXT_BOUND] if isinstance(v, str) else v for n, v in low.items()}
        return json.dumps(
            {"numRecords": self.rows, "minValues": low, "maxValues": high, "nullCount": self.nulls}
        )


def _bounded(kind: pa.DataType) -> bool:
    return (
        pa.types.is_integer(kind)
        or pa.types.is_date(kind)
        or pa.types.is_timestamp(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
    )


def _too_long(value: Any) -> bool:
    return isinstance(value, str) and len(value) > TEXT_BOUND


def _json(value: Any) -> Any:
    """A bound as the Delta protocol writes it: timestamps in ISO 8601 to the microsecond,
    with Z for an instant (UTC); dates as YYYY-MM-DD."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.isoformat(timespec="microseconds")
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    if isinstance(value, date):
        return value.isoformat()
    return value
