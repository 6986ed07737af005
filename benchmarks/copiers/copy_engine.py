"""copyjob's own copy path, called as a program would: load the job file, `copy_table`."""

from settings import Settings

from copyjob_dagster.engine import copy_table, load_job


def copy(settings: Settings, job_name: str) -> int:
    job = load_job(settings.jobs_dir / job_name / f"{job_name}.yaml")
    return copy_table(job, job.tables[0]).rows_written
