"""Materialize one copy job's tables on $DAGSTER_HOME, and die by SIGKILL at a chosen point.

Used only by the fault tests, in a process of its own:

    python fault_runner.py JOB_FILE POINT NTH SLOW_SECONDS

POINT is one of:
  none          run normally
  batch         die as the NTH batch streams from the source into the open write
  commit        die just before the NTH commit of a destination transaction
  replace       die just before the NTH file rename of a Parquet write
  after-commit  die after the destination committed, before Dagster records the watermark
SLOW_SECONDS sleeps that long per batch, so that a test can cut connections mid-copy.
"""

import os
import signal
import sys
import time
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from copyjob_dagster.defs import assets
from copyjob_dagster.engine import copying as engine
from copyjob_dagster.engine import load_job


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str, nth: int, slow: float, destination_url: str) -> None:
    original_count = engine._RowCounter.count

    def count(self, batches):  # type: ignore[no-untyped-def]
        for index, batch in enumerate(original_count(self, batches), start=1):
            if point == "batch" and index == nth:
                die()
            if slow:
                time.sleep(slow)
            yield batch

    engine._RowCounter.count = count

    commits = {"n": 0}
    original_commit = sa.engine.Transaction.commit
    destination_database = (
        sa.engine.make_url(destination_url).database if "://" in destination_url else None
    )

    def commit(self):  # type: ignore[no-untyped-def]
        if point == "commit" and self.connection.engine.url.database == destination_database:
            commits["n"] += 1
            if commits["n"] == nth:
                die()
        return original_commit(self)

    sa.engine.Transaction.commit = commit

    renames = {"n": 0}
    original_replace = os.replace

    def replace(source, target):  # type: ignore[no-untyped-def]
        if point == "replace" and str(target).endswith(".parquet"):
            renames["n"] += 1
            if renames["n"] == nth:
                die()
        return original_replace(source, target)

    os.replace = replace

    original_copy = assets.copy_table

    def copy_then_die(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = original_copy(*args, **kwargs)
        if point == "after-commit":
            die()
        return result

    assets.copy_table = copy_then_die


def main() -> int:
    job_file, point, nth, slow = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    job = load_job(Path(job_file))
    install(point, nth, slow, job.destination.url)
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            [*assets.build_source_specs([job]), *assets.build_copy_assets([job])],
            instance=instance,
            raise_on_error=False,
        )
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
