"""`copyjob maintain JOB`: compact and vacuum a job's Delta tables now (see docs/delta.md,
"Upkeep"), each under its copy lock, so no copy of the table runs meanwhile."""

import click

from copyjob_dagster.cli.support import find_job, selected_tables
from copyjob_dagster.engine import maintain_table, table_lock

LOCK_WAIT_SECONDS = 60


@click.command()
@click.argument("job_name")
@click.option("--table", "tables", multiple=True, help="Only this table (repeatable).")
def maintain(job_name: str, tables: tuple[str, ...]) -> None:
    """Compact the small files of JOB's Delta tables, then delete the files that no version
    within the retention needs (the table's `maintenance.retention_hours`, else its own
    delta.deletedFileRetentionDuration, else 7 days); older versions stay readable within it."""
    job = find_job(job_name)
    for table in selected_tables(job, tables):
        with table_lock(job, table, LOCK_WAIT_SECONDS):
            done = maintain_table(job, table, now=True)
        assert done is not None  # `now`: always done, or refused
        click.echo(
            f"{job.name}/{table.destination_name}: {done.files_compacted} small files compacted "
            f"into {done.files_written}, {done.files_deleted} unused files deleted; version "
            f"{done.version}"
        )
