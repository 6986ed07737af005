"""The incremental contract: which rows a run copies, and how the next run knows where to start.

A window is the rows whose incremental column lies beyond the watermark and at or below the
column's maximum in the run's snapshot. Whether its lower bound is open or closed is decided by
the fingerprint of the rows at the watermark's value (see `watermark.py`). NULLs are never in a
window; a lookback opens the window further down for rows that commit late.
"""

import hashlib
from datetime import timedelta
from decimal import Decimal
from typing import Any

from copyjob_dagster.config import TableConfig
from copyjob_dagster.engine.planning import CopyPlan
from copyjob_dagster.engine.watermark import Watermark
from copyjob_dagster.errors import SchemaError, WatermarkError
from copyjob_dagster.stores import TableReader, Window

FINGERPRINT_MODULUS = 2**128


def plan_window(
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
    low = None if previous is None else minus_lookback(previous, table.lookback)
    profile = reader.profile(cursor, low)
    if profile.null_rows and table.null_cursor == "fail":
        raise SchemaError(
            f"job {plan.job!r}, table {plan.source_table!r}: {profile.null_rows} rows have a NULL "
            f"incremental column {cursor!r}; fix them at the source, or set null_cursor: skip "
            f"to leave them out of every run"
        )
    if previous is None:
        return Window(cursor, None, False, profile.high), profile.null_rows
    # The profile's highest value is at or above `low` in the source's own order; only a
    # lookback (numbers and times, which order alike everywhere) starts `low` below the
    # watermark. Text is never compared here: Python's order is not the source's collation.
    if profile.high is None or (table.lookback > 0 and profile.high < previous.value):
        _refuse_restarted_cursor(plan, reader, previous)
    inclusive = table.lookback > 0 or (
        fingerprint(reader, plan, previous.value)[1] != previous.fingerprint
    )
    high = profile.high
    if not inclusive and high == low:
        high = None  # only the rows already copied at the watermark: nothing new
    return Window(cursor, low, inclusive, high), profile.null_rows


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
    at_value = Window(plan.incremental_column, value, True, value)
    count, total = 0, 0
    for batch in reader.batches(plan.source_columns, plan.batch_rows, at_value):
        for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
            digest = hashlib.blake2b(repr(row).encode(), digest_size=16).digest()
            total = (total + int.from_bytes(digest, "big")) % FINGERPRINT_MODULUS
        count += batch.num_rows
    return count, f"{count}:{total:032x}"


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
