"""The jobs folder as the project's faces read it: every job file that loads, and a problem for
each one that does not, so that one broken file never stops the other jobs.

A file is skipped when it does not load (bad YAML, a bad field, a variable other than a
password that is not set) or when it clashes with a job loaded before it (a name or a
destination table used twice). A password variable that is not set does not skip the job: the
store reads it when a run connects (`StoreConfig.with_secrets`), and only that job's runs fail.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from copyjob_dagster.config.loading import (
    JobCheck,
    check_across_jobs,
    job_files,
    read_job,
    read_yaml,
)
from copyjob_dagster.config.models import JOB_NAME_PATTERN, CopyJob
from copyjob_dagster.errors import ConfigError, CopyJobError


@dataclass(frozen=True)
class SkippedJob:
    """A job file left out, with what is wrong, and what can be told of it without loading it:
    its job's name and its tables (source name, destination name), when the YAML says them."""

    path: Path
    problem: str
    job_name: str | None
    tables: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class JobsFolder:
    loaded: list[tuple[Path, CopyJob]]
    skipped: list[SkippedJob]

    @property
    def jobs(self) -> list[CopyJob]:
        return [job for _, job in self.loaded]

    def job(self, name: str, where: Path) -> CopyJob:
        """The job named `name`; the error says why a job whose file was skipped cannot be
        used, or which jobs the folder `where` has."""
        jobs = {job.name: job for job in self.jobs}
        if name in jobs:
            return jobs[name]
        for skipped in self.skipped:
            if skipped.job_name == name:
                raise ConfigError(f"job {name!r} is skipped: {skipped.problem}")
        known = ", ".join(sorted(jobs)) or "none"
        raise ConfigError(f"no copy job named {name!r} in {where} (jobs: {known})")

    def warnings(self) -> list[str]:
        """One line per skipped file and per password variable that is not set."""
        lines = [
            f"skipped {line}" for skipped in self.skipped for line in skipped.problem.splitlines()
        ]
        for path, job in self.loaded:
            for role, store in (("source", job.source), ("destination", job.destination)):
                lines += [
                    f"{path}: job {job.name!r}, field '{role}.url': environment variable "
                    f"{variable} is not set: the job's runs fail until it is"
                    for variable in store.unset_variables
                ]
        return lines


def read_jobs_folder(
    jobs_dir: Path, base_dir: Path | None = None, check: JobCheck | None = None
) -> JobsFolder:
    """Every job file of `jobs_dir` that loads and agrees with those before it; the others
    skipped, each with its problem (`check`: as in `read_job`)."""
    loaded: list[tuple[Path, CopyJob]] = []
    skipped: list[SkippedJob] = []
    for path in job_files(jobs_dir):
        try:
            job = read_job(path, base_dir, check, defer_secrets=True)
        except CopyJobError as exc:
            skipped.append(_skipped(path, str(exc)))
            continue
        clashes = check_across_jobs([*loaded, (path, job)])
        if clashes:
            skipped.append(_skipped(path, "\n".join(clashes)))
        else:
            loaded.append((path, job))
    return JobsFolder(loaded, skipped)


def _skipped(path: Path, problem: str) -> SkippedJob:
    """What the file's YAML says of its job, if it parses: a name that could be a job's and
    the tables that have a name."""
    try:
        tree = read_yaml(path)
    except CopyJobError:
        return SkippedJob(path, problem, None, ())
    name = tree.get("name")
    tables = tree.get("tables")
    named = [
        (table["name"], table.get("to") or table["name"])
        for table in (tables if isinstance(tables, list) else [])
        if isinstance(table, dict)
        and isinstance(table.get("name"), str)
        and isinstance(table.get("to") or "", str)
    ]
    valid_name = isinstance(name, str) and re.match(JOB_NAME_PATTERN, name)
    return SkippedJob(path, problem, name if valid_name else None, tuple(named))
