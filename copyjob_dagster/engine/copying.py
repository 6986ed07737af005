"""Copy one table: plan, read, map, write, commit. Returns a `CopyResult`. Never imports Dagster.

The plan (`planning.py`) says which columns go where; for an incremental copy the window
(`windows.py`) says which rows. Rows then stream from the source's snapshot as Arrow batches of
bounded size into the destination's atomic or idempotent write, so memory stays flat whatever
the table's size, and the new watermark is taken from the same snapshot.
"""

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import pyarrow as pa

from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.engine.deletions import deletion_pass
from copyjob_dagster.engine.feed import copy_by_feed
from copyjob_dagster.engine.late_commits import (
    LateCommits,
    held_watermark,
    next_watermark,
    observe,
)
from copyjob_dagster.engine.overrides import Backfill
from copyjob_dagster.engine.passthrough import (
    binary_copy,
    spelled_text,
    streams_bytes,
    text_copy,
)
from copyjob_dagster.engine.planning import CopyPlan, plan_copy, reconcile_schema
from copyjob_dagster.engine.rows import ProgressCallback, RowCounter, non_empty, renamed
from copyjob_dagster.engine.splitting import open_reader, parts_of
from copyjob_dagster.engine.stamping import Stamp, stamped
from copyjob_dagster.engine.table_stores import TableStores, destination_of, source_of
from copyjob_dagster.engine.watermark import Watermark, WatermarkKind, watermark_kind
from copyjob_dagster.engine.windows import RowsAt, plan_window, rows_at_watermark
from copyjob_dagster.errors import WatermarkError
from copyjob_dagster.stores import (
    BinaryCopy,
    Commit,
    DeletionCounts,
    Destination,
    Source,
    TableReader,
    Window,
)


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
    load: Literal["full", "initial", "incremental", "backfill"] = "full"
    watermark_before: Watermark | None = None
    watermark: Watermark | None = None
    null_cursor_rows: int = 0
    window: Window | None = None
    deletions: DeletionCounts | None = None  # None: the table ignores deletions
    parts: int = 1  # key ranges read in parallel (see splitting.py); 1: a single stream
    source_version: int | None = None  # the table version read, where stores number them
    commit: Commit | None = None  # the destination's commit, where it numbers versions
    late_commits: LateCommits | None = None  # None: no bound applies (see late_commits.py)
    destination_rows: int | None = None
    """A full copy's: the rows of the table it swapped in, where the destination's own report
    of its load says (`Destination.replaced_rows`); None: only a count tells."""


def copy_table(
    job: CopyJob,
    table: TableConfig,
    watermark: Watermark | None = None,
    full_refresh: bool = False,
    progress: ProgressCallback | None = None,
    run_id: str | None = None,
    allow_mass_delete: bool = False,
    backfill: Backfill | None = None,
    stores: TableStores | None = None,
) -> CopyResult:
    """Copy one table of a job.

    A full job replaces the destination table atomically. An incremental job does the same the
    first time (no `watermark`) or when `full_refresh` is asked; afterwards it copies only the
    window beyond `watermark`, written so that copying the same window again changes nothing.
    `run_id` is written into the audit columns; `allow_mass_delete` lifts the deletion guard.
    A `backfill` copies its explicit window instead, the same way, and leaves `watermark` as it is.
    `stores` are the job's source and destination, already open (left open); by default the
    copy opens its own.
    """
    stamp = Stamp(run_id, datetime.now(UTC))
    with source_of(job, stores) as source, destination_of(job, stores) as destination:
        plan = plan_copy(job, table, source.describe(table.name))
        if backfill is not None:
            return _copy_backfill(
                plan, table, source, destination, watermark, backfill, progress, stamp
            )
        if plan.incremental_column is None and job.mode == "incremental":
            return _copy_feed(
                plan,
                table,
                source,
                destination,
                None if full_refresh else watermark,
                progress,
                stamp,
                allow_mass_delete,
            )
        if plan.incremental_column is None:
            return _copy_full(plan, source, destination, progress, stamp)
        return _copy_increment(
            plan,
            table,
            source,
            destination,
            None if full_refresh else watermark,
            progress,
            stamp,
            allow_mass_delete,
        )


def _copy_full(
    plan: CopyPlan,
    source: Source,
    destination: Destination,
    progress: ProgressCallback | None,
    stamp: Stamp,
) -> CopyResult:
    started = time.monotonic()
    estimate = source.estimate_rows(plan.source_table) if progress else None
    counter = RowCounter(progress, estimate)
    # The binary passthrough already runs at the pipe's speed: it reads one stream.
    passthrough = streams_bytes(plan, source, destination)
    spelled = None if passthrough else spelled_text(plan, source, destination)
    split = None if passthrough else plan.split
    with open_reader(source, plan.source_table, split, estimate) as reader:
        if passthrough:
            rows: Any = binary_copy(plan, reader, counter.count)
        elif spelled is not None:
            rows = text_copy(plan, reader, counter.count, spelled)
        else:
            rows = _arrow_batches(plan, reader, counter, stamp)
        rows_written = destination.replace(
            plan.destination_table, plan.written_schema, plan.primary_key, rows
        )
    return dataclasses.replace(
        _result(plan, source, reader, destination, started, counter.rows, rows_written),
        destination_rows=destination.replaced_rows,
    )


def _copy_feed(
    plan: CopyPlan,
    table: TableConfig,
    source: Source,
    destination: Destination,
    previous: Watermark | None,
    progress: ProgressCallback | None,
    stamp: Stamp,
    allow_mass_delete: bool,
) -> CopyResult:
    started = time.monotonic()
    counter = RowCounter(progress)
    done = copy_by_feed(
        plan, table, source, destination, previous, counter, stamp, allow_mass_delete
    )
    return dataclasses.replace(
        _result(plan, source, None, destination, started, counter.rows, done.rows_written),
        load="initial" if previous is None else "incremental",
        watermark_before=previous,
        watermark=done.watermark,
        source_version=done.source_version,
        deletions=done.deletions,
    )


def _copy_increment(
    plan: CopyPlan,
    table: TableConfig,
    source: Source,
    destination: Destination,
    previous: Watermark | None,
    progress: ProgressCallback | None,
    stamp: Stamp,
    allow_mass_delete: bool,
) -> CopyResult:
    started = time.monotonic()
    kind = cursor_kind(plan, source, previous)
    existing = destination.describe(plan.destination_table)
    if previous is not None and existing is None:
        previous = None  # the copy is gone from the destination: load it again from the start
    if existing is not None and previous is not None:
        reconcile_schema(plan, existing, destination)
    open_now = observe(source, kind)  # the open transactions, before the snapshot opens
    passthrough = streams_bytes(plan, source, destination)
    with open_reader(source, plan.source_table, None if passthrough else plan.split) as reader:
        planned = plan_window(plan, table, reader, previous)
        window = planned.window
        # A window has rows when it has an upper bound (see windows.plan_window): an empty one
        # is not read.
        has_rows = previous is None or window.high is not None
        counter = RowCounter(progress, planned.rows if has_rows else 0)
        stamp = _window_stamp(stamp, kind, window)
        high = _aware(kind, window.high) if window.high is not None else None
        value, late = held_watermark(kind, high, open_now, previous, table.open_transaction_warning)
        # The rows at the watermark to record are fingerprinted as they pass, not read again.
        taken = None if passthrough else rows_at_watermark(kind, window, value, previous)
        # The source's keys are read (and deletions counted) before the window's rows stream:
        # a snapshot connection serves one query at a time.
        with deletion_pass(
            plan,
            destination,
            reader,
            deleted_at=stamp.loaded_at,
            closed_at=high if high is not None else previous.value if previous else None,
            allow_mass_delete=allow_mass_delete,
            initial=previous is None,
        ) as deletions:
            batches: Any
            if not has_rows:
                batches = None
            elif passthrough:
                batches = binary_copy(plan, reader, counter.count, window)
            else:
                batches = non_empty(_arrow_batches(plan, reader, counter, stamp, window, taken))
            rows_written = 0
            if batches is not None or previous is None:
                rows_written = _write_window(plan, destination, batches or iter(()), window)
            deleted = deletions.apply() if deletions is not None else DeletionCounts()
        new_watermark = next_watermark(reader, plan, kind, value, previous, taken)
    return dataclasses.replace(
        _result(plan, source, reader, destination, started, counter.rows, rows_written),
        load="initial" if previous is None else "incremental",
        watermark_before=previous,
        watermark=new_watermark,
        null_cursor_rows=planned.null_rows,
        window=window,
        deletions=deleted if plan.deletes != "ignore" else None,
        late_commits=late,
    )


def _arrow_batches(
    plan: CopyPlan,
    reader: TableReader,
    counter: "RowCounter",
    stamp: Stamp,
    window: Window | None = None,
    taken: RowsAt | None = None,
) -> Iterator[pa.RecordBatch]:
    """The rows (of `window`) as the destination takes them: renamed, with the columns the
    copy adds, counted; and as read, through `taken`'s fingerprint."""
    rows = reader.batches(plan.source_columns, plan.batch_rows, window)
    if taken is not None:
        rows = taken.tap(rows)
    return counter.count(stamped(renamed(rows, plan.destination_schema), plan, stamp))


def _write_window(
    plan: CopyPlan,
    destination: Destination,
    batches: Iterator[pa.RecordBatch] | BinaryCopy,
    window: Window,
) -> int:
    window = dataclasses.replace(window, column=plan.destination_cursor)
    if plan.versions is not None:
        return destination.write_versions(
            plan.destination_table,
            plan.written_schema,
            plan.primary_key,
            batches,
            versions=plan.versions,
            window=window,
        )
    return destination.write_increment(
        plan.destination_table,
        plan.written_schema,
        plan.appended_key if plan.write == "append" else plan.primary_key,
        batches,
        method=plan.write,
        window=window,
    )


def _copy_backfill(
    plan: CopyPlan,
    table: TableConfig,
    source: Source,
    destination: Destination,
    watermark: Watermark | None,
    backfill: Backfill,
    progress: ProgressCallback | None,
    stamp: Stamp,
) -> CopyResult:
    """Copy the rows of [low, high] with the table's idempotent write; the watermark stays."""
    started = time.monotonic()
    if plan.incremental_column is None:
        raise WatermarkError(
            f"job {plan.job!r}, table {plan.source_table!r}: a backfill copies a window of an "
            f"incremental table; this job copies whole tables"
        )
    kind = cursor_kind(plan, source, watermark)
    low, high = backfill.bounds(plan.job, table, kind)
    existing = destination.describe(plan.destination_table)
    if existing is None:
        raise WatermarkError(
            f"job {plan.job!r}, table {plan.source_table!r}: the destination has no table "
            f"{plan.destination_table!r} yet; run the table's first copy before a backfill"
        )
    reconcile_schema(plan, existing, destination)
    window = Window(plan.incremental_column, low, True, high, backfill=True)
    with open_reader(source, plan.source_table, plan.split) as reader:
        nulls = reader.profile(plan.incremental_column, low).null_rows
        counter = RowCounter(progress, reader.count(window) if progress else None)
        stamp = _window_stamp(stamp, kind, window)
        batches = non_empty(_arrow_batches(plan, reader, counter, stamp, window))
        rows_written = 0
        if batches is not None:
            rows_written = _write_window(plan, destination, batches, window)
    return dataclasses.replace(
        _result(plan, source, reader, destination, started, counter.rows, rows_written),
        load="backfill",
        watermark_before=watermark,
        watermark=watermark,
        null_cursor_rows=nulls,
        window=window,
    )


def _window_stamp(stamp: Stamp, kind: str, window: Window) -> Stamp:
    """The stamp with the window's bounds as the watermark's exact text."""

    def text(value: Any) -> str | None:
        return None if value is None else Watermark.of(kind, _aware(kind, value), 0, "").text

    return dataclasses.replace(stamp, window_from=text(window.low), window_to=text(window.high))


def cursor_kind(plan: CopyPlan, source: Source, previous: Watermark | None) -> WatermarkKind:
    """The incremental column's watermark kind; refuse a watermark of another kind."""
    cursor = plan.incremental_column
    kind = watermark_kind(source.describe(plan.source_table).schema.field(cursor))
    if previous is not None and previous.kind != kind:
        raise WatermarkError(
            f"job {plan.job!r}, table {plan.source_table!r}: the watermark is a {previous.kind} "
            f"but column {cursor!r} now holds {kind} values; run a full refresh"
        )
    return kind


def _aware(kind: str, value: Any) -> Any:
    """MySQL returns TIMESTAMP values naive, in the session's time zone, which is UTC."""
    if kind == "timestamp_tz" and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _result(
    plan: CopyPlan,
    source: Source,
    reader: TableReader | None,
    destination: Destination,
    started: float,
    rows_read: int,
    rows_written: int,
) -> CopyResult:
    return CopyResult(
        plan=plan,
        rows_read=rows_read,
        rows_written=rows_written,
        seconds=time.monotonic() - started,
        source_url=source.display_url,
        destination_url=destination.display_url,
        destination_location=destination.location(plan.destination_table),
        parts=parts_of(reader) if reader is not None else 1,
        source_version=reader.version if reader is not None else None,
        commit=destination.last_commit,
    )
