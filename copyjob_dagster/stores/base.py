"""What the engine asks of a store: describe tables, stream Arrow batches, write them atomically.

A table is described by an Arrow schema: Arrow is the one type system between stores. Types
that Arrow lacks travel as strings with a `copyjob.logical` tag in the field's metadata
(`decimal` for unbounded NUMERIC, `json`, `jsonb`, `uuid`), so that a destination of the same
family can recreate them.
"""

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import pyarrow as pa

from copyjob_dagster.stores.capabilities import Capabilities
from copyjob_dagster.stores.open_transactions import OpenTransactions

WriteMethod = Literal["append", "merge", "scd2"]
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
    bound as parameters of the column's own type, never pasted into SQL text. Where an
    appended table has no key, a live run's write rewrites it from `low` upward; a backfill's
    (`backfill=True`) rewrites only the window, keeping the rows above `high`.
    """

    column: str
    low: Any = None
    low_inclusive: bool = False
    high: Any = None
    backfill: bool = False

    @classmethod
    def at(cls, column: str, value: Any) -> "Window":
        """The rows whose `column` equals `value`: those at a watermark."""
        return cls(column, value, True, value)

    @property
    def one_value(self) -> bool:
        return self.low is not None and self.low_inclusive and self.low == self.high


def ordered_by_collation(field: pa.Field) -> bool:
    """Whether stores may order the values of `field` differently: text is ordered by each
    database's collation (case-insensitive, linguistic, or by code point) and by bytes in Arrow.

    A window over such a column is a range in the source's order only: a destination rewrites
    or closes the rows the window returned (by key and value), never a range of its own."""
    return pa.types.is_string(field.type) or pa.types.is_large_string(field.type)


@dataclass(frozen=True)
class KeyRange:
    """One part of a split read: rows whose `column` lies in [low, high), and its NULLs if
    `nulls`. `low=None` and `high=None` are open ends, so that no value falls outside the
    parts; exactly one part of a split holds the NULLs."""

    column: str
    low: Any = None
    high: Any = None
    nulls: bool = False


@dataclass(frozen=True)
class CursorProfile:
    """What one snapshot says about an incremental column, measured before reading rows, by
    one query (one scan of the table where no index on the column serves it)."""

    null_rows: int
    high: Any
    rows: int = 0
    """Rows whose value is at or above `low` (every non-NULL row when `low` is None)."""
    rows_at_low: int = 0
    """Rows whose value is exactly `low` (`low <= value <= low`, as a window compares)."""


@dataclass(frozen=True)
class LiveRows:
    """Which rows of a copy stand for rows at the source now: the current versions (SCD2),
    the rows not marked deleted (soft deletes)."""

    current_column: str | None = None
    deleted_column: str | None = None


@dataclass(frozen=True)
class VersionColumns:
    """The validity columns of a table that keeps every version of a row (SCD type 2)."""

    valid_from: str
    valid_to: str
    is_current: str


@dataclass(frozen=True)
class DeletePolicy:
    """What happens to destination rows whose key is no longer at the source.

    `hard` deletes them (every version, for a versioned table). `soft` sets `marker` to `stamp`
    on rows not marked yet and clears it on marked rows whose key is back; for a versioned
    table it closes the current version instead (`valid_to` = `stamp`, no longer current).
    """

    mode: Literal["hard", "soft"]
    key: tuple[str, ...]
    stamp: Any = None
    marker: str | None = None
    versions: VersionColumns | None = None


@dataclass(frozen=True)
class Commit:
    """The commit a write made, where the destination numbers its table's versions (Delta):
    the version, and the rows it inserted, updated and deleted as the commit reports them."""

    version: int
    inserted: int
    updated: int = 0
    deleted: int = 0


@dataclass(frozen=True)
class DeletionCounts:
    deleted: int = 0
    soft_deleted: int = 0
    restored: int = 0


class KeyDiff(Protocol):
    """The destination's rows whose key the source no longer holds, found but not yet touched.

    `pending` is how many live rows the pass would delete or mark, of `live` live rows (not
    marked, or current versions): the engine's guard judges that share before any write.
    """

    pending: int
    live: int

    def apply(self) -> DeletionCounts:
        """Delete or mark them (idempotent: a second pass finds nothing to do)."""
        ...


class TableReader(Protocol):
    """Reads one table inside one consistent snapshot of the source."""

    version: int | None
    """The table version the snapshot reads, where the store numbers versions (Delta)."""

    def batches(
        self, columns: list[str], batch_rows: int, window: Window | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Stream the given columns (of the rows in `window`) as record batches of at most
        `batch_rows` rows."""
        ...

    def count(self, window: Window | None = None, live: LiveRows | None = None) -> int:
        """The number of rows (in `window`; only the `live` ones), by one query that an index
        on the window's column serves."""
        ...

    def profile(self, column: str, low: Any) -> CursorProfile:
        """The NULL count, the highest value at or above `low` (any value if None), and how
        many rows are at or above `low` and exactly at it, all from one query."""
        ...


class Source(Protocol):
    """A store that rows are read from."""

    display_url: str
    capabilities: Capabilities

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


@runtime_checkable
class SplittableSource(Protocol):
    """A source whose snapshot several connections can read at once (a split copy)."""

    def open_split(
        self, table: str, parts: int
    ) -> AbstractContextManager[tuple[TableReader, list[TableReader]]]:
        """Open a snapshot reader and `parts - 1` more readers of the very same snapshot; the
        first one also serves counts, bounds and keys."""
        ...


class ChangeFeed(Protocol):
    """The rows of one table changed between two of its versions (`since`, `version`]."""

    since: int | None
    version: int
    snapshot: TableReader
    """The table at `version`: a first load reads it whole, the deletion pass its keys."""
    deleted_keys: int
    """Keys whose last change was a delete (known after `read_keys`)."""

    @property
    def changed(self) -> bool: ...

    def read_keys(self, key: list[str]) -> None: ...

    def rows(self, columns: list[str], key: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Each changed key's newest row, unless its last change deleted it."""
        ...


@runtime_checkable
class ChangeFeedSource(Protocol):
    """A source whose tables report their changes since a version (`change_feed`)."""

    def open_feed(self, table: str, since: int | None) -> AbstractContextManager[ChangeFeed]:
        """The changes since version `since` (None: none, a first load) up to the table's
        version now; `SourceError` naming the table when it records no changes."""
        ...


@runtime_checkable
class TransactionAwareSource(Protocol):
    """A source that can say how far down a row committed late can land (see
    `open_transactions`)."""

    def open_transactions(self) -> OpenTransactions:
        """Read, before a snapshot begins, the transactions open at the source."""
        ...


class Destination(Protocol):
    """A store that rows are written to."""

    display_url: str
    capabilities: Capabilities
    last_commit: Commit | None
    """The commit of the last write, where the store numbers its table's versions."""
    replaced_rows: int | None
    """The rows of the table the last `replace` swapped in, where the store knows them without
    counting: the server's own report of loading them into the staging table that `replace`
    created (MySQL's LOAD DATA, held to the rows sent). None: only a count tells."""

    def check(self) -> None:
        """Raise `DestinationError` when the destination cannot be reached or written."""
        ...

    def describe(self, table: str) -> TableDescription | None:
        """Describe a table, or None when it does not exist yet."""
        ...

    def stored_field(self, field: pa.Field) -> pa.Field:
        """The field a column created for `field` reads back as (MariaDB keeps an aware
        timestamp as a DATETIME in UTC, read back naive)."""
        ...

    def type_name(self, field: pa.Field) -> str:
        """The destination's own name for the column type that holds `field`."""
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
        *,
        updated_by_key: bool = False,
    ) -> int:
        """Write the batches into a new table that replaces `table` atomically; return rows.

        Until the swap, readers see the old table; after a failure anywhere, the old table is
        still there and no staging table or file is left behind for long (the next run removes
        what a killed process left). `updated_by_key`: the table is then changed row by row
        by key (`mode: cdc`); a store may lay it out for that (PostgreSQL leaves room on each
        page, so an update can stay on its row's page).
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

        `append` keeps each version of a row: `primary_key` is the row's key and the window's
        column. A batch's row replaces the destination's row with the same key (or, without a
        key, the rows with the same text value of the column); without a key, a window over a
        column ordered alike everywhere (numbers, times) replaces the destination's rows of the
        window instead. `merge` upserts the batches by `primary_key`. One transaction either
        way. Return rows written.
        """
        ...

    def write_versions(
        self,
        table: str,
        schema: pa.Schema,
        primary_key: tuple[str, ...],
        batches: Iterable[pa.RecordBatch],
        *,
        versions: VersionColumns,
        window: Window,
    ) -> int:
        """Write a window's rows as new versions (SCD2): a row whose (key, valid_from) is
        already there replaces it, and the current version of each key with a newer row is
        closed; the batches carry `valid_from` = the incremental value. Writing the same window
        again changes nothing. Return rows written."""
        ...

    def diff_keys(
        self,
        table: str,
        key_schema: pa.Schema,
        source_keys: Iterable[pa.RecordBatch],
        policy: DeletePolicy,
    ) -> AbstractContextManager[KeyDiff]:
        """Stage the source's keys beside `table` and find the rows whose key is gone, without
        holding either key set in memory; staged keys are removed on exit."""
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
