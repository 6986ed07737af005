"""`mode: cdc` tables in Dagster: the position in the metadata, the slot moved after recording,
and the check that warns when a slot holds back too much WAL.

The position (an LSN) is recorded like a watermark, in the materialization's metadata. The
table's work yields the materialization, and `parallel` lets it go on only once Dagster stored
the event: only then is the slot advanced. A run killed before that reads the same changes
again next time (the engine makes that harmless).
"""

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dagster as dg

from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.engine.cdc import CdcResult, capture_changes, confirm_position, slot_state
from copyjob_dagster.errors import CopyJobError
from copyjob_dagster.stores import capabilities_of
from copyjob_dagster.stores.binlog import parse_position
from copyjob_dagster.stores.pgoutput import lsn_value

POSITION = "copyjob/cdc_position"
POSITION_BEFORE = "copyjob/cdc_position_before"
SLOT = "copyjob/cdc_slot"
TRANSACTIONS = "copyjob/cdc_transactions"
ROWS_UPSERTED = "copyjob/rows_upserted"
ROWS_DELETED = "copyjob/rows_deleted"
TRUNCATES = "copyjob/truncates"
RETAINED_WAL_BYTES = "copyjob/retained_wal_bytes"
SLOT_CHECK = "cdc_slot"


def cdc_metadata(result: CdcResult) -> dict[str, dg.MetadataValue]:
    metadata = {
        POSITION: dg.MetadataValue.text(result.position_text),
        POSITION_BEFORE: dg.MetadataValue.text(
            result.text_of(result.position_before)
            if result.position_before is not None
            else "(none: initial snapshot)"
        ),
        SLOT: dg.MetadataValue.text(result.slot),
        TRANSACTIONS: dg.MetadataValue.int(result.transactions),
        ROWS_UPSERTED: dg.MetadataValue.int(result.counts.upserted),
        ROWS_DELETED: dg.MetadataValue.int(result.counts.deleted),
        TRUNCATES: dg.MetadataValue.int(result.counts.truncated),
    }
    if result.retained_bytes is not None:
        metadata[RETAINED_WAL_BYTES] = dg.MetadataValue.int(result.retained_bytes)
    return metadata


def reads_binlog(job: CopyJob) -> bool:
    """Whether the job's changes come from MariaDB's binlog (no slot; file and offset)."""
    return capabilities_of(job.source).binlog


def position_from_metadata(metadata: Mapping[str, Any] | None) -> int | None:
    """The position a materialization recorded, or None (none yet: the next run snapshots)."""
    if not metadata or POSITION not in metadata:
        return None
    text = str(metadata[POSITION].value)
    try:
        return parse_position(text) if ":" in text else lsn_value(text)
    except ValueError:
        raise CopyJobError(
            f"recorded position {text!r} is not an LSN (like 0/16B3748) nor a binlog position "
            f"(like binlog.000042:1234)"
        ) from None


def run_cdc(
    job: CopyJob,
    table: TableConfig,
    previous: Mapping[str, Any] | None,
    full_refresh: bool,
    progress: Callable[[int, int | None, float], None],
    record: Callable[[CdcResult], dg.MaterializeResult],
) -> Iterator[dg.MaterializeResult]:
    """Capture, yield the materialization (recorded before the work goes on), move the slot."""
    position = None if full_refresh else position_from_metadata(previous)
    result = capture_changes(job, table, position, full_refresh=full_refresh, progress=progress)
    yield record(result)
    confirm_position(job, table, result.position)


def check_spec(job: CopyJob, table: TableConfig, key: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        SLOT_CHECK,
        asset=key,
        description=f"The table's replication slot holds back at most "
        f"{table.max_retained_wal_mb:g} MB of WAL at the source (for a MariaDB source: the "
        f"recorded binlog position is at most that far behind).",
    )


def slot_check(
    table: TableConfig, retained: int | None, binlog: bool = False
) -> dg.AssetCheckResult:
    """Warn past the table's threshold, or when there is no slot (no position, for a MariaDB
    source: there `retained` is how far the recorded position is behind the binlog's end)."""
    if retained is None:
        return dg.AssetCheckResult(
            check_name=SLOT_CHECK,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                "the table has no recorded binlog position (its next run takes a snapshot)"
                if binlog
                else "the table has no replication slot (its next run takes a new snapshot)"
            ),
        )
    limit = table.max_retained_wal_mb * 1024 * 1024
    megabytes = retained / (1024 * 1024)
    passed = retained <= limit
    held = (
        f"the recorded position is {megabytes:,.1f} MB of binlog behind"
        if binlog
        else f"the slot holds back {megabytes:,.1f} MB of WAL"
    )
    fix = "run the table" if binlog else "run the table, or drop its slot (copyjob cdc drop)"
    return dg.AssetCheckResult(
        check_name=SLOT_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=held
        + ("" if passed else f", past max_retained_wal_mb ({table.max_retained_wal_mb:g})")
        + ("" if passed else f": {fix}"),
        metadata={RETAINED_WAL_BYTES: retained},
    )


def live_slot_check(
    job: CopyJob, table: TableConfig, latest: Mapping[str, Any] | None = None
) -> dg.AssetCheckResult:
    """The check now (`latest`: the last materialization's metadata, for a binlog position)."""
    binlog = reads_binlog(job)
    try:
        position = position_from_metadata(latest) if binlog else None
        state = slot_state(job, table, position)
    except CopyJobError as exc:
        return dg.AssetCheckResult(
            check_name=SLOT_CHECK,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"could not read the slot: {exc}",
        )
    return slot_check(table, state.retained_bytes if state else None, binlog)
