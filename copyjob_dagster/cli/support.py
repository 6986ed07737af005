"""What the `copyjob` commands share: finding a job and its tables, and a console for tables."""

import sys

import click
from rich.console import Console

from copyjob_dagster.config import CopyJob, JobsFolder, TableConfig
from copyjob_dagster.engine import load_jobs_folder
from copyjob_dagster.errors import CopyJobError
from copyjob_dagster.project import jobs_dir, project_dir


def project_jobs() -> JobsFolder:
    """The jobs folder's jobs; a warning on stderr for each file skipped and each password
    variable that is not set (the other jobs work as usual)."""
    folder = load_jobs_folder(jobs_dir(), project_dir())
    for line in folder.warnings():
        click.echo(f"warning: {line}", err=True)
    return folder


def find_job(job_name: str, folder: JobsFolder | None = None) -> CopyJob:
    """The job named `job_name` in the project's jobs folder; the error says why a job whose
    file was skipped cannot be used."""
    return (folder or project_jobs()).job(job_name, jobs_dir())


def selected_tables(job: CopyJob, tables: tuple[str, ...]) -> list[TableConfig]:
    by_name = {t.name: t for t in job.tables} | {t.destination_name: t for t in job.tables}
    unknown = [t for t in tables if t not in by_name]
    if unknown:
        raise CopyJobError(
            f"job {job.name!r} has no table {', '.join(map(repr, unknown))} "
            f"(tables: {', '.join(t.name for t in job.tables)})"
        )
    return [by_name[t] for t in tables] if tables else list(job.tables)


def console(markup: bool = True) -> Console:
    """Tables for people: as wide as the terminal, or 200 columns when output is piped."""
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False, markup=markup)
