"""Upkeep of a table's destination (a Delta table's compaction and vacuum, see
`stores/delta_upkeep.py`): after a copy once due by the table's `maintenance:`, or now, on
demand (`copyjob maintain`). The caller holds the table's lock. Never imports Dagster."""

from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.engine.table_stores import TableStores, destination_of
from copyjob_dagster.errors import DestinationError
from copyjob_dagster.stores import MaintainedTables, Upkeep


def maintain_table(
    job: CopyJob, table: TableConfig, *, now: bool = False, stores: TableStores | None = None
) -> Upkeep | None:
    """Compact and vacuum the table's destination when its `maintenance:` says it is due (or
    `now`, with its retention); None when not due, or when the table has no `maintenance:`
    and `now` is not asked."""
    policy = job.maintenance_for(table)
    if policy is None and not now:
        return None
    with destination_of(job, stores) as destination:
        if not destination.capabilities.maintenance or not isinstance(
            destination, MaintainedTables
        ):
            raise DestinationError(
                f"job {job.name!r}, table {table.name!r}: a {job.destination.technology} "
                f"destination has no compaction nor vacuum (they are upkeep of Delta tables)"
            )
        return destination.maintain(
            table.destination_name,
            policy.every if policy else 1,
            policy.retention_hours if policy else None,
            now=now,
        )
