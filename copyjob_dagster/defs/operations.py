"""Auditable state operations on a table's watermark, and the watermark of record.

Resetting a table's watermark (the next run loads the table anew) or setting it to a chosen
value (a rewind or a skip) is not a copy, so it is recorded as an `AssetObservation` of the
table's asset, never as a materialization: the UI does not show the table as freshly copied, and
its row count, freshness and copy history stay those of its latest copy. The observation holds
what was done, the watermark before and after, the reason, and who asked (the OS user for the
command line; the run's id and tags for the launchpad); Dagster stamps when.

The watermark of record is the latest materialization's, unless a state operation was recorded
after it. A state operation holds the table's copy lock while it reads the old watermark and
records the new one, so it never races a copy; a copy that follows reads the new watermark, and
its materialization becomes the record again. A backfill is a copy (a materialization) that
carries the watermark forward; it records who asked and why with the same keys.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.defs import naming
from copyjob_dagster.defs.metadata import (
    OPERATION,
    REASON,
    REQUESTED_BY,
    RUN_TAGS,
    WATERMARK,
    WATERMARK_BEFORE,
    WATERMARK_TYPE,
    watermark_from_metadata,
)
from copyjob_dagster.engine import (
    Watermark,
    incremental_kind,
    require_destination_table,
    require_incremental,
    typed_watermark,
)
from copyjob_dagster.errors import CopyJobError, WatermarkError

NO_WATERMARK = "(none: the next run loads the table anew)"
_PAGE = 100


@dataclass(frozen=True)
class StateOperation:
    """One recorded reset or set of a table's watermark."""

    job: str
    table: str
    operation: str  # "watermark reset" or "watermark set"
    watermark_before: str
    watermark_after: str
    reason: str
    requested_by: str
    run_id: str | None  # the launchpad's run; None from the command line
    run_tags: dict[str, str] | None
    recorded: float  # seconds since the epoch


def watermark_of_record(instance: dg.DagsterInstance, key: dg.AssetKey) -> Watermark | None:
    """The watermark the next copy starts from: the latest materialization's, or that of a
    state operation recorded after it."""
    return record_of(instance, key)[0]


def record_of(
    instance: dg.DagsterInstance, key: dg.AssetKey
) -> tuple[Watermark | None, Mapping[str, Any] | None]:
    """The watermark of record, and the metadata of the asset's latest materialization (None
    before the first), from one read of it."""
    copies = instance.fetch_materializations(key, limit=1).records
    latest = copies[0] if copies else None
    metadata = latest.asset_materialization.metadata if latest is not None else None
    return recorded_watermark(instance, key, latest), metadata


def recorded_watermark(
    instance: dg.DagsterInstance, key: dg.AssetKey, latest_copy: dg.EventLogRecord | None
) -> Watermark | None:
    """`watermark_of_record`, given the record of the asset's latest materialization."""
    operation = _latest_operation(instance, key, latest_copy.storage_id if latest_copy else None)
    if operation is not None:
        return watermark_from_metadata(operation.asset_observation.metadata)
    if latest_copy is None:
        return None
    return watermark_from_metadata(latest_copy.asset_materialization.metadata)


def requested_watermark(
    job: CopyJob, table: TableConfig, value: str | None, reason: str | None
) -> Watermark | None:
    """Check a requested operation before anything is locked or recorded: the table is
    incremental, a reason is given, and a value fits the incremental column (read live)."""
    if not (reason or "").strip():
        raise CopyJobError(
            f"job {job.name!r}, table {table.name!r}: say why the watermark changes (a reason); "
            f"it is kept in the table's history"
        )
    if value is None:
        require_incremental(job, table)
        return None
    watermark = typed_watermark(job.name, table, incremental_kind(job, table), value)
    require_destination_table(job, table)
    return watermark


def operation_event(
    instance: dg.DagsterInstance,
    job: CopyJob,
    table: TableConfig,
    new: Watermark | None,
    reason: str,
    requested_by: str,
    run_tags: Mapping[str, str] | None = None,
) -> dg.AssetObservation:
    """The observation that records the operation; call it, and record the event, under the
    table's copy lock. The old watermark is the one of record now (or why it is unreadable)."""
    key = naming.asset_key(job, table)
    try:
        old = watermark_of_record(instance, key)
        before = old.text if old else NO_WATERMARK
    except WatermarkError as exc:
        before = f"(unreadable: {exc})"
    metadata: dict[str, Any] = {
        OPERATION: "watermark reset" if new is None else "watermark set",
        WATERMARK_BEFORE: before,
        REASON: reason.strip(),
        REQUESTED_BY: requested_by,
    }
    if new is not None:
        metadata |= {WATERMARK: new.text, WATERMARK_TYPE: new.kind}
    if run_tags is not None:
        metadata[RUN_TAGS] = dg.MetadataValue.json(dict(run_tags))
    return dg.AssetObservation(asset_key=key, metadata=metadata)


def backfill_metadata(
    requested_by: str, reason: str | None, run_tags: Mapping[str, str]
) -> dict[str, dg.MetadataValue]:
    """Who asked for a backfill and why, beside the copy's own metadata."""
    metadata = {
        OPERATION: dg.MetadataValue.text("backfill"),
        REQUESTED_BY: dg.MetadataValue.text(requested_by),
        RUN_TAGS: dg.MetadataValue.json(dict(run_tags)),
    }
    if reason and reason.strip():
        metadata[REASON] = dg.MetadataValue.text(reason.strip())
    return metadata


def read_operations(
    instance: dg.DagsterInstance, job: CopyJob, table: TableConfig, limit: int
) -> list[StateOperation]:
    """The table's latest `limit` state operations, newest first."""
    key = naming.asset_key(job, table)
    found: list[StateOperation] = []
    cursor = None
    while len(found) < limit:
        page = instance.fetch_observations(key, limit=_PAGE, cursor=cursor)
        for record in page.records:
            metadata = record.asset_observation.metadata
            if OPERATION in metadata and len(found) < limit:
                found.append(_operation(job, table, record, metadata))
        if not page.has_more:
            break
        cursor = page.cursor
    return found


def _operation(
    job: CopyJob, table: TableConfig, record: Any, metadata: Mapping[str, Any]
) -> StateOperation:
    def text(name: str) -> str:
        entry = metadata.get(name)
        return "" if entry is None else str(entry.value)

    tags = metadata.get(RUN_TAGS)
    return StateOperation(
        job=job.name,
        table=table.destination_name,
        operation=text(OPERATION),
        watermark_before=text(WATERMARK_BEFORE),
        watermark_after=text(WATERMARK) or NO_WATERMARK,
        reason=text(REASON),
        requested_by=text(REQUESTED_BY),
        run_id=record.run_id or None,
        run_tags=None if tags is None else dict(tags.value),
        recorded=record.timestamp,
    )


def _latest_operation(
    instance: dg.DagsterInstance, key: dg.AssetKey, after_storage_id: int | None
) -> Any:
    """The newest state operation recorded after the given event, or None."""
    records_filter = dg.AssetRecordsFilter(asset_key=key, after_storage_id=after_storage_id)
    cursor = None
    while True:
        page = instance.fetch_observations(records_filter, limit=_PAGE, cursor=cursor)
        for record in page.records:
            if OPERATION in record.asset_observation.metadata:
                return record
        if not page.has_more:
            return None
        cursor = page.cursor
