"""What a store family can do, declared on its class: validation, the planner, the dry run and
the wizard ask this value, never the shape of a URL."""

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Capabilities:
    merge: bool = True
    """Upsert by primary key inside one transaction (`write: merge`)."""
    deletes: bool = True
    """Rows whose key left the source are deleted or marked (`deletes: hard | soft`)."""
    versions: bool = True
    """Every version of a row is kept (`write: scd2`)."""
    split_reads: bool = False
    """Several connections read one snapshot, so a table can be read as key ranges at once."""
    byte_format: str | None = None
    """Rows go undecoded between two stores that name the same format here."""
    loads_text: str | None = None
    """A text format it loads undecoded from a source that names it in `spells_text` (MySQL's
    LOAD DATA CSV, see `pgmysql`)."""
    spells_text: tuple[str, ...] = ()
    """Text formats its server can write the rows in, column by column where each type allows."""
    case_insensitive_names: bool = False
    """Table names that differ only in case are one table."""
    string_lengths: bool = True
    """A text column's declared length bounds its values (VARCHAR(10)); Parquet's do not."""
    open_transactions: bool = False
    """Reports the transactions open at the source, which bound a timestamp watermark."""
    change_feed: bool = False
    """Reads the rows changed since a table version (Delta's change data feed), so an
    incremental copy needs no incremental column."""
    change_stream: bool = False
    """Streams committed changes from a log (PostgreSQL logical replication): `mode: cdc`."""
    binlog: bool = False
    """Its change stream is MariaDB's binlog: no slot holds the log back, and a position is a
    binlog file and offset."""
    maintenance: bool = False
    """Compacts a table's small files and deletes the files no version within its retention
    needs (Delta's optimize and vacuum): `maintenance:`."""
    why_not: str | None = None
    """Why this store refuses the merge, deletions or versions it does not offer, and where
    they are done instead: said in each refusal (Parquet on object storage)."""
    applies_changes: Literal["by_key", "log"] | None = "by_key"
    """How a `mode: cdc` destination takes changes: upserts and deletes by primary key in one
    transaction (`by_key`), or an append-only change log with each row's operation and position
    (`log`); None: not at all."""
