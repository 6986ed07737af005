"""A database reached through SQLAlchemy, as a source and as a destination.

This is the generic path that works for every dialect; the PostgreSQL, MySQL and SQLite stores
override the few steps where their engines offer something better or behave differently
(bulk loading, snapshots, DDL inside transactions).
"""

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Literal

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, NoSuchTableError, SQLAlchemyError
from sqlalchemy.types import TypeEngine

from copyjob_dagster.config import DEFAULT_CONNECT_TIMEOUT, mask_url
from copyjob_dagster.errors import CopyJobError, DestinationError, SourceError
from copyjob_dagster.stores import engines, reflection, types
from copyjob_dagster.stores.base import (
    Commit,
    TableDescription,
    logical_type,
)
from copyjob_dagster.stores.capabilities import Capabilities
from copyjob_dagster.stores.identifiers import NameRules
from copyjob_dagster.stores.sql_reader import SqlTableReader, as_bool, as_text
from copyjob_dagster.stores.sql_writing import SqlWriting
from copyjob_dagster.stores.transient import is_transient

Role = Literal["source", "destination"]


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """How long a store waits for a connection (a refused, silent or unreachable server), and
    for any one statement (None: as long as it takes)."""

    connect: int = DEFAULT_CONNECT_TIMEOUT
    statement: float | None = None


class SqlStore(SqlWriting):
    """A SQLAlchemy database: describe, stream batches, replace tables atomically."""

    capabilities = Capabilities()
    last_commit: Commit | None = None  # a database's commits are not numbered for readers
    replaced_rows: int | None = None  # see `Destination.replaced_rows`: MySQL's LOAD DATA
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
                    self._tables[table] = self._reflected(table)
                except NoSuchTableError:
                    return None
        return self._tables[table]

    def _reflected(self, table: str) -> sa.Table:
        """The table as SQLAlchemy reflects it (raises `NoSuchTableError`)."""
        return sa.Table(
            table,
            sa.MetaData(),
            autoload_with=self.engine,
            schema=self._schema,
            listeners=self.reflection_listeners(),
        )

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

    # -- types and values -------------------------------------------------------------------

    def column_type(self, field: pa.Field, is_key: bool = False) -> TypeEngine:
        """The type of the destination column that holds `field`."""
        return types.column_type(field, self.dialect, is_key=is_key)

    def stored_field(self, field: pa.Field) -> pa.Field:
        created = self.column_type(field)
        return types.arrow_field(field.name, created, field.nullable, self.dialect)

    def type_name(self, field: pa.Field) -> str:
        return str(self.column_type(field).compile(dialect=self.engine.dialect))

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

    def stored_value(self, column: sa.Column) -> sa.ColumnElement[Any]:
        """`column` as the database holds it, for a window's bounds; see the SQLite override."""
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
