"""Arrow types as a Delta table holds them, and values written into delta-rs predicates.

Delta has signed integers, decimals of up to 38 digits, dates, and timestamps in microseconds,
either UTC instants (`timestamp`) or wall times (`timestamp_ntz`). So unsigned integers widen to
the next signed type (a 64-bit one to `decimal(20, 0)`), aware timestamps become UTC, and
nanoseconds are cut to microseconds, as every database destination does. A type Delta cannot
hold exactly (times of day, durations, decimals beyond 38 digits) stops the copy naming the
column, before anything is written.

delta-rs takes predicates as DataFusion SQL text and has no bound parameters: the window's bounds
are rendered here from typed Python values only (never from text a user wrote), each cast to the
column's own Arrow type, strings with their quotes doubled, and names quoted.
"""

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from copyjob_dagster.errors import SchemaError
from copyjob_dagster.stores.base import Window

MAX_DECIMAL_DIGITS = 38
_WIDER_SIGNED = {8: pa.int16(), 16: pa.int32(), 32: pa.int64()}


def delta_type(field: pa.Field) -> pa.DataType:
    """The Arrow type that a Delta column holding `field` has; SchemaError if there is none."""
    t = field.type
    if pa.types.is_dictionary(t):
        return delta_type(field.with_type(t.value_type))
    if pa.types.is_unsigned_integer(t):
        return _WIDER_SIGNED.get(t.bit_width, pa.decimal128(20, 0))
    if pa.types.is_decimal(t):
        if t.precision > MAX_DECIMAL_DIGITS:
            raise SchemaError(
                f"column {field.name!r}: delta holds decimals of up to {MAX_DECIMAL_DIGITS} "
                f"digits, and this one has {t.precision}; leave the column out (columns: [...])"
            )
        return pa.decimal128(t.precision, t.scale)
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", "UTC" if t.tz else None)
    if pa.types.is_time(t) or pa.types.is_duration(t) or pa.types.is_interval(t):
        raise SchemaError(
            f"column {field.name!r}: delta has no time-of-day or interval type to copy {t} "
            f"into; leave the column out (columns: [...])"
        )
    if pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_binary_view(t):
        return pa.binary()
    return t


def delta_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` as its Delta table holds it (see `delta_type`); field metadata is kept."""
    return pa.schema([field.with_type(delta_type(field)) for field in schema])


def as_delta(batches: Any, schema: pa.Schema) -> pa.RecordBatchReader:
    """A stream of the batches cast to `schema` (a `delta_schema`): nanoseconds are cut off."""

    def cast() -> Any:
        for batch in batches:
            if batch.num_rows:
                yield pa.RecordBatch.from_arrays(
                    [
                        column.cast(field.type, safe=not pa.types.is_timestamp(field.type))
                        for column, field in zip(batch.columns, schema, strict=True)
                    ],
                    schema=schema,
                )

    return pa.RecordBatchReader.from_batches(schema, cast())


def quoted(name: str) -> str:
    """A column name for DataFusion SQL: double quotes, inner ones doubled."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any, column_type: pa.DataType) -> str:
    """`value` as a DataFusion SQL literal of `column_type`; only typed values are rendered."""
    if isinstance(value, bool) or value is None:
        raise TypeError(f"no predicate literal for {value!r}")
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, Decimal):
        return f"CAST({_text(str(value))} AS DECIMAL({column_type.precision}, {column_type.scale}))"
    if isinstance(value, datetime):
        zone = ', Some("UTC")' if column_type.tz else ", None"
        text = value.isoformat(timespec="microseconds")
        return f"arrow_cast({_text(text)}, 'Timestamp(Microsecond{zone})')"
    if isinstance(value, date):
        return f"CAST({_text(value.isoformat())} AS DATE)"
    if isinstance(value, str):
        return _text(value)
    raise TypeError(f"no predicate literal for a {type(value).__name__}")


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def window_predicate(window: Window, schema: pa.Schema) -> str:
    """The rows of `window` (NULLs never), as a DataFusion predicate on `schema`'s table."""
    column = quoted(window.column)
    column_type = schema.field(window.column).type
    conditions = [f"{column} IS NOT NULL"]
    if window.low is not None:
        operator = ">=" if window.low_inclusive else ">"
        conditions.append(f"{column} {operator} {literal(window.low, column_type)}")
    if window.high is not None:
        conditions.append(f"{column} <= {literal(window.high, column_type)}")
    return " AND ".join(conditions)
