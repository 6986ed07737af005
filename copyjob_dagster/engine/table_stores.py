"""A table's source and destination, opened once for all that one copy of it does, and its lock.

A copy holds the table's lock, reads the source, writes the destination, then counts both
sides for its row-count check. Each of these used to open the store again: for a database a
new engine, a new connection (with SQLAlchemy's first-connect queries), and the table
reflected again. For a table with nothing new that was most of its cost. `table_stores` opens
them once; the lock, the copy and the counts take them, and the stores' own caches stay right
(a store forgets a table's reflection when it writes the table's definition). Inside
`shared_engines()` (a run's tables), the stores of consecutive tables share their engines too:
connections and compiled statements (`stores.engines`).
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.errors import CopyJobError
from copyjob_dagster.stores import (
    Destination,
    Source,
    describe_ahead,
    open_destination,
    open_source,
    shared_engines,
)

LOCK_TIMEOUT_SECONDS = 600
__all__ = ["TableStores", "describe_sources", "shared_engines", "table_lock", "table_stores"]


@dataclass(frozen=True)
class TableStores:
    """The job's source and destination, open (their connections come as they are used)."""

    source: Source
    destination: Destination


@contextmanager
def table_stores(job: CopyJob) -> Iterator[TableStores]:
    """The job's source and destination, closed when the context ends."""
    source = open_source(job.source)
    try:
        destination = open_destination(job.destination)
        try:
            yield TableStores(source, destination)
        finally:
            destination.close()
    finally:
        source.close()


def describe_sources(job: CopyJob, tables: Sequence[TableConfig]) -> None:
    """Inside `shared_engines()`: describe the source tables of a run's `tables` in one go, for
    their copies to take (`stores.reflection`); a failure here is met again by each table."""
    if len(tables) < 2:
        return
    try:
        source = open_source(job.source)
    except CopyJobError:
        return
    try:
        describe_ahead(source, [table.name for table in tables])
    finally:
        source.close()


@contextmanager
def source_of(job: CopyJob, stores: TableStores | None) -> Iterator[Source]:
    """`stores`' source, left open; else the job's, opened and closed here."""
    if stores is not None:
        yield stores.source
        return
    source = open_source(job.source)
    try:
        yield source
    finally:
        source.close()


@contextmanager
def destination_of(job: CopyJob, stores: TableStores | None) -> Iterator[Destination]:
    """`stores`' destination, left open; else the job's, opened and closed here."""
    if stores is not None:
        yield stores.destination
        return
    destination = open_destination(job.destination)
    try:
        yield destination
    finally:
        destination.close()


@contextmanager
def table_lock(
    job: CopyJob,
    table: TableConfig,
    timeout_seconds: float = LOCK_TIMEOUT_SECONDS,
    stores: TableStores | None = None,
) -> Iterator[None]:
    """Hold the destination table's copy lock: a second copy of the table waits, then refuses.

    The caller holds it from reading the watermark until the new one is recorded, so two runs
    of one table never copy the same window at once nor record watermarks out of order.
    """
    with (
        destination_of(job, stores) as destination,
        destination.lock(table.destination_name, timeout_seconds),
    ):
        yield
