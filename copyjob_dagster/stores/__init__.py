"""The stores layer: one module per store family (generic SQLAlchemy, PostgreSQL,
MySQL/MariaDB, SQLite, Parquet/CSV folders, Delta tables), each declaring its `Capabilities`;
the registry that opens them; the protocols the engine reads and writes through. Imports only
config."""

from copyjob_dagster.stores.base import (
    ChangeFeed,
    ChangeFeedSource,
    Commit,
    DeletePolicy,
    DeletionCounts,
    Destination,
    KeyDiff,
    KeyRange,
    LiveRows,
    Source,
    SplittableSource,
    TableDescription,
    TableReader,
    TransactionAwareSource,
    VersionColumns,
    Window,
    WriteMethod,
    string_length,
)
from copyjob_dagster.stores.capabilities import Capabilities
from copyjob_dagster.stores.engines import shared_engines
from copyjob_dagster.stores.open_transactions import OpenTransaction, OpenTransactions
from copyjob_dagster.stores.pgcopy import (
    BinaryCopy,
    CopyChunk,
    PostgresTableReader,
    same_column_types,
)
from copyjob_dagster.stores.pgmysql import Spelling, TextCopy, warn_non_finite
from copyjob_dagster.stores.read_ahead import read_in_parallel
from copyjob_dagster.stores.registry import (
    STORE_FAMILIES,
    capabilities_of,
    describe_ahead,
    may_exist,
    open_destination,
    open_source,
)
from copyjob_dagster.stores.upkeep import MaintainedTables, Upkeep
from copyjob_dagster.stores.validation import store_problems

__all__ = [
    "STORE_FAMILIES",
    "BinaryCopy",
    "Capabilities",
    "Commit",
    "CopyChunk",
    "DeletePolicy",
    "DeletionCounts",
    "Destination",
    "KeyDiff",
    "KeyRange",
    "LiveRows",
    "MaintainedTables",
    "OpenTransaction",
    "OpenTransactions",
    "PostgresTableReader",
    "Source",
    "Spelling",
    "SplittableSource",
    "TableDescription",
    "TableReader",
    "TextCopy",
    "ChangeFeed",
    "ChangeFeedSource",
    "TransactionAwareSource",
    "Upkeep",
    "VersionColumns",
    "Window",
    "WriteMethod",
    "capabilities_of",
    "describe_ahead",
    "may_exist",
    "open_destination",
    "open_source",
    "read_in_parallel",
    "same_column_types",
    "warn_non_finite",
    "shared_engines",
    "store_problems",
    "string_length",
]
