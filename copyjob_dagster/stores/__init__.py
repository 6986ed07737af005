"""Open a store from a job's source or destination: a registry keyed by database family."""

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from copyjob_dagster.config import StoreConfig
from copyjob_dagster.errors import DestinationError, SourceError
from copyjob_dagster.stores.base import Destination, Source, TableDescription
from copyjob_dagster.stores.files import FolderStore
from copyjob_dagster.stores.mysql import MySQLStore
from copyjob_dagster.stores.postgres import PostgresStore
from copyjob_dagster.stores.sql import Role, SqlStore, Timeouts
from copyjob_dagster.stores.sqlite import SQLiteStore

STORE_FAMILIES: dict[str, type[SqlStore]] = {
    "postgresql": PostgresStore,
    "mysql": MySQLStore,
    "mariadb": MySQLStore,
    "sqlite": SQLiteStore,
}

__all__ = ["Destination", "Source", "TableDescription", "open_destination", "open_source"]


def _open(config: StoreConfig, role: Role) -> SqlStore | FolderStore:
    if config.is_folder:
        return FolderStore(config.url, role)
    try:
        backend = make_url(config.url).get_backend_name()
    except ArgumentError:
        error = SourceError if role == "source" else DestinationError
        raise error(
            f"{role} {config.masked_url}: not a database URL (dialect+driver://user@host/db) "
            f"nor a folder; known families: {', '.join(STORE_FAMILIES)}, or any installed "
            f"SQLAlchemy dialect"
        ) from None
    family = STORE_FAMILIES.get(backend, SqlStore)
    timeouts = Timeouts(config.connect_timeout, config.statement_timeout)
    return family(config.url, config.db_schema, role, timeouts)


def open_source(config: StoreConfig) -> Source:
    return _open(config, "source")


def open_destination(config: StoreConfig) -> Destination:
    return _open(config, "destination")
