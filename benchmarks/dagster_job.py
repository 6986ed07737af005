"""Run a copy job's asset job through Dagster's multiprocess executor, at most N steps at once.

Usage: python dagster_job.py JOB MAX_CONCURRENT. The same as `copyjob run JOB`, with the
executor's concurrency set, so that parallel and one-after-another differ in nothing else.
"""

import sys

import dagster as dg


def main() -> None:
    job, max_concurrent = sys.argv[1], int(sys.argv[2])
    recon = dg.build_reconstructable_job(
        "copyjob_dagster.definitions", "job_named", reconstructable_args=(job,)
    )
    run_config = {"execution": {"config": {"multiprocess": {"max_concurrent": max_concurrent}}}}
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(recon, instance=instance, run_config=run_config)
    if not result.success:
        sys.exit(f"run {result.run_id} of {job} failed")


if __name__ == "__main__":
    main()
