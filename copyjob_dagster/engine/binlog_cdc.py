"""`mode: cdc` from MariaDB's binlog: a first copy tied to a binlog position, then the changes.

The position (binlog file and offset) is recorded in the asset's metadata like a watermark,
and nothing at the source holds the binlog for it. A run:

1. With no position recorded (or `full_refresh`, or no destination table): copy the table in a
   consistent snapshot and replace the destination table; the position is the snapshot's
   binlog position (`stores.binlog` says why the two fit).
2. Otherwise: refuse if the server has purged the position's file (the fix: a new snapshot);
   read the binlog from the position up to its end at the run's start (`upto`, between two
   transactions), and apply the table's changes, whole transactions, to the destination in one
   transaction (the same `applying_changes` sink as PostgreSQL's changes); the new position is
   `upto`.
3. The caller records the position. A run killed before that reads the same changes again from
   the old position, and applying them again leaves the same rows (each key ends as its last
   change says: every change carries the whole row).
"""

import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from copyjob_dagster.config import TableConfig
from copyjob_dagster.engine.cdc import CdcResult, _result_of_changes, copy_snapshot
from copyjob_dagster.engine.cdc_columns import ChangeColumns
from copyjob_dagster.engine.copying import CopyResult
from copyjob_dagster.engine.planning import CopyPlan
from copyjob_dagster.engine.rows import ProgressCallback
from copyjob_dagster.stores import Destination, Source, TableDescription
from copyjob_dagster.stores.binlog import BinlogChangeStream, position_text
from copyjob_dagster.stores.binlog_rows import RowsChunk
from copyjob_dagster.stores.change_apply import ChangeBatch, ChangeCounts
from copyjob_dagster.stores.mysql_changes import Transaction, TruncateTable, transactions

NO_SLOT = "(none: MariaDB binlog)"
PROGRESS_EVERY = 5_000  # changes between two calls of `progress` (which may abandon the run)


@dataclass(frozen=True)
class BinlogCdcResult(CdcResult):
    """A run's result, its positions written as binlog file and offset."""

    base: str = "binlog"

    def text_of(self, position: int) -> str:
        return position_text(position, self.base)


def capture(
    plan: CopyPlan,
    table: TableConfig,
    described: TableDescription,
    stream: BinlogChangeStream,
    source: Source,
    destination: Destination,
    position: int | None,
    full_refresh: bool,
    progress: ProgressCallback | None,
) -> CdcResult:
    """One `mode: cdc` run of one table of a MariaDB source (see the module's docstring), from
    its plan (`cdc.checked_plan`)."""
    existing = None if full_refresh else destination.describe(plan.destination_table)
    if position is None or existing is None:
        copy, point = _snapshot(plan, stream, source, destination, progress)
        return _binlog_result(copy, stream, stream.logs(), position, point, ChangeCounts(), 0)
    columns = ChangeColumns(plan, table, source, described.schema)
    return _changes(plan, columns, stream, source, destination, existing, position, progress)


def _snapshot(
    plan: CopyPlan,
    stream: BinlogChangeStream,
    source: Source,
    destination: Destination,
    progress: ProgressCallback | None,
) -> tuple[CopyResult, int]:
    started = time.monotonic()
    with stream.snapshot() as (begin, point):
        return copy_snapshot(plan, source, destination, begin, started, progress), point()


def _changes(
    plan: CopyPlan,
    columns: ChangeColumns,
    stream: BinlogChangeStream,
    source: Source,
    destination: Destination,
    existing: TableDescription,
    position: int,
    progress: ProgressCallback | None,
) -> CdcResult:
    started = time.monotonic()
    upto = stream.current()
    logs = stream.logs()  # the run's one listing: after `upto`, so it holds upto's file
    stream.require_retained(position, logs)
    counts, count, end = ChangeCounts(), 0, position
    if upto > position:
        have = set(existing.column_names)
        schema = pa.schema([f for f in plan.written_schema if f.name in have])
        with destination.applying_changes(  # type: ignore[attr-defined]
            plan.destination_table, schema, plan.primary_key, position
        ) as sink:
            for field in plan.written_schema:
                if field.name not in have:
                    sink.add_column(field)
            columns.start(sink, have | set(plan.written_schema.names))
            applier = _Applier(plan, columns, sink)
            events = stream.events(position, upto, logs)
            found = transactions(events, stream.database, stream.table, applier.key_sources)
            reported = 0
            for transaction in found:
                applier.take(transaction)
                if progress is not None and applier.changes >= reported + PROGRESS_EVERY:
                    reported = applier.changes
                    progress(reported, None, time.monotonic() - started)
            counts, count = sink.counts, applier.transactions
        end = upto
    copy = _result_of_changes(plan, source, destination, started, counts)
    return _binlog_result(copy, stream, logs, position, end, counts, count)


def waiting(stream: BinlogChangeStream, recorded: int | None) -> tuple[int, str]:
    """The table's changes in the binlog after `recorded` (a lower bound: those of the first
    transaction that has any; 0 means none; 1 without a position, which a run takes with a
    snapshot), and the binlog position they were looked for at. Nothing at the source moves:
    the binlog is only read, up to its end now, stopping at the first change."""
    upto = stream.current()
    logs = stream.logs()
    at = position_text(upto, stream.base(logs))
    if recorded is None:
        return 1, at
    events = stream.events(recorded, upto, logs)
    for transaction in transactions(events, stream.database, stream.table):
        if transaction.changes:
            return transaction.count, at
    return 0, at


def _binlog_result(
    copy: CopyResult,
    stream: BinlogChangeStream,
    logs: list[tuple[str, int]],
    before: int | None,
    position: int,
    counts: ChangeCounts,
    count: int,
) -> BinlogCdcResult:
    """The run's result; how far behind its position is, as the run's listing of the binlog
    files says (binlog written since is counted by the next run, `plan` and `list`)."""
    state = stream.state(position, logs)
    retained = state.retained_bytes if state is not None else None
    return BinlogCdcResult(
        copy, NO_SLOT, before, position, counts, count, retained, base=stream.base(logs)
    )


class _Applier:
    """Hands a transaction's changes to the sink, by destination column name."""

    def __init__(self, plan: CopyPlan, columns: ChangeColumns, sink: Any) -> None:
        self.columns, self.sink = columns, sink
        self.names: dict[str, str | None] = {}  # source column -> destination column
        # The key's source columns, to read an update's old key without mapping its whole row.
        by_destination = {c.destination: c.source for c in plan.columns}
        self.key = plan.primary_key
        self.key_sources = tuple(by_destination.get(k, k) for k in plan.primary_key)
        self.transactions = self.changes = 0

    def take(self, transaction: Transaction) -> None:
        for change in transaction.changes:
            if isinstance(change, TruncateTable):
                self.sink.truncate(transaction.end)
                continue
            if isinstance(change, RowsChunk):
                self.changes += change.num_rows
                self.sink.changes(self._batch(change, transaction.end))
                continue
            row = self._row(change.row)
            old_key = None
            if change.old is not None:
                old_key = tuple(change.old.get(name) for name in self.key_sources)
            self.changes += 1
            self.sink.change(change.operation, row, old_key, transaction.end)
        if transaction.changes:
            self.transactions += 1

    def _row(self, values: dict[str, Any]) -> dict[str, Any]:
        row = {}
        for name, value in values.items():
            destination = self._destination(name)
            if destination:
                row[destination] = value
        return row

    def _destination(self, name: str) -> str | None:
        if name not in self.names:
            column = self.columns.column(name)
            self.names[name] = column[0] if column is not None else None
        return self.names[name]

    def _batch(self, chunk: RowsChunk, end: int) -> ChangeBatch:
        """A rows event's columns as the sink's batch (types are the sink's to align)."""
        old_keys = None
        if chunk.old_keys is not None and all(s in chunk.old_keys for s in self.key_sources):
            old_keys = pa.table(
                {k: chunk.old_keys[s] for k, s in zip(self.key, self.key_sources, strict=True)}
            )
        return ChangeBatch(
            pa.table(self._row(chunk.columns)),
            pa.repeat(pa.scalar(chunk.operation, pa.string()), chunk.num_rows),
            pa.repeat(pa.scalar(end, pa.int64()), chunk.num_rows),
            {},
            old_keys,
        )
