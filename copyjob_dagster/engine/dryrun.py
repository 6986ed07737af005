"""What the next run of each table would do, found without writing anything anywhere.

For a table: its mode and write method, the watermark it starts from, the window it would read
and how many rows that holds (counted in one snapshot of the source, as `copy_table` windows
it: the initial load, the fingerprint at the watermark, the lookback), and how the source's
columns differ from the destination table's. The source is read in its read-only snapshot; the
destination is only described (a SQLite destination file that does not exist is not created);
no lock is taken. Never imports Dagster: the caller passes the watermark of record.
"""

from dataclasses import dataclass, field, replace

from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.engine.copying import cursor_kind
from copyjob_dagster.engine.late_commits import held_watermark, observe
from copyjob_dagster.engine.passthrough import streams_bytes
from copyjob_dagster.engine.planning import (
    CopyPlan,
    SchemaDifference,
    plan_copy,
    schema_difference,
    schema_refusal,
)
from copyjob_dagster.engine.splitting import part_count
from copyjob_dagster.engine.watermark import Watermark
from copyjob_dagster.engine.windows import describe_window, plan_window
from copyjob_dagster.errors import CopyJobError
from copyjob_dagster.stores import (
    Destination,
    Source,
    TableDescription,
    TableReader,
    may_exist,
    open_destination,
    open_source,
)


@dataclass(frozen=True)
class TablePlan:
    """The next run of one table, as far as it can be known before it runs."""

    job: str
    table: str
    destination: str
    mode: str  # full | incremental | cdc
    write: str  # replace | append | merge
    load: str  # full | initial | incremental | nothing new | cannot run
    watermark: str | None = None
    window: str | None = None
    rows: int | None = None
    parts: int = 1  # key ranges the rows would be read in (split copies)
    null_cursor_rows: int = 0
    open_transactions: str | None = None  # the bound they set (see late_commits.py)
    held_watermark: str | None = None  # the watermark recorded, when held below the window's end
    destination_exists: bool = False
    schema: SchemaDifference | None = None
    problems: list[str] = field(default_factory=list)
    retained_wal_bytes: int | None = None  # mode: cdc: the WAL the table's slot holds back


def plan_table(job: CopyJob, table: TableConfig, watermark: Watermark | None) -> TablePlan:
    source = open_source(job.source)
    destination = open_destination(job.destination)
    try:
        found = TablePlan(
            job=job.name,
            table=table.name,
            destination=destination.location(table.destination_name),
            mode=job.mode,
            write="replace" if job.mode == "full" else (table.write or "-"),
            load="cannot run",
            watermark=watermark.text if watermark else None,
        )
        try:
            plan = plan_copy(job, table, source.describe(table.name))
            existing = (
                destination.describe(table.destination_name) if may_exist(job.destination) else None
            )
            by_feed = plan.incremental_column is None and job.mode == "incremental"
            found = replace(
                found,
                write="merge" if by_feed else "replace" if job.mode == "full" else plan.write,
                destination_exists=existing is not None,
                schema=None if existing is None else schema_difference(plan, existing, destination),
                parts=_parts(plan, table, source, destination),
            )
            with source.open_reader(table.name) as reader:
                if by_feed:  # the change data feed: the source versions since the watermark's
                    since = None if watermark is None or existing is None else int(watermark.text)
                    ahead = (reader.version or 0) - since if since is not None else None
                    return replace(
                        found,
                        load="initial"
                        if since is None
                        else "incremental"
                        if ahead
                        else "nothing new",
                        rows=reader.count() if since is None else None,
                        window=None
                        if since is None
                        else f"source versions {since + 1}..{reader.version}",
                    )
                if plan.incremental_column is None:
                    return replace(found, load="full", rows=reader.count())
                return _incremental(found, plan, table, source, reader, watermark, existing)
        except CopyJobError as exc:
            if exc.transient:
                raise
            return replace(found, problems=[*found.problems, str(exc)])
    finally:
        source.close()
        destination.close()


def _incremental(
    found: TablePlan,
    plan: CopyPlan,
    table: TableConfig,
    source: Source,
    reader: TableReader,
    previous: Watermark | None,
    existing: TableDescription | None,
) -> TablePlan:
    """The window `copy_table` would read now, its rows, and the watermark it would record;
    mirrors `_copy_increment` (which reads the open transactions before its snapshot)."""
    kind = cursor_kind(plan, source, previous)
    transactions = observe(source, kind)
    if existing is None:
        previous = None  # the copy is gone from the destination: it loads the table again
    elif previous is not None and found.schema is not None:
        refusal = schema_refusal(plan, found.schema)
        if refusal:
            found = replace(found, problems=[f"the next run stops: {refusal}"])
    planned = plan_window(plan, table, reader, previous)
    window, nulls = planned.window, planned.null_rows
    if previous is not None and window.high is None:
        load, rows = "nothing new", 0
    else:
        load, rows = ("initial" if previous is None else "incremental"), planned.rows
    value, late = held_watermark(
        kind, window.high, transactions, previous, table.open_transaction_warning
    )
    return replace(
        found,
        load="cannot run" if found.problems else load,
        window=describe_window(window),
        rows=rows,
        null_cursor_rows=nulls,
        open_transactions=late.describe() if late else None,
        held_watermark=(Watermark.of(kind, value, 0, "").text if late and late.held_back else None),
    )


def _parts(plan: CopyPlan, table: TableConfig, source: Source, destination: Destination) -> int:
    """As `copy_table` decides: the byte passthrough reads one stream whatever `split:` says."""
    if plan.split is None or streams_bytes(plan, source, destination):
        return 1
    return part_count(plan.split, source, table.name)
