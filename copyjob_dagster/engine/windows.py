"""The incremental contract: which rows a run copies, and how the next run knows where to start.

A window is the rows whose incremental column lies beyond the watermark and at or below the
column's maximum in the run's snapshot. Whether its lower bound is open or closed is decided by
the fingerprint of the rows at the watermark's value (see `watermark.py`). NULLs are never in a
window; a lookback opens the window further down for rows that commit late.
"""

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from copyjob_dagster.config import TableConfig
from copyjob_dagster.engine.planning import CopyPlan
from copyjob_dagster.engine.watermark import Watermark, WatermarkKind
from copyjob_dagster.errors import SchemaError, WatermarkError
from copyjob_dagster.stores import TableReader, Window

FINGERPRINT_MODULUS = 2**128
NO_ROWS = f"0:{0:032x}"  # the fingerprint of no rows at all


@dataclass(frozen=True)
class PlannedWindow:
    """The window a run reads, the rows with a NULL cursor, and the rows in the window (all
    measured by the one profile query, in the run's snapshot)."""

    window: Window
    null_rows: int
    rows: int


def plan_window(
    plan: CopyPlan, table: TableConfig, reader: TableReader, previous: Watermark | None
) -> PlannedWindow:
    """The window to read in this snapshot, the rows with a NULL cursor, and the window's rows.

    The window ends at the column's current maximum. It starts after the watermark while the
    rows at the watermark's value are the ones already copied (see `unchanged_at`), and at the
    value itself when they changed: rows with that value arrived late, left it, or were edited.
    A lookback starts it that far below the watermark instead. Writes are idempotent for the
    window, so reading a row again never duplicates it.
    """
    cursor = plan.incremental_column
    low = None if previous is None else minus_lookback(previous, table.lookback)
    profile = reader.profile(cursor, low)
    if profile.null_rows and table.null_cursor == "fail":
        raise SchemaError(
            f"job {plan.job!r}, table {plan.source_table!r}: {profile.null_rows} rows have a NULL "
            f"incremental column {cursor!r}; fix them at the source, or set null_cursor: skip "
            f"to leave them out of every run"
        )
    if previous is None:
        return PlannedWindow(
            Window(cursor, None, False, profile.high), profile.null_rows, profile.rows
        )
    # The profile's highest value is at or above `low` in the source's own order; only a
    # lookback (numbers and times, which order alike everywhere) starts `low` below the
    # watermark. Text is never compared here: Python's order is not the source's collation.
    if profile.high is None or (table.lookback > 0 and profile.high < previous.value):
        _refuse_restarted_cursor(plan, reader, previous)
    inclusive = table.lookback > 0 or not unchanged_at(reader, plan, previous, profile.rows_at_low)
    high, rows = profile.high, profile.rows
    if not inclusive:
        rows -= profile.rows_at_low
        if high == low:
            high = None  # only the rows already copied at the watermark: nothing new
    return PlannedWindow(Window(cursor, low, inclusive, high), profile.null_rows, rows)


def unchanged_at(reader: TableReader, plan: CopyPlan, previous: Watermark, rows_now: int) -> bool:
    """Whether the `rows_now` rows at the watermark's value are the ones the watermark's run
    copied: the same count, and (read only then) the same fingerprint. A count that differs
    says without a read that rows arrived at the value or left it."""
    if rows_now != previous.rows_at_value:
        return False
    if rows_now == 0:
        return previous.fingerprint == NO_ROWS
    return fingerprint(reader, plan, previous.value)[1] == previous.fingerprint


def _refuse_restarted_cursor(plan: CopyPlan, reader: TableReader, previous: Watermark) -> None:
    """Stop when the source holds rows, none of them at or above the watermark: the rows at the
    watermark's value are gone, so the table was most likely dropped and recreated (or
    truncated and reloaded) with its incremental values starting again. Copying on would skip
    every new row below the watermark and leave the old copies stale. An empty source table
    copies nothing and goes on."""
    highest = reader.profile(plan.incremental_column, None).high
    if highest is None:
        return
    raise WatermarkError(
        f"job {plan.job!r}, table {plan.source_table!r}: the source's highest "
        f"{plan.incremental_column} is {highest}, below the watermark {previous.text}; the "
        f"table was recreated or reloaded with its values starting again, or its newest rows "
        f"were deleted. Run `copyjob run {plan.job} --table {plan.source_table} "
        f"--full-refresh` to copy it anew (or `copyjob watermark set` to a lower value)"
    )


def fingerprint(reader: TableReader, plan: CopyPlan, value: Any) -> tuple[int, str]:
    """How many rows hold `value` in the incremental column, and a hash of their contents.

    The hash is a sum of per-row hashes, so it needs no ordering and no memory beyond a batch.
    """
    at_value = Window.at(plan.incremental_column, value)
    count, total = 0, 0
    for batch in reader.batches(plan.source_columns, plan.batch_rows, at_value):
        total = (total + _hash_sum(batch)) % FINGERPRINT_MODULUS
        count += batch.num_rows
    return count, f"{count}:{total:032x}"


def _hash_sum(batch: pa.RecordBatch) -> int:
    total = 0
    for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
        digest = hashlib.blake2b(repr(row).encode(), digest_size=16).digest()
        total += int.from_bytes(digest, "big")
    return total


class RowsAt:
    """The fingerprint of the rows at one value of the incremental column (as `fingerprint`
    reads it), taken from a window's batches as they pass to the destination: the rows at the
    watermark a run records lie in its window, so they need no read of their own.

    `result` is None until every batch has passed (the destination stopped early), or where
    the value does not compare in Arrow: the caller reads the rows then."""

    def __init__(self, column: str, value: Any, known: tuple[int, str] | None = None) -> None:
        self.value = value
        self._column = column
        self._count = 0
        self._total = 0
        self._usable = True
        self._complete = False
        self._known = known

    def tap(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        counting = self._known is None  # a known fingerprint needs no batch looked at
        for batch in batches:
            if counting and self._usable:
                self._add(batch)
            yield batch
        self._complete = True

    def _add(self, batch: pa.RecordBatch) -> None:
        values = batch.column(self._column)
        try:
            at_value = batch.filter(pc.equal(values, pa.scalar(self.value, type=values.type)))
        except (pa.ArrowException, TypeError, ValueError):
            self._usable = False
            return
        self._total = (self._total + _hash_sum(at_value)) % FINGERPRINT_MODULUS
        self._count += at_value.num_rows

    def result(self) -> tuple[int, str] | None:
        if self._known is not None:
            return self._known
        if not (self._usable and self._complete):
            return None
        return self._count, f"{self._count}:{self._total:032x}"


def rows_at_watermark(
    kind: WatermarkKind, window: Window, value: Any, previous: Watermark | None
) -> RowsAt | None:
    """Where the fingerprint of the rows at `value`, the watermark a window records, comes
    from without a read of its own: the window's batches (`RowsAt.tap`) when `value` lies in
    the window; the previous watermark when `value` is its value and the window left its rows
    out as unchanged (an open transaction held the watermark there); None otherwise, and for
    text, whose equality is the source's collation, not Arrow's."""
    if value is None or kind == "string" or window.high is None:
        return None
    if window.low is None or value > window.low or (value == window.low and window.low_inclusive):
        return RowsAt(window.column, value)
    if previous is not None and value == previous.value == window.low:
        return RowsAt(window.column, value, (previous.rows_at_value, previous.fingerprint))
    return None


def minus_lookback(watermark: Watermark, lookback: float) -> Any:
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


def describe_window(window: Window) -> str:
    """`updated_at > 2024-01-01 00:00:00 and <= 2024-02-01 00:00:00`, for people."""
    parts = []
    if window.low is not None:
        parts.append(f"{'>=' if window.low_inclusive else '>'} {window.low}")
    if window.high is not None:
        parts.append(f"<= {window.high}")
    return f"{window.column} " + (" and ".join(parts) if parts else "is not null")
