"""`copyjob ui`: Dagster's UI (`dagster dev`) on the instance `copyjob run` uses."""

import os
import sys

import click
import dagster as dg

from copyjob_dagster.cli.support import project_jobs
from copyjob_dagster.defs import apply_pool_limits
from copyjob_dagster.project import ensure_dagster_home, project_dir


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("dagster_dev_args", nargs=-1, type=click.UNPROCESSED)
def ui(dagster_dev_args: tuple[str, ...]) -> None:
    """Start the Dagster UI (`dagster dev`) on the same instance as `copyjob run`."""
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        apply_pool_limits(instance, project_jobs().jobs)
    workspace = str(project_dir() / "workspace.yaml")
    os.chdir(project_dir())
    # This interpreter's own Dagster, whether or not its folder is on PATH (`.venv/bin/copyjob`).
    command = [sys.executable, "-m", "dagster", "dev", "-w", workspace, *dagster_dev_args]
    os.execv(sys.executable, command)
