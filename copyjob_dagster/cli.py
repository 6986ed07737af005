"""The `copyjob` command: validate job files, run jobs through Dagster, the demo, the UI."""

import os
import sys
from pathlib import Path
from typing import Any

import click
import dagster as dg

from copyjob_dagster import naming
from copyjob_dagster.config import CopyJob, job_files, load_job, load_jobs
from copyjob_dagster.engine import plan_copy
from copyjob_dagster.errors import CopyJobError
from copyjob_dagster.metadata import ROWS_READ, ROWS_WRITTEN, SECONDS, TABLE_NAME
from copyjob_dagster.project import ensure_dagster_home, jobs_dir, project_dir
from copyjob_dagster.sample import create_shop
from copyjob_dagster.stores import open_destination, open_source

DEMO_JOB = "shop_demo"
DEMO_DATABASE = Path(".demo") / "shop.sqlite"


class _Group(click.Group):
    """Shows a `CopyJobError` as one clear message and exit code 1, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CopyJobError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
def main() -> None:
    """Copy tables between databases and Parquet folders, as Dagster assets."""


@main.command()
@click.option("--connect", is_flag=True, help="Also check tables, columns and stores live.")
def validate(connect: bool) -> None:
    """Check every job file of the jobs folder; exit 1 if any is invalid."""
    folder = jobs_dir()
    problems = 0
    for path in job_files(folder):
        try:
            job = load_job(path, project_dir())
            if connect:
                _check_live(job)
        except CopyJobError as exc:
            problems += 1
            click.echo(f"invalid: {exc}", err=True)
            continue
        checked = "tables, columns and stores checked" if connect else "not connected"
        click.echo(f"ok: {path.name}: job {job.name!r}, {len(job.tables)} tables ({checked})")
    if problems:
        raise CopyJobError(f"{problems} invalid job file(s) in {folder}")


def _check_live(job: CopyJob) -> None:
    source = open_source(job.source)
    destination = open_destination(job.destination)
    try:
        for table in job.tables:
            plan_copy(job, table, source.describe(table.name))
        destination.check()
    finally:
        source.close()
        destination.close()


@main.command()
@click.argument("job_name")
@click.option("--table", "tables", multiple=True, help="Copy only this table (repeatable).")
def run(job_name: str, tables: tuple[str, ...]) -> None:
    """Materialize a job's tables through Dagster, on the configured instance."""
    _run(job_name, tables)


@main.command()
@click.option("--fresh", is_flag=True, help="Re-create the sample database first.")
def demo(fresh: bool) -> None:
    """Create the sample shop database (once) and run the sample job."""
    database = project_dir() / DEMO_DATABASE
    if fresh or not database.exists():
        counts = create_shop(database)
        click.echo(f"created {database}: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
    _run(DEMO_JOB, ())


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("dagster_dev_args", nargs=-1, type=click.UNPROCESSED)
def ui(dagster_dev_args: tuple[str, ...]) -> None:
    """Start the Dagster UI (`dagster dev`) on the same instance as `copyjob run`."""
    ensure_dagster_home()
    workspace = str(project_dir() / "workspace.yaml")
    os.chdir(project_dir())
    os.execvp("dagster", ["dagster", "dev", "-w", workspace, *dagster_dev_args])


def _find_job(job_name: str) -> CopyJob:
    jobs = {job.name: job for job in load_jobs(jobs_dir(), project_dir())}
    if job_name not in jobs:
        known = ", ".join(sorted(jobs)) or "none"
        raise CopyJobError(f"no copy job named {job_name!r} in {jobs_dir()} (jobs: {known})")
    return jobs[job_name]


def _selection(job: CopyJob, tables: tuple[str, ...]) -> list[dg.AssetKey]:
    by_name = {t.name: t for t in job.tables} | {t.destination_name: t for t in job.tables}
    unknown = [t for t in tables if t not in by_name]
    if unknown:
        raise CopyJobError(
            f"job {job.name!r} has no table {', '.join(map(repr, unknown))} "
            f"(tables: {', '.join(t.name for t in job.tables)})"
        )
    chosen = [by_name[t] for t in tables] if tables else job.tables
    return [naming.asset_key(job, table) for table in chosen]


def _run(job_name: str, tables: tuple[str, ...]) -> None:
    ensure_dagster_home()
    job = _find_job(job_name)
    selection = _selection(job, tables)
    recon = dg.build_reconstructable_job(
        "copyjob_dagster.definitions", "job_named", reconstructable_args=(job.name,)
    )
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(recon, instance=instance, asset_selection=selection)
        _report(result)
        if not result.success:
            failures = [_failure_message(event) for event in result.get_step_failure_events()]
            raise CopyJobError(
                f"run {result.run_id} of job {job.name!r} failed:\n  " + "\n  ".join(failures)
            )
    click.echo(f"run {result.run_id} succeeded; DAGSTER_HOME={os.environ['DAGSTER_HOME']}")


def _report(result: Any) -> None:
    """Per table: rows read and written, seconds, where the data went."""
    rows = []
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        metadata = materialization.metadata
        rows.append(
            (
                materialization.asset_key.to_user_string(),
                f"{metadata[ROWS_READ].value:,}",
                f"{metadata[ROWS_WRITTEN].value:,}",
                f"{metadata[SECONDS].value:.2f}",
                str(metadata[TABLE_NAME].value),
            )
        )
    if not rows:
        return
    header = ("table", "rows read", "rows written", "seconds", "copied to")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [
            cell.rjust(w) if i else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=False))
        ]
        click.echo("  ".join([*cells, row[-1]]))


def _failure_message(event: dg.DagsterEvent) -> str:
    data = event.step_failure_data
    user = data.user_failure_data
    message = user.description if user and user.description else data.error.message.strip()
    return f"{event.step_key}: {message}"
