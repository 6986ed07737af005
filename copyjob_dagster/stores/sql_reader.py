"""A SQLAlchemy table read as Arrow batches inside one snapshot: the generic read path.

Rows come through SQLAlchemy's result processors and are turned into Arrow arrays a column at
a time; the store's `converter` mends values that the driver returns in a form Arrow does not
take. Stores with a faster way to read (PostgreSQL's COPY, SQLite's own cursor) subclass it.
"""

from collections.abc import Callable, Generator, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from copyjob_dagster.errors import SchemaError
from copyjob_dagster.stores import ranges
from copyjob_dagster.stores.base import CursorProfile, KeyRange, LiveRows, Window

if TYPE_CHECKING:
    from copyjob_dagster.stores.sql import SqlStore

T = TypeVar("T")


class SqlTableReader:
    """Streams a table's rows as Arrow batches through one open snapshot connection."""

    version = None  # a database numbers no table versions

    def __init__(self, store: "SqlStore", conn: Connection, table: sa.Table) -> None:
        self._store = store
        self._conn = conn
        self._table = table
        self._streams: list[Generator[Any, None, None]] = []

    def streaming(self, stream: Generator[T, None, None]) -> Generator[T, None, None]:
        """`stream`, closed by `close` if its reader stops early (a failed write): a COPY still
        sending rows would otherwise keep the snapshot connection from rolling back."""
        self._streams.append(stream)
        return stream

    def close(self) -> None:
        """End what still streams, so that the snapshot can be rolled back."""
        for stream in self._streams:
            stream.close()

    def batches(
        self,
        columns: list[str],
        batch_rows: int,
        window: Window | None = None,
        part: KeyRange | None = None,
    ) -> Iterator[pa.RecordBatch]:
        description = self._store.describe(self._table.name)
        schema = pa.schema([description.schema.field(name) for name in columns])
        selected = [self._store.select_expression(self._table.c[name]) for name in columns]
        converters = [self._store.converter(field) for field in schema]
        query = sa.select(*selected)
        if window is not None:
            query = query.where(*ranges.window_conditions(self._table, window))
        if part is not None:
            query = query.where(*ranges.range_conditions(self._table, part))
        result = self._conn.execution_options(
            stream_results=True, max_row_buffer=batch_rows
        ).execute(query)
        for rows in result.partitions(batch_rows):
            yield _to_batch(rows, schema, converters)

    def count(self, window: Window | None = None, live: LiveRows | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(self._table)
        if window is not None:
            query = query.where(*ranges.window_conditions(self._table, window))
        if live is not None and live.current_column:
            query = query.where(self._table.c[live.current_column] == sa.true())
        if live is not None and live.deleted_column:
            query = query.where(self._table.c[live.deleted_column].is_(None))
        return self._conn.execute(query).scalar_one()

    def span(self, column: str, window: Window | None = None) -> tuple[Any, Any]:
        """The smallest and largest value of `column` (in `window`) in this snapshot."""
        conditions = ranges.window_conditions(self._table, window) if window is not None else []
        low, high = self._conn.execute(ranges.span_query(self._table, column, conditions)).one()
        return low, high

    def profile(self, column: str, low: Any) -> CursorProfile:
        # One aggregate, so that a column without an index costs one scan, not one per figure;
        # with an index, the OR reads two ranges of it (PostgreSQL's BitmapOr, one range of
        # MariaDB's index, SQLite's multi-index OR: seen in their plans).
        cursor = self._table.c[column]
        nulls = sa.func.count() - sa.func.count(cursor)
        figures = [nulls, sa.func.max(self._store.stored_value(cursor)), sa.func.count(cursor)]
        where = []
        if low is not None:
            at_low = ranges.window_conditions(self._table, Window.at(column, low))
            figures.append(sa.func.count(sa.case((sa.and_(*at_low), 1))))
            where.append(sa.or_(cursor.is_(None), cursor >= low))
        query = sa.select(*figures).select_from(self._table).where(*where)
        found = self._conn.execute(query).one()
        return CursorProfile(
            null_rows=int(found[0]),
            high=found[1],
            rows=int(found[2]),
            rows_at_low=int(found[3]) if low is not None else 0,
        )


def as_text(value: Any) -> Any:
    """A value of a text column as text (SQLite lets any value sit in one)."""
    if value is None or isinstance(value, str):
        return value
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def as_bool(value: Any) -> bool | None:
    """A boolean, also from the 0 and 1 that MySQL's TINYINT(1) holds."""
    if value is None or isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    raise ValueError(f"{value!r} is neither 0 nor 1")


def _to_batch(
    rows: list[Any], schema: pa.Schema, converters: list[Callable[[Any], Any] | None]
) -> pa.RecordBatch:
    arrays = []
    for index, (field, convert) in enumerate(zip(schema, converters, strict=True)):
        values = [row[index] for row in rows]
        try:
            arrays.append(values_array(values, field.type, convert))
        except (pa.ArrowException, ArithmeticError, ValueError, TypeError) as exc:
            raise SchemaError(
                f"column {field.name!r}: a value does not fit {field.type}: {exc}"
            ) from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def values_array(
    values: list[Any], arrow_type: pa.DataType, convert: Callable[[Any], Any] | None
) -> pa.Array:
    if convert is not None:
        return pa.array([convert(v) for v in values], type=arrow_type)
    if pa.types.is_string(arrow_type):
        return _text_array(values)
    return pa.array(values, type=arrow_type)


def _text_array(values: list[Any]) -> pa.Array:
    """Text columns; SQLite lets any value sit in a TEXT column, so non-text is made text."""
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array([as_text(v) for v in values], type=pa.string())
