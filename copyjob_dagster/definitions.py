"""What workspace.yaml loads: every job file of the jobs folder, as assets, asset jobs,
schedules and sensors."""

import os

import dagster as dg

from copyjob_dagster.config import CopyJob, JobsFolder, SkippedJob, job_files
from copyjob_dagster.defs import (
    build_copy_assets,
    build_new_data_sensor,
    build_schedule,
    build_source_specs,
    build_summary_sensor,
    default_executor,
    job_executor,
    monitoring_specs,
    skipped_job_specs,
)
from copyjob_dagster.engine import load_jobs_folder
from copyjob_dagster.project import jobs_dir, project_dir


def build_definitions(
    jobs: list[CopyJob], skipped: list[SkippedJob] | None = None, monitoring: bool = True
) -> dg.Definitions:
    """Assets for every table, the source tables upstream, one asset job per copy job, and the
    jobs' schedules and new-data sensors (which target those asset jobs by name); the job files
    that do not load, as assets that say why; and, with `monitoring`, the run summaries and
    totals of all `jobs` (one sensor and two assets per code location, so not per Component)."""
    copies = build_copy_assets(jobs)
    problems = skipped_job_specs(
        skipped or [],
        {key for asset in copies for key in asset.keys},
        {job.name for job in jobs},
    )
    return dg.Definitions(
        assets=[
            *build_source_specs(jobs),
            *copies,
            *problems,
            *(monitoring_specs() if monitoring else []),
        ],
        jobs=[
            dg.define_asset_job(
                name=job.name,
                selection=dg.AssetSelection.groups(job.name),
                executor_def=job_executor(job),
            )
            for job in jobs
        ],
        schedules=[build_schedule(job, job.schedule) for job in jobs if job.schedule],
        sensors=[
            *(build_new_data_sensor(job, job.sensor) for job in jobs if job.sensor),
            *([build_summary_sensor(jobs)] if monitoring else []),
        ],
        executor=default_executor(jobs),
    )


_built: list[tuple[JobsFolder, dg.Definitions]] = []  # the jobs last built, and their defs


def definitions_of(folder: JobsFolder) -> dg.Definitions:
    """`build_definitions` of the folder's jobs, kept for the process while the job files say
    the same: a step's process, forked from the forkserver that built them (`forkserver.py`),
    reads the files but builds nothing (seconds a step for a job of 200 tables)."""
    if not _built or _built[0][0] != folder:
        _built[:] = [(folder, build_definitions(folder.jobs, folder.skipped))]
    return _built[0][1]


@dg.definitions
def defs() -> dg.Definitions:
    """Every job that loads; a job file that does not is shown as assets saying why, and never
    takes the other jobs out of the code location."""
    return definitions_of(_jobs_folder())


_built_jobs: dict[str, tuple[CopyJob, dg.JobDefinition]] = {}  # each job last built alone
_read: list[tuple[tuple[object, ...], JobsFolder]] = []  # the folder last read, with its stamp


def _jobs_folder() -> JobsFolder:
    """The jobs folder, read anew only when its job files (their paths, sizes and modification
    times), the folders or the environment changed since this process last read it: `job_named`
    is called a few times in a run, and each reading parses and checks every job of the project."""
    directory, base = jobs_dir(), project_dir()
    files = [(path, path.stat()) for path in job_files(directory)]
    stamp = (
        directory,
        base,
        tuple((path, found.st_mtime_ns, found.st_size) for path, found in files),
        tuple(sorted(os.environ.items())),
    )
    if not _read or _read[0][0] != stamp:
        _read[:] = [(stamp, load_jobs_folder(directory, base))]
    return _read[0][1]


def job_named(name: str) -> dg.JobDefinition:
    """The asset job of copy job `name`, built from that job alone: what `copyjob run` executes
    in its own process. The run needs its job's tables and their source tables, not the other
    jobs' assets nor the location's schedules and sensors (building those cost ~0.3 s per 200
    tables of the project, for a run of one); the UI re-executes the run from the code location
    (`defs`), whose asset job of `name` is the same. Dagster resolves the job a few times in a
    run (once per subset it makes): built once while the job's file says the same."""
    job = _jobs_folder().job(name, jobs_dir())
    built = _built_jobs.get(name)
    if built is None or built[0] != job:
        alone = build_definitions([job], monitoring=False).resolve_job_def(name)
        built = _built_jobs[name] = (job, alone)
    return built[1]
