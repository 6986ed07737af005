"""The deletion pass of an incremental copy: rows whose key left the source.

The source's keys are read in the same snapshot as the copy's window and streamed to the
destination, which finds the rows whose key is gone (a database by an anti-join against a
staging table, a Parquet folder by hashed buckets on disk): neither key set is held in memory.
The pass is counted before the window is written: when it would delete or mark more than the
table's `max_delete_share` of the destination's live rows, the run stops with nothing written,
unless it was told to go ahead. After the window is written the rows are deleted or marked in
one transaction. A key the run copied is in the snapshot's keys, so its rows are never touched.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pyarrow as pa

from copyjob_dagster.engine.planning import CopyPlan
from copyjob_dagster.errors import MassDeleteError
from copyjob_dagster.stores import DeletePolicy, Destination, KeyDiff, TableReader


@contextmanager
def deletion_pass(
    plan: CopyPlan,
    destination: Destination,
    reader: TableReader,
    *,
    deleted_at: datetime,
    closed_at: Any,
    allow_mass_delete: bool,
    initial: bool,
) -> Iterator[KeyDiff | None]:
    """The pending deletions of `plan`'s table, checked against the guard; None when the table
    ignores deletions, or on an initial load (the table is replaced by the source's rows).
    Soft deletion marks rows with `deleted_at`; in an SCD2 table it closes the current version
    at `closed_at` (the run's upper bound, a value of the incremental column's type)."""
    if plan.deletes == "ignore" or initial:
        yield None
        return
    key_schema = pa.schema([plan.written_schema.field(name) for name in plan.primary_key])
    source_names = {c.destination: c.source for c in plan.columns}
    source_keys = (
        pa.RecordBatch.from_arrays(batch.columns, schema=key_schema)
        for batch in reader.batches(
            [source_names[name] for name in plan.primary_key], plan.batch_rows
        )
    )
    policy = DeletePolicy(
        mode=plan.deletes,  # type: ignore[arg-type]  (not "ignore" here)
        key=plan.primary_key,
        stamp=closed_at if plan.versions is not None else deleted_at,
        marker=plan.deleted_column if plan.versions is None else None,
        versions=plan.versions,
    )
    with destination.diff_keys(plan.destination_table, key_schema, source_keys, policy) as diff:
        _guard(plan, diff, allow_mass_delete)
        yield diff


def _guard(plan: CopyPlan, diff: KeyDiff, allow_mass_delete: bool) -> None:
    if allow_mass_delete or not diff.live or diff.pending / diff.live <= plan.max_delete_share:
        return
    rows = "current versions" if plan.versions is not None else "rows"
    raise MassDeleteError(
        f"job {plan.job!r}, table {plan.source_table!r}: {diff.pending:,} of the destination's "
        f"{diff.live:,} {rows} ({diff.pending / diff.live:.0%}) are no longer at the source, "
        f"more than max_delete_share {plan.max_delete_share:.0%}; nothing was written. If the "
        f"source is right, run again with --allow-mass-delete (run config allow_mass_delete: "
        f"true), or raise max_delete_share"
    )
