"""What the engine asks of a store: describe tables, stream Arrow batches, write them atomically.

A table is described by an Arrow schema: Arrow is the one type system between stores. Types
that Arrow lacks travel as strings with a `copyjob.logical` tag in the field's metadata
(`decimal` for unbounded NUMERIC, `json`, `jsonb`, `uuid`), so that a destination of the same
family can recreate them.
"""

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import pyarrow as pa

WriteMethod = Literal["append", "merge"]
LOGICAL_TYPE = b"copyjob.logical"
STRING_LENGTH = b"copyjob.length"


def logical_type(field: pa.Field) -> str | None:
    value = (field.metadata or {}).get(LOGICAL_TYPE)
    return value.decode() if value else None


def string_length(field: pa.Field) -> int | None:
    value = (field.metadata or {}).get(STRING_LENGTH)
    return int(value) if value else None


@dataclass(frozen=True)
class TableDescription:
    """A table's columns as an Arrow schema (in table order) and its primary key."""

    name: str
    schema: pa.Schema
    primary_key: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return list(self.schema.names)


@dataclass(frozen=True)
class Window:
    """Rows whose `column` lies in (low, high] or [low, high]; NULLs are never in a window.

    `low=None` starts from the smallest value; `high=None` has no upper bound. The bounds are
    bound as parameters of the column's own type, never pasted into SQL text. A live run's
    write rewrites the destination from `low` upward; a backfill's (`backfill=True`) rewrites
    only the window, keeping the rows above `high`.
    """

    column: str
    low: Any = None
    low_inclusive: bool = False
    high: Any = None
    backfill: bool = False


@dataclass(frozen=True)
class CursorProfile:
    """What one snapshot says about an incremental column, measured before reading rows."""

    null_rows: int
    high: Any


class TableReader(Protocol):
    """Reads one table inside one consistent snapshot of the source."""

    def batches(
        self, columns: list[str], batch_rows: int, window: Window | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Stream the given columns as record batches of at most `batch_rows` rows."""
        ...

    def count(self, window: Window | None = None) -> int:
        """The number of rows (in `window`), by one query that an index on its column serves."""
        ...

    def profile(self, column: str, low: Any) -> CursorProfile:
        """The NULL count, and the highest value at or above `low` (any value if None)."""
        ...


class Source(Protocol):
    """A store that rows are read from."""

    display_url: str

    def list_tables(self) -> list[str]: ...

    def describe(self, table: str) -> TableDescription:
        """Describe a table; raise `SourceError` naming it when it does not exist."""
        ...

    def estimate_rows(self, table: str) -> int:
        """The table's row count, exact or, where counting costs a scan, estimated cheaply."""
        ...

    def open_reader(self, table: str) -> AbstractContextManager[TableReader]:
        """Open a read-only snapshot in which the table is read."""
        ...

    def close(self) -> None: ...


class Destination(Protocol):
    """A store that rows are written to."""

    display_url: str

    def check(self) -> None:
        """Raise `DestinationError` when the destination cannot be reached or written."""
        ...

    def describe(self, table: str) -> TableDescription | None:
        """Describe a table, or None when it does not exist yet."""
        ...

    def open_reader(self, table: str) -> AbstractContextManager[TableReader]:
        """Open a read-only snapshot of an existing table, to read it back (count its rows)."""
        ...

    def replace(
        self,
        table: str,
        schema: pa.Schema,
        primary_key: tuple[str, ...],
        batches: Iterable[pa.RecordBatch],
    ) -> int:
        """Write the batches into a new table that replaces `table` atomically; return rows.

        Until the swap, readers see the old table; after a failure anywhere, the old table is
        still there and no staging table or file is left behind for long (the next run removes
        what a killed process left).
        """
        ...

    def write_increment(
        self,
        table: str,
        schema: pa.Schema,
        primary_key: tuple[str, ...],
        batches: Iterable[pa.RecordBatch],
        *,
        method: WriteMethod,
        window: Window,
    ) -> int:
        """Write the rows of one incremental window so that writing it again changes nothing.

        `append` replaces the destination's rows of the window (delete them, insert the batches)
        in one transaction; `merge` upserts the batches by `primary_key`. Return rows written.
        """
        ...

    def add_columns(self, table: str, fields: list[pa.Field]) -> None:
        """Add nullable columns that appeared at the source."""
        ...

    def lock(self, table: str, timeout_seconds: float) -> AbstractContextManager[None]:
        """Hold the table's copy lock; raise `DestinationError` if busy after the timeout."""
        ...

    def location(self, table: str) -> str:
        """Where `table` lives, for people: `schema.table` or a file path."""
        ...

    def close(self) -> None: ...
