"""Job files as the engine runs them: read and validated by the config layer, then checked
against what their stores can do (a split needs a source that shares snapshots, SQLite folds
the case of names). Every caller that runs or shows jobs loads them here."""

from pathlib import Path
from typing import Any

from copyjob_dagster.config import (
    CopyJob,
    JobsFolder,
    job_from_tree,
    read_job,
    read_jobs,
    read_jobs_folder,
)
from copyjob_dagster.stores import store_problems


def load_job(path: Path, base_dir: Path | None = None) -> CopyJob:
    return read_job(path, base_dir, check=store_problems)


def load_job_tree(tree: dict[str, Any], path: Path, base_dir: Path) -> CopyJob:
    """A job as read from `path` (a Component's defs.yaml attributes), checked the same way."""
    return job_from_tree(tree, path, base_dir, check=store_problems)


def load_jobs(jobs_dir: Path, base_dir: Path | None = None) -> list[CopyJob]:
    return read_jobs(jobs_dir, base_dir, check=store_problems)


def load_jobs_folder(jobs_dir: Path, base_dir: Path | None = None) -> JobsFolder:
    """The jobs that load, and the files skipped with their problems (one bad file never stops
    the others); a password variable that is not set is left for the runs that need it."""
    return read_jobs_folder(jobs_dir, base_dir, check=store_problems)
