"""`copyjob history`: past runs of each table, and the rows copied per table, job, source and
destination, read from the instance."""

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import click
import dagster as dg
from rich.table import Table

from copyjob_dagster.cli.support import console as _console
from copyjob_dagster.cli.support import find_job, project_jobs, selected_tables
from copyjob_dagster.cli.watermark import operations_json, operations_of, print_operations
from copyjob_dagster.defs import History, Totals, mark_interrupted_runs, read_history
from copyjob_dagster.errors import CopyJobError
from copyjob_dagster.project import ensure_dagster_home


@click.command()
@click.argument("job_name", required=False)
@click.option("--table", "tables", multiple=True, help="Only this table of JOB (repeatable).")
@click.option(
    "--limit", default=20, show_default=True, type=click.IntRange(min=1), help="Runs per table."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def history(job_name: str | None, tables: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Past runs of each table, and the rows copied per table, job, source and destination."""
    if tables and not job_name:
        raise CopyJobError("--table needs a JOB: copyjob history JOB --table T")
    ensure_dagster_home()
    jobs = [find_job(job_name)] if job_name else project_jobs().jobs
    chosen = {job.name: selected_tables(job, tables) for job in jobs}
    with dg.DagsterInstance.get() as instance:
        mark_interrupted_runs(instance)
        found = read_history(instance, jobs, chosen, limit)
        changes = operations_of(instance, jobs, chosen, limit)
    if as_json:
        click.echo(
            json.dumps(_history_json(found) | {"operations": operations_json(changes)}, indent=2)
        )
    else:
        _print_history(found)
        print_operations(changes)


def _print_history(found: History) -> None:
    console = _console()
    runs = Table(
        "table", "started (UTC)", "status", "rows read", "rows written", "watermark before",
        "watermark after", "duration (s)", "run", "error", title="Runs, newest first",
    )  # fmt: skip
    for column in (runs.columns[3], runs.columns[4], runs.columns[7]):
        column.justify = "right"
    # The table version each copy committed, where the destination numbers them (Delta): the
    # runs line up with the table's own history.
    versioned = any(run.destination_version is not None for run in found.runs)
    if versioned:
        runs.add_column("version", justify="right")
    for run in found.runs:
        version = [_number(run.destination_version)] if versioned else []
        runs.add_row(
            f"{run.job}/{run.table}",
            _when(run.started) or "-",
            (run.status if run.attempts == 1 else f"{run.status} ({run.attempts} attempts)")
            + (f", backfill {run.window}" if run.load == "backfill" else ""),
            _number(run.rows_read),
            _number(run.rows_written),
            run.watermark_before or "-",
            run.watermark_after or "-",
            "-" if run.duration_seconds is None else f"{run.duration_seconds:.2f}",
            run.run_id[:8],
            run.error or "",
            *version,
        )
    console.print(runs)
    groups = {
        "table": found.tables,
        "job": found.jobs,
        "source database": found.sources,
        "destination database": found.destinations,
    }
    for heading, totals in groups.items():
        table = Table(
            heading, "copies", "rows read", "rows written", "deleted", "soft-deleted",
            title=f"Totals per {heading}",
        )  # fmt: skip
        for column in table.columns[1:]:
            column.justify = "right"
        for total in totals:
            table.add_row(
                total.name,
                f"{total.copies:,}",
                f"{total.rows_read:,}",
                f"{total.rows_written:,}",
                f"{total.rows_deleted:,}",
                f"{total.rows_soft_deleted:,}",
            )
        console.print(table)


def _history_json(found: History) -> dict[str, Any]:
    def totals(rows: list[Totals]) -> list[dict[str, Any]]:
        return [dataclasses.asdict(total) for total in rows]

    return {
        "runs": [
            {**dataclasses.asdict(run), "started": _when(run.started, iso=True)}
            for run in found.runs
        ],
        "totals": {
            "tables": totals(found.tables),
            "jobs": totals(found.jobs),
            "sources": totals(found.sources),
            "destinations": totals(found.destinations),
        },
    }


def _when(timestamp: float | None, iso: bool = False) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat() if iso else moment.strftime("%Y-%m-%d %H:%M:%S")


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
