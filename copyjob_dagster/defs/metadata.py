"""A `CopyResult` as materialization metadata: Dagster's standard table keys first, ours second.

`TableMetadataSet` is not exported by dagster 1.13, so the standard `dagster/` keys are written
here with the value types that the UI renders. Our own keys start with `copyjob/`.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from copyjob_dagster.engine import CopyResult, Watermark, describe_window, parse_watermark

ROW_COUNT = "dagster/row_count"
TABLE_NAME = "dagster/table_name"
COLUMN_SCHEMA = "dagster/column_schema"
COLUMN_LINEAGE = "dagster/column_lineage"

ROWS_READ = "copyjob/rows_read"
ROWS_WRITTEN = "copyjob/rows_written"
SECONDS = "copyjob/seconds"
ROWS_PER_SECOND = "copyjob/rows_per_second"
SOURCE = "copyjob/source"
DESTINATION = "copyjob/destination"
SOURCE_TABLE = "copyjob/source_table"
LOAD = "copyjob/load"
WATERMARK = "copyjob/watermark"
WATERMARK_TYPE = "copyjob/watermark_type"
WATERMARK_ROWS_AT_VALUE = "copyjob/watermark_rows_at_value"
WATERMARK_FINGERPRINT = "copyjob/watermark_fingerprint"
WATERMARK_BEFORE = "copyjob/watermark_before"
WINDOW = "copyjob/window"
NULL_CURSOR_ROWS = "copyjob/null_cursor_rows"
DELETED_ROWS = "copyjob/deleted_rows"
SOFT_DELETED_ROWS = "copyjob/soft_deleted_rows"
RESTORED_ROWS = "copyjob/restored_rows"
PARTS = "copyjob/parts"
# Where the stores number table versions (Delta): the version read, and the commit made.
SOURCE_VERSION = "copyjob/source_version"
DESTINATION_VERSION = "copyjob/destination_version"
ROWS_INSERTED = "copyjob/rows_inserted"
ROWS_UPDATED = "copyjob/rows_updated"
ROWS_DELETED = "copyjob/rows_deleted"
# The transactions open at the source when the copy began (see late_commits.py).
OPEN_TRANSACTION_BOUND = "copyjob/open_transaction_bound"
HELD_BACK_SECONDS = "copyjob/held_back_seconds"
OLDEST_OPEN_TRANSACTION = "copyjob/oldest_open_transaction"
LATE_COMMIT_WARNING = "copyjob/late_commit_warning"
# A state operation (an observation), or a backfill (a materialization): who asked, and why.
OPERATION = "copyjob/operation"
REQUESTED_BY = "copyjob/requested_by"
REASON = "copyjob/reason"
RUN_TAGS = "copyjob/run_tags"
FAILED_TABLES = "copyjob/failed_tables"  # on a failed step: the tables that failed


def copy_metadata(result: CopyResult, source_key: dg.AssetKey) -> dict[str, dg.MetadataValue]:
    """Everything a user checks after a copy; URLs are shown with their passwords masked."""
    plan = result.plan
    return {
        ROW_COUNT: dg.MetadataValue.int(result.rows_written),
        TABLE_NAME: dg.MetadataValue.text(result.destination_location),
        COLUMN_SCHEMA: dg.MetadataValue.table_schema(
            dg.TableSchema(
                columns=[
                    dg.TableColumn(
                        name=field.name,
                        type=str(field.type),
                        constraints=dg.TableColumnConstraints(nullable=field.nullable),
                    )
                    for field in plan.written_schema
                ]
            )
        ),
        COLUMN_LINEAGE: dg.MetadataValue.column_lineage(
            dg.TableColumnLineage(
                deps_by_column={
                    column.destination: [dg.TableColumnDep(source_key, column.source)]
                    for column in plan.columns
                }
            )
        ),
        ROWS_READ: dg.MetadataValue.int(result.rows_read),
        ROWS_WRITTEN: dg.MetadataValue.int(result.rows_written),
        SECONDS: dg.MetadataValue.float(round(result.seconds, 3)),
        ROWS_PER_SECOND: dg.MetadataValue.int(
            int(result.rows_read / result.seconds) if result.seconds > 0 else 0
        ),
        SOURCE: dg.MetadataValue.text(result.source_url),
        SOURCE_TABLE: dg.MetadataValue.text(plan.source_table),
        DESTINATION: dg.MetadataValue.text(result.destination_url),
        LOAD: dg.MetadataValue.text(result.load),
        **_watermark_metadata(result),
        **_deletion_metadata(result),
        **late_commit_metadata(result),
        **({PARTS: dg.MetadataValue.int(result.parts)} if plan.split is not None else {}),
        **_version_metadata(result),
    }


def _version_metadata(result: CopyResult) -> dict[str, dg.MetadataValue]:
    """The table versions read and committed, so the UI's history lines up with the tables'."""
    metadata = {}
    if result.source_version is not None:
        metadata[SOURCE_VERSION] = dg.MetadataValue.int(result.source_version)
    if result.commit is not None:
        metadata |= {
            DESTINATION_VERSION: dg.MetadataValue.int(result.commit.version),
            ROWS_INSERTED: dg.MetadataValue.int(result.commit.inserted),
            ROWS_UPDATED: dg.MetadataValue.int(result.commit.updated),
            ROWS_DELETED: dg.MetadataValue.int(result.commit.deleted),
        }
    return metadata


def _deletion_metadata(result: CopyResult) -> dict[str, dg.MetadataValue]:
    """Rows deleted, marked and unmarked by the deletion pass, for tables that have one."""
    if result.deletions is None:
        return {}
    return {
        DELETED_ROWS: dg.MetadataValue.int(result.deletions.deleted),
        SOFT_DELETED_ROWS: dg.MetadataValue.int(result.deletions.soft_deleted),
        RESTORED_ROWS: dg.MetadataValue.int(result.deletions.restored),
    }


def late_commit_metadata(result: CopyResult) -> dict[str, dg.MetadataValue]:
    """The bound the open transactions set, how far it held the watermark back, and by whom."""
    late = result.late_commits
    if late is None:
        return {}
    bound = late.transactions.bound
    metadata = {
        OPEN_TRANSACTION_BOUND: dg.MetadataValue.text(
            bound.isoformat(sep=" ", timespec="microseconds") if bound else "(unknown)"
        ),
        HELD_BACK_SECONDS: dg.MetadataValue.float(round(late.held_back.total_seconds(), 3)),
    }
    if late.blocking is not None:
        metadata[OLDEST_OPEN_TRANSACTION] = dg.MetadataValue.text(late.blocking.describe())
    if late.warning is not None:
        metadata[LATE_COMMIT_WARNING] = dg.MetadataValue.text(late.warning)
    return metadata


def _watermark_metadata(result: CopyResult) -> dict[str, dg.MetadataValue]:
    if result.plan.incremental_column is None and result.watermark is None:
        return {}  # a full copy (a copy by a change feed records the table version read)
    metadata = {
        NULL_CURSOR_ROWS: dg.MetadataValue.int(result.null_cursor_rows),
        WATERMARK_BEFORE: dg.MetadataValue.text(
            result.watermark_before.text if result.watermark_before else "(none: initial load)"
        ),
    }
    if result.window is not None:
        metadata[WINDOW] = dg.MetadataValue.text(describe_window(result.window))
    if result.watermark is not None:
        metadata |= {
            WATERMARK: dg.MetadataValue.text(result.watermark.text),
            WATERMARK_TYPE: dg.MetadataValue.text(result.watermark.kind),
            WATERMARK_ROWS_AT_VALUE: dg.MetadataValue.int(result.watermark.rows_at_value),
            WATERMARK_FINGERPRINT: dg.MetadataValue.text(result.watermark.fingerprint),
        }
    return metadata


def watermark_from_metadata(metadata: Mapping[str, Any]) -> Watermark | None:
    """The watermark a materialization recorded, or None if it recorded none."""
    if WATERMARK not in metadata or WATERMARK_TYPE not in metadata:
        return None
    kind = str(metadata[WATERMARK_TYPE].value)
    text = str(metadata[WATERMARK].value)
    parse_watermark(kind, text)  # raises WatermarkError for a tampered or mistyped value
    rows = metadata.get(WATERMARK_ROWS_AT_VALUE)
    fingerprint = metadata.get(WATERMARK_FINGERPRINT)
    return Watermark(
        kind,  # type: ignore[arg-type]  (parse has checked it)
        text,
        int(rows.value) if rows is not None else -1,
        # Without a fingerprint, the next run re-reads the watermark's value: safe, not minimal.
        str(fingerprint.value) if fingerprint is not None else "",
    )
