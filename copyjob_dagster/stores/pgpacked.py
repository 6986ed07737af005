"""NOT NULL columns of a fixed width, read from PostgreSQL as one binary field a row.

ADBC's PostgreSQL driver spends its time per field it parses rather than per byte (its wheels,
1.10 to 1.13 alike, are built without compiler optimization: a 2,000,000-row, 10-column table
costs it about 0.14 s of CPU a column). The server can hand it fewer fields: the columns that
are NOT NULL and of a fixed width are selected as the concatenation of their binary send forms,
`int8send(id) || int4send(customer_id) || ...`, one `bytea` of the same length every row, which
the driver appends with one copy. NumPy reads the batch's bytes back as a table of big-endian
records and copies each column out in the byte order and from the epoch the driver uses (2000-01-01
for PostgreSQL, 1970-01-01 for Arrow), so that every value is the one the driver would have
read, bit for bit (floats as their bits, NaNs and signed zeros included).

A NULL in a packed column would make the whole field NULL: only columns the table declares NOT
NULL are packed, and a NULL field fails the read rather than being taken for values.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from psycopg import sql

from copyjob_dagster.errors import SchemaError

# PostgreSQL counts dates and timestamps from 2000-01-01, Arrow from 1970-01-01.
_EPOCH_DAYS = 10_957
_EPOCH_MICROS = _EPOCH_DAYS * 86_400_000_000
# Fewer fields are worth a second column at least: one packed column is still one field.
_LEAST = 2
NAME = "copyjob_packed"


@dataclass(frozen=True)
class _Layout:
    send: str  # PostgreSQL's binary send function for the column's type
    wire: str  # NumPy's type of its bytes (big-endian)
    arrow: pa.DataType  # what the driver would have read
    epoch: int = 0  # added to the wire's value: PostgreSQL's epoch to Arrow's


def _layout(t: pa.DataType, scaled: bool) -> _Layout | None:
    if scaled:  # a NUMERIC(p <= 18, s): the bigint of its smallest unit (pgadbc.Plan)
        return _Layout("int8send", ">i8", pa.int64())
    if t == pa.timestamp("us"):
        return _Layout("timestamp_send", ">i8", t, _EPOCH_MICROS)
    if t == pa.timestamp("us", "UTC"):
        return _Layout("timestamptz_send", ">i8", t, _EPOCH_MICROS)
    return _LAYOUTS.get(t)


_LAYOUTS = {
    pa.bool_(): _Layout("boolsend", "u1", pa.bool_()),
    pa.int16(): _Layout("int2send", ">i2", pa.int16()),
    pa.int32(): _Layout("int4send", ">i4", pa.int32()),
    pa.int64(): _Layout("int8send", ">i8", pa.int64()),
    pa.float32(): _Layout("float4send", ">u4", pa.float32()),  # the bits, as the driver swaps
    pa.float64(): _Layout("float8send", ">u8", pa.float64()),
    pa.date32(): _Layout("date_send", ">i4", pa.date32(), _EPOCH_DAYS),
    pa.time64("us"): _Layout("time_send", ">i8", pa.time64("us")),
}


@dataclass(frozen=True)
class Packing:
    """The packed columns, in the order of their bytes in the field."""

    names: tuple[str, ...]
    layouts: tuple[_Layout, ...]

    def field(self, expressions: dict[str, sql.Composable]) -> sql.Composable:
        """The packed field of the SELECT, from each column's expression (its name, or the
        bigint of its smallest unit): the send forms concatenated. The send functions take
        their type only (or one PostgreSQL widens to it exactly): a column of another type
        fails the query before any row is read."""
        parts = [
            sql.SQL("{}({})").format(sql.Identifier("pg_catalog", layout.send), expressions[name])
            for name, layout in zip(self.names, self.layouts, strict=True)
        ]
        # pg_catalog's `||` by name too: a search_path may list pg_catalog after a schema
        # with a `||` of its own for two byteas, which would reorder the columns' bytes.
        joined = sql.SQL(" OPERATOR(pg_catalog.||) ").join(parts)
        return sql.SQL("{} AS {}").format(joined, sql.Identifier(NAME))

    def unpack(self, field: pa.Array) -> dict[str, pa.Array]:
        """The packed columns of a batch's field, each as the driver would have read it."""
        if field.null_count:
            raise SchemaError("a packed field is NULL: a column declared NOT NULL held a NULL")
        dtype = np.dtype(
            {
                "names": list(self.names),
                "formats": [np.dtype(layout.wire) for layout in self.layouts],
                "offsets": list(_offsets(self.layouts)),
                "itemsize": sum(np.dtype(layout.wire).itemsize for layout in self.layouts),
            }
        )
        rows = len(field)
        _, offsets, data = field.buffers()
        ends = np.frombuffer(offsets, dtype=np.int32, count=rows + 1, offset=field.offset * 4)
        if rows and not (np.diff(ends) == dtype.itemsize).all():
            raise SchemaError(f"a packed field is not {dtype.itemsize} bytes long")
        start = int(ends[0]) if rows else 0
        records = np.frombuffer(data, dtype=dtype, count=rows, offset=start) if rows else None
        return {
            name: _column(records[name] if rows else np.empty(0, layout.wire), layout)
            for name, layout in zip(self.names, self.layouts, strict=True)
        }


def packing(schema: pa.Schema, candidates: Iterable[str], scaled: frozenset[str]) -> Packing | None:
    """The packing of `schema`'s NOT NULL columns of a fixed width among `candidates`, or None
    where fewer than two are."""
    names, layouts = [], []
    for name in candidates:
        field = schema.field(name)
        layout = None if field.nullable else _layout(field.type, name in scaled)
        if layout is not None:
            names.append(name)
            layouts.append(layout)
    if len(names) < _LEAST:
        return None
    return Packing(tuple(names), tuple(layouts))


def _offsets(layouts: Iterable[_Layout]) -> Iterable[int]:
    at = 0
    for layout in layouts:
        yield at
        at += np.dtype(layout.wire).itemsize


def _column(wire: np.ndarray, layout: _Layout) -> pa.Array:
    """One strided, byte-swapping copy into a buffer of Arrow's pool, which serves the next
    batch's columns from the same pages (NumPy's own would map fresh ones each batch)."""
    if layout.arrow == pa.bool_():
        return pa.array(np.ascontiguousarray(wire).view(np.bool_))  # boolsend: one byte, 0 or 1
    native = np.dtype(layout.wire).newbyteorder("=")
    buffer = pa.allocate_buffer(len(wire) * native.itemsize)
    values = np.frombuffer(buffer, dtype=native)
    values[...] = wire
    if layout.epoch:
        values += native.type(layout.epoch)  # wraps for infinity: refused by range after
    return pa.Array.from_buffers(layout.arrow, len(wire), [None, buffer])
