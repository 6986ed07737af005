"""A database reached through SQLAlchemy, as a source and as a destination.

This is the generic path that works for every dialect; the PostgreSQL, MySQL and SQLite stores
override the few steps where their engines offer something better or behave differently
(bulk loading, snapshots, DDL inside transactions).
"""

import hashlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Literal

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, NoSuchTableError, SQLAlchemyError
from sqlalchemy.schema import CreateTable, DropTable

from copyjob_dagster.config import mask_url
from copyjob_dagster.errors import CopyJobError, DestinationError, SchemaError, SourceError
from copyjob_dagster.stores import types
from copyjob_dagster.stores.base import TableDescription, logical_type

Role = Literal["source", "destination"]


class SqlStore:
    """A SQLAlchemy database: describe, stream batches, replace tables atomically."""

    transactional_ddl = True  # CREATE/DROP/RENAME roll back with the transaction

    def __init__(self, url: str, schema: str | None, role: Role) -> None:
        self.display_url = mask_url(url)
        self.role = role
        self._password = make_url(url).password if "://" in url else None
        self._error = SourceError if role == "source" else DestinationError
        self._schema = schema
        try:
            self.engine = sa.create_engine(url, **self.engine_options())
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise self._error(f"{role} {self.display_url}: cannot open: {self._scrub(exc)}") from None
        self.dialect = self.engine.dialect.name
        self._tables: dict[str, sa.Table] = {}

    def engine_options(self) -> dict[str, Any]:
        return {"pool_pre_ping": True}

    # -- errors -------------------------------------------------------------------------------

    def _scrub(self, exc: BaseException) -> str:
        """The driver's message, first line only, with the password masked wherever it appears."""
        original = getattr(exc, "orig", None) or exc
        text = str(original).strip().splitlines()[0] if str(original).strip() else repr(original)
        if self._password:
            text = text.replace(self._password, "***")
        return text

    @contextmanager
    def translated_errors(self, doing: str) -> Iterator[None]:
        """Turn driver errors into this store's error type, naming the store and the step."""
        try:
            yield
        except CopyJobError:
            raise
        except (SQLAlchemyError, OSError) as exc:
            raise self._error(
                f"{self.role} {self.display_url}: {doing} failed: {self._scrub(exc)}"
            ) from None

    # -- describing -------------------------------------------------------------------------

    def list_tables(self) -> list[str]:
        with self.translated_errors("listing tables"):
            return sa.inspect(self.engine).get_table_names(schema=self._schema)

    def reflect(self, table: str) -> sa.Table | None:
        if table not in self._tables:
            with self.translated_errors(f"describing table {table!r}"):
                try:
                    self._tables[table] = sa.Table(
                        table, sa.MetaData(), autoload_with=self.engine, schema=self._schema
                    )
                except NoSuchTableError:
                    return None
        return self._tables[table]

    def describe(self, table: str) -> TableDescription | None:
        reflected = self.reflect(table)
        if reflected is None:
            if self.role == "destination":
                return None
            where = f" in schema {self._schema!r}" if self._schema else ""
            raise SourceError(f"source {self.display_url}: table {table!r} not found{where}")
        fields = [
            types.arrow_field(c.name, c.type, c.nullable, self.dialect) for c in reflected.columns
        ]
        return TableDescription(
            name=table,
            schema=pa.schema(fields),
            primary_key=tuple(c.name for c in reflected.primary_key.columns),
        )

    def check(self) -> None:
        with self.translated_errors("connecting"), self.engine.connect() as conn:
            conn.execute(sa.select(sa.literal(1)))

    def location(self, table: str) -> str:
        return f"{self._schema}.{table}" if self._schema else table

    # -- reading ----------------------------------------------------------------------------

    def open_reader(self, table: str) -> AbstractContextManager["SqlTableReader"]:
        return self._reader(table)

    @contextmanager
    def _reader(self, table: str) -> Iterator["SqlTableReader"]:
        reflected = self.reflect(table)
        if reflected is None:
            self.describe(table)  # raises the "not found" error
        with self.translated_errors(f"reading table {table!r}"), self.engine.connect() as conn:
            self.begin_snapshot(conn)
            try:
                yield SqlTableReader(self, conn, reflected)
            finally:
                conn.rollback()

    def begin_snapshot(self, conn: Connection) -> None:
        """Start the read-only, repeatable-read transaction the table is read in."""

    # -- writing ----------------------------------------------------------------------------

    def replace(
        self,
        table: str,
        schema: pa.Schema,
        primary_key: tuple[str, ...],
        batches: Iterable[pa.RecordBatch],
    ) -> int:
        stage = self.staging_name(table)
        with self.translated_errors(f"writing table {table!r}"), self.engine.begin() as conn:
            self.drop_if_exists(conn, stage)
            staged = self.create_table(conn, stage, schema, primary_key)
            rows = self.write_batches(conn, staged, batches)
            self.drop_if_exists(conn, table)
            self.rename(conn, stage, table)
        self._tables.pop(table, None)
        return rows

    def staging_name(self, table: str, purpose: str = "stage") -> str:
        """A deterministic name beside `table`, short enough for the dialect."""
        name = f"_copyjob_{purpose}_{table}"
        limit = self.engine.dialect.max_identifier_length or 63
        if len(name) <= limit:
            return name
        digest = hashlib.sha1(table.encode()).hexdigest()[:8]
        return f"{name[: limit - 9]}_{digest}"

    def create_table(
        self, conn: Connection, name: str, schema: pa.Schema, primary_key: tuple[str, ...]
    ) -> sa.Table:
        columns = [
            sa.Column(
                field.name,
                types.column_type(field, self.dialect, is_key=field.name in primary_key),
                nullable=field.nullable and field.name not in primary_key,
                autoincrement=False,
            )
            for field in schema
        ]
        constraints = [sa.PrimaryKeyConstraint(*primary_key, name=f"{name}_pkey")] if primary_key else []
        created = sa.Table(name, sa.MetaData(), *columns, *constraints, schema=self._schema)
        conn.execute(CreateTable(created))
        return created

    def drop_if_exists(self, conn: Connection, name: str) -> None:
        conn.execute(DropTable(sa.Table(name, sa.MetaData(), schema=self._schema), if_exists=True))

    def rename(self, conn: Connection, old: str, new: str) -> None:
        preparer = self.engine.dialect.identifier_preparer
        qualified = preparer.format_table(sa.Table(old, sa.MetaData(), schema=self._schema))
        conn.exec_driver_sql(f"ALTER TABLE {qualified} RENAME TO {preparer.quote(new)}")

    def write_batches(
        self, conn: Connection, table: sa.Table, batches: Iterable[pa.RecordBatch]
    ) -> int:
        statement = insert_statement(table)
        rows = 0
        for batch in batches:
            if batch.num_rows:
                conn.execute(statement, batch.to_pylist())
                rows += batch.num_rows
        return rows

    def close(self) -> None:
        self.engine.dispose()


def insert_statement(table: sa.Table) -> sa.Insert:
    """INSERT with every value bound; JSON arrives as text and is bound as text, not re-encoded."""
    return sa.insert(table).values(
        {
            c.name: sa.bindparam(c.name, type_=sa.Text() if isinstance(c.type, sa.JSON) else c.type)
            for c in table.columns
        }
    )


class SqlTableReader:
    """Streams a table's rows as Arrow batches through one open snapshot connection."""

    def __init__(self, store: SqlStore, conn: Connection, table: sa.Table) -> None:
        self._store = store
        self._conn = conn
        self._table = table

    def batches(self, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        description = self._store.describe(self._table.name)
        schema = pa.schema([description.schema.field(name) for name in columns])
        selected = [self._select_expression(self._table.c[name]) for name in columns]
        converters = [_converter(field) for field in schema]
        result = self._conn.execution_options(
            stream_results=True, max_row_buffer=batch_rows
        ).execute(sa.select(*selected))
        for rows in result.partitions(batch_rows):
            yield _to_batch(rows, schema, converters)

    def _select_expression(self, column: sa.Column) -> sa.ColumnElement[Any]:
        if types.needs_text_cast(column.type, self._store.dialect):
            return sa.cast(column, sa.Text()).label(column.name)
        return column


def _as_text(value: Any) -> Any:
    return value if value is None or isinstance(value, str) else str(value)


def _converter(field: pa.Field) -> Callable[[Any], Any] | None:
    """Per-value conversion for values the driver returns in a form Arrow does not take."""
    return _as_text if logical_type(field) is not None else None


def _to_batch(
    rows: list[Any], schema: pa.Schema, converters: list[Callable[[Any], Any] | None]
) -> pa.RecordBatch:
    arrays = []
    for index, (field, convert) in enumerate(zip(schema, converters, strict=True)):
        values = [row[index] for row in rows]
        if convert is not None:
            values = [convert(v) for v in values]
        try:
            if convert is None and pa.types.is_string(field.type):
                arrays.append(_text_array(values))
            else:
                arrays.append(pa.array(values, type=field.type))
        except (pa.ArrowException, OverflowError, ValueError, TypeError) as exc:
            raise SchemaError(
                f"column {field.name!r}: a value does not fit {field.type}: {exc}"
            ) from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _text_array(values: list[Any]) -> pa.Array:
    """Text columns; SQLite lets any value sit in a TEXT column, so non-text is made text."""
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array([_as_text(v) for v in values], type=pa.string())
