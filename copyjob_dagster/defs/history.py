"""Run history and lifetime totals of copy jobs, read from the Dagster instance.

A table's history is the runs that planned to copy it, however they were launched (`copyjob
run`, a schedule, a sensor, the UI, `dagster asset materialize`): each run's events give the
table's start, attempts and error (logged by the job's step, or the table's own step in runs
made before tables shared one) and its materialization (rows read and written, the watermark
before and after). Totals add up every materialization the instance holds.
"""

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.defs import naming
from copyjob_dagster.defs.metadata import (
    DELETED_ROWS,
    DESTINATION_VERSION,
    LOAD,
    OPERATION,
    ROWS_READ,
    ROWS_WRITTEN,
    SECONDS,
    SOFT_DELETED_ROWS,
    WATERMARK,
    WATERMARK_BEFORE,
    WINDOW,
)
from copyjob_dagster.engine.progress import parse_failed, parse_retry

_RUN_EVENTS = {
    dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.ASSET_OBSERVATION,
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_RESTARTED,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.RUN_FAILURE,
    dg.DagsterEventType.ASSET_CHECK_EVALUATION,
}
_PAGE = 500


@dataclass(frozen=True)
class TableRun:
    """One run's copy of one table, as the run's events tell it."""

    job: str
    table: str
    run_id: str
    status: str  # success, check_failed, failure, canceled, started, queued, ...
    started: float | None
    duration_seconds: float | None
    attempts: int
    rows_read: int | None = None
    rows_written: int | None = None
    watermark_before: str | None = None
    watermark_after: str | None = None
    error: str | None = None
    rows_deleted: int | None = None
    rows_soft_deleted: int | None = None
    load: str | None = None  # full, initial, incremental or backfill
    window: str | None = None
    destination_version: int | None = None  # the commit's table version (Delta)


@dataclass(frozen=True)
class Totals:
    """What the successful copies of one table, job, source or destination added up to."""

    name: str
    copies: int = 0
    rows_read: int = 0
    rows_written: int = 0
    rows_deleted: int = 0
    rows_soft_deleted: int = 0

    def __add__(self, other: "Totals") -> "Totals":
        return Totals(
            self.name,
            self.copies + other.copies,
            self.rows_read + other.rows_read,
            self.rows_written + other.rows_written,
            self.rows_deleted + other.rows_deleted,
            self.rows_soft_deleted + other.rows_soft_deleted,
        )


@dataclass(frozen=True)
class History:
    runs: list[TableRun]
    tables: list[Totals]
    jobs: list[Totals]
    sources: list[Totals]
    destinations: list[Totals]


def read_history(
    instance: dg.DagsterInstance,
    jobs: list[CopyJob],
    tables: Mapping[str, list[TableConfig]] | None = None,
    limit: int = 20,
) -> History:
    """The latest `limit` runs of each table (of `tables[job]`, else of every table), newest
    first, and the lifetime totals per table, job, source database and destination database."""
    chosen = [(job, table) for job in jobs for table in (tables or {}).get(job.name, job.tables)]
    return dataclasses.replace(
        read_totals(instance, chosen), runs=_latest_runs(instance, chosen, limit)
    )


def read_totals(instance: dg.DagsterInstance, chosen: list[tuple[CopyJob, TableConfig]]) -> History:
    """The lifetime totals of the `chosen` tables, per table, job, source and destination
    database (no runs)."""
    table_totals = {
        (job.name, table.destination_name): table_totals_of(instance, naming.asset_key(job, table))
        for job, table in chosen
    }
    return History(
        runs=[],
        tables=list(table_totals.values()),
        jobs=_grouped(chosen, table_totals, lambda job: job.name),
        sources=_grouped(
            chosen, table_totals, lambda job: f"{job.source.display_name} ({job.source.masked_url})"
        ),
        destinations=_grouped(chosen, table_totals, lambda job: job.destination.masked_url),
    )


def _latest_runs(
    instance: dg.DagsterInstance, chosen: list[tuple[CopyJob, TableConfig]], limit: int
) -> list[TableRun]:
    by_key = {naming.asset_key(job, table): (job, table) for job, table in chosen}
    found: dict[dg.AssetKey, list[TableRun]] = {key: [] for key in by_key}
    for record in _run_records(instance):
        if all(len(runs) >= limit for runs in found.values()):
            break
        selection = record.dagster_run.asset_selection
        if selection and not selection & by_key.keys():
            continue  # a run of other assets: no need to read its events
        events = _RunEvents(instance, record.dagster_run.run_id)
        # A run that reset or set a watermark copied nothing: `operations.py` lists it.
        for key in (events.planned - events.operated) & by_key.keys():
            if len(found[key]) < limit:
                job, table = by_key[key]
                found[key].append(events.table_run(job, table, record))
    runs = [run for per_table in found.values() for run in _carry_watermarks(per_table)]
    return sorted(runs, key=lambda run: run.started or 0, reverse=True)


def _run_records(instance: dg.DagsterInstance) -> Iterator[Any]:
    """Every run record, newest first, a page at a time."""
    cursor = None
    while True:
        page = instance.get_run_records(limit=_PAGE, cursor=cursor)
        yield from page
        if len(page) < _PAGE:
            return
        cursor = page[-1].dagster_run.run_id


class _RunEvents:
    """What one run's event log says about the tables it planned to copy."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str) -> None:
        self.planned: set[dg.AssetKey] = set()
        self.operated: set[dg.AssetKey] = set()
        self.materialized: dict[dg.AssetKey, tuple[float, Mapping[str, Any]]] = {}
        self.started: dict[str, float] = {}
        self.restarts: dict[str, int] = {}
        self.failed: dict[str, tuple[float, str]] = {}
        self.failed_checks: dict[dg.AssetKey, list[str]] = {}
        self.run_failure: str | None = None
        cursor = None
        while True:
            # Every record: the tables' starts and failures are log lines, not Dagster events.
            page = instance.get_records_for_run(run_id, cursor=cursor, limit=_PAGE * 10)
            for record in page.records:
                self._add(record.event_log_entry)
            if not page.has_more:
                return
            cursor = page.cursor

    def _add(self, entry: Any) -> None:
        event = entry.dagster_event
        if event is None:
            self._add_log(entry)
            return
        if event.event_type not in _RUN_EVENTS:
            return
        kind, step = event.event_type, event.step_key
        if kind == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            self.planned.add(event.asset_key)
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            self.materialized[event.asset_key] = (entry.timestamp, materialization.metadata)
        elif kind == dg.DagsterEventType.ASSET_OBSERVATION:
            if OPERATION in event.asset_observation_data.asset_observation.metadata:
                self.operated.add(event.asset_key)
        elif kind == dg.DagsterEventType.STEP_START:
            self.started.setdefault(step, entry.timestamp)
        elif kind == dg.DagsterEventType.STEP_RESTARTED:
            self.restarts[step] = self.restarts.get(step, 0) + 1
        elif kind == dg.DagsterEventType.STEP_FAILURE:
            data = event.step_failure_data
            user = data.user_failure_data
            message = user.description if user and user.description else data.error.message
            self.failed[step] = (entry.timestamp, message.strip())
        elif kind == dg.DagsterEventType.RUN_FAILURE:
            self.run_failure = event.message
        elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            check = event.event_specific_data
            if not check.passed and check.severity == dg.AssetCheckSeverity.ERROR:
                failed = self.failed_checks.setdefault(check.asset_key, [])
                failed.append(f"check {check.check_name} failed: {check.description}")

    def _add_log(self, entry: Any) -> None:
        retried, failed = parse_retry(entry.user_message), parse_failed(entry.user_message)
        if retried is not None:
            self.restarts[retried] = self.restarts.get(retried, 0) + 1
        elif failed is not None:
            self.failed[failed[0]] = (entry.timestamp, failed[1].strip())

    def table_run(self, job: CopyJob, table: TableConfig, record: Any) -> TableRun:
        key = naming.asset_key(job, table)
        # A table is named in its job's step by its destination name; in runs made before
        # tables shared a step, its own step (and that step's start) tell of it.
        own_step = naming.op_name(job, table)
        step = own_step if own_step in self.started else table.destination_name
        started = self.started.get(
            own_step, self.started.get(naming.job_op_name(job), record.start_time)
        )
        if key in self.materialized and step != own_step:
            ended, metadata = self.materialized[key]
            seconds = _value(metadata, SECONDS)
            started = ended - seconds if seconds is not None else started
        base = {
            "job": job.name,
            "table": table.destination_name,
            "run_id": record.dagster_run.run_id,
            "started": started,
            "attempts": 1 + self.restarts.get(step, 0),
        }
        if key in self.materialized:
            ended, metadata = self.materialized[key]
            failed_checks = self.failed_checks.get(key)
            return TableRun(
                **base,
                status="check_failed" if failed_checks else "success",
                error="; ".join(failed_checks) if failed_checks else None,
                duration_seconds=_duration(started, ended),
                rows_read=_value(metadata, ROWS_READ),
                rows_written=_value(metadata, ROWS_WRITTEN),
                watermark_before=_value(metadata, WATERMARK_BEFORE),
                watermark_after=_value(metadata, WATERMARK),
                rows_deleted=_value(metadata, DELETED_ROWS),
                rows_soft_deleted=_value(metadata, SOFT_DELETED_ROWS),
                load=_value(metadata, LOAD),
                window=_value(metadata, WINDOW),
                destination_version=_value(metadata, DESTINATION_VERSION),
            )
        if step in self.failed:
            ended, error = self.failed[step]
            return TableRun(
                **base, status="failure", duration_seconds=_duration(started, ended), error=error
            )
        status = record.dagster_run.status.value.lower()
        return TableRun(
            **base,
            status=status,
            duration_seconds=_duration(started, record.end_time),
            error=self.run_failure if status == "failure" else None,
        )


def _carry_watermarks(runs: list[TableRun]) -> Iterator[TableRun]:
    """A run that copied nothing left the watermark where the copy before it put it."""
    in_force = None
    for run in reversed(runs):  # oldest first
        if run.status in ("success", "check_failed"):  # both committed their copy
            in_force = run.watermark_after
        elif in_force is not None:
            run = dataclasses.replace(run, watermark_before=in_force, watermark_after=in_force)
        yield run


def read_run(instance: dg.DagsterInstance, run_id: str, jobs: list[CopyJob]) -> list[TableRun]:
    """Each table that run `run_id` planned to copy, as its events tell it."""
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        return []
    events = _RunEvents(instance, run_id)
    return [
        events.table_run(job, table, record)
        for job in jobs
        for table in job.tables
        if naming.asset_key(job, table) in events.planned - events.operated
    ]


def table_totals_of(instance: dg.DagsterInstance, key: dg.AssetKey) -> Totals:
    """What every materialization of the table's asset added up to."""
    total = Totals(key.to_user_string())
    cursor = None
    while True:
        page = instance.fetch_materializations(key, limit=_PAGE, cursor=cursor, ascending=True)
        for record in page.records:
            metadata = record.asset_materialization.metadata
            total += Totals(
                total.name,
                1,
                _value(metadata, ROWS_READ) or 0,
                _value(metadata, ROWS_WRITTEN) or 0,
                _value(metadata, DELETED_ROWS) or 0,
                _value(metadata, SOFT_DELETED_ROWS) or 0,
            )
        if not page.has_more:
            return total
        cursor = page.cursor


def _grouped(
    chosen: Iterable[tuple[CopyJob, TableConfig]],
    table_totals: Mapping[tuple[str, str], Totals],
    group: Callable[[CopyJob], str],
) -> list[Totals]:
    groups: dict[str, Totals] = {}
    for job, table in chosen:
        name = group(job)
        groups[name] = (
            groups.get(name, Totals(name)) + table_totals[(job.name, table.destination_name)]
        )
    return list(groups.values())


def _value(metadata: Mapping[str, Any], key: str) -> Any:
    entry = metadata.get(key)
    return None if entry is None else entry.value


def _duration(started: float | None, ended: float | None) -> float | None:
    if started is None or ended is None:
        return None
    return round(ended - started, 3)
