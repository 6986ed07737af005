"""`copyjob pools`: each source's max_connections written into the instance's pools."""

import click
import dagster as dg

from copyjob_dagster.cli.support import project_jobs
from copyjob_dagster.defs import apply_pool_limits
from copyjob_dagster.project import ensure_dagster_home


@click.command()
def pools() -> None:
    """Apply each source's max_connections to the instance's pools (removing the limits no job
    sets any more), and print them."""
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        changes = apply_pool_limits(instance, project_jobs().jobs)
    if not changes.limits:
        click.echo("no job sets source.max_connections: no pool limit to apply")
    for pool, limit in sorted(changes.limits.items()):
        click.echo(f"{pool}: at most {limit} table(s) at once")
    for pool in changes.removed:
        click.echo(f"{pool}: limit removed (no job sets its source.max_connections any more)")
