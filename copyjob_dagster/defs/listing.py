"""The copy jobs as `copyjob list` shows them: tables, mode, schedule, last run, watermarks.

The last run and the watermarks are read from the Dagster instance: the job's newest run
(whoever launched it) and each table's latest materialization.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.defs import cdc, naming
from copyjob_dagster.defs.assets import latest_metadata, latest_watermark
from copyjob_dagster.errors import WatermarkError


@dataclass(frozen=True)
class TableEntry:
    name: str
    destination: str
    watermark: str | None


@dataclass(frozen=True)
class JobEntry:
    name: str
    mode: str
    schedule: str | None
    sensor_seconds: int | None  # the new-data sensor's interval, when the job has one
    source: str
    destination: str
    last_run_status: str | None
    last_run_started: str | None  # ISO 8601, UTC
    last_run_id: str | None
    tables: list[TableEntry]


def list_jobs(instance: dg.DagsterInstance, jobs: list[CopyJob]) -> list[JobEntry]:
    return [_entry(instance, job) for job in jobs]


def _entry(instance: dg.DagsterInstance, job: CopyJob) -> JobEntry:
    runs = instance.get_run_records(filters=dg.RunsFilter(job_name=job.name), limit=1)
    last = runs[0] if runs else None
    started = last.start_time if last else None
    schedule = None
    if job.schedule:
        schedule = job.schedule.cron + (
            f" ({job.schedule.timezone})" if job.schedule.timezone != "UTC" else ""
        )
    return JobEntry(
        name=job.name,
        mode=job.mode,
        schedule=schedule,
        sensor_seconds=job.sensor.minimum_interval_seconds if job.sensor else None,
        source=job.source.masked_url,
        destination=job.destination.masked_url,
        last_run_status=last.dagster_run.status.value.lower() if last else None,
        last_run_started=datetime.fromtimestamp(started, UTC).isoformat() if started else None,
        last_run_id=last.dagster_run.run_id if last else None,
        tables=[
            TableEntry(table.name, table.destination_name, _watermark(instance, job, table))
            for table in job.tables
        ],
    )


def _watermark(instance: dg.DagsterInstance, job: CopyJob, table: TableConfig) -> str | None:
    if job.is_cdc(table):
        return _position(instance, job, table)
    try:
        watermark = latest_watermark(instance, naming.asset_key(job, table))
    except WatermarkError as exc:
        return f"(unreadable: {exc})"
    return watermark.text if watermark else None


def _position(instance: dg.DagsterInstance, job: CopyJob, table: TableConfig) -> str | None:
    """A `mode: cdc` table's position, and the WAL its slot held back after the last run (for
    a MariaDB source: how far the position was behind the binlog's end)."""
    metadata = latest_metadata(instance, naming.asset_key(job, table))
    if not metadata or cdc.POSITION not in metadata:
        return None
    binlog = cdc.reads_binlog(job)
    text = f"{'binlog' if binlog else 'LSN'} {metadata[cdc.POSITION].value}"
    retained = metadata.get(cdc.RETAINED_WAL_BYTES)
    if retained is not None:
        n = int(retained.value)
        text += f" ({n:,} bytes of binlog behind)" if binlog else f" (slot held {n:,} bytes of WAL)"
    return text
