"""PostgreSQL into Arrow natively: ADBC's driver parses binary COPY into Arrow arrays in C.

The read runs on a connection of the driver's own, inside the snapshot of the reader that asks
for it: the reader exports its snapshot (`pg_export_snapshot()`), and the driver's connection,
whose DB-API layer runs every statement in a transaction of its own (autocommit is off: it
sends BEGIN on connecting and after each commit or rollback), imports it as the first statements
of that transaction: `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY` then `SET
TRANSACTION SNAPSHOT`. Counts, the watermark, the window and every part of a split copy thus
see the moment the reader's own transaction sees.

Exactness: the driver reads integers, floats, booleans, dates, times, timestamps (aware ones as
UTC) and bytea into their Arrow types bit for bit. A NUMERIC(p, s) of p <= 18 is selected as
the bigint of its smallest unit (value * 10^s, exact) and widened to decimal128; a wider one
comes as its exact text, cast to the column's decimal type (an error rather than a rounded
value if a digit would be lost); a NaN in either fails the read, as on the CSV path.
Columns copyjob carries as text (JSON, UUID, intervals, unbounded NUMERIC, arrays, enums and
types it does not know) are selected as `::text`, in the session's styles (UTC, ISO dates, ISO
8601 intervals), as the CSV and row paths read them; CHAR(n) keeps its padding. PostgreSQL's
`infinity` dates and timestamps, years before 1 and times of 24:00:00 have no exact Arrow value
(the driver would wrap them around): they are refused with the column named, as the CSV path
refuses them. A table with a column of another kind, or that the driver cannot connect for or
start reading, is read by the CSV path, decided before any row is read (`plan`, then the
driver's own schema in `read`) and said at DEBUG.
"""

import urllib.parse
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import adbc_driver_manager
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import URL

from copyjob_dagster.errors import SchemaError
from copyjob_dagster.stores import pgpacked
from copyjob_dagster.stores.base import logical_type

# The driver's batch size hint; batches are sliced to the copy's batch_rows after it. Read-ahead
# holds two of them, the writer one: memory stays flat whatever the table's size.
BATCH_BYTES = 8 << 20
_MICROS_A_DAY = 86_400_000_000
# Year 1 to year 9999, as Arrow counts them from 1970: the years every destination holds.
_FIRST_DAY, _LAST_DAY = -719_162, 2_932_896
_INT64_DIGITS = 18  # every integer of 18 digits fits a bigint
# Every column is read as a built-in type (the others as text): the driver need not read the
# server's whole type catalog on connecting, which costs it 0.1-0.2 s.
_BUILTIN_TYPES = {"adbc.postgresql.type_resolver_mode": "builtin"}
_FIRST_MICRO, _LAST_MICRO = _FIRST_DAY * _MICROS_A_DAY, (_LAST_DAY + 1) * _MICROS_A_DAY - 1
_YEARS = "lies outside the years 1 to 9999 (infinity, or a date BC), which copyjob does not copy"


@dataclass(frozen=True)
class Plan:
    """The Arrow schema the copy expects, the columns selected as their text, the decimals
    of at most 18 digits selected as the integer of their smallest unit (`scaled`), and the
    NOT NULL columns of a fixed width selected together as one field (`packed`, first)."""

    schema: pa.Schema
    as_text: frozenset[str]
    scaled: frozenset[str] = frozenset()
    packed: pgpacked.Packing | None = None

    def select_list(self) -> sql.Composable:
        """The SELECT's columns, each under its own name. A NUMERIC(p, s) of p <= 18 comes as
        value * 10^s cast to bigint, an exact integer that needs no text: the driver formats
        NUMERIC's text at a third of its whole cost, the server multiplies for less."""
        expressions: dict[str, sql.Composable] = {}
        for field in self.schema:
            name = sql.Identifier(field.name)
            if field.name in self.as_text:
                expressions[field.name] = sql.SQL("{}::text").format(name)
            elif field.name in self.scaled:
                unit = sql.SQL("1" + "0" * field.type.scale)
                # pg_catalog's `*` by name: a `*` of a numeric and an integer in any schema of
                # the search_path would match exactly, before pg_catalog's numeric * numeric.
                times = "({} OPERATOR(pg_catalog.*) {})::bigint"
                expressions[field.name] = sql.SQL(times).format(name, unit)
            else:
                expressions[field.name] = name
        selected = [] if self.packed is None else [self.packed.field(expressions)]
        for name in self.unpacked():
            selected.append(sql.SQL("{} AS {}").format(expressions[name], sql.Identifier(name)))
        return sql.SQL(", ").join(selected)

    def unpacked(self) -> list[str]:
        """The columns selected each as a field of its own, in the schema's order."""
        packed = () if self.packed is None else self.packed.names
        return [name for name in self.schema.names if name not in packed]


def plan(table: sa.Table, schema: pa.Schema) -> Plan | str:
    """How the driver reads `schema`'s columns of `table` exactly, or why it cannot."""
    as_text, scaled = set(), set()
    for field in schema:
        t = field.type
        if pa.types.is_string(t):
            # bpchar's cast to text would drop its padding; TEXT and VARCHAR cast for free.
            if not isinstance(table.c[field.name].type, sa.CHAR) or logical_type(field):
                as_text.add(field.name)
        elif pa.types.is_decimal128(t) and t.precision <= _INT64_DIGITS and t.scale >= 0:
            scaled.add(field.name)
        elif not _native(t):
            return f"column {field.name!r} holds {t} values, which the native reader does not read"
    fixed = [name for name in schema.names if name not in as_text]
    packed = pgpacked.packing(schema, fixed, frozenset(scaled))
    return Plan(schema, frozenset(as_text), frozenset(scaled), packed)


def _native(t: pa.DataType) -> bool:
    return (
        pa.types.is_boolean(t)
        or t in (pa.int16(), pa.int32(), pa.int64(), pa.float32(), pa.float64(), pa.binary())
        or pa.types.is_decimal(t)
        or t == pa.date32()
        or t == pa.time64("us")
        or (pa.types.is_timestamp(t) and t.unit == "us" and t.tz in (None, "UTC"))
    )


def uri(url: URL, connect_args: dict[str, Any]) -> str:
    """libpq's URI for the store's URL, with the session settings its engine connects with
    (percent-encoded: libpq reads no `+` as a space)."""
    query = {key: str(value) for key, value in url.query.items()}
    for key, value in connect_args.items():
        query[key] = f"{query[key]} {value}" if key == "options" and key in query else str(value)
    base = url.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    return f"{base}?{urllib.parse.urlencode(query, quote_via=urllib.parse.quote)}"


def read(
    target: str, snapshot: str, query: str, chosen: Plan, batch_rows: int
) -> Generator[pa.RecordBatch, None, None] | str:
    """Open the driver's connection in `snapshot` and start `query`: its batches, or why the
    driver cannot connect or its columns are not the ones `chosen` expects (nothing read)."""
    # Imported here: the driver's DB-API imports pyarrow.dataset, and with it pandas (~0.3 s of
    # CPU), which a run that reads no table through the driver (into MariaDB) never needs.
    import adbc_driver_postgresql.dbapi as adbc

    try:
        conn = adbc.connect(target, db_kwargs=_BUILTIN_TYPES)
    except adbc_driver_manager.Error as exc:  # libpq's messages name no password
        return f"the driver cannot connect: {_first_line(exc)}"
    try:
        cursor = conn.cursor()
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute(f"SET TRANSACTION SNAPSHOT {sql.Literal(snapshot).as_string()}")
        cursor.adbc_statement.set_options(
            **{"adbc.postgresql.batch_size_hint_bytes": str(BATCH_BYTES)}
        )
        cursor.execute(query)
        reader = cursor.fetch_record_batch()
        problem = _mismatch(reader.schema, chosen)
    except adbc_driver_manager.Error as exc:  # the CSV path meets the same error, if real
        conn.close()
        return f"the driver cannot start the read: {_first_line(exc)}"
    except BaseException:
        conn.close()
        raise
    if problem is not None:
        conn.close()
        return problem
    return _batches(conn, cursor, reader, chosen, batch_rows)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _mismatch(found: pa.Schema, chosen: Plan) -> str | None:
    fields = list(found)
    if chosen.packed is not None:
        packed = fields.pop(0)
        if packed.type != pa.binary():
            return f"the packed columns: the driver reads {packed.type}, not binary"
    for field, name in zip(fields, chosen.unpacked(), strict=True):
        wanted = chosen.schema.field(name)
        t = _storage(field.type)
        if wanted.name in chosen.scaled:
            fits = t == pa.int64()
        elif pa.types.is_decimal(wanted.type):
            fits = pa.types.is_string(t)  # NUMERIC's exact text, cast to the decimal after
        else:
            fits = t == wanted.type
        if not fits:
            return f"column {wanted.name!r}: the driver reads {field.type}, not {wanted.type}"
    return None


def _storage(t: pa.DataType) -> pa.DataType:
    return t.storage_type if isinstance(t, pa.BaseExtensionType) else t


def _batches(
    conn: Any, cursor: Any, reader: pa.RecordBatchReader, chosen: Plan, batch_rows: int
) -> Generator[pa.RecordBatch, None, None]:
    """The cursor owns the reader's stream, so it lives as long as this generator. Closed
    early, the connection closes: the server ends the COPY with the session."""
    try:
        for batch in reader:
            batch = _exact(batch, chosen)
            for start in range(0, batch.num_rows, batch_rows):
                yield batch.slice(start, batch_rows)
    except (adbc_driver_manager.Error, OSError) as exc:  # the stream's errors come as OSError
        if chosen.scaled and "NaN to bigint" in str(exc):  # the server's cast of a scaled decimal
            names = " or ".join(repr(name) for name in sorted(chosen.scaled))
            raise SchemaError(f"column {names}: a value is NaN, which no decimal holds") from None
        raise
    finally:
        try:
            cursor.close()
        finally:
            conn.close()


def _exact(batch: pa.RecordBatch, chosen: Plan) -> pa.RecordBatch:
    read = list(batch.columns)
    found = {}
    if chosen.packed is not None:
        found = chosen.packed.unpack(read.pop(0))
        # The driver's columns share one allocation: a column kept would keep the packed
        # bytes too while the batch waits in the read-ahead queue. A copy lets them go.
        read = [pa.concat_arrays([column]) for column in read]
    found.update(zip(chosen.unpacked(), read, strict=True))
    columns = []
    for field in chosen.schema:
        column = found[field.name]
        if isinstance(column, pa.ExtensionArray):
            column = column.storage
        try:
            if field.name in chosen.scaled:
                column = _unscaled(column, field.type)
            elif pa.types.is_decimal(field.type):
                column = column.cast(field.type)  # safe: refuses to drop a digit
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(
                f"column {field.name!r}: a value does not fit {field.type}: {exc}"
            ) from None
        _check_range(field, column)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=chosen.schema)


def _unscaled(column: pa.Array, t: pa.Decimal128Type) -> pa.Array:
    """Integers of the decimal's smallest unit as the decimal itself: each widened to the
    128-bit two's complement that decimal128 stores (its value, scale applied by the type)."""
    if column.offset:
        column = pa.concat_arrays([column])  # a slice: make its buffers start at its first value
    validity, data = column.buffers()
    units = np.frombuffer(data, dtype=np.int64, count=len(column))
    wide = np.empty((len(column), 2), dtype=np.int64)
    wide[:, 0] = units
    wide[:, 1] = units >> 63
    return pa.Array.from_buffers(t, len(column), [validity, pa.py_buffer(wide)])


def _check_range(field: pa.Field, column: pa.Array) -> None:
    t = field.type
    if pa.types.is_timestamp(t):
        low, high, what = _FIRST_MICRO, _LAST_MICRO, _YEARS
        numbers = column.view(pa.int64())
    elif pa.types.is_date32(t):
        low, high, what = _FIRST_DAY, _LAST_DAY, _YEARS
        numbers = column.view(pa.int32())
    elif pa.types.is_time64(t):
        low, high, what = 0, _MICROS_A_DAY - 1, "is 24:00:00, which no Arrow time of day holds"
        numbers = column.view(pa.int64())
    else:
        return
    extremes = pc.min_max(numbers)
    smallest, largest = extremes["min"].as_py(), extremes["max"].as_py()
    if smallest is not None and (smallest < low or largest > high):
        raise SchemaError(f"column {field.name!r}: a value {what}")
