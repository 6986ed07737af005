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

The Arrow path warns how many floats of a column became NULL. Here the server counts them as it
spells them, in a setting local to the reader's transaction (`set_config`, evaluated for a
non-finite value only), read once the COPY has ended (`warn_non_finite`): no row is read twice,
and the warning is the Arrow path's.
"""

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import sqlalchemy as sa
from psycopg import sql

from copyjob_dagster.stores.base import logical_type
from copyjob_dagster.stores.pgcopy import CopyChunk
from copyjob_dagster.stores.types import needs_text_cast

LOAD_DATA_CSV = "mysql-load-data-csv"
"""The byte format: `mysqlload`'s CSV, loaded by `mysqlload.load_text`."""

log = logging.getLogger(__name__)

_NON_FINITE = ("NaN", "Infinity", "-Infinity")
_COUNTER = "copyjob.non_finite_{}"  # a custom setting per float column, local to the transaction


@dataclass(frozen=True)
class TextCopy:
    """Chunks of LOAD DATA's CSV, the destination columns they fill in order, and those of
    them spelled as hex (decoded by UNHEX on loading)."""

    chunks: Iterable[CopyChunk]
    columns: tuple[str, ...]
    hex_columns: frozenset[str]


@dataclass(frozen=True)
class Spelling:
    """The SELECT list that spells each column for LOAD DATA, the hex-spelled ones, and each
    float column with the setting that counts its NaN and infinities as the COPY runs."""

    select_list: sql.Composable
    hex_columns: frozenset[str]
    counters: tuple[tuple[str, str], ...] = ()  # (destination column, setting)


def spelling(table: sa.Table, columns: list[str], fields: list[pa.Field]) -> Spelling | str:
    """How PostgreSQL spells `columns` of `table` (read as `fields`) for LOAD DATA; else the
    first column it cannot spell exactly, as a reason."""
    expressions: list[sql.Composable] = []
    hex_columns = set()
    counters = []
    for index, (name, field) in enumerate(zip(columns, fields, strict=True)):
        counter = _COUNTER.format(index)
        expression = _expression(table.c[name].type, field, sql.Identifier(name), counter)
        if expression is None:
            return f"column {name!r} ({table.c[name].type}) has no exact LOAD DATA text"
        expressions.append(expression)
        if pa.types.is_binary(field.type):
            hex_columns.add(field.name)
        if pa.types.is_floating(field.type):
            counters.append((field.name, counter))
    return Spelling(sql.SQL(", ").join(expressions), frozenset(hex_columns), tuple(counters))


def warn_non_finite(
    chunks: Iterable[CopyChunk],
    settings: Callable[[list[str]], list[str | None]],
    spelled: Spelling,
) -> Iterator[CopyChunk]:
    """`chunks`; once they have all been read, the Arrow path's warning for each float column
    whose NaN or infinities went as NULL, from the counts the COPY left in `settings` (the
    reader's transaction's values of the named settings)."""
    yield from chunks
    if not spelled.counters:
        return
    counts = settings([setting for _, setting in spelled.counters])
    for (column, _), count in zip(spelled.counters, counts, strict=True):
        if count:  # unset (None) or '' where no value of the column was NaN or infinite
            log.warning(
                "column %r: %d NaN or infinite values written as NULL (MySQL has none)",
                column,
                int(count),
            )


def _expression(
    column_type: sa.types.TypeEngine, field: pa.Field, column: sql.Identifier, counter: str
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
        return _counted_null(value, counter)
    if pa.types.is_timestamp(t) and t.unit == "us":
        if t.tz is None:
            return column
        return sql.SQL("{} AT TIME ZONE 'UTC'").format(column)
    if pa.types.is_binary(t):
        return sql.SQL("encode({}, 'hex')").format(column)
    return None


def _counted_null(value: sql.Composable, counter: str) -> sql.Composable:
    """`value`, or NULL where it is NaN or infinite (equal to itself in PostgreSQL), adding one
    to the transaction's setting `counter`: `set_config` is only evaluated for such a value (a
    CASE evaluates its branches in order), its result is never NULL, so the inner CASE gives
    NULL."""
    words = sql.SQL(", ").join(sql.SQL("{}::float8").format(sql.Literal(w)) for w in _NON_FINITE)
    name = sql.Literal(counter)
    count = sql.SQL(
        "(coalesce(nullif(current_setting({name}, true), ''), '0')::int8 + 1)::text"
    ).format(name=name)
    return sql.SQL(
        "CASE WHEN {value} IN ({words}) "
        "THEN CASE WHEN set_config({name}, {count}, true) IS NULL THEN {value} END "
        "ELSE {value} END"
    ).format(value=value, words=words, name=name, count=count)
