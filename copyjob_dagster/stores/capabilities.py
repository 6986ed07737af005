"""What a store family can do, declared on its class: validation, the planner, the dry run and
the wizard ask this value, never the shape of a URL."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Capabilities:
    merge: bool = True
    """Upsert by primary key inside one transaction (`write: merge`)."""
    split_reads: bool = False
    """Several connections read one snapshot, so a table can be read as key ranges at once."""
    byte_format: str | None = None
    """Rows go undecoded between two stores that name the same format here."""
    case_insensitive_names: bool = False
    """Table names that differ only in case are one table."""
    open_transactions: bool = False
    """Reports the transactions open at the source, which bound a timestamp watermark."""
