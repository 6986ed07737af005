"""The columns a copy adds to each batch: SCD2 validity, the soft-deletion mark, audit columns.

They are Arrow columns appended to every batch on its way to the destination, in the order of
`CopyPlan.added_fields`. The run id comes from the caller as a plain string: the engine does not
know Dagster.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from copyjob_dagster.engine.planning import CopyPlan


@dataclass(frozen=True)
class Stamp:
    """What this run writes into its rows' audit columns."""

    run_id: str | None
    loaded_at: datetime
    window_from: str | None = None
    window_to: str | None = None


def stamped(
    batches: Iterable[pa.RecordBatch], plan: CopyPlan, stamp: Stamp
) -> Iterator[pa.RecordBatch]:
    """The batches with the plan's added columns appended."""
    if not plan.added_fields:
        yield from batches
        return
    schema = plan.written_schema
    for batch in batches:
        columns = [*batch.columns, *_added_columns(batch, plan, stamp)]
        yield pa.RecordBatch.from_arrays(columns, schema=schema)


def _added_columns(batch: pa.RecordBatch, plan: CopyPlan, stamp: Stamp) -> list[pa.Array]:
    rows = batch.num_rows
    columns: list[pa.Array] = []
    if plan.versions is not None:
        cursor = batch.column(plan.destination_cursor)
        columns += [cursor, pa.nulls(rows, cursor.type), pa.repeat(pa.scalar(True), rows)]
    if plan.deleted_column and plan.versions is None:
        columns.append(pa.nulls(rows, pa.timestamp("us", "UTC")))
    audit = plan.audit
    if audit is not None:
        values = {
            audit.run_id: (stamp.run_id, pa.string()),
            audit.loaded_at: (stamp.loaded_at, pa.timestamp("us", "UTC")),
            audit.window_from: (stamp.window_from, pa.string()),
            audit.window_to: (stamp.window_to, pa.string()),
        }
        columns += [
            pa.repeat(pa.scalar(value, kind), rows)
            for name, (value, kind) in values.items()
            if name
        ]
    return columns
