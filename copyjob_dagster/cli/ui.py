"""`copyjob ui`: Dagster's UI (`dagster dev`) on the instance `copyjob run` uses."""

import os

import click
import dagster as dg

from copyjob_dagster.defs import apply_pool_limits
from copyjob_dagster.engine import load_jobs
from copyjob_dagster.project import ensure_dagster_home, jobs_dir, project_dir


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("dagster_dev_args", nargs=-1, type=click.UNPROCESSED)
def ui(dagster_dev_args: tuple[str, ...]) -> None:
    """Start the Dagster UI (`dagster dev`) on the same instance as `copyjob run`."""
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        apply_pool_limits(instance, load_jobs(jobs_dir(), project_dir()))
    workspace = str(project_dir() / "workspace.yaml")
    os.chdir(project_dir())
    os.execvp("dagster", ["dagster", "dev", "-w", workspace, *dagster_dev_args])
