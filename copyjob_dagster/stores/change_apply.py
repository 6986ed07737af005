"""Changes taken by a destination: by key into a SQL table, or as a change log in a folder.

A change source hands changes over one at a time (`change`: an operation, a row as a dict with
`UNSENT` for a value not carried, the old key, a position) or as columns (`changes`: a
`ChangeBatch`); `truncate` and `add_column` keep their place in the order.

By key (`KeyedChanges`), in the one transaction of the caller's `writing` connection: changes
are gathered, up to `FLUSH_ROWS`, then folded set-wise to each key's last change (see
`change_fold`: an update that did not resend an unchanged TOASTed value takes it from an earlier
change to the same key, else leaves the destination's value as it is) and written. PostgreSQL:
the deleted keys deleted and the upserted rows upserted in place or copied in, each by one
statement (`pg_apply`). Elsewhere: the keys of upserted and deleted rows deleted
in one statement, the upserted rows inserted with the store's bulk path. Rows with values left
as they are are updated column by column. A TRUNCATE empties the table at its place in the
order. Replaying changes that were already applied leaves the same rows: each key ends as its
last change says.

As a log (`ChangeLog`): every change is a row of one Parquet file with its operation and
position, named after the position the run started from, written whole (temporary file and
rename), so a run replayed from the same position replaces its file instead of adding one; it
is streamed, `FLUSH_ROWS` rows at a time.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from copyjob_dagster.stores import pg_apply
from copyjob_dagster.stores.base import logical_type
from copyjob_dagster.stores.change_fold import (
    UNSENT,
    ChangeBatch,
    aligned,
    batch_of_rows,
    concatenated,
    fold,
)
from copyjob_dagster.stores.sql_writing import database_timestamps

if TYPE_CHECKING:
    from copyjob_dagster.stores.sql import SqlStore

__all__ = ["UNSENT", "ChangeBatch", "ChangeCounts", "ChangeLog", "KeyedChanges"]

FLUSH_ROWS = 100_000  # changes gathered before they are folded and written
IN_KEYS = 20_000  # the most keys of one DELETE ... IN (...) (bound parameters)
OPERATION = "_copyjob_operation"
POSITION = "_copyjob_position"


@dataclass
class ChangeCounts:
    upserted: int = 0
    deleted: int = 0
    truncated: int = 0


class KeyedChanges:
    """Changes applied by key inside one open destination transaction."""

    def __init__(
        self, store: "SqlStore", conn: Connection, table: str, schema: pa.Schema, key: tuple
    ) -> None:
        self.store, self.conn, self.name = store, conn, table
        self.schema, self.key = schema, key
        self.target = self._table()
        self.rows: list[tuple[str, dict[str, Any], tuple | None, int]] = []
        self.batches: list[ChangeBatch] = []
        self.gathered = 0
        self.counts = ChangeCounts()

    def _table(self) -> sa.Table:
        columns = [sa.Column(f.name, self.store.column_type(f)) for f in self.schema]
        return sa.Table(self.name, sa.MetaData(), *columns, schema=self.store._schema)

    def add_column(self, field: pa.Field) -> None:
        """A column that appeared at the source while changes flowed (nullable)."""
        self.flush()
        column_type = self.store.column_type(field).compile(dialect=self.conn.dialect)
        self.conn.exec_driver_sql(
            f"ALTER TABLE {self.store.qualified(self.name)} ADD COLUMN "
            f"{self.store.quote(field.name)} {column_type}"
        )
        self.schema = self.schema.append(field.with_nullable(True))
        self.target = self._table()

    def change(
        self, operation: str, row: dict[str, Any], old_key: tuple | None, position: int
    ) -> None:
        """One change (the interface of a source that reads row by row)."""
        self.rows.append((operation, row, old_key, position))
        self.gathered += 1
        if self.gathered >= FLUSH_ROWS:
            self.flush()

    def changes(self, batch: ChangeBatch) -> None:
        """Many changes at once, in order."""
        self._take_rows()
        self.batches.append(aligned(batch, self.schema))
        self.gathered += batch.num_rows
        if self.gathered >= FLUSH_ROWS:
            self.flush()

    def _take_rows(self) -> None:
        if self.rows:
            self.batches.append(batch_of_rows(self.schema, self.rows, self.key))
            self.rows = []

    def truncate(self, position: int) -> None:
        self.rows, self.batches, self.gathered = [], [], 0
        self.conn.execute(sa.delete(self.target))
        self.counts.truncated += 1

    def flush(self) -> None:
        self._take_rows()
        if not self.batches:
            return
        folded = fold(concatenated(self.batches, self.key), self.key)
        self.batches, self.gathered = [], 0
        partial = folded.partial()
        whole = ~folded.deleted & ~partial
        self.counts.deleted += int(folded.deleted.sum())
        self.counts.upserted += int(whole.sum() + partial.sum())
        if self.store.dialect == "postgresql":  # set-wise, updates in place (see `pg_apply`)
            deleted = folded.rows.filter(pa.array(folded.deleted)).select(list(self.key))
            upserted = folded.rows.filter(pa.array(whole))
            pg_apply.write(self.store, self.conn, self.target, self.key, deleted, upserted)
        else:
            self._delete(folded.rows.filter(pa.array(folded.deleted | whole)))
            if whole.any():
                rows = folded.rows.filter(pa.array(whole))
                self.store.write_batches(self.conn, self.target, rows.to_batches())
        if partial.any():
            rows = folded.rows.filter(pa.array(partial)).to_pylist()
            for name, mask in folded.unsent.items():
                for row, missing in zip(rows, mask[partial], strict=True):
                    if missing:
                        row[name] = UNSENT
            where = [self.target.c[k] == sa.bindparam(f"k_{i}") for i, k in enumerate(self.key)]
            self._update_partial(rows, where)

    def _delete(self, rows: pa.Table) -> None:
        """Delete the rows with the keys of `rows` (not PostgreSQL's: see `pg_apply`): one
        statement for a one-column key."""
        if not rows.num_rows:
            return
        keys = rows.select(list(self.key))
        if len(self.key) == 1:  # WHERE key IN (...)
            column, values = self.target.c[self.key[0]], keys.column(0).to_pylist()
            for at in range(0, len(values), IN_KEYS):
                self.conn.execute(
                    sa.delete(self.target).where(column.in_(values[at : at + IN_KEYS]))
                )
            return
        where = [self.target.c[k] == sa.bindparam(f"k_{i}") for i, k in enumerate(self.key)]
        self.conn.execute(
            sa.delete(self.target).where(*where),
            [{f"k_{i}": row[k] for i, k in enumerate(self.key)} for row in keys.to_pylist()],
        )

    def _value(self, column: str) -> sa.ColumnElement[Any]:
        """A bound value for `column`: JSON and UUID arrive as text, cast to the column's type."""
        column_type = self.target.c[column].type
        bound = sa.bindparam(f"v_{column}", type_=self.store.bind_type(column_type))
        tagged = logical_type(self.schema.field(column)) is not None  # json, uuid, ...
        if self.store.dialect == "postgresql" and (tagged or isinstance(column_type, sa.JSON)):
            return sa.cast(bound, column_type)
        return bound

    def _update_partial(self, rows: list[dict[str, Any]], where: list[Any]) -> None:
        """Rows some of whose values were not sent: set only the values sent."""
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            sent = tuple(k for k, v in row.items() if v is not UNSENT and k not in self.key)
            by_columns.setdefault(sent, []).append(row)
        for sent, group in by_columns.items():
            if not sent:
                continue
            batch = pa.RecordBatch.from_pylist(
                [{f.name: _sent(row.get(f.name)) for f in self.schema} for row in group],
                self.schema,
            )
            values = database_timestamps(batch).to_pylist()
            statement = (
                sa.update(self.target).where(*where).values({c: self._value(c) for c in sent})
            )
            self.conn.execute(
                statement,
                [
                    {
                        **{f"k_{i}": value[k] for i, k in enumerate(self.key)},
                        **{f"v_{c}": value[c] for c in sent},
                    }
                    for value in values
                ],
            )


def _sent(value: Any) -> Any:
    return None if value is UNSENT else value


@contextmanager
def keyed_changes(
    store: "SqlStore", table: str, schema: pa.Schema, key: tuple[str, ...]
) -> Iterator[KeyedChanges]:
    """Apply changes to `table` in one transaction, committed when the block ends."""
    with store.translated_errors(f"applying changes to {table!r}"), store.writing(table) as conn:
        changes = KeyedChanges(store, conn, table, schema, key)
        yield changes
        changes.flush()


class ChangeLog:
    """Every change as a row with its operation and position, streamed into one file per run
    (a temporary file until the run's changes are all in; see `change_log`)."""

    def __init__(self, schema: pa.Schema, target: Path) -> None:
        self.schema = pa.schema(
            [
                *(f.with_nullable(True) for f in schema),
                (OPERATION, pa.string()),
                (POSITION, pa.int64()),
            ]
        )
        # Imported here: the folder module imports pyarrow.dataset, and with it pandas, which a
        # change stream into a database never needs.
        from copyjob_dagster.stores import parquet_files

        self.target, self.rows = target, []  # type: ignore[var-annotated]
        self.temporary = target.with_name(target.name + parquet_files.TEMPORARY_SUFFIX)
        self.writer: pq.ParquetWriter | None = None
        self.counts = ChangeCounts()

    def add_column(self, field: pa.Field) -> None:
        """A new column: the rows so far are written, and the file goes on with the wider
        schema (rewritten once, here; it is the run's own temporary file)."""
        self._write()
        self.schema = self.schema.insert(len(self.schema) - 2, field.with_nullable(True))
        if self.writer is not None:
            self.writer.close()
            written = pq.read_table(self.temporary).cast(
                pa.schema([f for f in self.schema if f.name != field.name])
            )
            self.writer = None
            self._write_table(written.add_column(
                written.num_columns - 2, field.with_nullable(True),
                pa.nulls(written.num_rows, field.type),
            ))  # fmt: skip

    def change(
        self, operation: str, row: dict[str, Any], old_key: tuple | None, position: int
    ) -> None:
        self.rows.append({**{k: _sent(v) for k, v in row.items()}, OPERATION: operation,
                          POSITION: position})  # fmt: skip
        if operation == "delete":
            self.counts.deleted += 1
        else:
            self.counts.upserted += 1
        if len(self.rows) >= FLUSH_ROWS:
            self._write()

    def changes(self, batch: ChangeBatch) -> None:
        """Many changes at once, in order (unsent values are NULL in a log)."""
        self._write()
        columns = self.schema.names[:-2]
        rows = aligned(batch, pa.schema([self.schema.field(n) for n in columns])).rows
        deleted = int(batch.deleted().sum())
        self.counts.deleted += deleted
        self.counts.upserted += batch.num_rows - deleted
        self._write_table(
            rows.append_column(self.schema.field(OPERATION), batch.operations).append_column(
                self.schema.field(POSITION), batch.positions
            )
        )

    def truncate(self, position: int) -> None:
        self.rows.append({OPERATION: "truncate", POSITION: position})
        self.counts.truncated += 1

    def _write(self) -> None:
        if self.rows:
            rows = [{f.name: row.get(f.name) for f in self.schema} for row in self.rows]
            self._write_table(pa.Table.from_pylist(rows, self.schema))
            self.rows = []

    def _write_table(self, table: pa.Table) -> None:
        if self.writer is None:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.temporary, self.schema)
        self.writer.write_table(table)

    def close(self, commit: bool) -> None:
        self._write()
        if self.writer is None:
            return
        self.writer.close()
        if commit:
            os.replace(self.temporary, self.target)
        else:
            self.temporary.unlink(missing_ok=True)


def change_log_name(table: str, start: int) -> str:
    """Where a run's change log goes, under the folder: one file per start position."""
    return f"{table}_changes/changes-{start:020d}.parquet"


@contextmanager
def change_log(folder: Path, table: str, schema: pa.Schema, start: int) -> Iterator[ChangeLog]:
    """A run's change log, `<table>_changes/changes-<start>.parquet`, in place when the block
    ends (a temporary file until then, removed if the block fails)."""
    log = ChangeLog(schema, folder / change_log_name(table, start))
    try:
        yield log
    except BaseException:
        log.close(commit=False)
        raise
    log.close(commit=True)
