"""A database reached through SQLAlchemy, as a source and as a destination.

This is the generic path that works for every dialect; the PostgreSQL, MySQL and SQLite stores
override the few steps where their engines offer something better or behave differently
(bulk loading, snapshots, DDL inside transactions).
"""

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Literal, TypeVar

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, NoSuchTableError, SQLAlchemyError
from sqlalchemy.schema import CreateTable, DropTable
from sqlalchemy.types import TypeEngine

from copyjob_dagster.config import DEFAULT_CONNECT_TIMEOUT, mask_url
from copyjob_dagster.errors import CopyJobError, DestinationError, SourceError
from copyjob_dagster.stores import engines, reflection, sql_changes, types
from copyjob_dagster.stores.base import (
    Commit,
    DeletePolicy,
    TableDescription,
    VersionColumns,
    Window,
    WriteMethod,
    logical_type,
    ordered_by_collation,
)
from copyjob_dagster.stores.capabilities import Capabilities
from copyjob_dagster.stores.identifiers import NameRules
from copyjob_dagster.stores.ranges import window_conditions
from copyjob_dagster.stores.sql_reader import SqlTableReader, as_bool, as_text
from copyjob_dagster.stores.transient import is_transient

Role = Literal["source", "destination"]
T = TypeVar("T")
_UPSERTING_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """How long a store waits for a connection (a refused, silent or unreachable server), and
    for any one statement (None: as long as it takes)."""

    connect: int = DEFAULT_CONNECT_TIMEOUT
    statement: float | None = None


class SqlStore:
    """A SQLAlchemy database: describe, stream batches, replace tables atomically."""

    capabilities = Capabilities()
    last_commit: Commit | None = None  # a database's commits are not numbered for readers
    transactional_ddl = True  # CREATE/DROP/RENAME roll back with the transaction

    @classmethod
    def created_by_opening(cls, url: str) -> bool:
        """Whether connecting to `url` would create the database (the dry run must not)."""
        return False

    @classmethod
    def url_problem(cls, url: str) -> str | None:
        """Why `url` names no database this store can open (its dialect is not installed)."""
        parsed = make_url(url)
        try:
            parsed.get_dialect().import_dbapi()
        except NoSuchModuleError:
            return f"unknown database dialect {parsed.drivername!r}" + _driver_hint(
                parsed.get_backend_name(), "is its SQLAlchemy dialect installed?"
            )
        except ImportError as exc:
            return f"the driver of {parsed.drivername!r} ({exc.name}) is not installed" + (
                _driver_hint(parsed.get_backend_name(), "install it, or name another driver")
            )
        return None

    driver_errors: tuple[type[Exception], ...] = (SQLAlchemyError, OSError)
    # Whether the tables of a run may share this store's engine (`engines`): its sessions keep
    # nothing beyond what the pool resets.
    shares_engine = False
    # Whether a table this store creates is described back as it was created (the same Arrow
    # types and key), so that `replace` may keep its own definition instead of describing the
    # table anew: true where a test shows it (PostgreSQL), not for SQLite's loose types.
    describes_as_created = False

    def __init__(
        self, url: str, schema: str | None, role: Role, timeouts: Timeouts | None = None
    ) -> None:
        self.display_url = mask_url(url)
        self.role = role
        self.timeouts = timeouts or Timeouts()
        self._secrets = _secrets_of(url)
        self._error = SourceError if role == "source" else DestinationError
        self._schema = schema
        try:
            self.engine, self._shared_engine = engines.engine_for(
                (type(self), url, self.timeouts) if self.shares_engine else object(),
                lambda **options: sa.create_engine(self.engine_url(url), **options),
                self.engine_options(),
            )
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise self._error(
                f"{role} {self.display_url}: cannot open: {self._scrub(exc)}"
            ) from None
        # `mariadb+pymysql://` URLs name their dialect mariadb; the types are MySQL's.
        self.dialect = {"mariadb": "mysql"}.get(self.engine.dialect.name, self.engine.dialect.name)
        self._tables: dict[str, sa.Table] = {}

    @classmethod
    def engine_url(cls, url: str) -> str | URL:
        """The URL the engine opens: `url`, or `url` with the driver this store is written for."""
        return url

    def engine_options(self) -> dict[str, Any]:
        return {"pool_pre_ping": True}

    @property
    def name_rules(self) -> NameRules:
        return NameRules(self.dialect, self.engine.dialect.max_identifier_length)

    def quote(self, name: str) -> str:
        """`name` quoted for SQL text run by `exec_driver_sql` (DDL that SQLAlchemy has no
        construct for); a `%` in it is doubled for drivers whose placeholders use `%`."""
        return self.engine.dialect.identifier_preparer.quote(name)

    def qualified(self, table: str) -> str:
        """`schema.table`, quoted as `quote` does."""
        return ".".join(self.quote(part) for part in (self._schema, table) if part)

    # -- errors -------------------------------------------------------------------------------

    def _scrub(self, exc: BaseException) -> str:
        """The driver's message, first line only, with the password masked wherever it appears."""
        original = getattr(exc, "orig", None) or exc
        text = str(original).strip().splitlines()[0] if str(original).strip() else repr(original)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    @contextmanager
    def translated_errors(self, doing: str) -> Iterator[None]:
        """Turn driver errors into this store's error type, naming the store and the step."""
        try:
            yield
        except CopyJobError:
            raise
        except self.driver_errors as exc:
            raise self._error(
                f"{self.role} {self.display_url}: {doing} failed: {self._scrub(exc)}",
                transient=is_transient(exc),
            ) from None

    # -- describing -------------------------------------------------------------------------

    def list_tables(self) -> list[str]:
        with self.translated_errors("listing tables"):
            return sa.inspect(self.engine).get_table_names(schema=self._schema)

    def reflect(self, table: str) -> sa.Table | None:
        if self.name_rules.problem(table):
            return None  # no such table can exist; some servers answer with an error
        if table not in self._tables and (ahead := self._described_ahead(table)) is not None:
            self._tables[table] = ahead
        if table not in self._tables:
            with self.translated_errors(f"describing table {table!r}"):
                try:
                    self._tables[table] = sa.Table(
                        table,
                        sa.MetaData(),
                        autoload_with=self.engine,
                        schema=self._schema,
                        listeners=self.reflection_listeners(),
                    )
                except NoSuchTableError:
                    return None
        return self._tables[table]

    def _described_ahead(self, table: str) -> sa.Table | None:
        """The source table as described with the run's others (`reflection`), once; a
        destination is described under its lock, never ahead."""
        if self.role != "source":
            return None
        return engines.take_described(self.engine, self._schema, table)

    def describe_ahead(self, tables: list[str]) -> None:
        """Describe `tables` in one go, for this run's stores to take (`reflection`)."""
        if self.shares_engine and not self.reflection_listeners():
            found = reflection.reflect_together(self.engine, self._schema, tables, self.name_rules)
            engines.keep_described(self.engine, self._schema, found)

    def forget(self, table: str) -> None:
        """Describe `table` anew when next asked: its columns changed (written here, or added at
        a source whose changes are being applied)."""
        self._tables.pop(table, None)

    def reflection_listeners(self) -> list[tuple[str, Callable[..., None]]]:
        """SQLAlchemy events that correct what the dialect's reflection gets wrong."""
        return []

    def describe(self, table: str) -> TableDescription | None:
        reflected = self.reflect(table)
        if reflected is None:
            if self.role == "destination":
                return None
            where = f" in schema {self._schema!r}" if self._schema else ""
            problem = self.name_rules.problem(table)
            why = f" (its name {problem})" if problem else ""
            raise SourceError(f"source {self.display_url}: table {table!r} not found{where}{why}")
        fields = [
            types.arrow_field(c.name, c.type, c.nullable, self.dialect) for c in reflected.columns
        ]
        return TableDescription(
            name=table,
            schema=pa.schema(fields),
            primary_key=tuple(c.name for c in reflected.primary_key.columns),
        )

    def estimate_rows(self, table: str) -> int:
        """The table's row count, for progress and the wizard: `COUNT(*)` here; stores whose
        database keeps a cheaper estimate override it."""
        reflected = self.reflect(table)
        if reflected is None:
            self.describe(table)  # raises the "not found" error
        with self.translated_errors(f"counting rows of {table!r}"), self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(reflected)).scalar_one()

    def check(self) -> None:
        with self.translated_errors("connecting"), self.engine.connect() as conn:
            conn.execute(sa.select(sa.literal(1)))

    def location(self, table: str) -> str:
        return f"{self._schema}.{table}" if self._schema else table

    # -- reading ----------------------------------------------------------------------------

    def open_reader(
        self, table: str, start: Callable[[Connection], None] | None = None
    ) -> AbstractContextManager["SqlTableReader"]:
        """A reader of `table` on a connection of its own, in the snapshot that `start` begins
        (`begin_snapshot`'s, unless a split copy's part joins another reader's)."""
        return self._reader(table, start or self.begin_snapshot)

    @contextmanager
    def _reader(
        self, table: str, start: Callable[[Connection], None]
    ) -> Iterator["SqlTableReader"]:
        reflected = self.reflect(table)
        if reflected is None:
            self.describe(table)  # raises the "not found" error
        with self.translated_errors(f"reading table {table!r}"), self.engine.connect() as conn:
            start(conn)
            reader = self.table_reader(conn, reflected)
            try:
                yield reader
            finally:
                reader.close()
                conn.rollback()

    def table_reader(self, conn: Connection, table: sa.Table) -> "SqlTableReader":
        return SqlTableReader(self, conn, table)

    def begin_snapshot(self, conn: Connection) -> None:
        """Start the read-only, repeatable-read transaction the table is read in."""

    # -- writing ----------------------------------------------------------------------------

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

    def column_type(self, field: pa.Field, is_key: bool = False) -> TypeEngine:
        """The type of the destination column that holds `field`."""
        return types.column_type(field, self.dialect, is_key=is_key)

    def stored_field(self, field: pa.Field) -> pa.Field:
        created = self.column_type(field)
        return types.arrow_field(field.name, created, field.nullable, self.dialect)

    def type_name(self, field: pa.Field) -> str:
        return str(self.column_type(field).compile(dialect=self.engine.dialect))

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

    def load_for_updates(
        self, conn: Connection, table: sa.Table, batches: Iterable[pa.RecordBatch]
    ) -> int:
        """Fill a new `table` that is then updated by key (see `replace`); as any other here."""
        return self.write_batches(conn, table, batches)

    def table_options(self) -> dict[str, str]:
        """Dialect options of the tables this store creates (`mysql_charset`, ...)."""
        return {}

    def drop_if_exists(self, conn: Connection, name: str) -> None:
        conn.execute(DropTable(sa.Table(name, sa.MetaData(), schema=self._schema), if_exists=True))

    def rename(self, conn: Connection, old: str, new: str) -> None:
        conn.exec_driver_sql(f"ALTER TABLE {self.qualified(old)} RENAME TO {self.quote(new)}")

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

    def select_expression(self, column: sa.Column) -> sa.ColumnElement[Any]:
        """How a column is selected so that the driver hands over its exact value."""
        if types.needs_text_cast(column.type, self.dialect):
            return sa.cast(column, sa.Text()).label(column.name)
        if isinstance(column.type, sa.Float):
            # Some dialects' floats (MySQL's DOUBLE) return Decimals rounded to ten places.
            return sa.type_coerce(column, sa.Double()).label(column.name)
        if isinstance(column.type, sa.Enum):
            # An enum's values are text; SQLAlchemy would also check them against the reflected
            # labels, which MariaDB reports with '?' for characters outside the BMP.
            return sa.type_coerce(column, sa.String()).label(column.name)
        return column

    def converter(self, field: pa.Field) -> Callable[[Any], Any] | None:
        """Per-value conversion for values the driver returns in a form Arrow does not take."""
        if logical_type(field) is not None:
            return as_text
        if pa.types.is_boolean(field.type):
            return as_bool  # MySQL's BOOLEAN is TINYINT(1): the driver returns 0 and 1
        return None

    @contextmanager
    def lock(self, table: str, timeout_seconds: float) -> Iterator[None]:
        """Dialects without a server-side lock copy unguarded; see the PostgreSQL override."""
        yield

    @contextmanager
    def writing(self, table: str) -> Iterator[Connection]:
        """The transaction that changes what readers of `table` see. Stores whose copy lock is
        a server session's (PostgreSQL, MySQL) prove inside it that the lock is still held."""
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        if not self._shared_engine:
            self.engine.dispose()


def _secrets_of(url: str) -> list[str]:
    """The URL's password and any `...password...=` query values: never to be shown."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return []
    secrets = [parsed.password] if parsed.password else []
    for name, value in parsed.query.items():
        if "password" in name.lower():
            secrets.extend([value] if isinstance(value, str) else value)
    return [secret for secret in secrets if secret]


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


# The URL scheme of the driver installed with copyjob, for each backend a user may name.
INSTALLED_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}


def _driver_hint(backend: str, otherwise: str) -> str:
    scheme = INSTALLED_DRIVERS.get(backend)
    if scheme:
        return f"; write {scheme}://... (the driver installed with copyjob)"
    return f" ({otherwise})"
