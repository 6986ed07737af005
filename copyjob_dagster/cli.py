"""The `copyjob` command: validate job files, run jobs through Dagster, the demo, the UI."""

import os
import sys
from pathlib import Path
from typing import Any

import click
import dagster as dg
from rich.console import Console
from rich.table import Table

from copyjob_dagster import naming
from copyjob_dagster.config import (
    JOB_FILE_SUFFIXES,
    CopyJob,
    TableConfig,
    check_across_jobs,
    job_files,
    load_job,
    load_jobs,
)
from copyjob_dagster.engine import plan_copy
from copyjob_dagster.errors import CopyJobError
from copyjob_dagster.metadata import ROWS_READ, ROWS_WRITTEN, SECONDS, TABLE_NAME, WATERMARK
from copyjob_dagster.project import ensure_dagster_home, jobs_dir, project_dir
from copyjob_dagster.sample import create_shop
from copyjob_dagster.stores import Source, open_destination, open_source

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
    folder, base_dir = jobs_dir(), project_dir()
    files = job_files(folder)
    if not files:
        raise CopyJobError(f"{folder}: no job files ({', '.join(JOB_FILE_SUFFIXES)}) to check")
    loaded: list[tuple[Path, CopyJob]] = []
    problems: list[str] = []
    for path in files:
        try:
            job = load_job(path, base_dir)
        except CopyJobError as exc:
            problems.append(str(exc))
            continue
        loaded.append((path, job))
        if connect:
            problems += _check_live(path, job)
    problems += check_across_jobs(loaded)
    checked = "tables, columns and stores checked" if connect else "not connected"
    for path, job in loaded:
        if not any(problem.startswith(f"{path}:") for problem in problems):
            click.echo(f"ok: {path.name}: job {job.name!r}, {len(job.tables)} tables ({checked})")
    lines = "\n".join(problems).splitlines()  # a file's load error may hold several
    for line in lines:
        click.echo(f"invalid: {line}", err=True)
    if lines:
        raise CopyJobError(f"{len(lines)} problem(s) in the job files of {folder}")


def _check_live(path: Path, job: CopyJob) -> list[str]:
    """Problems found in the live stores: unreachable stores, missing tables and columns."""
    where = f"{path}: job {job.name!r}"
    problems = []
    try:
        source = open_source(job.source)
        try:
            source.list_tables()  # reachable at all, before blaming each table
            for table in job.tables:
                problems += _check_table(path, job, table, source)
        finally:
            source.close()
    except CopyJobError as exc:
        problems.append(f"{where}, field 'source.url': {exc}")
    try:
        destination = open_destination(job.destination)
        try:
            destination.check()
        finally:
            destination.close()
    except CopyJobError as exc:
        problems.append(f"{where}, field 'destination.url': {exc}")
    return problems


def _check_table(path: Path, job: CopyJob, table: TableConfig, source: Source) -> list[str]:
    """A problem for each field of `table` that the source table contradicts."""
    where = f"{path}: job {job.name!r}, table {table.name!r}"
    try:
        described = source.describe(table.name)
    except CopyJobError as exc:
        return [f"{where}, field 'name': {exc}"]
    available = described.column_names
    problems = [
        f"{where}, field {field!r}: the source table has no column {', '.join(missing)} "
        f"(it has: {', '.join(available)})"
        for field, named in table.referenced_columns.items()
        if (missing := [c for c in named if c not in available])
    ]
    selected = table.columns or available
    destination_columns = [table.rename.get(c, c) for c in selected]
    repeated = sorted({c for c in destination_columns if destination_columns.count(c) > 1})
    if repeated:
        problems.append(
            f"{where}, field 'rename': several columns would be named: {', '.join(repeated)}"
        )
    if problems:
        return problems
    try:
        plan_copy(job, table, described)
    except CopyJobError as exc:
        return [f"{path}: {exc}"]  # the engine's messages name the job and the table
    return []


@main.command()
@click.argument("job_name")
@click.option("--table", "tables", multiple=True, help="Copy only this table (repeatable).")
@click.option(
    "--full-refresh", is_flag=True, help="Incremental tables: reset the watermark, copy anew."
)
@click.option("--verbose", is_flag=True, help="Also print Dagster's event log.")
def run(job_name: str, tables: tuple[str, ...], full_refresh: bool, verbose: bool) -> None:
    """Materialize a job's tables through Dagster, on the configured instance."""
    _run(job_name, tables, full_refresh, verbose)


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


def _selected_tables(job: CopyJob, tables: tuple[str, ...]) -> list[TableConfig]:
    by_name = {t.name: t for t in job.tables} | {t.destination_name: t for t in job.tables}
    unknown = [t for t in tables if t not in by_name]
    if unknown:
        raise CopyJobError(
            f"job {job.name!r} has no table {', '.join(map(repr, unknown))} "
            f"(tables: {', '.join(t.name for t in job.tables)})"
        )
    return [by_name[t] for t in tables] if tables else list(job.tables)


def _run(
    job_name: str, tables: tuple[str, ...], full_refresh: bool = False, verbose: bool = False
) -> None:
    ensure_dagster_home()
    job = _find_job(job_name)
    chosen = _selected_tables(job, tables)
    run_config = {
        "ops": {
            naming.op_name(job, table): {"config": {"full_refresh": full_refresh}}
            for table in chosen
        },
        # The event log is kept in the instance (and shown in the UI) either way; here the
        # command prints its own summary and any failure's message.
        "loggers": {"console": {"config": {"log_level": "DEBUG" if verbose else "CRITICAL"}}},
    }
    recon = dg.build_reconstructable_job(
        "copyjob_dagster.definitions", "job_named", reconstructable_args=(job.name,)
    )
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(
            recon,
            instance=instance,
            asset_selection=[naming.asset_key(job, table) for table in chosen],
            run_config=run_config,
        )
        _report(result)
        if not result.success:
            failures = [_failure_message(event) for event in result.get_step_failure_events()]
            raise CopyJobError(
                f"run {result.run_id} of job {job.name!r} failed:\n  " + "\n  ".join(failures)
            )
    click.echo(f"run {result.run_id} succeeded; DAGSTER_HOME={os.environ['DAGSTER_HOME']}")


def _report(result: Any) -> None:
    """Per table: rows read and written, seconds, the watermark, where the data went."""
    table = Table("table", "rows read", "rows written", "seconds", "watermark", "copied to")
    for column in table.columns[1:4]:
        column.justify = "right"
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        metadata = materialization.metadata
        watermark = metadata.get(WATERMARK)
        table.add_row(
            materialization.asset_key.to_user_string(),
            f"{metadata[ROWS_READ].value:,}",
            f"{metadata[ROWS_WRITTEN].value:,}",
            f"{metadata[SECONDS].value:.2f}",
            str(watermark.value) if watermark else "-",
            str(metadata[TABLE_NAME].value),
        )
    if table.row_count:
        Console(width=200 if not sys.stdout.isatty() else None).print(table)


def _failure_message(event: dg.DagsterEvent) -> str:
    data = event.step_failure_data
    user = data.user_failure_data
    message = user.description if user and user.description else data.error.message.strip()
    return f"{event.step_key}: {message}"
