"""SQLite rows read in their storage classes and converted a column at a time by Arrow.

The generic path builds a SQLAlchemy Row for each row, runs each value through SQLAlchemy's
result processor (a DATETIME's text parsed by `datetime.fromisoformat`, ...) and then through
the store's converter: several microseconds a row. Here the raw values come as Arrow arrays of
their storage classes (integers, doubles, text), from ADBC's driver (`sqlite_native`) or from
the snapshot connection's own sqlite3 cursor a batch of rows at a time, and Arrow compute turns
those into the columns' types: ISO text into timestamps and dates, 0/1 into booleans, doubles
into decimals.

A vectorized conversion is kept only where it gives exactly what the generic path gives. Where
it could differ (a value of another storage class, a timestamp spelled another way, a double
that needs rounding to the column's scale), that column of that batch goes through the generic
per-value conversion instead, so unusual data reads exactly as before, errors included.
"""

import contextlib
import dataclasses
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from copyjob_dagster.errors import SchemaError
from copyjob_dagster.stores import sqlite_native
from copyjob_dagster.stores.base import Window
from copyjob_dagster.stores.ranges import window_conditions
from copyjob_dagster.stores.sql_reader import SqlTableReader, values_array

# The spellings that `datetime.fromisoformat` and Arrow's cast read alike; any other spelling
# (an offset, a week date, seven fraction digits) takes the generic path.
_TIMESTAMP = r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d{1,6})?$"
_DATE = r"^\d{4}-\d\d-\d\d$"
_VALUE_ERRORS = (pa.ArrowException, ArithmeticError, ValueError, TypeError, OverflowError)
# Rows fetched as Python objects at a time (about 8 MB of them here), made Arrow at once, and
# gathered into the engine's batches: Python's objects cost many times their Arrow form.
FETCH_ROWS = 10_000
# Decimal digits of any integer a double holds exactly (2**53 has 16).
_EXACT_DIGITS = 15

Finish = Callable[[pa.Array], pa.Array | None]


@dataclasses.dataclass(frozen=True)
class _Column:
    """How one selected column is converted: `raw` is the Arrow type its stored values are built
    in, `finish` turns those into the field's type (None: not exactly, use the generic path);
    `process` and `convert` are the generic path's per-value steps."""

    field: pa.Field
    raw: pa.DataType | None
    finish: Finish
    process: Callable[[Any], Any] | None
    convert: Callable[[Any], Any] | None
    native: bool


class SQLiteTableReader(SqlTableReader):
    """Reads rows through ADBC's driver where its connection sees exactly the snapshot
    (`sqlite_native`), else through the sqlite3 cursor of the snapshot connection itself: either
    way counts, profiles and rows all come from the one snapshot `begin_snapshot` opened."""

    def batches(
        self, columns: list[str], batch_rows: int, window: Window | None = None
    ) -> Iterator[pa.RecordBatch]:
        description = self._store.describe(self._table.name)
        schema = pa.schema([description.schema.field(name) for name in columns])
        dialect = self._conn.dialect
        selected = [self._store.select_expression(self._table.c[name]) for name in columns]
        plans = [
            self._plan(expression, self._table.c[name].type, field, dialect)
            for name, expression, field in zip(columns, selected, schema, strict=True)
        ]
        conditions = [] if window is None else window_conditions(self._table, window)
        statement, parameters = _compiled(sa.select(*selected).where(*conditions), dialect)
        cursor_rows = self._read(statement, parameters, schema, plans, batch_rows)
        if not all(plan.native for plan in plans):
            return self.streaming(cursor_rows)
        natively = [
            _natively(expression, self._table.c[name])
            for name, expression in zip(columns, selected, strict=True)
        ]
        native = sqlite_native.query(natively, conditions, [plan.raw for plan in plans])
        if native is None:
            return self.streaming(cursor_rows)
        compiled = _compiled(native, dialect)
        return self.streaming(self._read_native(compiled, schema, plans, batch_rows, cursor_rows))

    def _read_native(
        self,
        compiled: tuple[str, list[Any]],
        schema: pa.Schema,
        plans: list[_Column],
        batch_rows: int,
        fallback: Generator[pa.RecordBatch, None, None],
    ) -> Generator[pa.RecordBatch, None, None]:
        """The rows through ADBC's driver, or through the cursor where that cannot be exact."""
        path = sqlite_native.database_file(self._conn, self._table.schema)
        if path is None:
            yield from fallback
            return
        raw_types = [plan.raw for plan in plans if plan.raw is not None]
        stream = sqlite_native.batches(path, *compiled, schema.names, raw_types, batch_rows)
        try:
            first = next(stream, None)
        except sqlite_native.NativeUnavailable:
            yield from fallback
            return
        fallback.close()
        try:
            batch = first
            while batch is not None:
                yield pa.RecordBatch.from_arrays(
                    [_finished(a, plan) for a, plan in zip(batch.columns, plans, strict=True)],
                    schema=schema,
                )
                batch = next(stream, None)
        finally:
            stream.close()

    def _read(
        self,
        statement: str,
        parameters: list[Any],
        schema: pa.Schema,
        plans: list[_Column],
        batch_rows: int,
    ) -> Generator[pa.RecordBatch, None, None]:
        cursor = self._conn.connection.driver_connection.cursor()
        try:
            cursor.execute(statement, parameters)
            rows_type = (
                pa.struct([pa.field(str(i), plan.raw) for i, plan in enumerate(plans)])
                if all(plan.raw is not None for plan in plans)
                else None
            )
            fetch = min(batch_rows, FETCH_ROWS)
            parts, rows_in_parts = [], 0
            while rows := cursor.fetchmany(fetch):
                parts.append(_batch(rows, schema, plans, rows_type))
                rows_in_parts += len(rows)
                if rows_in_parts + fetch > batch_rows:
                    yield pa.concat_batches(parts)
                    parts, rows_in_parts = [], 0
            if parts:
                yield pa.concat_batches(parts)
        finally:
            cursor.close()

    def _plan(
        self, expression: sa.ColumnElement[Any], column_type: Any, field: pa.Field, dialect: Dialect
    ) -> _Column:
        process = expression.type.dialect_impl(dialect).result_processor(dialect, None)
        convert = self._store.converter(field)
        raw, finish = _fast_path(field.type, column_type, process is None and convert is None)
        native = raw is not None and _native_exact(field.type, column_type, raw, finish)
        return _Column(field, raw, finish, process, convert, native)


def _fast_path(
    arrow_type: pa.DataType, column_type: Any, as_stored: bool
) -> tuple[pa.DataType | None, Finish]:
    """The storage type and finishing step of a column's vectorized conversion, if it has one."""
    if as_stored and arrow_type in (pa.int64(), pa.float64(), pa.string(), pa.binary()):
        return arrow_type, _same
    if pa.types.is_boolean(arrow_type) and isinstance(column_type, sa.Boolean):
        # bool(value), as SQLAlchemy's processor does: doubles, so that 0.5 is not cut to 0.
        return pa.float64(), _nonzero
    if pa.types.is_decimal(arrow_type) and isinstance(column_type, sa.Numeric):
        return pa.float64(), _decimals(arrow_type)
    if (
        pa.types.is_timestamp(arrow_type)
        and arrow_type.tz is None
        and arrow_type.unit == "us"
        and isinstance(column_type, sa.DateTime)
    ):
        return pa.string(), _parsed(_TIMESTAMP, arrow_type)
    if pa.types.is_date32(arrow_type) and isinstance(column_type, sa.Date):
        return pa.string(), _parsed(_DATE, arrow_type)
    return None, _same


def _native_exact(
    arrow_type: pa.DataType, column_type: Any, raw: pa.DataType, finish: Finish
) -> bool:
    """Whether ADBC's values of a column are those sqlite3 hands over. The driver makes any
    number text in a text column, so a column read as stored text must have TEXT affinity
    (SQLAlchemy reflects only such declared types as String), where SQLite stores no number;
    it makes integers doubles, so a decimal must be narrow enough for a double to hold each
    of its integers exactly."""
    if finish is _same and raw == pa.string():
        return isinstance(column_type, sa.String)
    if pa.types.is_decimal(arrow_type):
        return arrow_type.precision <= _EXACT_DIGITS
    return raw in (pa.int64(), pa.float64(), pa.string())


def _natively(expression: sa.ColumnElement[Any], column: sa.Column) -> sa.ColumnElement[Any]:
    """The column as ADBC reads it. An INTEGER column is read as stored: the driver refuses a
    REAL among its integers by itself (or types the column DOUBLE, and the cursor reads it), so
    the cursor's CASE that keeps a fraction from being cut (a third of the read's time) is not
    needed."""
    return column.label(column.name) if isinstance(column.type, sa.Integer) else expression


def _finished(values: pa.Array, plan: _Column) -> pa.Array:
    """A column of ADBC's batch in the field's type, as `_batch` makes the cursor's."""
    if values.null_count == len(values):
        return pa.nulls(len(values), plan.field.type)
    if pa.types.is_string(values.type):
        try:
            values.validate(full=True)
        except pa.ArrowInvalid:  # a BLOB that is not UTF-8 among the text
            return _per_value(_texts(values), plan)
    finished = plan.finish(values)
    return finished if finished is not None else _per_value(values.to_pylist(), plan)


def _texts(values: pa.Array) -> list[Any]:
    """Each value as sqlite3 hands it over: text where it is UTF-8, else the BLOB's bytes (the
    driver hands both over as text)."""
    texts: list[Any] = []
    for value in values.cast(pa.binary()).to_pylist():
        try:
            texts.append(None if value is None else value.decode())
        except UnicodeDecodeError:
            texts.append(value)
    return texts


def _same(values: pa.Array) -> pa.Array:
    return values


def _nonzero(values: pa.Array) -> pa.Array:
    return pc.not_equal(values, 0.0)


def _decimals(decimal_type: pa.DataType) -> Finish:
    """A double as `Decimal(repr(value))` reads it: Arrow spells a double by the same shortest
    digits that read back as it, and refuses to cast those to the scale if they hold more
    places (where the generic path rounds them)."""

    def finish(values: pa.Array) -> pa.Array | None:
        try:
            return values.cast(pa.string()).cast(decimal_type)
        except pa.ArrowException:
            return None

    return finish


def _parsed(pattern: str, arrow_type: pa.DataType) -> Finish:
    def finish(values: pa.Array) -> pa.Array | None:
        if not pc.all(pc.match_substring_regex(values, pattern)).as_py():
            return None
        try:
            return values.cast(arrow_type)
        except pa.ArrowException:
            return None

    return finish


def _batch(
    rows: list[tuple[Any, ...]],
    schema: pa.Schema,
    plans: list[_Column],
    rows_type: pa.StructType | None,
) -> pa.RecordBatch:
    """One batch: every column built at once in its storage type where the values allow,
    else column by column, and per value where a column's vectorized conversion is not exact."""
    stored: Sequence[pa.Array | None] = [None] * len(plans)
    if rows_type is not None:
        with contextlib.suppress(*_VALUE_ERRORS):  # values of other storage classes
            stored = pa.array(rows, rows_type).flatten()
    by_column: list[tuple[Any, ...]] | None = None
    arrays = []
    for index, plan in enumerate(plans):
        array = stored[index]
        if array is None and plan.raw is not None:
            by_column = by_column or list(zip(*rows, strict=True))
            try:
                array = pa.array(by_column[index], plan.raw)
            except _VALUE_ERRORS:
                array = None
        if array is not None:
            # Every step of the generic path keeps a NULL a NULL.
            nulls = array.null_count == len(array)
            array = pa.nulls(len(array), plan.field.type) if nulls else plan.finish(array)
        if array is None:
            by_column = by_column or list(zip(*rows, strict=True))
            array = _per_value(by_column[index], plan)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _per_value(values: Sequence[Any], plan: _Column) -> pa.Array:
    """The generic path's conversion: SQLAlchemy's result processor, then the store's."""
    field = plan.field
    try:
        if plan.process is not None:
            values = [plan.process(value) for value in values]
        return values_array(list(values), field.type, plan.convert)
    except _VALUE_ERRORS as exc:
        raise SchemaError(
            f"column {field.name!r}: a value does not fit {field.type}: {exc}"
        ) from None


def _compiled(query: sa.Select[Any], dialect: Dialect) -> tuple[str, list[Any]]:
    """The query's SQL and its parameters, bound as SQLAlchemy binds them (a DATETIME bound as
    its ISO text, ...), for the driver's cursor."""
    compiled = query.compile(dialect=dialect)
    values = compiled.construct_params()
    parameters = []
    for name in compiled.positiontup or ():
        process = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        parameters.append(process(values[name]) if process else values[name])
    return str(compiled), parameters
