"""What the `copyjob` commands share: finding a job and its tables, and a console for tables."""

import sys

from rich.console import Console

from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.engine import load_jobs
from copyjob_dagster.errors import CopyJobError
from copyjob_dagster.project import jobs_dir, project_dir


def find_job(job_name: str, loaded: list[CopyJob] | None = None) -> CopyJob:
    """The job named `job_name`, among `loaded` or else the project's job files."""
    if loaded is None:
        loaded = load_jobs(jobs_dir(), project_dir())
    jobs = {job.name: job for job in loaded}
    if job_name not in jobs:
        known = ", ".join(sorted(jobs)) or "none"
        raise CopyJobError(f"no copy job named {job_name!r} in {jobs_dir()} (jobs: {known})")
    return jobs[job_name]


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
