"""`copyjob plan`: what the next run of each table would do, without writing anything.

The watermarks are read from the Dagster instance as the assets read them; the rest comes from
`dryrun.py`, which only reads the source and describes the destination. No run is launched and
no event recorded; an instance that does not exist yet is not created.
"""

import json
import os
from pathlib import Path
from typing import Any

import click
import dagster as dg
from rich.table import Table

from copyjob_dagster.cli.support import console, find_job, project_jobs, selected_tables
from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.defs import latest_watermark, naming
from copyjob_dagster.defs.assets import latest_metadata
from copyjob_dagster.defs.cdc import position_from_metadata
from copyjob_dagster.engine import TablePlan, Watermark, plan_table
from copyjob_dagster.engine.cdc_plan import plan_cdc
from copyjob_dagster.errors import CopyJobError, WatermarkError
from copyjob_dagster.project import ensure_dagster_home, project_dir


@click.command()
@click.argument("job_name", required=False)
@click.option("--table", "tables", multiple=True, help="Only this table of JOB (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def plan(job_name: str | None, tables: tuple[str, ...], as_json: bool) -> None:
    """What the next run of each table would copy: a dry run that writes nothing."""
    if tables and not job_name:
        raise CopyJobError("--table needs a JOB: copyjob plan JOB --table T")
    jobs = [find_job(job_name)] if job_name else project_jobs().jobs
    chosen = [(job, table) for job in jobs for table in selected_tables(job, tables)]
    positions = _positions(chosen)
    plans = [
        plan_cdc(job, table, positions.get((job.name, table.destination_name)))
        if job.is_cdc(table)
        else _plan(job, table, watermark)
        for (job, table), watermark in _watermarks(chosen)
    ]
    if as_json:
        click.echo(json.dumps([plan_json(found) for found in plans], indent=2))
    else:
        _print(plans)


def _watermarks(
    chosen: list[tuple[CopyJob, TableConfig]],
) -> list[tuple[tuple[CopyJob, TableConfig], Watermark | None | WatermarkError]]:
    """Each table's watermark of record, or why it cannot be read; none without an instance."""
    home = os.environ.get("DAGSTER_HOME") or project_dir() / ".dagster"
    if not Path(home).is_dir():
        return [(pair, None) for pair in chosen]
    ensure_dagster_home()
    found: list[tuple[tuple[CopyJob, TableConfig], Watermark | None | WatermarkError]] = []
    with dg.DagsterInstance.get() as instance:
        for job, table in chosen:
            try:
                found.append(
                    ((job, table), latest_watermark(instance, naming.asset_key(job, table)))
                )
            except WatermarkError as exc:
                found.append(((job, table), exc))
    return found


def _positions(chosen: list[tuple[CopyJob, TableConfig]]) -> dict[tuple[str, str], int | None]:
    """The recorded position of each `mode: cdc` table; none without an instance."""
    home = os.environ.get("DAGSTER_HOME") or project_dir() / ".dagster"
    cdc_tables = [(job, table) for job, table in chosen if job.is_cdc(table)]
    if not cdc_tables or not Path(home).is_dir():
        return {}
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        return {
            (job.name, table.destination_name): position_from_metadata(
                latest_metadata(instance, naming.asset_key(job, table))
            )
            for job, table in cdc_tables
        }


def _plan(
    job: CopyJob, table: TableConfig, watermark: Watermark | None | WatermarkError
) -> TablePlan:
    if isinstance(watermark, WatermarkError):
        found = plan_table(job, table, None)
        return TablePlan(**{**vars(found), "load": "cannot run", "problems": [str(watermark)]})
    return plan_table(job, table, watermark)


def plan_json(found: TablePlan) -> dict[str, Any]:
    data = {**vars(found)}
    schema = found.schema
    data["schema"] = (
        None
        if schema is None
        else {
            "added": [
                {"name": f.name, "type": kind}
                for f, kind in zip(schema.added, schema.added_types, strict=True)
            ],
            "dropped": list(schema.dropped),
            "retyped": [vars(column) for column in schema.retyped],
        }
    )
    return data


def _print(plans: list[TablePlan]) -> None:
    table = Table(
        "table", "copied to", "mode", "write", "next run", "watermark", "window", "rows",
        "schema changes", title="Plan of the next run (nothing was written)",
    )  # fmt: skip
    table.columns[7].justify = "right"
    for found in plans:
        table.add_row(
            f"{found.job}/{found.table}",
            found.destination + ("" if found.destination_exists else " (new)"),
            found.mode,
            found.write,
            found.load
            + (f", {found.parts} parts" if found.parts > 1 else "")
            + (
                f", slot holds {found.retained_wal_bytes:,} bytes of WAL"
                if found.retained_wal_bytes is not None
                else ""
            ),
            found.watermark or "-",
            found.window or "-",
            "-" if found.rows is None else f"{found.rows:,}",
            _changes(found) or "-",
        )
    out = console(markup=False)
    out.print(table)
    for found in plans:
        for problem in found.problems:
            out.print(f"{found.job}/{found.table}: {problem}", soft_wrap=True)
        if found.open_transactions:
            held = (
                f"; the watermark would be held at {found.held_watermark}"
                if found.held_watermark
                else ""
            )
            out.print(
                f"{found.job}/{found.table}: open transactions: {found.open_transactions}{held}",
                soft_wrap=True,
            )


def _changes(found: TablePlan) -> str:
    schema = found.schema
    if not schema:
        return ""
    parts = [
        f"+{field.name} ({kind})"
        for field, kind in zip(schema.added, schema.added_types, strict=True)
    ]
    parts += [f"-{name}" for name in schema.dropped]
    parts += [
        f"~{c.name} {c.destination_type} → {c.source_type}"
        + ("" if c.converts else " (cannot convert)")
        for c in schema.retyped
    ]
    return ", ".join(parts)
