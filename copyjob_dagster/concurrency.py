"""How many tables copy at once, on Dagster's own machinery.

- Per run: `max_parallel_tables` is the `max_concurrent` of the job's multiprocess executor
  (each table is a step in its own process).
- Per source database: every table is an op of its source database's pool (`pools.py`);
  `source.max_connections` is that pool's limit in the Dagster instance. With the instance's
  `concurrency: pools: granularity: op` (what Dagster 1.13 also does when it is unset), each
  step holds a slot while it copies, across all runs, schedules and sensors.

Dagster keeps pool limits in the instance, not in code: `apply_pool_limits` writes them there.
`copyjob run`, `copyjob ui` (and so the schedules and sensors of its daemon) and `copyjob
pools` call it; a deployment that starts the webserver and daemon itself runs `copyjob pools`
once after each change of the job files.
"""

from collections.abc import Sequence

import dagster as dg

from copyjob_dagster.config import CopyJob
from copyjob_dagster.errors import ConfigError
from copyjob_dagster.pools import pool_limits


def job_executor(job: CopyJob) -> dg.ExecutorDefinition | None:
    """The multiprocess executor capped at `max_parallel_tables`, or None for Dagster's default."""
    if job.max_parallel_tables is None:
        return None
    return dg.multiprocess_executor.configured(
        {"max_concurrent": job.max_parallel_tables}, name="copyjob_multiprocess"
    )


def apply_pool_limits(instance: dg.DagsterInstance, jobs: Sequence[CopyJob]) -> dict[str, int]:
    """Set each source pool's limit in the instance where it differs; returns all of them."""
    wanted = pool_limits(jobs)
    if not wanted:
        return wanted
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        raise ConfigError(
            "the Dagster instance's storage keeps no concurrency limits, so source."
            "max_connections cannot be applied; use the default SQLite storage or PostgreSQL"
        )
    current = {pool.name: pool.limit for pool in storage.get_pool_limits()}
    for pool, limit in wanted.items():
        if current.get(pool) != limit:
            storage.set_concurrency_slots(pool, limit)
    return wanted
