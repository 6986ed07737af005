"""How many tables copy at once, on Dagster's own machinery.

- Per run: `max_parallel_tables` is the `max_concurrent` of the job's multiprocess executor
  (each table is a step in its own process). A run that is not the job's own (Materialize in
  the UI, `dagster asset materialize`) runs under the Definitions' executor, where the same
  limit is a `tag_concurrency_limits` entry on the job's op tag (`JOB_TAG`).
- Step processes start from a forkserver that has imported Dagster and copyjob, and built the
  Definitions, once per run (`PRELOAD`, `forkserver.py`), instead of each step doing it anew
  (about 2.4 s of CPU per table, and more the more tables the job has).
- Per source database: every table is an op of its source database's pool (`pools.py`);
  `source.max_connections` is that pool's limit in the Dagster instance. With the instance's
  `concurrency: pools: granularity: op` (what Dagster 1.13 also does when it is unset), each
  step holds a slot while it copies, across all runs, schedules and sensors.

Dagster keeps pool limits in the instance, not in code: `apply_pool_limits` writes them there,
and removes the limit of a copyjob pool (named `source:...`) that no job file declares any more.
`copyjob run`, `copyjob ui` (and so the schedules and sensors of its daemon) and `copyjob
pools` call it; a deployment that starts the webserver and daemon itself runs `copyjob pools`
once after each change of the job files.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from copyjob_dagster.config import POOL_PREFIX, CopyJob, pool_limits
from copyjob_dagster.errors import ConfigError

JOB_TAG = "copyjob/job"  # every copy op's tag: the name of its copy job
# What the forkserver imports before it forks a step: Dagster, the project, the drivers, and
# the project's Definitions, built.
PRELOAD = ["copyjob_dagster.forkserver"]


def job_executor(job: CopyJob) -> dg.ExecutorDefinition:
    """The executor of the job's asset job: steps from the forkserver, `max_parallel_tables`
    at once (Dagster's default, the number of cores, when unset).

    With `max_connections`, the run also starts at most that many steps itself. The pool would
    hold the others back anyway, but the executor asks the instance for a slot for every
    waiting step, again and again (backing off to 15 s): with 200 tables that is a storm of
    claims that keeps the run's process busy and leaves slots idle for minutes. The pool still
    shares the source between runs."""
    return _multiprocess({"max_concurrent": job.max_parallel_tables} | _tag_limits([job]))


def default_executor(jobs: Sequence[CopyJob]) -> dg.ExecutorDefinition:
    """The executor of every other run (the UI's Materialize, `dagster asset materialize`):
    steps from the forkserver, and each job's tables at most `max_parallel_tables` (and
    `max_connections`) at once."""
    return _multiprocess(_tag_limits(jobs))


def _tag_limits(jobs: Sequence[CopyJob]) -> dict[str, object]:
    """Each job's tables at most its smaller limit at once, by their op tag."""
    limits = []
    for job in jobs:
        caps = [n for n in (job.max_parallel_tables, job.source.max_connections) if n is not None]
        if caps:
            limits.append({"key": JOB_TAG, "value": job.name, "limit": min(caps)})
    return {"tag_concurrency_limits": limits} if limits else {}


def _multiprocess(config: dict[str, object]) -> dg.ExecutorDefinition:
    start = {"start_method": {"forkserver": {"preload_modules": PRELOAD}}}
    return dg.multiprocess_executor.configured(config | start, name="copyjob_multiprocess")


@dataclass(frozen=True)
class PoolChanges:
    """What `apply_pool_limits` left in the instance."""

    limits: dict[str, int]  # every pool a job limits, and its limit
    removed: list[str]  # copyjob's pools whose limit no job declares any more


def apply_pool_limits(instance: dg.DagsterInstance, jobs: Sequence[CopyJob]) -> PoolChanges:
    """Make the instance's limits of copyjob's pools (`POOL_PREFIX`) those that `jobs`, every
    job of the project, declare: set each where it differs, remove the ones no job declares."""
    wanted = pool_limits(jobs)
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        if wanted:
            raise ConfigError(
                "the Dagster instance's storage keeps no concurrency limits, so source."
                "max_connections cannot be applied; use the default SQLite storage or PostgreSQL"
            )
        return PoolChanges(wanted, [])
    current = {pool.name: pool for pool in storage.get_pool_limits()}
    for pool, limit in wanted.items():
        if pool not in current or current[pool].limit != limit:
            storage.set_concurrency_slots(pool, limit)
    # A limit the instance's `default_limit` gave the pool is Dagster's own, not copyjob's.
    removed = sorted(
        name
        for name, pool in current.items()
        if name.startswith(POOL_PREFIX) and name not in wanted and not pool.from_default
    )
    for pool in removed:
        storage.delete_concurrency_limit(pool)
    return PoolChanges(wanted, removed)
