"""Change data capture (`mode: cdc`): a first copy from the slot's snapshot, then the changes.

The position is an LSN, recorded in the asset's metadata like a watermark. A run:

1. With no position recorded (or `full_refresh`, or a slot that is gone or stands elsewhere
   than the record says): create the slot anew, copy the table from the snapshot it exports,
   replace the destination table; the position is the slot's consistent point.
2. Otherwise: if the slot stands before the recorded position (a run recorded it and died
   before moving the slot), move it there; read the transactions committed up to the WAL
   flushed at the run's start (`upto`), whole, and apply them to the destination in one
   transaction; the new position is `upto` (or the last commit's end, if later).
3. The caller records the position, and only then calls `confirm_position`, which advances
   the slot. A run killed anywhere before that reads the same changes again, and applying them
   again leaves the same rows (each key ends as its last change says).
"""

import hashlib
import itertools
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa
from sqlalchemy.engine import Connection

from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.engine.cdc_apply import RunApplier
from copyjob_dagster.engine.copying import CopyResult, _result
from copyjob_dagster.engine.planning import CopyPlan, plan_copy
from copyjob_dagster.engine.rows import ProgressCallback, renamed
from copyjob_dagster.errors import SchemaError, SourceError
from copyjob_dagster.stores import (
    Destination,
    Source,
    TableDescription,
    open_destination,
    open_source,
)
from copyjob_dagster.stores.binlog import BinlogChangeStream, BinlogState
from copyjob_dagster.stores.change_apply import ChangeCounts
from copyjob_dagster.stores.pg_changes import PostgresChangeStream, SlotState
from copyjob_dagster.stores.pgoutput import lsn_text

SLOT_NAME_LENGTH = 63
DECODE_MESSAGES = 20_000  # messages decoded together (see `stores.pgoutput_batch`)


@dataclass(frozen=True)
class CdcResult:
    """A `mode: cdc` run: the copy's result, and where the changes stand."""

    copy: CopyResult
    slot: str
    position_before: int | None
    position: int
    counts: ChangeCounts
    transactions: int
    retained_bytes: int | None  # WAL the slot holds back, measured after the run

    @property
    def position_text(self) -> str:
        return self.text_of(self.position)

    def text_of(self, position: int) -> str:
        """A position as recorded (an LSN here; binlog file and offset for MariaDB)."""
        return lsn_text(position)


def slot_name(job: CopyJob, table: TableConfig) -> str:
    """The table's slot and publication name: `copyjob_<job>_<table>`, folded to what a slot
    name may hold (lower-case letters, digits, underscores), with a hash when that changed
    the name or cut it."""
    raw = f"copyjob_{job.name}_{table.destination_name}"
    name = re.sub(r"[^a-z0-9_]", "_", raw.lower())
    if name != raw or len(name) > SLOT_NAME_LENGTH:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[: SLOT_NAME_LENGTH - 9]}_{digest}"
    return name


def change_stream(
    source: Source, job: CopyJob, table: TableConfig
) -> PostgresChangeStream | BinlogChangeStream:
    if not source.capabilities.change_stream:
        raise SourceError(
            f"job {job.name!r}, table {table.name!r}: source {source.display_url} has no "
            f"change stream (mode: cdc reads PostgreSQL's logical replication or MariaDB's "
            f"binlog)"
        )
    return source.change_stream(table.name, slot_name(job, table))  # type: ignore[attr-defined]


def cdc_problems(job: CopyJob, table: TableConfig) -> list[str]:
    """What keeps `table` from `mode: cdc` at the live source (settings, privileges, key)."""
    source = open_source(job.source)
    try:
        problems = change_stream(source, job, table).problems()
        plan = plan_copy(job, table, source.describe(table.name))
        if not plan.primary_key:
            problems.append(
                "the table has no primary key to apply changes by: add one at the source, "
                "or name primary_key: in the job"
            )
        return problems
    finally:
        source.close()


def capture_changes(
    job: CopyJob,
    table: TableConfig,
    position: int | None,
    full_refresh: bool = False,
    progress: ProgressCallback | None = None,
) -> CdcResult:
    """One `mode: cdc` run of one table (see the module's docstring)."""
    source = open_source(job.source)
    destination = open_destination(job.destination)
    try:
        stream = change_stream(source, job, table)
        plan, described = checked_plan(job, table, stream, source)
        if isinstance(stream, BinlogChangeStream):
            from copyjob_dagster.engine import binlog_cdc  # it builds on this module

            return binlog_cdc.capture(
                plan,
                table,
                described,
                stream,
                source,
                destination,
                position,
                full_refresh,
                progress,
            )
        state = stream.state()
        if position is not None and state is not None and state.confirmed < position:
            stream.advance(position)  # recorded by a run that died before moving the slot
            state = stream.state()
        existing = destination.describe(plan.destination_table)
        if (
            full_refresh
            or position is None
            or state is None
            or state.confirmed > position
            or existing is None
        ):
            copy, point = _snapshot(plan, stream, source, destination, progress)
            return _cdc_result(copy, stream, position, point, ChangeCounts(), 0)
        applier = RunApplier(plan, table, source, described.schema)
        have = set(existing.column_names)
        return _changes(plan, applier, stream, destination, have, position, progress)
    finally:
        source.close()
        destination.close()


def checked_plan(
    job: CopyJob,
    table: TableConfig,
    stream: PostgresChangeStream | BinlogChangeStream,
    source: Source,
) -> tuple[CopyPlan, TableDescription]:
    """A `mode: cdc` run's plan, and the source table's description it was made from, once the
    source's settings are checked; a table without a primary key is refused."""
    stream.check()
    described = source.describe(table.name)
    plan = plan_copy(job, table, described)
    if not plan.primary_key:
        raise SchemaError(
            f"job {job.name!r}, table {table.name!r}: mode: cdc applies changes by primary "
            f"key, and the table has none: add one at the source, or name primary_key:"
        )
    return plan, described


def confirm_position(job: CopyJob, table: TableConfig, position: int) -> None:
    """Let the slot forget the changes before `position`: call only once it is recorded."""
    source = open_source(job.source)
    try:
        change_stream(source, job, table).advance(position)
    finally:
        source.close()


def slot_state(
    job: CopyJob, table: TableConfig, position: int | None = None
) -> SlotState | BinlogState | None:
    """The slot's state; for a MariaDB source, how far behind the binlog `position` is."""
    source = open_source(job.source)
    try:
        stream = change_stream(source, job, table)
        if isinstance(stream, BinlogChangeStream):
            return stream.state(position)
        return stream.state()
    finally:
        source.close()


def drop_slot(job: CopyJob, table: TableConfig) -> bool:
    """Drop the table's slot and publication; True if there was a slot."""
    source = open_source(job.source)
    try:
        return change_stream(source, job, table).drop()
    finally:
        source.close()


def _snapshot(
    plan: CopyPlan,
    stream: PostgresChangeStream,
    source: Source,
    destination: Destination,
    progress: ProgressCallback | None,
) -> tuple[CopyResult, int]:
    started = time.monotonic()
    with stream.start() as (point, begin):
        return copy_snapshot(plan, source, destination, begin, started, progress), point


def copy_snapshot(
    plan: CopyPlan,
    source: Source,
    destination: Destination,
    begin: Callable[[Connection], None],
    started: float,
    progress: ProgressCallback | None,
) -> CopyResult:
    """A `mode: cdc` table's first copy: every row, read by a reader that `begin` sets inside
    the snapshot the changes start from, in place of the destination table's rows."""
    with source.open_reader(plan.source_table, begin) as reader:  # type: ignore[call-arg]
        counted = {"rows": 0}

        def rows() -> Iterator[pa.RecordBatch]:
            batches = reader.batches(plan.source_columns, plan.batch_rows)
            for batch in renamed(batches, plan.destination_schema):
                counted["rows"] += batch.num_rows
                if progress is not None:
                    progress(counted["rows"], None, time.monotonic() - started)
                yield batch

        written = destination.replace(
            plan.destination_table,
            plan.written_schema,
            plan.primary_key,
            rows(),
            updated_by_key=True,
        )
    return _result(plan, source, reader, destination, started, counted["rows"], written)


def _changes(
    plan: CopyPlan,
    applier: RunApplier,
    stream: PostgresChangeStream,
    destination: Destination,
    have: set[str],
    position: int,
    progress: ProgressCallback | None,
) -> CdcResult:
    started = time.monotonic()
    upto = stream.current()
    counts, transactions, end = ChangeCounts(), 0, position
    if upto > position:
        schema = pa.schema([f for f in plan.written_schema if f.name in have])
        with destination.applying_changes(  # type: ignore[attr-defined]
            plan.destination_table, schema, plan.primary_key, position
        ) as sink:
            for field in plan.written_schema:
                if field.name not in have:
                    sink.add_column(field)
            applier.start(sink, have | set(plan.written_schema.names))
            messages = stream.messages(upto)
            while chunk := list(itertools.islice(messages, DECODE_MESSAGES)):
                applier.take(chunk)
                if progress is not None:
                    progress(applier.changes, None, time.monotonic() - started)
            applier.finish()
            counts, transactions = sink.counts, applier.transactions
            end = max(upto, applier.last_end)
    copy = _result_of_changes(plan, applier.source, destination, started, counts)
    return _cdc_result(copy, stream, position, end, counts, transactions)


def _result_of_changes(
    plan: CopyPlan, source: Source, destination: Destination, started: float, counts: ChangeCounts
) -> CopyResult:
    return CopyResult(
        plan=plan,
        rows_read=counts.upserted + counts.deleted,
        rows_written=counts.upserted,
        seconds=time.monotonic() - started,
        source_url=source.display_url,
        destination_url=destination.display_url,
        destination_location=destination.location(plan.destination_table),
        load="incremental",
    )


def _cdc_result(
    copy: CopyResult,
    stream: PostgresChangeStream,
    before: int | None,
    position: int,
    counts: ChangeCounts,
    transactions: int,
) -> CdcResult:
    state = stream.state()
    retained = state.retained_bytes if state is not None else None
    return CdcResult(copy, stream.name, before, position, counts, transactions, retained)
