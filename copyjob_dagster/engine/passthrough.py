"""Rows without decoding a value: when the engine streams COPY bytes.

PostgreSQL to PostgreSQL: binary COPY bytes (`streams_bytes`). PostgreSQL to MySQL/MariaDB:
the source's server spells each column as LOAD DATA's CSV (`spelled_text`, see
`stores.pgmysql`), for a full copy read as one stream. Where either says no (another store, a
type without an exact form, a feature that changes rows on the way), rows take the Arrow path.
Never imports Dagster.
"""

import logging
from collections.abc import Callable, Iterator

from copyjob_dagster.engine.planning import CopyPlan
from copyjob_dagster.stores import (
    BinaryCopy,
    CopyChunk,
    Destination,
    PostgresTableReader,
    Source,
    Spelling,
    TextCopy,
    Window,
    same_column_types,
    warn_non_finite,
)

log = logging.getLogger(__name__)


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


def spelled_text(plan: CopyPlan, source: Source, destination: Destination) -> Spelling | None:
    """How the source's server spells the rows of a full copy in the text format the
    destination loads, decided before any row is read; None where it cannot (said at DEBUG).
    A copy that needs Arrow batches, or asks for a split read, takes the Arrow path."""
    text_format = destination.capabilities.loads_text
    if text_format is None or text_format not in source.capabilities.spells_text:
        return None
    if plan.needs_arrow_path or plan.incremental_column is not None:
        return None
    spelled = (
        source.spell(text_format, plan.source_table, plan.source_columns, list(plan.written_schema))
        if plan.split is None
        else "the table asks for a split read (split:)"
    )
    if isinstance(spelled, str):
        log.debug(
            "table %r: rows go through Arrow, not as %s: %s",
            plan.source_table,
            text_format,
            spelled,
        )
        return None
    if not destination.takes_text(text_format):
        return None
    return spelled


def text_copy(
    plan: CopyPlan,
    reader: PostgresTableReader,
    count: Callable[[Iterator[CopyChunk]], Iterator[CopyChunk]],
    spelled: Spelling,
) -> TextCopy:
    chunks = warn_non_finite(
        reader.csv_chunks(spelled.select_list, plan.batch_rows), reader.settings, spelled
    )
    return TextCopy(count(chunks), tuple(plan.destination_schema.names), spelled.hex_columns)
