"""`copyjob watermark reset|set`: change a table's watermark on purpose, and say why.

Each operation takes the table's copy lock (so it waits for a running copy, and no copy starts
meanwhile), checks the value against the incremental column, and records itself in the asset's
history (`operations.py`), where `copyjob history` shows it.
"""

import getpass
import re
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import click
import dagster as dg
from rich.table import Table

from copyjob_dagster.cli.support import console, find_job, selected_tables
from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.defs import WATERMARK_BEFORE, StateOperation, operations
from copyjob_dagster.engine import Backfill, incremental_kind, table_lock
from copyjob_dagster.errors import CopyJobError
from copyjob_dagster.project import ensure_dagster_home

LOCK_WAIT_SECONDS = 60
REASON = click.option("--reason", required=True, help="Why; kept in the table's history.")


@click.group()
def watermark() -> None:
    """Reset or set a table's watermark, recorded in its history with who, when and why."""


@watermark.command()
@click.argument("job_name")
@click.argument("table_name")
@REASON
def reset(job_name: str, table_name: str, reason: str) -> None:
    """Forget TABLE's watermark: its next run loads the table anew."""
    _change(job_name, table_name, None, reason)


@watermark.command(name="set")
@click.argument("job_name")
@click.argument("table_name")
@click.argument("value")
@REASON
def set_(job_name: str, table_name: str, value: str, reason: str) -> None:
    """Set TABLE's watermark to VALUE: its next run copies the rows from VALUE up (inclusive).

    Below the current watermark it is a rewind (that range is copied again, without
    duplicates); above it, a skip (the rows below VALUE are never copied).
    """
    _change(job_name, table_name, value, reason)


def _change(job_name: str, table_name: str, value: str | None, reason: str) -> None:
    job = find_job(job_name)
    (table,) = selected_tables(job, (table_name,))
    new = operations.requested_watermark(job, table, value, reason)
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance, table_lock(job, table, LOCK_WAIT_SECONDS):
        event = operations.operation_event(instance, job, table, new, reason, _who())
        instance.report_runless_asset_event(event)
    before = event.metadata[WATERMARK_BEFORE].value
    after = new.text if new else operations.NO_WATERMARK
    click.echo(f"{job.name}/{table.destination_name}: watermark {before} → {after}")


def _who() -> str:
    return f"{_os_user()}@{socket.gethostname()} (copyjob command line)"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name, and a uid without a passwd entry
        return "unknown"


def operations_of(
    instance: dg.DagsterInstance,
    jobs: list[CopyJob],
    chosen: Mapping[str, list[TableConfig]],
    limit: int,
) -> list[StateOperation]:
    """The latest `limit` watermark operations of each chosen table, newest first."""
    found = [
        operation
        for job in jobs
        for table in chosen[job.name]
        for operation in operations.read_operations(instance, job, table, limit)
    ]
    return sorted(found, key=lambda operation: operation.recorded, reverse=True)


def print_operations(found: list[StateOperation]) -> None:
    if not found:
        return
    table = Table(
        "table", "when (UTC)", "operation", "watermark before", "watermark after", "reason",
        "requested by", title="Watermark operations, newest first",
    )  # fmt: skip
    for operation in found:
        table.add_row(
            f"{operation.job}/{operation.table}",
            _when(operation.recorded),
            operation.operation,
            operation.watermark_before,
            operation.watermark_after,
            operation.reason,
            operation.requested_by
            + "".join(f"\n{tag}={value}" for tag, value in (operation.run_tags or {}).items()),
        )
    console(markup=False).print(table)


def operations_json(found: list[StateOperation]) -> list[dict[str, Any]]:
    return [
        {**vars(operation), "recorded": datetime.fromtimestamp(operation.recorded, UTC).isoformat()}
        for operation in found
    ]


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


USER_TAG = "copyjob/user"  # who launched a `copyjob run`; a backfill records it


def run_user() -> str:
    """The OS user, as a Dagster tag value allows: `[A-Za-z0-9_.-]`, 63 characters at most."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", _os_user())[:63]


def backfill_config(
    job: CopyJob,
    tables: tuple[str, ...],
    full_refresh: bool,
    backfill_from: str | None = None,
    backfill_to: str | None = None,
    reason: str | None = None,
) -> dict[str, str]:
    """`copyjob run JOB --table T --from X --to Y` as the asset's run config, its bounds
    checked against the incremental column before any run starts."""
    if backfill_from is None and backfill_to is None:
        if reason:
            raise CopyJobError("--reason goes with a backfill (--from and --to)")
        return {}
    if backfill_from is None or backfill_to is None:
        raise CopyJobError("a backfill needs both --from and --to")
    if len(tables) != 1 or full_refresh:
        raise CopyJobError(
            "a backfill copies one table: give exactly one --table, no --full-refresh"
        )
    (table,) = selected_tables(job, tables)
    Backfill(backfill_from, backfill_to).bounds(job.name, table, incremental_kind(job, table))
    config = {"backfill_from": backfill_from, "backfill_to": backfill_to}
    return config | ({"reason": reason} if reason else {})
