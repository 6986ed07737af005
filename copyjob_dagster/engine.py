"""Copy one table: plan, read, map, write, commit. Returns a `CopyResult`. Never imports Dagster.

The plan is made from the job's table config and the source's description of the table: which
columns, under which names, with which Arrow types, into which destination table with which key.
Rows then stream from the source's snapshot as Arrow batches of bounded size into the
destination's atomic write, so memory stays flat whatever the table's size.
"""

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.errors import SchemaError
from copyjob_dagster.stores import Destination, Source, open_destination, open_source
from copyjob_dagster.stores.base import TableDescription


@dataclass(frozen=True)
class ColumnMapping:
    source: str
    destination: str


@dataclass(frozen=True)
class CopyPlan:
    """What one table's copy will do, decided before any row moves."""

    job: str
    source_table: str
    destination_table: str
    columns: tuple[ColumnMapping, ...]
    destination_schema: pa.Schema
    primary_key: tuple[str, ...]
    batch_rows: int

    @property
    def source_columns(self) -> list[str]:
        return [c.source for c in self.columns]


@dataclass(frozen=True)
class CopyResult:
    """What a copy did: counts, timing, and where the rows came from and went."""

    plan: CopyPlan
    rows_read: int
    rows_written: int
    seconds: float
    source_url: str
    destination_url: str
    destination_location: str


def plan_copy(job: CopyJob, table: TableConfig, source_table: TableDescription) -> CopyPlan:
    """Map the selected source columns to destination names and types; refuse unknown columns."""
    available = source_table.column_names
    selected = table.columns or available
    wanted = [*selected, *table.rename, *(table.primary_key or [])]
    if table.incremental_column:
        wanted.append(table.incremental_column)
    missing = sorted({c for c in wanted if c not in available})
    if missing:
        raise SchemaError(
            f"job {job.name!r}, table {table.name!r}: the source table has no column "
            f"{', '.join(repr(c) for c in missing)} (it has: {', '.join(available)})"
        )
    columns = tuple(ColumnMapping(name, table.rename.get(name, name)) for name in selected)
    fields = [source_table.schema.field(c.source).with_name(c.destination) for c in columns]
    key_source = table.primary_key or [k for k in source_table.primary_key if k in selected]
    if table.primary_key is None and len(key_source) != len(source_table.primary_key):
        key_source = []  # a key that is only partly selected is no key
    return CopyPlan(
        job=job.name,
        source_table=table.name,
        destination_table=table.destination_name,
        columns=columns,
        destination_schema=pa.schema(fields),
        primary_key=tuple(table.rename.get(k, k) for k in key_source),
        batch_rows=job.batch_rows,
    )


def copy_table(job: CopyJob, table: TableConfig) -> CopyResult:
    """Copy one table of a job in full; the destination table is replaced atomically."""
    source = open_source(job.source)
    destination = open_destination(job.destination)
    try:
        return _copy(job, table, source, destination)
    finally:
        source.close()
        destination.close()


def _copy(job: CopyJob, table: TableConfig, source: Source, destination: Destination) -> CopyResult:
    started = time.monotonic()
    plan = plan_copy(job, table, source.describe(table.name))
    counter = _RowCounter()
    with source.open_reader(plan.source_table) as reader:
        batches = reader.batches(plan.source_columns, plan.batch_rows)
        rows_written = destination.replace(
            plan.destination_table,
            plan.destination_schema,
            plan.primary_key,
            counter.count(_renamed(batches, plan.destination_schema)),
        )
    return CopyResult(
        plan=plan,
        rows_read=counter.rows,
        rows_written=rows_written,
        seconds=time.monotonic() - started,
        source_url=source.display_url,
        destination_url=destination.display_url,
        destination_location=destination.location(plan.destination_table),
    )


def _renamed(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)


class _RowCounter:
    def __init__(self) -> None:
        self.rows = 0

    def count(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            self.rows += batch.num_rows
            yield batch
