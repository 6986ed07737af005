"""The `copyjob` command: create, validate, list and run jobs through Dagster; history, demo, UI."""

import dataclasses
import json
import os
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import dagster as dg
from rich.console import Console
from rich.table import Table

from copyjob_dagster import cli_plan, cli_validate, cli_watermark, naming
from copyjob_dagster.answers import FlagAnswers, TerminalAnswers, given_answers
from copyjob_dagster.cli_support import console as _console
from copyjob_dagster.cli_support import find_job as _find_job
from copyjob_dagster.cli_support import selected_tables as _selected_tables
from copyjob_dagster.cli_watermark import (
    USER_TAG,
    backfill_config,
    operations_json,
    operations_of,
    print_operations,
    run_user,
)
from copyjob_dagster.concurrency import apply_pool_limits
from copyjob_dagster.config import TableConfig
from copyjob_dagster.errors import CopyJobError
from copyjob_dagster.history import History, Totals, read_history
from copyjob_dagster.listing import JobEntry, list_jobs
from copyjob_dagster.loading import load_jobs
from copyjob_dagster.metadata import (
    ROWS_PER_SECOND,
    ROWS_READ,
    ROWS_WRITTEN,
    SECONDS,
    TABLE_NAME,
    WATERMARK,
)
from copyjob_dagster.project import ensure_dagster_home, jobs_dir, project_dir
from copyjob_dagster.sample import create_shop
from copyjob_dagster.watch import show_progress
from copyjob_dagster.wizard import Wizard

DEMO_JOB = "shop_demo"
DEMO_DATABASE = Path(".demo") / "shop.sqlite"
RUN_TAG = "copyjob/cli_run"  # marks the run `copyjob run` follows in the event log


class _Group(click.Group):
    """Shows a `CopyJobError` as one clear message and exit code 1, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CopyJobError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
def main() -> None:
    """Copy tables between databases and Parquet folders, as Dagster assets."""


main.add_command(cli_validate.validate)
main.add_command(cli_plan.plan)
main.add_command(cli_watermark.watermark)


@main.command()
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
    _run(job_name, tables, full_refresh, verbose, backfill, allow_mass_delete)


_PER_TABLE = {
    "columns": "TABLE=COL,COL",
    "to": "TABLE=NAME",
    "rename": "TABLE.COLUMN=NEW",
    "incremental-column": "TABLE=COLUMN",
    "primary-key": "TABLE=COL,COL",
    "write": "TABLE=append|merge",
}


@main.command()
@click.option("--non-interactive", is_flag=True, help="Ask nothing: flags, else defaults.")
@click.option("--name", help="The job's name.")
@click.option("--source-url", help="Source database URL or folder.")
@click.option("--source-schema")
@click.option("--password-env", help="Variable holding the source's password.")
@click.option("--tables", help="Numbers, names or globs: '1,3-5', 'orders sales_*'.")
@click.option("--destination-url", help="Destination database URL or folder.")
@click.option("--destination-schema")
@click.option("--destination-password-env", help="Variable holding its password.")
@click.option("--mode", type=click.Choice(["full", "incremental"]))
@click.option("--columns", multiple=True, metavar=_PER_TABLE["columns"])
@click.option("--to", multiple=True, metavar=_PER_TABLE["to"])
@click.option("--rename", multiple=True, metavar=_PER_TABLE["rename"])
@click.option("--incremental-column", multiple=True, metavar=_PER_TABLE["incremental-column"])
@click.option("--primary-key", multiple=True, metavar=_PER_TABLE["primary-key"])
@click.option("--write", multiple=True, metavar=_PER_TABLE["write"])
def new(non_interactive: bool, **flags: Any) -> None:
    """Create a copy job step by step, save it in the jobs folder, and validate it.

    At a terminal each flag pre-fills its question; with --non-interactive the flags are the
    answers and every other question takes its default.
    """
    console = Console(highlight=False, markup=False)
    options = {key.replace("_", "-"): value for key, value in flags.items()}
    given = given_answers(
        {key: value for key, value in options.items() if key not in _PER_TABLE},
        {key: value for key, value in options.items() if key in _PER_TABLE},
    )
    if not non_interactive and not sys.stdin.isatty():
        raise CopyJobError(
            "copyjob new asks its questions in a terminal; in a script, answer them with flags "
            "and --non-interactive (see copyjob new --help)"
        )
    answers = FlagAnswers(given) if non_interactive else TerminalAnswers(console, given)
    try:
        created = Wizard(answers, console, jobs_dir(), project_dir()).run()
    except KeyboardInterrupt:
        click.echo("\ncancelled: no job file written", err=True)
        sys.exit(130)
    if created is None:
        click.echo("not saved: no job file written")
        return
    for variable in created.missing_variables:
        click.echo(f"before running it: export {variable}=<the password>")
    cli_validate.validate_jobs(connect=True)
    click.echo(f"run it now:   copyjob run {created.name}")
    click.echo(f"open the UI:  copyjob ui   (the asset group {created.name!r})")


@main.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_(as_json: bool) -> None:
    """The jobs: tables, mode, schedule, last run and watermarks."""
    ensure_dagster_home()
    jobs = load_jobs(jobs_dir(), project_dir())
    with dg.DagsterInstance.get() as instance:
        entries = list_jobs(instance, jobs)
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(entry) for entry in entries], indent=2))
    else:
        _print_jobs(entries)


@main.command()
@click.argument("job_name", required=False)
@click.option("--table", "tables", multiple=True, help="Only this table of JOB (repeatable).")
@click.option(
    "--limit", default=20, show_default=True, type=click.IntRange(min=1), help="Runs per table."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def history(job_name: str | None, tables: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Past runs of each table, and the rows copied per table, job, source and destination."""
    if tables and not job_name:
        raise CopyJobError("--table needs a JOB: copyjob history JOB --table T")
    ensure_dagster_home()
    jobs = [_find_job(job_name)] if job_name else load_jobs(jobs_dir(), project_dir())
    chosen = {job.name: _selected_tables(job, tables) for job in jobs}
    with dg.DagsterInstance.get() as instance:
        found = read_history(instance, jobs, chosen, limit)
        changes = operations_of(instance, jobs, chosen, limit)
    if as_json:
        click.echo(
            json.dumps(_history_json(found) | {"operations": operations_json(changes)}, indent=2)
        )
    else:
        _print_history(found)
        print_operations(changes)


@main.command()
@click.option("--fresh", is_flag=True, help="Re-create the sample database first.")
def demo(fresh: bool) -> None:
    """Create the sample shop database (once) and run the sample job."""
    database = project_dir() / DEMO_DATABASE
    if fresh or not database.exists():
        counts = create_shop(database)
        click.echo(f"created {database}: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
    _run(DEMO_JOB, ())


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("dagster_dev_args", nargs=-1, type=click.UNPROCESSED)
def ui(dagster_dev_args: tuple[str, ...]) -> None:
    """Start the Dagster UI (`dagster dev`) on the same instance as `copyjob run`."""
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        apply_pool_limits(instance, load_jobs(jobs_dir(), project_dir()))
    workspace = str(project_dir() / "workspace.yaml")
    os.chdir(project_dir())
    os.execvp("dagster", ["dagster", "dev", "-w", workspace, *dagster_dev_args])


@main.command()
def pools() -> None:
    """Apply each source's max_connections to the instance's pools (removing the limits no job
    sets any more), and print them."""
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        changes = apply_pool_limits(instance, load_jobs(jobs_dir(), project_dir()))
    if not changes.limits:
        click.echo("no job sets source.max_connections: no pool limit to apply")
    for pool, limit in sorted(changes.limits.items()):
        click.echo(f"{pool}: at most {limit} table(s) at once")
    for pool in changes.removed:
        click.echo(f"{pool}: limit removed (no job sets its source.max_connections any more)")


def _run(
    job_name: str,
    tables: tuple[str, ...],
    full_refresh: bool = False,
    verbose: bool = False,
    backfill: dict[str, str | None] | None = None,
    allow_mass_delete: bool = False,
) -> None:
    ensure_dagster_home()
    jobs = load_jobs(jobs_dir(), project_dir())
    job = _find_job(job_name, jobs)
    chosen = _selected_tables(job, tables)
    backfill_options = backfill_config(job, tables, full_refresh, **(backfill or {}))
    run_config = {
        "ops": {
            naming.op_name(job, table): {
                "config": {
                    "full_refresh": full_refresh,
                    "allow_mass_delete": allow_mass_delete,
                    **backfill_options,
                }
            }
            for table in chosen
        },
        # The event log is kept in the instance (and shown in the UI) either way; here the
        # command prints its own summary and any failure's message.
        "loggers": {"console": {"config": {"log_level": "DEBUG" if verbose else "CRITICAL"}}},
    }
    recon = dg.build_reconstructable_job(
        "copyjob_dagster.definitions", "job_named", reconstructable_args=(job.name,)
    )
    tags = {RUN_TAG: uuid.uuid4().hex, USER_TAG: run_user()}
    labels = {naming.op_name(job, table): _label(table) for table in chosen}
    console = _console(markup=False)
    with dg.DagsterInstance.get() as instance:
        apply_pool_limits(instance, jobs)
        with show_progress(console, tags, labels):
            result = dg.execute_job(
                recon,
                instance=instance,
                asset_selection=[naming.asset_key(job, table) for table in chosen],
                run_config=run_config,
                tags=tags,
            )
        _report(result)
        if not result.success:
            failures = [_failure_message(event) for event in result.get_step_failure_events()]
            raise CopyJobError(
                f"run {result.run_id} of job {job.name!r} failed:\n  " + "\n  ".join(failures)
            )
    click.echo(f"run {result.run_id} succeeded; DAGSTER_HOME={os.environ['DAGSTER_HOME']}")


def _label(table: TableConfig) -> str:
    if table.destination_name == table.name:
        return table.name
    return f"{table.name} → {table.destination_name}"


def _print_jobs(entries: list[JobEntry]) -> None:
    listing = Table(
        "job", "table", "copied to", "mode", "schedule", "last run", "watermark", title="Copy jobs"
    )
    for entry in entries:
        automation = [entry.schedule] if entry.schedule else []
        if entry.sensor_seconds:
            automation.append(f"sensor every {entry.sensor_seconds} s")
        last_run = "-"
        if entry.last_run_status:
            started = (entry.last_run_started or "")[:19].replace("T", " ")
            last_run = f"{entry.last_run_status} {started}".strip()
        for index, table in enumerate(entry.tables):
            first = index == 0
            listing.add_row(
                entry.name if first else "",
                table.name,
                table.destination,
                entry.mode if first else "",
                (", ".join(automation) or "-") if first else "",
                last_run if first else "",
                table.watermark or "-",
                end_section=index == len(entry.tables) - 1,
            )
    _console().print(listing)


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
        _console().print(table)


def _print_history(found: History) -> None:
    console = _console()
    runs = Table(
        "table", "started (UTC)", "status", "rows read", "rows written", "watermark before",
        "watermark after", "duration (s)", "run", "error", title="Runs, newest first",
    )  # fmt: skip
    for column in (runs.columns[3], runs.columns[4], runs.columns[7]):
        column.justify = "right"
    for run in found.runs:
        runs.add_row(
            f"{run.job}/{run.table}",
            _when(run.started) or "-",
            (run.status if run.attempts == 1 else f"{run.status} ({run.attempts} attempts)")
            + (f", backfill {run.window}" if run.load == "backfill" else ""),
            _number(run.rows_read),
            _number(run.rows_written),
            run.watermark_before or "-",
            run.watermark_after or "-",
            "-" if run.duration_seconds is None else f"{run.duration_seconds:.2f}",
            run.run_id[:8],
            run.error or "",
        )
    console.print(runs)
    groups = {
        "table": found.tables,
        "job": found.jobs,
        "source database": found.sources,
        "destination database": found.destinations,
    }
    for heading, totals in groups.items():
        table = Table(
            heading, "copies", "rows read", "rows written", "deleted", "soft-deleted",
            title=f"Totals per {heading}",
        )  # fmt: skip
        for column in table.columns[1:]:
            column.justify = "right"
        for total in totals:
            table.add_row(
                total.name,
                f"{total.copies:,}",
                f"{total.rows_read:,}",
                f"{total.rows_written:,}",
                f"{total.rows_deleted:,}",
                f"{total.rows_soft_deleted:,}",
            )
        console.print(table)


def _history_json(found: History) -> dict[str, Any]:
    def totals(rows: list[Totals]) -> list[dict[str, Any]]:
        return [dataclasses.asdict(total) for total in rows]

    return {
        "runs": [
            {**dataclasses.asdict(run), "started": _when(run.started, iso=True)}
            for run in found.runs
        ],
        "totals": {
            "tables": totals(found.tables),
            "jobs": totals(found.jobs),
            "sources": totals(found.sources),
            "destinations": totals(found.destinations),
        },
    }


def _when(timestamp: float | None, iso: bool = False) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat() if iso else moment.strftime("%Y-%m-%d %H:%M:%S")


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _failure_message(event: dg.DagsterEvent) -> str:
    data = event.step_failure_data
    user = data.user_failure_data
    message = user.description if user and user.description else data.error.message.strip()
    return f"{event.step_key}: {message}"
