"""`copyjob run`: materialize a job's tables through Dagster, follow their progress, and print
what each table copied."""

import os
import sys
import uuid
from typing import Any

import click
import dagster as dg
from rich.table import Table

from copyjob_dagster.cli import launch
from copyjob_dagster.cli.interrupts import apart_from_terminal, interrupted, is_interruption
from copyjob_dagster.cli.probes import remember_schema_probes
from copyjob_dagster.cli.storage import keep_connections
from copyjob_dagster.cli.support import console, find_job, project_jobs, selected_tables
from copyjob_dagster.cli.watch import show_progress
from copyjob_dagster.cli.watermark import USER_TAG, backfill_config, run_user
from copyjob_dagster.config import TableConfig
from copyjob_dagster.defs import (
    ROWS_PER_SECOND,
    ROWS_READ,
    ROWS_WRITTEN,
    SECONDS,
    TABLE_NAME,
    WATERMARK,
    apply_pool_limits,
    naming,
    process_tags,
    record_run_summary,
)
from copyjob_dagster.errors import CopyJobError
from copyjob_dagster.project import ensure_dagster_home

RUN_TAG = "copyjob/cli_run"  # marks the run `copyjob run` follows in the event log


@click.command()
@click.argument("job_name")
@click.option("--table", "tables", multiple=True, help="Copy only this table (repeatable).")
@click.option(
    "--full-refresh", is_flag=True, help="Incremental tables: reset the watermark, copy anew."
)
@click.option("--verbose", is_flag=True, help="Also print Dagster's event log.")
@click.option(
    "--allow-mass-delete",
    is_flag=True,
    help="Tables with deletes: delete or mark rows even beyond their max_delete_share.",
)
@click.option("--from", "backfill_from", help="Backfill one --table: rows from this value...")
@click.option("--to", "backfill_to", help="...to this one (inclusive); the watermark stays.")
@click.option("--reason", help="Why (a backfill's reason, kept in its history).")
def run(
    job_name: str,
    tables: tuple[str, ...],
    full_refresh: bool,
    verbose: bool,
    allow_mass_delete: bool,
    **backfill: Any,
) -> None:
    """Materialize a job's tables through Dagster, on the configured instance."""
    apart_from_terminal(
        lambda: run_job(job_name, tables, full_refresh, verbose, backfill, allow_mass_delete)
    )


def run_job(
    job_name: str,
    tables: tuple[str, ...],
    full_refresh: bool = False,
    verbose: bool = False,
    backfill: dict[str, str | None] | None = None,
    allow_mass_delete: bool = False,
) -> None:
    ensure_dagster_home()
    folder = project_jobs()
    jobs = folder.jobs
    job = find_job(job_name, folder)
    chosen = selected_tables(job, tables)
    backfill_options = backfill_config(job, tables, full_refresh, **(backfill or {}))
    run_config = {
        "ops": {
            naming.job_op_name(job): {
                "config": {
                    "full_refresh": full_refresh,
                    "allow_mass_delete": allow_mass_delete,
                    **backfill_options,
                }
            }
        },
        # The event log is kept in the instance (and shown in the UI) either way; here the
        # command prints its own summary and any failure's message.
        "loggers": {"console": {"config": {"log_level": "DEBUG" if verbose else "CRITICAL"}}},
    }
    recon = dg.build_reconstructable_job(
        "copyjob_dagster.definitions", "job_named", reconstructable_args=(job.name,)
    )
    tags = {RUN_TAG: uuid.uuid4().hex, USER_TAG: run_user(), **process_tags()}
    labels = {table.destination_name: _label(table) for table in chosen}
    keys = {naming.asset_key(job, table): table.destination_name for table in chosen}
    shown = console(markup=False)
    launch.read_migrations_once()
    with dg.DagsterInstance.get() as instance:
        keep_connections(instance)
        remember_schema_probes(instance)
        apply_pool_limits(instance, jobs)
        with show_progress(shown, tags, labels, keys, instance):
            result = launch.execute(
                recon,
                instance,
                job.name,
                run_config,
                tags,
                [naming.asset_key(job, table) for table in chosen],
            )
        record_run_summary(instance, result.run_id, jobs)
        failures = result.get_step_failure_events()
        if interrupted() or any(is_interruption(event) for event in failures):
            _report_interruption(result, {key: labels[name] for key, name in keys.items()})
        _report(result)
        if not result.success:
            failures = [_failure_message(event) for event in result.get_step_failure_events()]
            raise CopyJobError(
                f"run {result.run_id} of job {job.name!r} failed:\n  " + "\n  ".join(failures)
            )
        failed_checks = [
            f"{check.asset_key.to_user_string()}: check {check.check_name} failed: "
            f"{check.description}"
            for check in result.get_asset_check_evaluations()
            if not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        ]
        if failed_checks:
            raise CopyJobError(
                f"run {result.run_id} of job {job.name!r} copied and committed, but failed its "
                f"checks:\n  " + "\n  ".join(failed_checks)
            )
    click.echo(f"run {result.run_id} succeeded; DAGSTER_HOME={os.environ['DAGSTER_HOME']}")


def _label(table: TableConfig) -> str:
    if table.destination_name == table.name:
        return table.name
    return f"{table.name} → {table.destination_name}"


def _report_interruption(result: Any, labels: dict[dg.AssetKey, str]) -> None:
    """One line: the run stopped, the tables left as they were, those copied before."""
    copied = {event.asset_key for event in result.get_asset_materialization_events()}
    left = [label for key, label in labels.items() if key not in copied]
    before = [label for key, label in labels.items() if key in copied]
    click.echo(
        f"interrupted: run {result.run_id} stopped; left unchanged (destination and "
        f"watermark as before the run): {', '.join(left)}"
        + (f"; copied before the interrupt: {', '.join(before)}" if before else ""),
        err=True,
    )
    sys.exit(130)


def _report(result: Any) -> None:
    """Per table: rows read and written, seconds, the watermark, where the data went."""
    table = Table(
        "table", "rows read", "rows written", "seconds", "rows/s", "watermark", "copied to"
    )
    for column in table.columns[1:5]:
        column.justify = "right"
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        metadata = materialization.metadata
        watermark = metadata.get(WATERMARK)
        table.add_row(
            materialization.asset_key.to_user_string(),
            f"{metadata[ROWS_READ].value:,}",
            f"{metadata[ROWS_WRITTEN].value:,}",
            f"{metadata[SECONDS].value:.2f}",
            f"{metadata[ROWS_PER_SECOND].value:,}",
            str(watermark.value) if watermark else "-",
            str(metadata[TABLE_NAME].value),
        )
    if table.row_count:
        console().print(table)


def _failure_message(event: dg.DagsterEvent) -> str:
    data = event.step_failure_data
    user = data.user_failure_data
    return user.description if user and user.description else data.error.message.strip()
