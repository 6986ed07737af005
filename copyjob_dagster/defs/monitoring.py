"""What the UI shows of copies beyond one run's steps: each run's rows as run tags (seen in the
Runs list), a summary of every finished copy run (the `copyjob_monitoring/runs` asset), the
lifetime totals per job, source and destination database (`copyjob_monitoring/totals`), and
each table's lifetime totals on its own materializations, which the asset page plots.

All of it is read from the tables' materializations and the run records, never from the steps'
processes, so it holds however a run executes its tables.
"""

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.defs import naming
from copyjob_dagster.defs.history import Totals, read_run, table_totals_of

MONITORING_GROUP = "copyjob_monitoring"
RUNS_KEY = dg.AssetKey([MONITORING_GROUP, "runs"])
TOTALS_KEY = dg.AssetKey([MONITORING_GROUP, "totals"])
# Run tags: values may hold only [A-Za-z0-9_.-], at most 63 characters.
ROWS_READ_TAG = "copyjob/rows_read"
ROWS_WRITTEN_TAG = "copyjob/rows_written"
TABLES_TAG = "copyjob/tables_copied"
# The run whose summary the tags above are: a re-execution (the UI's, the daemon's retries)
# inherits its parent's tags, these included, and is summarized all the same.
SUMMARY_OF_TAG = "copyjob/summary_of"
PARENT_RUN_TAG = "dagster/parent_run_id"
# On each materialization: the table's totals over every copy so far, this one included.
LIFETIME_COPIES = "copyjob/lifetime_copies"
LIFETIME_ROWS_READ = "copyjob/lifetime_rows_read"
LIFETIME_ROWS_WRITTEN = "copyjob/lifetime_rows_written"
_FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
_RUNS_PER_TICK = 50


def monitoring_specs() -> list[dg.AssetSpec]:
    return [
        dg.AssetSpec(
            RUNS_KEY,
            group_name=MONITORING_GROUP,
            description="One observation per finished copy run: its job, status, rows read and "
            "written, and a table of every table's rows and seconds. The Events tab lists them.",
        ),
        dg.AssetSpec(
            TOTALS_KEY,
            group_name=MONITORING_GROUP,
            description="Rows copied since the first run, per job, per source database and per "
            "destination database, observed after each copy run (numbers plot over time).",
        ),
    ]


def lifetime_metadata(
    instance: dg.DagsterInstance,
    key: dg.AssetKey,
    previous: Mapping[str, Any] | None,
    rows_read: int,
    rows_written: int,
) -> dict[str, dg.MetadataValue]:
    """The table's lifetime totals with this copy: the previous materialization's plus this
    one's (added up from its whole history where the previous one has none)."""
    before = _lifetime(previous) if previous else None
    if before is None:
        before = table_totals_of(instance, key) if previous else Totals(key.to_user_string())
    return {
        LIFETIME_COPIES: dg.MetadataValue.int(before.copies + 1),
        LIFETIME_ROWS_READ: dg.MetadataValue.int(before.rows_read + rows_read),
        LIFETIME_ROWS_WRITTEN: dg.MetadataValue.int(before.rows_written + rows_written),
    }


def record_run_summary(instance: dg.DagsterInstance, run_id: str, jobs: list[CopyJob]) -> bool:
    """Tag a finished copy run with its rows, and observe its summary and the new totals;
    False for a run that copied no table of `jobs`."""
    copies = read_run(instance, run_id, jobs)
    record = instance.get_run_record_by_id(run_id)
    if not copies or record is None:
        return False
    read = sum(copy.rows_read or 0 for copy in copies)
    written = sum(copy.rows_written or 0 for copy in copies)
    done = sum(copy.status == "success" for copy in copies)
    tags = {ROWS_READ_TAG: str(read), ROWS_WRITTEN_TAG: str(written)}
    instance.add_run_tags(
        run_id, tags | {TABLES_TAG: f"{done}_of_{len(copies)}", SUMMARY_OF_TAG: run_id}
    )
    seconds = (record.end_time or record.start_time or 0) - (record.start_time or 0)
    instance.report_runless_asset_event(
        dg.AssetObservation(
            RUNS_KEY,
            metadata={
                "run": dg.MetadataValue.dagster_run(run_id),
                "job": dg.MetadataValue.text(", ".join(sorted({c.job for c in copies}))),
                "status": dg.MetadataValue.text(record.dagster_run.status.value.lower()),
                "tables copied": dg.MetadataValue.int(done),
                "rows read": dg.MetadataValue.int(read),
                "rows written": dg.MetadataValue.int(written),
                "seconds": dg.MetadataValue.float(round(seconds, 3)),
                "tables": _table(
                    ["table", "status", "rows read", "rows written", "seconds"],
                    ["string", "string", "int", "int", "float"],
                    (
                        [c.table, c.status, c.rows_read, c.rows_written, c.duration_seconds]
                        for c in copies
                    ),
                ),  # fmt: skip
            },
        )
    )
    instance.report_runless_asset_event(
        dg.AssetObservation(TOTALS_KEY, metadata=totals_metadata(instance, jobs))
    )
    return True


def totals_metadata(instance: dg.DagsterInstance, jobs: list[CopyJob]) -> dict[str, Any]:
    """Lifetime totals per job, source and destination database, from each table's latest
    materialization (its lifetime entries), as tables and as numbers the UI plots."""
    keys = {
        (job.name, table.destination_name): naming.asset_key(job, table)
        for job, table in _tables(jobs)
    }
    # Every table's latest materialization in one query (not one query per table of the project).
    latest = {
        record.asset_entry.asset_key: record.asset_entry.last_materialization
        for record in instance.get_asset_records(list(keys.values()))
    }
    per_table = {
        name: _table_lifetime(instance, key, latest.get(key)) for name, key in keys.items()
    }
    groups: dict[str, dict[str, Totals]] = {"job": {}, "source": {}, "destination": {}}
    for job, table in _tables(jobs):
        total = per_table[(job.name, table.destination_name)]
        for kind, name in (
            ("job", job.name),
            ("source", job.source.masked_url),
            ("destination", job.destination.masked_url),
        ):
            groups[kind][name] = groups[kind].get(name, Totals(name)) + total
    metadata: dict[str, Any] = {
        "rows written, all jobs": dg.MetadataValue.int(
            sum(total.rows_written for total in per_table.values())
        )
    }
    for job_name, total in groups["job"].items():
        metadata[f"{job_name}: rows written"] = dg.MetadataValue.int(total.rows_written)
    for kind, heading in (("job", "per job"), ("source", "per source database"),
                          ("destination", "per destination database")):  # fmt: skip
        metadata[heading] = _table(
            [kind, "copies", "rows read", "rows written"],
            ["string", "int", "int", "int"],
            ([t.name, t.copies, t.rows_read, t.rows_written] for t in groups[kind].values()),
        )
    return metadata


def build_summary_sensor(jobs: list[CopyJob]) -> dg.SensorDefinition:
    """Summarizes each copy run once it has finished, however it was launched (the UI, a
    schedule, a sensor); `copyjob run` summarizes its own run at once."""

    @dg.sensor(
        name="copyjob_run_summaries",
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Tags each finished copy run with its rows read and written, and observes "
        "copyjob_monitoring/runs and copyjob_monitoring/totals.",
    )
    def summaries(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        since = float(context.cursor) if context.cursor else 0.0
        records = context.instance.get_run_records(
            filters=dg.RunsFilter(
                statuses=_FINISHED, updated_after=datetime.fromtimestamp(since, UTC)
            ),
            limit=_RUNS_PER_TICK,
            order_by="update_timestamp",
            ascending=True,
        )
        summarized = 0
        for record in records:
            if _unsummarized(record.dagster_run):
                summarized += record_run_summary(context.instance, record.dagster_run.run_id, jobs)
            since = max(since, record.update_timestamp.timestamp())
        context.update_cursor(str(since))
        return dg.SkipReason(f"summarized {summarized} finished copy run(s)")

    return summaries


def _unsummarized(run: dg.DagsterRun) -> bool:
    """No summary yet, or only the one a re-execution inherited from its parent's tags."""
    if ROWS_WRITTEN_TAG not in run.tags:
        return True
    return PARENT_RUN_TAG in run.tags and run.tags.get(SUMMARY_OF_TAG) != run.run_id


def _lifetime(metadata: Mapping[str, Any]) -> Totals | None:
    if LIFETIME_ROWS_WRITTEN not in metadata:
        return None
    return Totals(
        "",
        int(metadata[LIFETIME_COPIES].value),
        int(metadata[LIFETIME_ROWS_READ].value),
        int(metadata[LIFETIME_ROWS_WRITTEN].value),
    )


def _table_lifetime(
    instance: dg.DagsterInstance, key: dg.AssetKey, event: dg.EventLogEntry | None
) -> Totals:
    latest = event.asset_materialization if event else None
    if latest is None:  # never materialized (or wiped): nothing copied, no history to read
        return Totals(key.to_user_string())
    return _lifetime(latest.metadata) or table_totals_of(instance, key)


def _table(columns: list[str], types: list[str], rows: Iterable[list[Any]]) -> dg.MetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord(dict(zip(columns, row, strict=True))) for row in rows],
        schema=dg.TableSchema(
            columns=[dg.TableColumn(name, kind) for name, kind in zip(columns, types, strict=True)]
        ),
    )


def _tables(jobs: list[CopyJob]) -> list[tuple[CopyJob, TableConfig]]:
    return [(job, table) for job in jobs for table in job.tables]
