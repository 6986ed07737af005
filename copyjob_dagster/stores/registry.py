"""Open a store from a job's source or destination: a registry keyed by database family.

Adding a store is one module in this folder and one line here. Each family's module is imported
when a job first asks for that family: a PostgreSQL -> MariaDB run does not import deltalake,
the Parquet and S3 folders' pyarrow.dataset (and with it pandas), nor SQLite's writer.
"""

import importlib
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from copyjob_dagster.config import StoreConfig
from copyjob_dagster.errors import DestinationError, SourceError
from copyjob_dagster.stores.base import Destination, Source
from copyjob_dagster.stores.capabilities import Capabilities
from copyjob_dagster.stores.sql import Role, SqlStore, Timeouts

if TYPE_CHECKING:
    from copyjob_dagster.stores.files import FolderStore

# Each family's module in this folder, and its store class.
STORE_FAMILIES: dict[str, tuple[str, str]] = {
    "postgresql": ("postgres", "PostgresStore"),
    "mysql": ("mysql", "MySQLStore"),
    "mariadb": ("mysql", "MySQLStore"),
    "sqlite": ("sqlite", "SQLiteStore"),
    "delta": ("delta", "DeltaStore"),
    # parquet+s3://bucket/prefix; a local folder is a bare path
    "parquet": ("parquet_s3", "S3FolderStore"),
}
_FOLDER = ("files", "FolderStore")


def _family(module: str, name: str) -> "type[SqlStore] | type[FolderStore]":
    family = getattr(importlib.import_module(f"{__package__}.{module}"), name)
    assert isinstance(family, type)
    return family


def family_of(config: StoreConfig, role: Role) -> "type[SqlStore] | type[FolderStore]":
    """The store class that serves `config`, found without connecting."""
    if config.is_folder:
        return _family(*_FOLDER)
    try:
        backend = make_url(config.url).get_backend_name()
    except ArgumentError:
        error = SourceError if role == "source" else DestinationError
        raise error(
            f"{role} {config.masked_url}: not a database URL (dialect+driver://user@host/db) "
            f"nor a folder; known families: {', '.join(STORE_FAMILIES)}, or any installed "
            f"SQLAlchemy dialect"
        ) from None
    return _family(*STORE_FAMILIES[backend]) if backend in STORE_FAMILIES else SqlStore


def url_problem(config: StoreConfig) -> str | None:
    """Why no store can be opened at `config`'s URL, found without connecting; None if one can."""
    return family_of(config, "destination").url_problem(config.url)


def capabilities_of(config: StoreConfig) -> Capabilities:
    """What the store at `config` can do, asked before any connection is opened."""
    return family_of(config, "destination").capabilities


def may_exist(config: StoreConfig) -> bool:
    """False where opening the store would create it (a SQLite file not there yet)."""
    return not family_of(config, "destination").created_by_opening(config.url)


def _open(config: StoreConfig, role: Role) -> "SqlStore | FolderStore":
    config = config.with_secrets(role)  # a password variable unset when the job file loaded
    family = family_of(config, role)
    if not issubclass(family, SqlStore):
        return family(config.url, role)
    timeouts = Timeouts(config.connect_timeout, config.statement_timeout)
    return family(config.url, config.db_schema, role, timeouts)


def open_source(config: StoreConfig) -> Source:
    return _open(config, "source")


def open_destination(config: StoreConfig) -> Destination:
    return _open(config, "destination")


def describe_ahead(source: Source, tables: list[str]) -> None:
    """Describe `tables` of `source` in one go, where the store can (a SQL database), for the
    run's stores to take (`reflection`)."""
    if isinstance(source, SqlStore):
        source.describe_ahead(tables)
