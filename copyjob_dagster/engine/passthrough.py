"""PostgreSQL to PostgreSQL without decoding a value: when the engine streams COPY bytes.

The engine asks `streams_bytes` first; where it says no (another store, a type that differs, a
feature that changes rows on the way), rows take the Arrow path. Never imports Dagster.
"""

from collections.abc import Callable, Iterator

from copyjob_dagster.engine.planning import CopyPlan
from copyjob_dagster.stores import (
    BinaryCopy,
    CopyChunk,
    Destination,
    PostgresTableReader,
    Source,
    Window,
    same_column_types,
)


def streams_bytes(plan: CopyPlan, source: Source, destination: Destination) -> bool:
    """Whether the rows go as PostgreSQL binary COPY bytes from source to destination, never
    decoded: both stores are PostgreSQL, and every column keeps its exact type (into the table
    the plan creates, and into the existing table an incremental copy writes to). A feature
    that changes rows on the way, or adds columns the source does not have, excludes itself
    here, and the copy takes the Arrow path."""
    if plan.needs_arrow_path:
        return False
    same_format = source.capabilities.byte_format == destination.capabilities.byte_format
    if source.capabilities.byte_format is None or not same_format:
        return False
    source_table = source.reflect(plan.source_table)
    if source_table is None:
        return False
    planned = [
        destination.column_type(field, is_key=field.name in plan.primary_key)
        for field in plan.destination_schema
    ]
    if not same_column_types(source_table, plan.source_columns, planned):
        return False
    existing = destination.reflect(plan.destination_table) if plan.incremental_column else None
    if existing is None:
        return True
    kept = [
        existing.c[name].type if name in existing.c else None
        for name in plan.destination_schema.names
    ]
    return same_column_types(source_table, plan.source_columns, kept)


def binary_copy(
    plan: CopyPlan,
    reader: PostgresTableReader,
    count: Callable[[Iterator[CopyChunk]], Iterator[CopyChunk]],
    window: Window | None = None,
) -> BinaryCopy:
    chunks = reader.binary_chunks(plan.source_columns, plan.batch_rows, window)
    return BinaryCopy(count(chunks), tuple(plan.destination_schema.names))
