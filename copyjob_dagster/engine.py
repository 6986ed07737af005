"""Copy one table: plan, read, map, write, commit. Returns a `CopyResult`. Never imports Dagster.

The plan is made from the job's table config and the source's description of the table: which
columns, under which names, with which Arrow types, into which destination table with which key.
Rows then stream from the source's snapshot as Arrow batches of bounded size into the
destination's atomic write, so memory stays flat whatever the table's size.
"""

import dataclasses
import hashlib
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, timedelta
from decimal import Decimal
from typing import Any, Literal

import pyarrow as pa

from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.errors import SchemaError, WatermarkError
from copyjob_dagster.stores import Destination, Source, open_destination, open_source
from copyjob_dagster.stores.base import TableDescription, TableReader, Window, WriteMethod
from copyjob_dagster.watermark import Watermark, watermark_kind

LOCK_TIMEOUT_SECONDS = 600
FINGERPRINT_MODULUS = 2**128

# Called with the rows copied so far, the estimated total (None if unknown) and the seconds
# since the copy started: once before the first row, then after each batch.
ProgressCallback = Callable[[int, int | None, float], None]


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
    incremental_column: str | None = None
    write: WriteMethod = "append"

    @property
    def destination_cursor(self) -> str | None:
        for column in self.columns:
            if column.source == self.incremental_column:
                return column.destination
        return None

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
    load: Literal["full", "initial", "incremental"] = "full"
    watermark_before: Watermark | None = None
    watermark: Watermark | None = None
    null_cursor_rows: int = 0
    window: Window | None = None


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
    names = [c.destination for c in columns]
    clashing = sorted({name for name in names if names.count(name) > 1})
    if clashing:
        raise SchemaError(
            f"job {job.name!r}, table {table.name!r}, field 'rename': several columns would be "
            f"named {', '.join(map(repr, clashing))} in the destination"
        )
    fields = [source_table.schema.field(c.source).with_name(c.destination) for c in columns]
    key_source = table.primary_key or [k for k in source_table.primary_key if k in selected]
    if table.primary_key is None and len(key_source) != len(source_table.primary_key):
        key_source = []  # a key that is only partly selected is no key
    if table.incremental_column and table.incremental_column not in selected:
        raise SchemaError(
            f"job {job.name!r}, table {table.name!r}: incremental_column "
            f"{table.incremental_column!r} must be one of the copied columns"
        )
    if job.mode == "incremental" and table.incremental_column:
        try:
            watermark_kind(source_table.schema.field(table.incremental_column))
        except SchemaError as exc:
            raise SchemaError(
                f"job {job.name!r}, table {table.name!r}, field 'incremental_column': {exc}"
            ) from None
    primary_key = tuple(table.rename.get(k, k) for k in key_source)
    if table.write == "merge" and job.destination.is_folder:
        raise SchemaError(
            f"job {job.name!r}, table {table.name!r}: write: merge needs a database destination; "
            f"Parquet files are appended (write: append)"
        )
    if table.write == "merge" and not primary_key:
        raise SchemaError(
            f"job {job.name!r}, table {table.name!r}: write: merge needs a primary_key, and the "
            f"source table has none; name one with primary_key: [...]"
        )
    return CopyPlan(
        job=job.name,
        source_table=table.name,
        destination_table=table.destination_name,
        columns=columns,
        destination_schema=pa.schema(fields),
        primary_key=primary_key,
        batch_rows=job.batch_rows,
        incremental_column=table.incremental_column if job.mode == "incremental" else None,
        write=table.write
        or ("merge" if primary_key and not job.destination.is_folder else "append"),
    )


def copy_table(
    job: CopyJob,
    table: TableConfig,
    watermark: Watermark | None = None,
    full_refresh: bool = False,
    progress: ProgressCallback | None = None,
) -> CopyResult:
    """Copy one table of a job.

    A full job replaces the destination table atomically. An incremental job does the same the
    first time (no `watermark`) or when `full_refresh` is asked; afterwards it copies only the
    window beyond `watermark`, written so that copying the same window again changes nothing.
    """
    source = open_source(job.source)
    destination = open_destination(job.destination)
    try:
        plan = plan_copy(job, table, source.describe(table.name))
        if plan.incremental_column is None:
            return _copy_full(plan, source, destination, progress)
        return _copy_increment(
            plan, table, source, destination, None if full_refresh else watermark, progress
        )
    finally:
        source.close()
        destination.close()


@contextmanager
def table_lock(
    job: CopyJob, table: TableConfig, timeout_seconds: float = LOCK_TIMEOUT_SECONDS
) -> Iterator[None]:
    """Hold the destination table's copy lock: a second copy of the table waits, then refuses.

    The caller holds it from reading the watermark until the new one is recorded, so two runs
    of one table never copy the same window at once nor record watermarks out of order.
    """
    destination = open_destination(job.destination)
    try:
        with destination.lock(table.destination_name, timeout_seconds):
            yield
    finally:
        destination.close()


def _copy_full(
    plan: CopyPlan, source: Source, destination: Destination, progress: ProgressCallback | None
) -> CopyResult:
    started = time.monotonic()
    estimate = source.estimate_rows(plan.source_table) if progress else None
    counter = _RowCounter(progress, estimate)
    with source.open_reader(plan.source_table) as reader:
        batches = reader.batches(plan.source_columns, plan.batch_rows)
        rows_written = destination.replace(
            plan.destination_table,
            plan.destination_schema,
            plan.primary_key,
            counter.count(_renamed(batches, plan.destination_schema)),
        )
    return _result(plan, source, destination, started, counter.rows, rows_written)


def _copy_increment(
    plan: CopyPlan,
    table: TableConfig,
    source: Source,
    destination: Destination,
    previous: Watermark | None,
    progress: ProgressCallback | None,
) -> CopyResult:
    started = time.monotonic()
    cursor = plan.incremental_column
    kind = watermark_kind(source.describe(plan.source_table).schema.field(cursor))
    if previous is not None and previous.kind != kind:
        raise WatermarkError(
            f"job {plan.job!r}, table {plan.source_table!r}: the watermark is a {previous.kind} "
            f"but column {cursor!r} now holds {kind} values; run a full refresh"
        )
    existing = destination.describe(plan.destination_table)
    if previous is not None and existing is None:
        previous = None  # the copy is gone from the destination: load it again from the start
    if existing is not None and previous is not None:
        _reconcile_schema(plan, existing, destination)

    with source.open_reader(plan.source_table) as reader:
        window, nulls = _plan_window(plan, table, reader, previous)
        counter = _RowCounter(progress, _window_estimate(plan, source, reader, window, progress))
        batches = _non_empty(
            counter.count(
                _renamed(
                    reader.batches(plan.source_columns, plan.batch_rows, window),
                    plan.destination_schema,
                )
            )
        )
        rows_written = 0
        if batches is not None or previous is None:
            rows_written = destination.write_increment(
                plan.destination_table,
                plan.destination_schema,
                plan.primary_key,
                batches or iter(()),
                method=plan.write,
                window=dataclasses.replace(window, column=plan.destination_cursor),
            )
        new_watermark = previous
        if window.high is not None:
            high = _aware(kind, window.high)
            count, fingerprint = _fingerprint(reader, plan, window.high)
            new_watermark = Watermark.of(kind, high, count, fingerprint)
    return dataclasses.replace(
        _result(plan, source, destination, started, counter.rows, rows_written),
        load="initial" if previous is None else "incremental",
        watermark_before=previous,
        watermark=new_watermark,
        null_cursor_rows=nulls,
        window=window,
    )


def _plan_window(
    plan: CopyPlan, table: TableConfig, reader: TableReader, previous: Watermark | None
) -> tuple[Window, int]:
    """The window to read in this snapshot, and the number of rows with a NULL cursor.

    The window ends at the column's current maximum. It starts after the watermark while the
    rows at the watermark's value are the ones already copied (same fingerprint), and at the
    value itself when they changed: rows with that value arrived late, left it, or were edited.
    A lookback starts it that far below the watermark instead. Writes are idempotent for the
    window, so reading a row again never duplicates it.
    """
    cursor = plan.incremental_column
    low = None if previous is None else _minus_lookback(previous, table.lookback)
    profile = reader.profile(cursor, low)
    if profile.null_rows and table.null_cursor == "fail":
        raise SchemaError(
            f"job {plan.job!r}, table {plan.source_table!r}: {profile.null_rows} rows have a NULL "
            f"incremental column {cursor!r}; fix them at the source, or set null_cursor: skip "
            f"to leave them out of every run"
        )
    if previous is None:
        return Window(cursor, None, False, profile.high), profile.null_rows
    inclusive = table.lookback > 0 or (
        _fingerprint(reader, plan, previous.value)[1] != previous.fingerprint
    )
    high = profile.high
    if not inclusive and high == low:
        high = None  # only the rows already copied at the watermark: nothing new
    return Window(cursor, low, inclusive, high), profile.null_rows


def _window_estimate(
    plan: CopyPlan,
    source: Source,
    reader: TableReader,
    window: Window,
    progress: ProgressCallback | None,
) -> int | None:
    """The rows a window will copy, for progress: counted when an index on the incremental
    column can serve it, estimated like a full copy for the initial load."""
    if progress is None:
        return None
    if window.low is None:
        return source.estimate_rows(plan.source_table)
    return reader.count(window)


def _fingerprint(reader: TableReader, plan: CopyPlan, value: Any) -> tuple[int, str]:
    """How many rows hold `value` in the incremental column, and a hash of their contents.

    The hash is a sum of per-row hashes, so it needs no ordering and no memory beyond a batch.
    """
    at_value = Window(plan.incremental_column, value, True, value)
    count, total = 0, 0
    for batch in reader.batches(plan.source_columns, plan.batch_rows, at_value):
        for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
            digest = hashlib.blake2b(repr(row).encode(), digest_size=16).digest()
            total = (total + int.from_bytes(digest, "big")) % FINGERPRINT_MODULUS
        count += batch.num_rows
    return count, f"{count}:{total:032x}"


def _minus_lookback(watermark: Watermark, lookback: float) -> Any:
    value = watermark.value
    if not lookback:
        return value
    if watermark.kind in ("timestamp", "timestamp_tz"):
        return value - timedelta(seconds=lookback)
    if watermark.kind == "date":
        return value - timedelta(days=lookback)
    if watermark.kind == "integer":
        return value - int(lookback)
    if watermark.kind == "decimal":
        return value - Decimal(str(lookback))
    raise WatermarkError(f"lookback cannot apply to a {watermark.kind} watermark")


def _aware(kind: str, value: Any) -> Any:
    """MySQL returns TIMESTAMP values naive, in the session's time zone, which is UTC."""
    if kind == "timestamp_tz" and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _reconcile_schema(plan: CopyPlan, existing: TableDescription, destination: Destination) -> None:
    """Add columns new at the source; refuse dropped columns and types that cannot convert."""
    present = {field.name: field for field in existing.schema}
    planned = {field.name: field for field in plan.destination_schema}
    dropped = [name for name in present if name not in planned]
    if dropped:
        raise SchemaError(
            f"job {plan.job!r}, table {plan.source_table!r}: column(s) "
            f"{', '.join(map(repr, dropped))} of the destination no longer come from the source; "
            f"restore them, select columns explicitly, or run a full refresh"
        )
    for name, field in planned.items():
        if name in present and not _converts(field.type, present[name].type):
            raise SchemaError(
                f"job {plan.job!r}, table {plan.source_table!r}, column {name!r}: the source "
                f"type {field.type} cannot be written into the destination's {present[name].type}"
            )
    added = [field.with_nullable(True) for name, field in planned.items() if name not in present]
    if added:
        destination.add_columns(plan.destination_table, added)


def _converts(source: pa.DataType, destination: pa.DataType) -> bool:
    """Whether values of `source` fit a destination column of `destination` without loss."""
    families = (
        pa.types.is_integer,
        pa.types.is_floating,
        pa.types.is_decimal,
        pa.types.is_timestamp,
        pa.types.is_date,
        pa.types.is_boolean,
        pa.types.is_binary,
    )
    if pa.types.is_string(destination) or pa.types.is_large_string(destination):
        return True
    for family in families:
        if family(source) or family(destination):
            if not (family(source) and family(destination)):
                return pa.types.is_integer(source) and pa.types.is_decimal(destination)
            if family is pa.types.is_integer:
                return source.bit_width <= destination.bit_width or pa.types.is_unsigned_integer(
                    destination
                )
            return True
    return source == destination


def _non_empty(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch] | None:
    """The batches, or None when there is no row at all (so nothing is written)."""
    for batch in batches:
        if batch.num_rows:
            return itertools.chain([batch], batches)
    return None


def _result(
    plan: CopyPlan,
    source: Source,
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
    )


def _renamed(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)


class _RowCounter:
    """Counts the rows that pass to the destination, and reports them to `progress`."""

    def __init__(
        self, progress: ProgressCallback | None = None, estimate: int | None = None
    ) -> None:
        self.rows = 0
        self._progress = progress
        self._estimate = estimate
        self._started = time.monotonic()

    def count(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        self._report()
        for batch in batches:
            self.rows += batch.num_rows
            yield batch
            self._report()  # the destination has taken the batch and asks for the next

    def _report(self) -> None:
        if self._progress is not None:
            self._progress(self.rows, self._estimate, time.monotonic() - self._started)
