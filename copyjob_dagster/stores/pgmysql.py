"""PostgreSQL to MySQL/MariaDB without decoding a value: the server spells LOAD DATA's CSV.

For columns whose text PostgreSQL can write exactly as LOAD DATA reads it, the source runs
`COPY (SELECT expressions) TO STDOUT (FORMAT csv, NULL 'NULL')` and the bytes go unchanged
into `LOAD DATA LOCAL INFILE` with `mysqlload`'s dialect (fields enclosed by `"`, no escape
character), so no row is parsed in Python. PostgreSQL quotes a value that holds a comma, a
quote (doubled inside), a line break, or that is the word NULL; an unquoted empty field is an
empty text for LOAD DATA, and the bare word NULL is NULL. (COPY's text format would not do:
it writes a form feed as `\\f` and a vertical tab as `\\v`, which LOAD DATA reads as letters.)

Each column's expression is chosen from its type before any row is read, so that its text is
what the Arrow path would have loaded: booleans as 0/1, `timestamptz` as UTC wall time, `real`
as its exact double, NaN and infinities as NULL (MySQL's floats hold none), bytea as hex that
LOAD DATA decodes with UNHEX. Any other type (intervals, arrays, JSON, uuid, unbounded numeric,
times of day, types read as text) sends the table down the Arrow path: `spelling` says why.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import sqlalchemy as sa
from psycopg import sql

from copyjob_dagster.stores.base import logical_type
from copyjob_dagster.stores.pgcopy import CopyChunk
from copyjob_dagster.stores.types import needs_text_cast

LOAD_DATA_CSV = "mysql-load-data-csv"
"""The byte format: `mysqlload`'s CSV, loaded by `mysqlload.load_text`."""

_NON_FINITE = ("NaN", "Infinity", "-Infinity")


@dataclass(frozen=True)
class TextCopy:
    """Chunks of LOAD DATA's CSV, the destination columns they fill in order, and those of
    them spelled as hex (decoded by UNHEX on loading)."""

    chunks: Iterable[CopyChunk]
    columns: tuple[str, ...]
    hex_columns: frozenset[str]


@dataclass(frozen=True)
class Spelling:
    """The SELECT list that spells each column for LOAD DATA, and the hex-spelled ones."""

    select_list: sql.Composable
    hex_columns: frozenset[str]


def spelling(table: sa.Table, columns: list[str], fields: list[pa.Field]) -> Spelling | str:
    """How PostgreSQL spells `columns` of `table` (read as `fields`) for LOAD DATA; else the
    first column it cannot spell exactly, as a reason."""
    expressions: list[sql.Composable] = []
    hex_columns = set()
    for name, field in zip(columns, fields, strict=True):
        expression = _expression(table.c[name].type, field, sql.Identifier(name))
        if expression is None:
            return f"column {name!r} ({table.c[name].type}) has no exact LOAD DATA text"
        expressions.append(expression)
        if pa.types.is_binary(field.type):
            hex_columns.add(field.name)
    return Spelling(sql.SQL(", ").join(expressions), frozenset(hex_columns))


def _expression(
    column_type: sa.types.TypeEngine, field: pa.Field, column: sql.Identifier
) -> sql.Composable | None:
    """The expression whose CSV text LOAD DATA reads back as the Arrow path's value."""
    t = field.type
    if logical_type(field) is not None or needs_text_cast(column_type, "postgresql"):
        return None
    if pa.types.is_boolean(t):
        return sql.SQL("{}::int").format(column)
    if pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_date32(t):
        return column
    if pa.types.is_string(t) and isinstance(column_type, sa.String):
        return column
    if pa.types.is_floating(t):
        # The shortest text that reads back as the same double (extra_float_digits 1, set
        # on the session); a `real` as its exact double, which MySQL's FLOAT reads back as
        # the same float (the float's own shortest text can exceed FLT_MAX as a decimal).
        value = column if pa.types.is_float64(t) else sql.SQL("{}::float8").format(column)
        for word in _NON_FINITE:
            value = sql.SQL("NULLIF({}, {}::float8)").format(value, sql.Literal(word))
        return value
    if pa.types.is_timestamp(t) and t.unit == "us":
        if t.tz is None:
            return column
        return sql.SQL("{} AT TIME ZONE 'UTC'").format(column)
    if pa.types.is_binary(t):
        return sql.SQL("encode({}, 'hex')").format(column)
    return None
