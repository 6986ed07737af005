"""Job files as the engine runs them: read and validated by the config layer, then checked
against what their stores can do (a split needs a source that shares snapshots, SQLite folds
the case of names). Every caller that runs or shows jobs loads them here."""

from pathlib import Path

from copyjob_dagster.config import CopyJob, read_job, read_jobs
from copyjob_dagster.stores import store_problems


def load_job(path: Path, base_dir: Path | None = None) -> CopyJob:
    return read_job(path, base_dir, check=store_problems)


def load_jobs(jobs_dir: Path, base_dir: Path | None = None) -> list[CopyJob]:
    return read_jobs(jobs_dir, base_dir, check=store_problems)
