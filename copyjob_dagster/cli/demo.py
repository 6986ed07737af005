"""`copyjob demo`: the sample shop database, created once, copied by the sample job."""

from pathlib import Path

import click

from copyjob_dagster.cli.run import run_job
from copyjob_dagster.cli.sample import create_shop
from copyjob_dagster.project import project_dir

DEMO_JOB = "shop_demo"
DEMO_DATABASE = Path(".demo") / "shop.sqlite"


@click.command()
@click.option("--fresh", is_flag=True, help="Re-create the sample database first.")
def demo(fresh: bool) -> None:
    """Create the sample shop database (once) and run the sample job."""
    database = project_dir() / DEMO_DATABASE
    if fresh or not database.exists():
        counts = create_shop(database)
        click.echo(f"created {database}: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
    run_job(DEMO_JOB, ())
