"""Watermark values a person types: a watermark set by hand, and a backfill's bounds.

Each is parsed against the kind of the table's incremental column (`watermark.py`), so that it
is bound as a value of the column's own type, and refused with a message naming the job, the
table, the column and the form expected. Never imports Dagster.
"""

from dataclasses import dataclass
from typing import Any

from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.engine.planning import plan_copy
from copyjob_dagster.engine.watermark import Watermark, WatermarkKind, parse, watermark_kind
from copyjob_dagster.errors import WatermarkError
from copyjob_dagster.stores import open_destination, open_source

_FORMS = {
    "integer": "a whole number, such as 1500",
    "decimal": "a decimal number, such as 19.99",
    "date": "a date, such as 2024-03-01",
    "timestamp": "a timestamp without time zone, such as 2024-03-01 12:00:00",
    "timestamp_tz": "a timestamp with its time zone, such as 2024-03-01 12:00:00+00:00",
    "string": "any text",
}


@dataclass(frozen=True)
class Backfill:
    """Copy the rows whose incremental value lies in [low, high], as typed by a person."""

    low: str
    high: str

    def bounds(self, job: str, table: TableConfig, kind: WatermarkKind) -> tuple[Any, Any]:
        """The bounds as values of the column's kind; refuse a window that holds nothing."""
        low = parse_value(job, table, kind, self.low, "from")
        high = parse_value(job, table, kind, self.high, "to")
        if not low < high:
            raise WatermarkError(
                f"job {job!r}, table {table.name!r}: a backfill's 'from' ({self.low}) must be "
                f"below its 'to' ({self.high})"
            )
        return low, high


def require_incremental(job: CopyJob, table: TableConfig) -> None:
    """Refuse a table that has no watermark at all (checked without connecting)."""
    if job.mode != "incremental":
        raise WatermarkError(
            f"job {job.name!r}, table {table.name!r}: only an incremental table has a watermark "
            f"(the job's mode is {job.mode!r})"
        )


def incremental_kind(job: CopyJob, table: TableConfig) -> WatermarkKind:
    """The watermark kind of the table's incremental column, read from the live source."""
    require_incremental(job, table)
    if table.incremental_column is None:
        return "integer"  # copied by a change feed: the watermark is a table version
    source = open_source(job.source)
    try:
        described = source.describe(table.name)
        plan_copy(job, table, described)  # refuses a column that is missing or cannot order
    finally:
        source.close()
    return watermark_kind(described.schema.field(table.incremental_column))


def require_destination_table(job: CopyJob, table: TableConfig) -> None:
    """Refuse to set the watermark of a table not copied yet: its first run loads it whole."""
    destination = open_destination(job.destination)
    try:
        if destination.describe(table.destination_name) is None:
            raise WatermarkError(
                f"job {job.name!r}, table {table.name!r}: the destination has no table "
                f"{table.destination_name!r} yet, and a run that finds none loads the table "
                f"whole; set the watermark after its first copy"
            )
    finally:
        destination.close()


def parse_value(job: str, table: TableConfig, kind: WatermarkKind, text: str, what: str) -> Any:
    """`text` as a value of `kind`, or a WatermarkError naming the table, column and form."""
    try:
        value = parse(kind, text.strip())
    except WatermarkError:
        raise WatermarkError(
            f"job {job!r}, table {table.name!r}: {what} {text!r} is not a value of column "
            f"{table.incremental_column!r}, which holds {kind} values: give {_FORMS[kind]}"
        ) from None
    if kind == "string" and not text:
        raise WatermarkError(f"job {job!r}, table {table.name!r}: {what} is empty")
    return value


def typed_watermark(job: str, table: TableConfig, kind: WatermarkKind, text: str) -> Watermark:
    """A watermark set by hand. It carries no fingerprint of the rows at its value, so the next
    run copies those rows too (idempotently): a rewind to V copies V again, a skip to V leaves
    out only what lies below V."""
    return Watermark.of(kind, parse_value(job, table, kind, text, "watermark"), -1, "")
