"""`copyjob list`: the jobs, their tables, mode, automation, last run and watermarks."""

import dataclasses
import json

import click
import dagster as dg
from rich.table import Table

from copyjob_dagster.cli.support import console, project_jobs
from copyjob_dagster.defs import JobEntry, list_jobs, mark_interrupted_runs
from copyjob_dagster.project import ensure_dagster_home


@click.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_(as_json: bool) -> None:
    """The jobs: tables, mode, schedule, last run and watermarks."""
    ensure_dagster_home()
    jobs = project_jobs().jobs
    with dg.DagsterInstance.get() as instance:
        mark_interrupted_runs(instance)
        entries = list_jobs(instance, jobs)
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(entry) for entry in entries], indent=2))
    else:
        _print_jobs(entries)


def _print_jobs(entries: list[JobEntry]) -> None:
    listing = Table(
        "job", "table", "copied to", "mode", "schedule", "last run", "watermark", title="Copy jobs"
    )
    for entry in entries:
        automation = [entry.schedule] if entry.schedule else []
        if entry.sensor_seconds:
            automation.append(f"sensor every {entry.sensor_seconds} s")
        last_run = "-"
        if entry.last_run_status:
            started = (entry.last_run_started or "")[:19].replace("T", " ")
            last_run = f"{entry.last_run_status} {started}".strip()
        for index, table in enumerate(entry.tables):
            first = index == 0
            listing.add_row(
                entry.name if first else "",
                table.name,
                table.destination,
                entry.mode if first else "",
                (", ".join(automation) or "-") if first else "",
                last_run if first else "",
                table.watermark or "-",
                end_section=index == len(entry.tables) - 1,
            )
    console().print(listing)
