"""What makes a copy job run by itself: its cron schedule, and its new-data sensor.

Both target the job's asset job (named after the copy job), so their runs show under it.

The sensor asks the source, for each table, one question: how many rows lie beyond the
watermark of the table's latest copy (one `COUNT(*)`, which an index on the incremental column
answers without a scan). It requests one run of just the tables that have such rows and no copy
already on the way. Its JSON cursor remembers, per table, the watermark and the count it last
requested a run for, so the same rows are asked for once; if that run fails, the next rows to
arrive ask again. The run key is derived from the same values, so a re-evaluated tick cannot
launch a second run. A `mode: cdc` table asks its replication slot instead whether changes
wait there (a peek, which consumes nothing), and its marker is the WAL position they were seen
at: a run that fails is asked again once the WAL has moved. Rows that commit late at the
watermark's value (or, with `lookback`, below it) do not wake the sensor: the next copy,
whatever starts it, takes them.
"""

import hashlib
import json

import dagster as dg

from copyjob_dagster.config import CopyJob, ScheduleConfig, SensorConfig, Status
from copyjob_dagster.defs import naming
from copyjob_dagster.defs.cdc import position_from_metadata
from copyjob_dagster.defs.operations import recorded_watermark
from copyjob_dagster.engine import Watermark, rows_beyond
from copyjob_dagster.errors import CopyJobError


def schedule_name(job: CopyJob) -> str:
    return f"{job.name}_schedule"


def sensor_name(job: CopyJob) -> str:
    return f"{job.name}_new_data"


def build_schedule(job: CopyJob, schedule: ScheduleConfig) -> dg.ScheduleDefinition:
    """The job's cron schedule, which copies every table of the job."""
    return dg.ScheduleDefinition(
        name=schedule_name(job),
        cron_schedule=schedule.cron,
        execution_timezone=schedule.timezone,
        job_name=job.name,
        default_status=_schedule_status(schedule.status),
        description=f"Copies every table of {job.name} at `{schedule.cron}` ({schedule.timezone}).",
    )


def build_new_data_sensor(job: CopyJob, sensor: SensorConfig) -> dg.SensorDefinition:
    """The job's sensor, which copies the tables whose source has rows beyond their watermark."""

    @dg.sensor(
        name=sensor_name(job),
        job_name=job.name,
        minimum_interval_seconds=sensor.minimum_interval_seconds,
        default_status=_sensor_status(sensor.status),
        description=(
            f"Copies the tables of {job.name} whose source ({job.source.masked_url}) has rows "
            f"beyond the watermark of their latest copy."
        ),
    )
    def new_data(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        return evaluate_new_data(job, context)

    return new_data


def evaluate_new_data(job: CopyJob, context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """One tick of the new-data sensor: a run of the tables with new rows, or why there is none."""
    requested: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    keys = {table.destination_name: naming.asset_key(job, table) for table in job.tables}
    watermarks, positions, busy, problems = _recorded(context.instance, keys)
    try:
        counts = rows_beyond(job, watermarks, positions)
    except CopyJobError as exc:
        context.log.warning(f"job {job.name!r}: {exc}")
        return dg.SensorResult(skip_reason=f"the source cannot be reached: {exc}")

    stale: dict[str, str] = {}
    for found in counts:
        name = found.table.destination_name
        watermark = watermarks[name]
        marker = f"{watermark.text if watermark else ''}+{found.rows}"
        if found.at is not None:  # mode: cdc: changes seen at a WAL position
            marker += f"@{found.at}"
        if found.error is not None:
            problems.append(f"table {found.table.name!r}: {found.error}")
        elif found.rows and requested.get(name) == marker:
            busy.append(name)  # its run was requested, and has not copied the rows yet
        elif found.rows:
            stale[name] = marker
    for problem in problems:
        context.log.warning(f"job {job.name!r}, {problem}")
    cursor = json.dumps(
        {name: marker for name, marker in {**requested, **stale}.items() if name in keys},
        sort_keys=True,
    )
    if not stale:
        return dg.SensorResult(skip_reason=_why_no_run(len(keys), busy, problems), cursor=cursor)
    digest = hashlib.sha256(json.dumps(stale, sort_keys=True).encode()).hexdigest()[:16]
    run = dg.RunRequest(
        run_key=f"{job.name}:{digest}",
        asset_selection=[keys[name] for name in sorted(stale)],
    )
    context.log.info(f"new rows in {', '.join(sorted(stale))}")
    return dg.SensorResult(run_requests=[run], cursor=cursor)


def _recorded(
    instance: dg.DagsterInstance, keys: dict[str, dg.AssetKey]
) -> tuple[dict[str, Watermark | None], dict[str, int | None], list[str], list[str]]:
    """From the instance: each table's watermark of record (its latest copy's, or that of a
    reset or set recorded after it), the change position its latest copy recorded (`mode:
    cdc`), the tables whose copy is under way (left out), and the tables whose watermark cannot
    be read."""
    entries = {
        r.asset_entry.asset_key: r.asset_entry for r in instance.get_asset_records([*keys.values()])
    }
    watermarks: dict[str, Watermark | None] = {}
    positions: dict[str, int | None] = {}
    busy, problems = [], []
    for name, key in keys.items():
        entry = entries.get(key)
        latest = entry.last_materialization if entry else None
        if entry is not None and _copy_under_way(
            instance, entry.last_run_id, latest.run_id if latest else None
        ):
            busy.append(name)
            continue
        try:
            watermarks[name] = recorded_watermark(
                instance, key, entry.last_materialization_record if entry else None
            )
            copied = latest.asset_materialization if latest else None
            positions[name] = position_from_metadata(copied.metadata if copied else None)
        except CopyJobError as exc:
            problems.append(f"table {name!r}: {exc}")
    return watermarks, positions, busy, problems


def _copy_under_way(
    instance: dg.DagsterInstance, last_run: str | None, last_copy_run: str | None
) -> bool:
    """Whether the latest run planned to copy the table (Dagster records it as the asset's last
    run when the run is created) has not copied it yet and has not finished."""
    if last_run is None or last_run == last_copy_run:
        return False
    run = instance.get_run_by_id(last_run)
    return run is not None and not run.is_finished


def _why_no_run(tables: int, busy: list[str], problems: list[str]) -> str:
    reasons = [f"no new rows in {tables - len(busy) - len(problems)} of {tables} table(s)"]
    if busy:
        reasons.append(f"a copy is already requested or under way for {', '.join(busy)}")
    if problems:
        reasons.append(f"{len(problems)} table(s) could not be checked: {'; '.join(problems)}")
    return "; ".join(reasons)


def _schedule_status(status: Status) -> dg.DefaultScheduleStatus:
    return dg.DefaultScheduleStatus(status.upper())


def _sensor_status(status: Status) -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus(status.upper())
