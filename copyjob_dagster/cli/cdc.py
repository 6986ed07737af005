"""`copyjob cdc drop JOB [TABLE]`: drop the replication slots (and publications) of `mode: cdc`
tables, so that the source stops keeping WAL for them."""

import click

from copyjob_dagster.cli.support import find_job
from copyjob_dagster.config import TableConfig
from copyjob_dagster.engine.cdc import drop_slot, slot_name
from copyjob_dagster.errors import CopyJobError
from copyjob_dagster.stores import capabilities_of


@click.group()
def cdc() -> None:
    """Change data capture (mode: cdc): the source's replication slots."""


@cdc.command()
@click.argument("job_name")
@click.argument("table", required=False)
def drop(job_name: str, table: str | None) -> None:
    """Drop the slot and publication of TABLE of JOB (all its tables without TABLE).

    TABLE may be one the job no longer lists. The table's next run, if any, takes a new
    snapshot."""
    job = find_job(job_name)
    if table is None:
        tables = list(job.tables)
    else:
        known = {t.name: t for t in job.tables} | {t.destination_name: t for t in job.tables}
        tables = [known.get(table) or TableConfig(name=table)]
    if not capabilities_of(job.source).change_stream:
        raise CopyJobError(f"job {job.name!r}: its source has no replication slots")
    if capabilities_of(job.source).binlog:
        click.echo(
            f"job {job.name}: nothing to drop: MariaDB's binlog has no slots (the server keeps "
            f"its binlog by binlog_expire_logs_seconds, whoever reads it)"
        )
        return
    for chosen in tables:
        name = slot_name(job, chosen)
        if drop_slot(job, chosen):
            click.echo(f"dropped slot and publication {name} ({job.name}/{chosen.name})")
        else:
            click.echo(f"no slot {name} ({job.name}/{chosen.name}); publication dropped if any")
