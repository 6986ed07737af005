"""How the generic SQLAlchemy store writes: tables replaced through a staging table, windows
appended or merged, versions, deletions and changes applied, all inside `writing`'s transaction.

`SqlWriting` is the writing half of `sql.SqlStore` (which mixes it in and provides what it uses:
`engine`, `dialect`, `display_url`, the reflection cache and `translated_errors`); the
PostgreSQL, MySQL and SQLite stores override its steps where their databases do better.
"""

import dataclasses
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateTable, DropTable
from sqlalchemy.types import TypeEngine

from copyjob_dagster.errors import DestinationError
from copyjob_dagster.stores import sql_changes
from copyjob_dagster.stores.base import (
    DeletePolicy,
    VersionColumns,
    Window,
    WriteMethod,
    ordered_by_collation,
)
from copyjob_dagster.stores.ranges import window_conditions

_UPSERTING_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


class SqlWriting:
    """Replace, append, merge, version and change tables of a SQLAlchemy database."""

    engine: sa.Engine
    dialect: str
    display_url: str
    describes_as_created: bool
    _schema: str | None
    _tables: dict[str, sa.Table]

    def replace(
        self,
        table: str,
        schema: pa.Schema,
        primary_key: tuple[str, ...],
        batches: Iterable[pa.RecordBatch],
        *,
        updated_by_key: bool = False,
    ) -> int:
        self.check_names(table, schema.names)
        stage = self.staging_name(table)
        with self.translated_errors(f"writing table {table!r}"), self.writing(table) as conn:
            self.drop_if_exists(conn, stage)
            staged = self.create_table(conn, stage, schema, primary_key)
            if updated_by_key:
                rows = self.load_for_updates(conn, staged, batches)
            else:
                rows = self.write_batches(conn, staged, batches)
            self.drop_if_exists(conn, table)
            self.rename(conn, stage, table)
        if self.describes_as_created:
            # The table as just created: the row count that follows needs no new description
            # of it (about ten catalog queries for a PostgreSQL table).
            self._tables[table] = staged.to_metadata(sa.MetaData(), name=table)
        else:
            self.forget(table)
        return rows

    def write_increment(
        self,
        table: str,
        schema: pa.Schema,
        primary_key: tuple[str, ...],
        batches: Iterable[pa.RecordBatch],
        *,
        method: WriteMethod,
        window: Window,
    ) -> int:
        if window.low is None:
            return self.replace(table, schema, primary_key, batches)
        self.check_names(table, schema.names)
        target = self.reflect(table)
        if target is None:
            raise DestinationError(f"destination {self.display_url}: table {table!r} is missing")
        with self.translated_errors(f"writing table {table!r}"):
            if method == "merge":
                return self.merge(target, schema, primary_key, batches)
            target = self._keyed(target, primary_key, schema)
            if primary_key or ordered_by_collation(schema.field(window.column)):
                identity = primary_key or (window.column,)
                return sql_changes.replace_rows(self, target, schema, identity, batches)
            with self.writing(table) as conn:
                # A live window is rewritten from its start upward (this snapshot holds all of
                # it); a backfill only between its bounds.
                rewritten = window if window.backfill else dataclasses.replace(window, high=None)
                conn.execute(sa.delete(target).where(*window_conditions(target, rewritten)))
                return self.write_batches(conn, target, batches)

    def _keyed(self, target: sa.Table, key: tuple[str, ...], schema: pa.Schema) -> sa.Table:
        """`target` with `key` as its primary key: an appended table that an older copyjob
        created with the source's key alone (which forbids a row's second version) is re-keyed."""
        old = tuple(c.name for c in target.primary_key.columns)
        if not old or old == key:
            return target
        with self.engine.begin() as conn:
            self.rekey(conn, target, key, schema)
        self.forget(target.name)
        rekeyed = self.reflect(target.name)
        return target if rekeyed is None else rekeyed

    def rekey(
        self, conn: Connection, target: sa.Table, key: tuple[str, ...], schema: pa.Schema
    ) -> None:
        """Make `key` the primary key of `target`; see the PostgreSQL and MySQL overrides."""
        old = ", ".join(c.name for c in target.primary_key.columns)
        raise DestinationError(
            f"destination {self.display_url}: table {target.name!r} has primary key ({old}), "
            f"which keeps one version of a row, and write: append keeps each version, keyed by "
            f"({', '.join(key)}); {self.dialect} cannot change a primary key in place: run a "
            f"full refresh (copyjob run --full-refresh), which re-creates the table"
        )

    def same_values(
        self, a: sa.Table, b: sa.Table, columns: tuple[str, ...]
    ) -> list[sa.ColumnElement[bool]]:
        """Conditions that rows of `a` and `b` hold exactly the same values in `columns`
        (text compared as its characters, whatever the columns' collations say)."""
        return [a.c[name] == b.c[name] for name in columns]

    def write_versions(
        self,
        table: str,
        schema: pa.Schema,
        primary_key: tuple[str, ...],
        batches: Iterable[pa.RecordBatch],
        *,
        versions: VersionColumns,
        window: Window,
    ) -> int:
        if window.low is None:
            return self.replace(table, schema, (*primary_key, versions.valid_from), batches)
        self.check_names(table, schema.names)
        target = self.reflect(table)
        if target is None:
            raise DestinationError(f"destination {self.display_url}: table {table!r} is missing")
        with self.translated_errors(f"writing versions into {table!r}"):
            return sql_changes.write_versions(self, target, schema, primary_key, batches, versions)

    def diff_keys(
        self,
        table: str,
        key_schema: pa.Schema,
        source_keys: Iterable[pa.RecordBatch],
        policy: DeletePolicy,
    ) -> AbstractContextManager[sql_changes.SqlKeyDiff]:
        return sql_changes.diff_keys(self, table, key_schema, source_keys, policy)

    def merge(
        self,
        target: sa.Table,
        schema: pa.Schema,
        primary_key: tuple[str, ...],
        batches: Iterable[pa.RecordBatch],
    ) -> int:
        """Load a staging table and upsert it into `target`, all in one transaction."""
        stage = self.staging_name(target.name, "merge")
        with self.writing(target.name) as conn:
            self.drop_if_exists(conn, stage)
            staged = self.create_table(conn, stage, schema, ())
            rows = self.write_batches(conn, staged, batches)
            conn.execute(self.upsert_statement(target, staged, primary_key))
            self.drop_if_exists(conn, stage)
        return rows

    def upsert_statement(
        self, target: sa.Table, staged: sa.Table, primary_key: tuple[str, ...]
    ) -> sa.Executable:
        """INSERT ... SELECT from the staging table that updates rows whose key exists."""
        dialect_insert = _UPSERTING_INSERTS.get(self.dialect)
        if dialect_insert is None:
            raise DestinationError(
                f"destination {self.display_url}: write: merge is not supported for "
                f"{self.dialect}; use write: append"
            )
        columns = [c.name for c in staged.columns]
        # WHERE true: SQLite cannot otherwise tell the SELECT's end from ON CONFLICT.
        insert = dialect_insert(target).from_select(
            columns, sa.select(*staged.columns).where(sa.true())
        )
        updates = {name: insert.excluded[name] for name in columns if name not in primary_key}
        if not updates:
            return insert.on_conflict_do_nothing(index_elements=list(primary_key))
        return insert.on_conflict_do_update(index_elements=list(primary_key), set_=updates)

    def applying_changes(
        self, table: str, schema: pa.Schema, key: tuple[str, ...], start: int
    ) -> AbstractContextManager[Any]:
        """Changes applied by `key` in one transaction (see `change_apply`)."""
        from copyjob_dagster.stores.change_apply import keyed_changes

        self.check_names(table, schema.names)
        return keyed_changes(self, table, schema, key)

    def add_columns(self, table: str, fields: list[pa.Field]) -> None:
        existing = self.reflect(table)
        self.check_names(
            table,
            [
                *(existing.columns.keys() if existing is not None else []),
                *(field.name for field in fields),
            ],
        )
        with self.translated_errors(f"adding columns to {table!r}"), self.engine.begin() as conn:
            for field in fields:
                column_type = self.column_type(field).compile(dialect=conn.dialect)
                conn.exec_driver_sql(
                    f"ALTER TABLE {self.qualified(table)} ADD COLUMN {self.quote(field.name)} "
                    f"{column_type}"
                )
        self.forget(table)

    def staging_name(self, table: str, purpose: str = "stage") -> str:
        """A deterministic name beside `table`, short enough for the dialect."""
        return self.name_rules.fit(f"_copyjob_{purpose}_{table}")

    def constraint_name(self, table: str) -> str:
        """The name of `table`'s primary key constraint, short enough for the dialect."""
        return self.name_rules.fit(f"{table}_pkey")

    def check_names(self, table: str, columns: Iterable[str]) -> None:
        """Refuse, before anything is written, names the database would cut, reject, or take
        for another."""
        rules = self.name_rules
        others = self.list_tables() if rules.case_insensitive_tables else []
        problems = rules.refusals(table, columns, others)
        if problems:
            raise DestinationError(f"destination {self.display_url}: " + "; ".join(problems))

    def create_table(
        self, conn: Connection, name: str, schema: pa.Schema, primary_key: tuple[str, ...]
    ) -> sa.Table:
        columns = [
            sa.Column(
                field.name,
                self.column_type(field, is_key=field.name in primary_key),
                nullable=field.nullable and field.name not in primary_key,
                autoincrement=False,
            )
            for field in schema
        ]
        constraints = (
            [sa.PrimaryKeyConstraint(*primary_key, name=self.constraint_name(name))]
            if primary_key
            else []
        )
        created = sa.Table(
            name, sa.MetaData(), *columns, *constraints, schema=self._schema, **self.table_options()
        )
        conn.execute(CreateTable(created))
        return created

    def table_options(self) -> dict[str, str]:
        """Dialect options of the tables this store creates (`mysql_charset`, ...)."""
        return {}

    def drop_if_exists(self, conn: Connection, name: str) -> None:
        conn.execute(DropTable(sa.Table(name, sa.MetaData(), schema=self._schema), if_exists=True))

    def rename(self, conn: Connection, old: str, new: str) -> None:
        conn.exec_driver_sql(f"ALTER TABLE {self.qualified(old)} RENAME TO {self.quote(new)}")

    def load_for_updates(
        self, conn: Connection, table: sa.Table, batches: Iterable[pa.RecordBatch]
    ) -> int:
        """Fill a new `table` that is then updated by key (see `replace`); as any other here."""
        return self.write_batches(conn, table, batches)

    def write_batches(
        self, conn: Connection, table: sa.Table, batches: Iterable[pa.RecordBatch]
    ) -> int:
        statement = self.insert_statement(table)
        rows = 0
        for batch in batches:
            if batch.num_rows:
                conn.execute(statement, database_timestamps(batch).to_pylist())
                rows += batch.num_rows
        return rows

    def insert_statement(self, table: sa.Table) -> sa.Insert:
        """INSERT with every value bound as a parameter of its column's `bind_type`."""
        return sa.insert(table).values(
            {c.name: sa.bindparam(c.name, type_=self.bind_type(c.type)) for c in table.columns}
        )

    def bind_type(self, column_type: TypeEngine) -> TypeEngine:
        """JSON arrives as text and is bound as text, not re-encoded."""
        return sa.Text() if isinstance(column_type, sa.JSON) else column_type

    @contextmanager
    def writing(self, table: str) -> Iterator[Connection]:
        """The transaction that changes what readers of `table` see. Stores whose copy lock is
        a server session's (PostgreSQL, MySQL) prove inside it that the lock is still held."""
        with self.engine.begin() as conn:
            yield conn


def database_timestamps(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Timestamps as databases hold them: in microseconds, nanoseconds cut off (drivers would
    otherwise round on one database and truncate on another), and aware ones in UTC, so that
    drivers that drop the offset (PyMySQL, SQLAlchemy's SQLite) write UTC's wall time."""
    columns = [
        c.cast(pa.timestamp("us", "UTC" if c.type.tz else None), safe=False)
        if pa.types.is_timestamp(c.type)
        else c
        for c in batch.columns
    ]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)
