"""`copyjob validate`: check every job file, offline or against the live stores."""

from pathlib import Path

import click

from copyjob_dagster.config import (
    JOB_FILE_SUFFIXES,
    CopyJob,
    TableConfig,
    check_across_jobs,
    job_files,
)
from copyjob_dagster.engine import load_job, plan_copy
from copyjob_dagster.engine.cdc import cdc_problems
from copyjob_dagster.errors import CopyJobError
from copyjob_dagster.project import jobs_dir, project_dir
from copyjob_dagster.stores import Source, open_destination, open_source


@click.command()
@click.option("--connect", is_flag=True, help="Also check tables, columns and stores live.")
def validate(connect: bool) -> None:
    """Check every job file of the jobs folder; exit 1 if any is invalid."""
    validate_jobs(connect)


def validate_jobs(connect: bool) -> None:
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
        if job.is_cdc(table):
            return [f"{where}, field 'mode': mode: cdc: {p}" for p in cdc_problems(job, table)]
    except CopyJobError as exc:
        return [f"{path}: {exc}"]  # the engine's messages name the job and the table
    return []
