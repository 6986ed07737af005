"""A followed table's rows events decoded straight into Arrow columns.

`mysql-replication` decodes a rows event value by value in Python (a dozen calls per value);
for the table a run follows that was most of a run's time. Here a rows event's body is split
into each column's bytes, row by row (the only part that must be sequential: a row's length
depends on its values), and each column is then converted at once with numpy and Arrow. An
update's old row is split the same way, but only its key columns are kept.

The values are those `mysql-replication` gives (and `mysql_changes` adjusts to the snapshot
reader's): a TIMESTAMP in UTC, a SET as its members joined by commas (NULL when empty), a zero
or impossible DATE or DATETIME as NULL, text decoded by its character set, binary strings as
bytes (a BINARY(n) with the trailing zero bytes the binlog leaves out). A table with a column
of another type (TIME, BIT, GEOMETRY, MySQL's binary JSON, the pre-5.6 temporal types) is
decoded by `mysql-replication` instead (`decodable`).

The row format (MariaDB's `log_event.cc`, `Rows_log_event`): for each row, a bitmap of the NULL
columns among those present, then each present non-NULL column's value: integers and floats
little-endian; DECIMAL in MySQL's packed binary form (groups of nine digits in four bytes, big
endian, sign bit flipped, every bit inverted when negative); strings and blobs after a
little-endian length of one to four bytes; DATE in three bytes, DATETIME2 and TIMESTAMP2 big
endian with their fractional seconds in one to three bytes more.
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.row_event import RowsEvent, UpdateRowsEvent, WriteRowsEvent

_INTEGERS = {
    FIELD_TYPE.TINY: 1,
    FIELD_TYPE.SHORT: 2,
    FIELD_TYPE.INT24: 3,
    FIELD_TYPE.LONG: 4,
    FIELD_TYPE.LONGLONG: 8,
    FIELD_TYPE.YEAR: 1,
}
_FLOATS = {FIELD_TYPE.FLOAT: 4, FIELD_TYPE.DOUBLE: 8}
_STRINGS = (FIELD_TYPE.VARCHAR, FIELD_TYPE.STRING, FIELD_TYPE.BLOB)
_OTHERS = (FIELD_TYPE.DATE, FIELD_TYPE.DATETIME2, FIELD_TYPE.TIMESTAMP2, FIELD_TYPE.ENUM)
_DECODABLE = {*_INTEGERS, *_FLOATS, *_STRINGS, *_OTHERS, FIELD_TYPE.NEWDECIMAL, FIELD_TYPE.SET}
_UTF8 = ("utf8", "utf-8", "utf8mb4", "utf8mb3")
_DIGIT_BYTES = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4]  # bytes of a group of 0..9 digits


@dataclass
class RowsChunk:
    """A statement's rows (its rows events') as columns: `columns` by source column name (a
    delete's: the row it deleted), and an update's old key columns (`old_keys`, by source name;
    None otherwise)."""

    operation: str  # insert | update | delete
    columns: dict[str, pa.Array]
    old_keys: dict[str, pa.Array] | None

    @property
    def num_rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


def decodable(event: RowsEvent) -> bool:
    """Whether every column of the event's table has a type decoded here, and a name."""
    return all(c.type in _DECODABLE and c.name for c in event.columns)


@dataclass
class SplitRows:
    """Rows events' rows split into each column's bytes (None: NULL), not yet converted, so
    that the events of one statement are converted together (`chunk`)."""

    operation: str
    columns: list[Any]  # the table map's columns
    chosen: list[int]  # the columns of the rows kept
    key_at: list[int]  # the key columns kept of an update's old rows
    new: list[list[bytes | None]]
    old: list[list[bytes | None]]

    def joins(self, other: "SplitRows") -> bool:
        """Whether `other` continues these rows (same operation, same table columns)."""
        return (self.operation, self.chosen, self.key_at) == (
            other.operation, other.chosen, other.key_at
        ) and [(c.name, c.type) for c in self.columns] == [
            (c.name, c.type) for c in other.columns
        ]  # fmt: skip

    def extend(self, other: "SplitRows") -> None:
        for mine, theirs in zip(self.new + self.old, other.new + other.old, strict=True):
            mine.extend(theirs)

    def chunk(self) -> RowsChunk:
        columns = self.columns
        arrays = {columns[i].name: _array(columns[i], self.new[i]) for i in self.chosen}
        old_keys = None
        if self.operation == "update":
            old_keys = {columns[i].name: _array(columns[i], self.old[i]) for i in self.key_at}
        return RowsChunk(self.operation, arrays, old_keys)


def split(event: RowsEvent, keys: tuple[str, ...]) -> SplitRows:
    """The event's rows (call before anything reads them: this consumes the event's body)."""
    body = event.packet.read(event.event_size - event.packet.read_bytes)
    columns = event.columns
    sizes = [_size(c) for c in columns]
    present = _present(event.columns_present_bitmap, len(columns))
    update = isinstance(event, UpdateRowsEvent)
    after = _present(event.columns_present_bitmap2, len(columns)) if update else present
    key_at = [i for i in present if columns[i].name in keys]
    new: list[list[Any]] = [[] for _ in columns]
    old: list[list[Any]] = [[] for _ in columns]
    before_layout = [(i, sizes[i], i in key_at) for i in present]
    layout = [(i, sizes[i], True) for i in after]
    before_width, width = (len(present) + 7) // 8, (len(after) + 7) // 8
    at, end = 0, len(body)
    while at < end:
        if update:
            at = _split(body, at, before_layout, before_width, old)
        at = _split(body, at, layout, width, new)
    operation = "insert" if isinstance(event, WriteRowsEvent) else "update" if update else "delete"
    return SplitRows(operation, columns, after, key_at if update else [], new, old)


def _present(bitmap: bytes, count: int) -> list[int]:
    bits = int.from_bytes(bitmap, "little")
    return [i for i in range(count) if bits >> i & 1]


def _size(column: Any) -> int:
    """A column's value's size in bytes; negative: the size of the length before the value."""
    kind = column.type
    if kind in _INTEGERS:
        return _INTEGERS[kind]
    if kind in _FLOATS:
        return _FLOATS[kind]
    if kind in (FIELD_TYPE.VARCHAR, FIELD_TYPE.STRING):
        return -2 if column.max_length > 255 else -1
    if kind == FIELD_TYPE.BLOB:
        return -column.length_size
    if kind == FIELD_TYPE.NEWDECIMAL:
        return sum(_decimal_groups(column.precision, column.decimals)[0])
    if kind == FIELD_TYPE.DATE:
        return 3
    if kind in (FIELD_TYPE.DATETIME2, FIELD_TYPE.TIMESTAMP2):
        return (5 if kind == FIELD_TYPE.DATETIME2 else 4) + (column.fsp + 1) // 2
    return column.size  # ENUM, SET


def _split(
    body: bytes, at: int, layout: list[tuple[int, int, bool]], width: int, out: list[list[Any]]
) -> int:
    """One row image from `at`: each present column's bytes (None: NULL) appended to `out`,
    for the columns `layout` keeps (index, size as `_size` gives it, kept); the position after
    the row."""
    nulls = int.from_bytes(body[at : at + width], "little")
    at += width
    for bit, (i, size, keep) in enumerate(layout):
        if nulls and nulls >> bit & 1:
            if keep:
                out[i].append(None)
            continue
        if size < 0:
            if size == -1:
                size = body[at]
                at += 1
            else:
                size, at = int.from_bytes(body[at : at - size], "little"), at - size
        if keep:
            out[i].append(body[at : at + size])
        at += size
    return at


def _array(column: Any, raw: list[bytes | None]) -> pa.Array:
    kind = column.type
    if kind in _STRINGS:
        binary = pa.array(raw, pa.binary())
        encoding = RowsEvent.charset_to_encoding(column.character_set_name or "utf8").lower()
        if encoding in _UTF8:
            return binary.cast(pa.string())
        if encoding == "binary":
            if kind == FIELD_TYPE.STRING:  # BINARY(n): the zero bytes the binlog strips, back
                return pa.array([None if v is None else padded(v, column) for v in raw])
            return binary
        try:
            return pa.array([None if v is None else v.decode(encoding) for v in raw], pa.string())
        except LookupError:  # an encoding Python does not know: the bytes, as mysql-replication
            return binary
    if kind in (FIELD_TYPE.ENUM, FIELD_TYPE.SET):
        codes, valid = _fixed(raw, column.size)
        number = _unsigned(codes, little=True)
        names = column.enum_values if kind == FIELD_TYPE.ENUM else column.set_values
        return _members(number, valid, names or [], kind == FIELD_TYPE.SET)
    size = _size(column)
    matrix, valid = _fixed(raw, size)
    mask = ~valid if not valid.all() else None
    if kind == FIELD_TYPE.YEAR:  # years after 1900 in a byte; 0 is the year 0000
        year = matrix[:, 0].astype(np.int64)
        return pa.array(np.where(year == 0, 0, year + 1900), mask=mask)
    if kind in _INTEGERS:
        return pa.array(_integers(matrix, size, signed=not column.unsigned), mask=mask)
    if kind in _FLOATS:
        return pa.array(matrix.view("<f4" if size == 4 else "<f8").ravel(), mask=mask)
    if kind == FIELD_TYPE.NEWDECIMAL:
        return _decimals(matrix, valid, column.precision, column.decimals)
    if kind == FIELD_TYPE.DATE:
        number = _unsigned(matrix, little=True)
        day, month, year = number & 31, number >> 5 & 15, number >> 9
        days, good = _days(year, month, day)
        return pa.array(days.astype(np.int32), pa.date32(), mask=~(valid & good))
    if kind == FIELD_TYPE.TIMESTAMP2:
        seconds = _unsigned(matrix[:, :4], little=False).astype(np.int64)
        micros = seconds * 1_000_000 + _fraction(matrix[:, 4:], column.fsp)
        return pa.array(micros, pa.timestamp("us", tz="UTC"), mask=mask)
    number = _unsigned(matrix[:, :5], little=False)  # DATETIME2
    year_month, day = number >> 22 & ((1 << 17) - 1), number >> 17 & 31
    year, month = year_month // 13, year_month % 13
    days, good = _days(year, month, day)
    clock = ((number >> 12 & 31) * 3600 + (number >> 6 & 63) * 60 + (number & 63)).astype(np.int64)
    micros = (days * 86400 + clock) * 1_000_000 + _fraction(matrix[:, 5:], column.fsp)
    return pa.array(micros, pa.timestamp("us"), mask=~(valid & good))


def padded(value: bytes, column: Any) -> bytes:
    """A BINARY(n)'s value whole: the binlog leaves out its trailing zero bytes (MariaDB's
    `Field_string::pack` strips a CHAR's padding, and a binary CHAR pads with zeros), which the
    table holds and a snapshot reads."""
    return value.ljust(column.max_length, b"\0")


def _fixed(raw: list[bytes | None], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Values of `size` bytes as an (n, size) matrix of bytes (zeros for NULL), and validity."""
    valid = np.fromiter((v is not None for v in raw), dtype=bool, count=len(raw))
    zero = bytes(size)
    joined = b"".join(zero if v is None else v for v in raw)
    return np.frombuffer(joined, dtype=np.uint8).reshape(len(raw), size), valid


def _unsigned(matrix: np.ndarray, little: bool) -> np.ndarray:
    number = np.zeros(len(matrix), dtype=np.uint64)
    order = range(matrix.shape[1] - 1, -1, -1) if little else range(matrix.shape[1])
    for i in order:
        number = number << np.uint64(8) | matrix[:, i].astype(np.uint64)
    return number


def _integers(matrix: np.ndarray, size: int, signed: bool) -> np.ndarray:
    if size in (1, 2, 4, 8):
        return matrix.view(f"<{'i' if signed else 'u'}{size}").ravel()
    number = _unsigned(matrix, little=True).astype(np.int64)  # INT24
    if signed:
        number = np.where(number >= 1 << 23, number - (1 << 24), number)
    return number


def _fraction(matrix: np.ndarray, fsp: int) -> np.ndarray:
    """Microseconds from the fractional seconds' bytes (big endian; for an odd `fsp`, one
    digit more is stored than kept)."""
    if not matrix.shape[1]:
        return np.zeros(len(matrix), dtype=np.int64)
    value = _unsigned(matrix, little=False).astype(np.int64)
    if fsp % 2:
        value //= 10
    return value * 10 ** (6 - fsp)


def _days(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Days since 1970-01-01 of each date, and which dates exist (zero parts do not)."""
    y, m, d = (a.astype(np.int64) for a in (year, month, day))
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    lengths = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
    good = (y >= 1) & (m >= 1) & (m <= 12) & (d >= 1)
    good &= d <= lengths[np.clip(m, 0, 12)] + ((m == 2) & leap)
    y = y - (m <= 2)
    era = y // 400
    shifted = np.where(m > 2, m - 3, m + 9)
    doe = (y - era * 400) * 365 + (y - era * 400) // 4 - (y - era * 400) // 100
    doe += (153 * shifted + 2) // 5 + d - 1
    return era * 146097 + doe - 719468, good


def _decimal_groups(precision: int, scale: int) -> tuple[list[int], list[int]]:
    """The byte sizes of a packed DECIMAL's digit groups, in order, and their digit counts."""
    whole, fraction = precision - scale, scale
    digits = [whole % 9] * bool(whole % 9) + [9] * (whole // 9)
    digits += [9] * (fraction // 9) + [fraction % 9] * bool(fraction % 9)
    return [_DIGIT_BYTES[n] for n in digits], digits


def _decimals(matrix: np.ndarray, valid: np.ndarray, precision: int, scale: int) -> pa.Array:
    # MariaDB's DECIMAL goes to 65 digits: decimal128 holds 38 of them, decimal256 the rest.
    kind = (pa.decimal128 if precision <= 38 else pa.decimal256)(precision, scale)
    matrix = matrix.copy()
    negative = matrix[:, 0] & 0x80 == 0
    matrix[:, 0] ^= 0x80
    matrix[negative] ^= 0xFF
    sizes, digits = _decimal_groups(precision, scale)
    if precision > 18:  # more than an int64 holds: one Python Decimal a value
        values: list[Decimal | None] = []
        for row, minus, ok in zip(matrix, negative, valid, strict=True):
            number, at = 0, 0
            for size, count in zip(sizes, digits, strict=True):
                number = number * 10**count + int.from_bytes(row[at : at + size].tobytes(), "big")
                at += size
            values.append(
                Decimal((int(minus), tuple(map(int, str(number))), -scale)) if ok else None
            )
        return pa.array(values, kind)
    unscaled, at = np.zeros(len(matrix), dtype=np.int64), 0
    for size, count in zip(sizes, digits, strict=True):
        group = _unsigned(matrix[:, at : at + size], little=False).astype(np.int64)
        unscaled = unscaled * 10**count + group
        at += size
    unscaled = np.where(negative, -unscaled, unscaled)
    words = np.stack([unscaled, unscaled >> 63], axis=1)  # 128 bits, little endian
    validity = pa.py_buffer(np.packbits(valid, bitorder="little")) if not valid.all() else None
    return pa.Array.from_buffers(kind, len(matrix), [validity, pa.py_buffer(words.tobytes())])


def _members(number: np.ndarray, valid: np.ndarray, names: list[str], is_set: bool) -> pa.Array:
    """ENUM codes (1-based; `names` has "" first) or SET bit masks as their text: each distinct
    code spelled once, then taken for every row."""
    codes, at = np.unique(number, return_inverse=True)
    texts: list[str | None] = []
    for code in codes.tolist():
        if is_set:
            texts.append(",".join(n for i, n in enumerate(names) if code >> i & 1) or None)
        else:
            texts.append(names[code] if code < len(names) else None)
    return pa.array(texts, pa.string()).take(pa.array(at.ravel(), mask=~valid))
