"""How many tables copy at once, and Dagster's part in it.

- Per run: a job's tables are one step, which copies them on a pool of threads (`parallel`):
  `max_parallel_tables` of them at once (`parallel_tables`). The job's own asset job (`copyjob
  run`, its schedule and sensor) executes that step in the run's own process; any other run
  (Materialize in the UI, `dagster asset materialize`) runs each job's step in a process of its
  own, started from a forkserver that has imported Dagster and copyjob and built the
  Definitions once (`PRELOAD`, `forkserver.py`), so a run spanning several jobs copies them in
  parallel.
- Per source database: every table copies under its source database's pool (`pools.py`);
  `source.max_connections` is that pool's limit in the Dagster instance, and each table holds a
  slot of it while it copies (`source_slot`), across all runs, schedules and sensors.

Dagster keeps pool limits in the instance, not in code: `apply_pool_limits` writes them there,
and removes the limit of a copyjob pool (named `source:...`) that no job file declares any more.
`copyjob run`, `copyjob ui` (and so the schedules and sensors of its daemon) and `copyjob
pools` call it; a deployment that starts the webserver and daemon itself runs `copyjob pools`
once after each change of the job files.
"""

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

import dagster as dg

from copyjob_dagster.config import POOL_PREFIX, CopyJob, pool_limits, source_pool
from copyjob_dagster.defs import naming
from copyjob_dagster.defs.parallel import Slot
from copyjob_dagster.errors import ConfigError, CopyJobError

# Tables of a run copied at once when the job does not say: small tables spend most of their
# time waiting on the databases, so more than the 2 cores of a small machine pay.
DEFAULT_PARALLEL_TABLES = 4
# What the forkserver imports before it forks a step: Dagster, the project, the drivers, and
# the project's Definitions, built.
PRELOAD = ["copyjob_dagster.forkserver"]
_CLAIM_WAIT_MAX = 1.0  # seconds between two claims of a source slot, at most


def parallel_tables(job: CopyJob) -> int:
    """How many of the job's tables one run copies at once."""
    caps = [job.max_parallel_tables or DEFAULT_PARALLEL_TABLES]
    if job.source.max_connections is not None:
        caps.append(job.source.max_connections)
    return min(caps)


def job_executor(job: CopyJob) -> dg.ExecutorDefinition:
    """The executor of the job's asset job: its one step in the run's own process (no process
    to start, no forkserver)."""
    return dg.in_process_executor


def default_executor(jobs: Sequence[CopyJob]) -> dg.ExecutorDefinition:
    """The executor of every other run (the UI's Materialize, `dagster asset materialize`):
    each job's step in a process of its own, from the forkserver."""
    start = {"start_method": {"forkserver": {"preload_modules": PRELOAD}}}
    return dg.multiprocess_executor.configured(start, name="copyjob_multiprocess")


def source_slot(instance: dg.DagsterInstance, job: CopyJob, run_id: str) -> Slot:
    """A table's slot of its source's pool, held while it copies, when the pool has a limit
    (`source.max_connections`, kept in the instance, so shared by every run)."""
    pool = source_pool(job.source)
    storage = instance.event_log_storage
    limited = storage.supports_global_concurrency_limits and any(
        limit.name == pool for limit in storage.get_pool_limits()
    )
    steps = {table.destination_name: naming.op_name(job, table) for table in job.tables}

    @contextmanager
    def slot(table: str, closing: threading.Event) -> Iterator[None]:
        step, wait = steps[table], 0.05
        try:
            while not storage.claim_concurrency_slot(pool, run_id, step).is_claimed:
                if closing.wait(wait):
                    raise CopyJobError(f"the run ended while {table} waited for {pool}")
                wait = min(_CLAIM_WAIT_MAX, wait * 2)
            yield
        finally:
            storage.free_concurrency_slot_for_step(run_id, step)

    def unlimited(table: str, closing: threading.Event) -> AbstractContextManager[None]:
        return nullcontext()

    return slot if limited else unlimited


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
