"""One table's changes in MariaDB's binlog events, a whole transaction at a time.

The events of a transaction (`mysql-replication` reads them): a GTID event opens it; row
events (Write, Update, Delete) carry whole rows (binlog_row_image = FULL) with their column
names (binlog_row_metadata = FULL), decoded as columns (`binlog_rows`; the events of one
statement together) or, for a table with a type that module leaves alone, by
`mysql-replication` a row at a time; an Xid event, or a `COMMIT` query event for tables that are
not transactional, closes it. DDL is a query event of its own, committed by itself: a `TRUNCATE`
of the table is one (row-based logging logs it as a statement), taken here as a truncation at
its place in the order. A column added or dropped needs nothing: the row events after an
`ALTER TABLE` name the columns as they are then, and a new column is NULL in the rows that no
change touched since, as it is at the source; an `ALTER TABLE` that adds a column with a value
for the existing rows (NOT NULL, or a DEFAULT) is refused (the binlog does not carry those
values: a new snapshot does).

Values come out as the snapshot's reader gives them: a SET as its members joined by commas in
their defined order, a TIMESTAMP in UTC, a BIT as the characters of its bytes, a MySQL JSON
document as text, a BINARY(n) with the trailing zero bytes the binlog leaves out, YEAR 0000
as 0.
"""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.event import (
    GtidEvent,
    MariadbGtidEvent,
    QueryEvent,
    XAPrepareEvent,
    XidEvent,
)
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    RowsEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from copyjob_dagster.errors import SchemaError, SourceError
from copyjob_dagster.stores.binlog_rows import RowsChunk, SplitRows, decodable, padded, split

_NAME = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_TRUNCATE = re.compile(rf"^\s*TRUNCATE\s+(?:TABLE\s+)?({_NAME})(?:\s*\.\s*({_NAME}))?", re.I)
_ALTER = re.compile(
    rf"^\s*ALTER\s+(?:ONLINE\s+|IGNORE\s+)*TABLE\s+({_NAME})(?:\s*\.\s*({_NAME}))?", re.I
)
_FILLS = re.compile(r"\bADD\b.*(\bNOT\s+NULL\b|\bDEFAULT\s+(?!NULL\b))", re.I | re.S)
_IGNORED_QUERIES = ("BEGIN", "SAVEPOINT", "ROLLBACK TO", "RELEASE SAVEPOINT", "XA START", "XA END")


@dataclass(frozen=True)
class RowChange:
    """An insert, update or delete: the new row (the old one, for a delete), and an update's
    old row; values by source column name."""

    operation: str  # insert | update | delete
    row: dict[str, Any]
    old: dict[str, Any] | None = None


@dataclass(frozen=True)
class TruncateTable:
    pass


Change = RowChange | RowsChunk | TruncateTable


@dataclass
class Transaction:
    """A committed transaction's changes to the table, and the position of its end."""

    end: int
    changes: list[Change] = field(default_factory=list)

    @property
    def count(self) -> int:
        """How many rows it changed (a truncation counts one)."""
        return sum(c.num_rows if isinstance(c, RowsChunk) else 1 for c in self.changes)


def transactions(
    events: Iterator[tuple[Any, int]], database: str, table: str, keys: tuple[str, ...] = ()
) -> Iterator[Transaction]:
    """The transactions in `events` (each with the position of its end), whole: a transaction
    that touched other tables only comes with no changes, so that its end still counts. A rows
    event comes as columns (`binlog_rows`; an update's old row as its `keys` columns) when its
    table's types allow, else as a `RowChange` a row."""
    changes: list[Change | SplitRows] = []
    open_ = False
    for event, at in events:
        if isinstance(event, MariadbGtidEvent | GtidEvent):
            if changes:
                raise SourceError(
                    f"table {table!r}: a binlog transaction has no end; nothing applied"
                )
            open_ = True
        elif isinstance(event, XAPrepareEvent):  # a prepared XA transaction's part ends
            if changes:
                raise SourceError(
                    f"table {table!r}: an XA transaction changed the table, which mode: cdc "
                    f"does not follow yet; nothing was applied"
                )
            yield Transaction(at, _converted(changes))
            open_ = False
        elif isinstance(event, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
            if (event.schema, event.table) == (database, table):
                if decodable(event):
                    rows = split(event, keys)
                    if changes and isinstance(changes[-1], SplitRows) and changes[-1].joins(rows):
                        changes[-1].extend(rows)  # a statement's events, converted together
                    else:
                        changes.append(rows)
                else:
                    changes.extend(_row_changes(event))
                open_ = True
        elif isinstance(event, XidEvent):
            yield Transaction(at, _converted(changes))
            changes, open_ = [], False
        elif isinstance(event, QueryEvent):
            query = event.query.strip()
            if query.upper() == "COMMIT":
                yield Transaction(at, _converted(changes))
                changes, open_ = [], False
            elif not query.upper().startswith(_IGNORED_QUERIES):
                # DDL commits by itself (and what came before it).
                schema = event.schema.decode() if isinstance(event.schema, bytes) else event.schema
                if _names(_TRUNCATE.match(query), schema, database, table):
                    changes.append(TruncateTable())
                elif _names(_ALTER.match(query), schema, database, table) and _FILLS.search(query):
                    raise SchemaError(
                        f"table {table!r}: the source ran {query[:300]!r}, which gives existing "
                        f"rows a value (NOT NULL or a DEFAULT) that the binlog does not carry "
                        f"for rows it leaves alone: take a new snapshot (--full-refresh)"
                    )
                yield Transaction(at, _converted(changes))
                changes, open_ = [], False
    if open_:  # `upto` was not between two transactions: better stop than apply a part
        raise SourceError(
            f"table {table!r}: the binlog read ended inside a transaction; nothing was applied"
        )


def _converted(changes: list[Change | SplitRows]) -> list[Change]:
    return [c.chunk() if isinstance(c, SplitRows) else c for c in changes]


def _names(match: re.Match[str] | None, schema: str, database: str, table: str) -> bool:
    """Whether the statement's table (its `match`) is `database`.`table`."""
    if match is None:
        return False
    first, second = (_unquote(n) if n else None for n in match.groups())
    named = (first, second) if second else (schema, first)
    return named == (database, table)


def _unquote(name: str) -> str:
    return name[1:-1].replace("``", "`") if name.startswith("`") else name


def _row_changes(event: Any) -> Iterator[RowChange]:
    columns = {c.name: c for c in event.columns}
    for row in event.rows:
        if isinstance(event, UpdateRowsEvent):
            yield RowChange(
                "update",
                _values(row["after_values"], columns),
                _values(row["before_values"], columns),
            )
        elif isinstance(event, WriteRowsEvent):
            yield RowChange("insert", _values(row["values"], columns))
        else:
            yield RowChange("delete", _values(row["values"], columns))


def _values(row: dict[str, Any], columns: dict[str, Any]) -> dict[str, Any]:
    return {name: _value(value, columns.get(name)) for name, value in row.items()}


def _value(value: Any, column: Any) -> Any:
    """A decoded value as the snapshot's reader (PyMySQL, UTC session) gives it."""
    if value is None or column is None:
        return value
    kind = column.type
    if isinstance(value, set):
        return ",".join(member for member in column.set_values or () if member in value)
    if kind in (FIELD_TYPE.TIMESTAMP, FIELD_TYPE.TIMESTAMP2) and isinstance(value, datetime):
        return value.replace(tzinfo=UTC)  # decoded from the epoch, in UTC
    if kind == FIELD_TYPE.STRING and isinstance(value, bytes | str) and _binary(column):
        # BINARY(n); mysql-replication reads a value the binlog left empty as ''.
        return padded(value if isinstance(value, bytes) else value.encode(), column)
    if kind == FIELD_TYPE.YEAR and value == 1900:  # mysql-replication's 0 + 1900: YEAR 0000
        return 0
    if kind == FIELD_TYPE.BIT and isinstance(value, str):
        length = max(1, (len(value) + 7) // 8)
        return int(value, 2).to_bytes(length, "big").decode("utf-8", errors="replace")
    if isinstance(value, dict | list):  # MySQL's binary JSON
        return json.dumps(value)
    return value


def _binary(column: Any) -> bool:
    name = column.character_set_name
    return name is not None and RowsEvent.charset_to_encoding(name).lower() == "binary"
