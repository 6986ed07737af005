"""What the next `mode: cdc` run of a table would do, found without writing anything: a first
snapshot or the changes since the recorded position, the WAL its slot holds back (for MariaDB:
how far the position is behind the binlog's end), and what the source lacks for change
capture."""

from dataclasses import replace

from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.engine.cdc import cdc_problems, slot_name, slot_state
from copyjob_dagster.engine.dryrun import TablePlan
from copyjob_dagster.errors import CopyJobError
from copyjob_dagster.stores import capabilities_of, may_exist, open_destination
from copyjob_dagster.stores.binlog import BinlogState
from copyjob_dagster.stores.pgoutput import lsn_text


def plan_cdc(job: CopyJob, table: TableConfig, position: int | None) -> TablePlan:
    destination = open_destination(job.destination)
    log = capabilities_of(job.destination).applies_changes == "log"
    binlog = capabilities_of(job.source).binlog
    try:
        exists = may_exist(job.destination) and (
            destination.describe(table.destination_name) is not None
        )
        found = TablePlan(
            job=job.name,
            table=table.name,
            destination=destination.location(table.destination_name),
            mode="cdc",
            write="change log" if log else "by key",
            load="cannot run",
            watermark=lsn_text(position) if position is not None and not binlog else None,
            destination_exists=exists,
        )
    finally:
        destination.close()
    try:
        problems = cdc_problems(job, table)
        if problems:
            return replace(found, problems=problems)
        state = slot_state(job, table, position)
        if isinstance(state, BinlogState):  # the position's text, from the same listing
            found = replace(found, watermark=state.text)
    except CopyJobError as exc:
        if exc.transient:
            raise
        return replace(found, problems=[str(exc)])
    if state is None or position is None or not exists or state.confirmed > position:
        load = "snapshot" if binlog else "snapshot (new slot)"
    else:
        load = "changes"
    found = replace(found, load=load, retained_wal_bytes=state.retained_bytes if state else None)
    retained = state.retained_bytes if state is not None else 0
    too_far = retained > table.max_retained_wal_mb * 1024 * 1024
    if binlog and too_far:
        found = replace(
            found,
            problems=[
                f"the recorded binlog position is {retained:,} bytes behind, past "
                f"max_retained_wal_mb ({table.max_retained_wal_mb:g}): run the table"
            ],
        )
    elif too_far:
        found = replace(
            found,
            problems=[
                f"slot {slot_name(job, table)} holds back {retained:,} bytes of "
                f"WAL, past max_retained_wal_mb ({table.max_retained_wal_mb:g}): run the table, "
                f"or drop the slot (copyjob cdc drop {job.name} {table.destination_name})"
            ],
        )
    return found
