import os

from sqlalchemy import dialects

# Arrow's memory pool for the process, chosen before pyarrow first allocates: read-ahead threads
# build batches that the copy's thread frees, which jemalloc serves with less memory than the
# default pool (see stores/read_ahead.py). A pool the user chose stays.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")

# Dagster's documented PostgreSQL instance config makes dagster-postgres connect to
# `postgresql://`. It is written for psycopg2 (its `NOTIFY run_events, %s` needs client-side
# binding), and SQLAlchemy 2.1 maps the bare name to psycopg 3, so a process that imports
# copyjob maps it back before it builds the instance. copyjob's own stores name psycopg 3
# (stores/postgres.py), so a job's `postgresql://` URL is unaffected.
dialects.registry.register(
    "postgresql", "sqlalchemy.dialects.postgresql.psycopg2", "PGDialect_psycopg2"
)

__version__ = "0.1.0"

__all__ = ["CopyJobComponent"]


def __getattr__(name: str) -> object:
    # The Component imports Dagster; the engine, stores and config (which import this package
    # first) never do, so it loads when asked for (`dg` finds it through the entry point).
    if name == "CopyJobComponent":
        from copyjob_dagster.component import CopyJobComponent

        return CopyJobComponent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
