"""Row counts at a job's source and destination, one query each, for sensors and checks.

Like the engine, this module never imports Dagster. The new-data sensor asks it how many source
rows lie beyond each table's watermark; the row-count check asks how many rows each side holds.
Each count is a single `COUNT(*)`, whose window an index on the incremental column serves; a
`mode: cdc` table counts the changes waiting in its slot instead (a peek, nothing consumed).
"""

from collections.abc import Mapping
from dataclasses import dataclass

from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.engine import binlog_cdc
from copyjob_dagster.engine.cdc import change_stream
from copyjob_dagster.engine.planning import plan_copy
from copyjob_dagster.engine.table_stores import TableStores, destination_of, source_of
from copyjob_dagster.engine.watermark import Watermark
from copyjob_dagster.errors import CopyJobError
from copyjob_dagster.stores import LiveRows, Source, Window, open_source
from copyjob_dagster.stores.binlog import BinlogChangeStream


@dataclass(frozen=True)
class NewRows:
    """How many source rows of `table` lie beyond its watermark, or why that is unknown."""

    table: TableConfig
    rows: int = 0
    error: CopyJobError | None = None
    at: str | None = None  # `mode: cdc`: the source's position when the changes were counted


def rows_beyond(
    job: CopyJob,
    watermarks: Mapping[str, Watermark | None],
    positions: Mapping[str, int | None] | None = None,
) -> list[NewRows]:
    """For each table named (by destination name) in `watermarks`, the source rows beyond it;
    a `mode: cdc` table of a MariaDB source, the changes after its recorded binlog position in
    `positions` (a PostgreSQL slot keeps its own).

    A table without a watermark counts every row with an incremental value. An error that
    concerns one table is kept with it; a transient one (the source cannot be reached) is
    raised at once, since every other table would meet it too.
    """
    source = open_source(job.source)
    try:
        return [
            _rows_beyond(
                job,
                table,
                source,
                watermarks[table.destination_name],
                (positions or {}).get(table.destination_name),
            )
            for table in job.tables
            if table.destination_name in watermarks
        ]
    finally:
        source.close()


def _rows_beyond(
    job: CopyJob,
    table: TableConfig,
    source: Source,
    watermark: Watermark | None,
    position: int | None,
) -> NewRows:
    try:
        if job.is_cdc(table):  # the changes waiting in its slot, or in the binlog
            stream = change_stream(source, job, table)
            if isinstance(stream, BinlogChangeStream):
                rows, at = binlog_cdc.waiting(stream, position)
            else:
                rows, at = stream.waiting()
            return NewRows(table, rows, at=at)
        plan = plan_copy(job, table, source.describe(table.name))
        low = None if watermark is None else watermark.value
        with source.open_reader(table.name) as reader:
            if plan.incremental_column is None:  # by a change feed: the versions since
                since = -1 if watermark is None else int(watermark.text)
                rows = max(0, (reader.version or 0) - since)
            else:
                rows = reader.count(Window(plan.incremental_column, low))
    except CopyJobError as exc:
        if exc.transient:
            raise
        return NewRows(table, error=exc)
    return NewRows(table, rows)


def source_rows_up_to(
    job: CopyJob, table: TableConfig, watermark: Watermark, stores: TableStores | None = None
) -> int:
    """The source rows whose incremental value is at or below `watermark` (NULLs excluded);
    read through `stores`' source when given (left open), else the job's own."""
    with source_of(job, stores) as source:
        plan = plan_copy(job, table, source.describe(table.name))
        with source.open_reader(table.name) as reader:
            if plan.incremental_column is None:
                return reader.count()  # copied by a change feed: the table as it is now
            return reader.count(Window(plan.incremental_column, high=watermark.value))


def destination_rows(
    job: CopyJob,
    table: TableConfig,
    up_to: Watermark | None = None,
    stores: TableStores | None = None,
) -> int | None:
    """The rows of a table's copy at the destination that stand for source rows (its current
    versions, its rows not marked deleted), only those at or below `up_to` if given, or None
    when there is no copy; read through `stores`' destination when given (left open)."""
    with destination_of(job, stores) as destination:
        if destination.describe(table.destination_name) is None:
            return None
        window = None
        if up_to is not None and table.incremental_column is not None:
            cursor = table.rename.get(table.incremental_column, table.incremental_column)
            window = Window(cursor, high=up_to.value)
        with destination.open_reader(table.destination_name) as reader:
            return reader.count(window, live=live_rows(job, table))


def live_rows(job: CopyJob, table: TableConfig) -> LiveRows | None:
    """Which destination rows a table's copy keeps for rows now at the source."""
    if job.mode != "incremental":
        return None
    if table.write == "scd2":
        return LiveRows(current_column=table.history_columns.is_current)
    if table.deletes == "soft":
        return LiveRows(deleted_column=table.deleted_column)
    return None
