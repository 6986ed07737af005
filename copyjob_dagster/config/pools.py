"""Source pools: every table read from one source database, by any job, copies under that
database's Dagster concurrency pool, so `source: max_connections:` caps how many copies (each
one connection to the source) run at once across all runs.

The pool is named after the database (backend, host, port, database; never the user or the
password), so jobs that read different schemas of one database share it. Dagster holds the
limits in its instance; this module names the pools, and `concurrency.py` applies the limits.
"""

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from copyjob_dagster.config.endpoints import StoreConfig
from copyjob_dagster.config.models import CopyJob

POOL_PREFIX = "source:"


def source_pool(source: StoreConfig) -> str:
    """The pool of the source's database, e.g. `source:postgresql://db.example.com:5432/shop`."""
    if source.is_folder:
        where = f"folder:{source.url}"
    else:
        backend, host, port, database = source.identity[:4]
        where = f"{backend}://{host or ''}{f':{port}' if port else ''}/{database or ''}"
    # Dagster takes any pool name without whitespace.
    return POOL_PREFIX + quote(where, safe="/:@+.,_-~")


def pool_limits(jobs: Sequence[CopyJob]) -> dict[str, int]:
    """The limit of each pool that a job's `source.max_connections` sets."""
    return {
        source_pool(job.source): job.source.max_connections
        for job in jobs
        if job.source.max_connections is not None
    }


def pool_limit_problems(loaded: Sequence[tuple[Path, CopyJob]]) -> list[str]:
    """Jobs that give one source database different `max_connections`."""
    problems = []
    first: dict[str, tuple[Path, CopyJob]] = {}
    for path, job in loaded:
        if job.source.max_connections is None:
            continue
        other_path, other = first.setdefault(source_pool(job.source), (path, job))
        if other.source.max_connections != job.source.max_connections:
            problems.append(
                f"{path}: job {job.name!r}, field 'source.max_connections': job {other.name!r} "
                f"({other_path.name}) reads the same database with max_connections "
                f"{other.source.max_connections}, this one {job.source.max_connections}; give "
                f"them the same limit (it is one pool for the database)"
            )
    return problems
