"""Run a copy job's asset job through Dagster's multiprocess executor, at most N steps at once.

Usage: python dagster_job.py JOB MAX_CONCURRENT [forkserver|spawn]. The same as `copyjob run
JOB` (whose executor starts steps from a forkserver), with the executor's concurrency and start
method set, so that the runs compared differ in nothing else.
"""

import os
import sys
from pathlib import Path

import dagster as dg

from copyjob_dagster.definitions import job_named
from copyjob_dagster.defs.concurrency import PRELOAD


def job_with(job: str, max_concurrent: int, start: str) -> dg.JobDefinition:
    """The copy job's asset job, with this executor (rebuilt in each step's process)."""
    start_config = {"forkserver": {"preload_modules": PRELOAD}} if start == "forkserver" else {}
    executor = dg.multiprocess_executor.configured(
        {"max_concurrent": max_concurrent, "start_method": start_config or {"spawn": {}}},
        name="bench_multiprocess",
    )
    return job_named(job).with_executor_def(executor)


def main() -> None:
    job, max_concurrent = sys.argv[1], int(sys.argv[2])
    start = sys.argv[3] if len(sys.argv) > 3 else "forkserver"
    # Dagster imports this module by name to rebuild the job, here and in each step's process
    # (it takes the script's own folder, sys.path[0], off the path).
    here = str(Path(__file__).resolve().parent)
    sys.path.append(here)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    recon = dg.build_reconstructable_job(
        "dagster_job", "job_with", reconstructable_args=(job, max_concurrent, start)
    )
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(recon, instance=instance)
    if not result.success:
        sys.exit(f"run {result.run_id} of {job} failed")


if __name__ == "__main__":
    main()
