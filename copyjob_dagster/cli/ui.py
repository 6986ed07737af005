"""`copyjob ui`: Dagster's UI (`dagster dev`) on the instance `copyjob run` uses."""

import os
import sys
from pathlib import Path

import click
import dagster as dg
from sqlalchemy.engine import make_url

from copyjob_dagster.cli.support import project_jobs
from copyjob_dagster.defs import apply_pool_limits
from copyjob_dagster.errors import ConfigError
from copyjob_dagster.project import ensure_dagster_home, project_dir


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("dagster_dev_args", nargs=-1, type=click.UNPROCESSED)
def ui(dagster_dev_args: tuple[str, ...]) -> None:
    """Start the Dagster UI (`dagster dev`) on the same instance as `copyjob run`."""
    home = ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        _refuse_psycopg3_storage(instance, home)
        apply_pool_limits(instance, project_jobs().jobs)
    workspace = str(project_dir() / "workspace.yaml")
    os.chdir(project_dir())
    # This interpreter's own Dagster, whether or not its folder is on PATH (`.venv/bin/copyjob`).
    command = [sys.executable, "-m", "dagster", "dev", "-w", workspace, *dagster_dev_args]
    os.execv(sys.executable, command)


def _refuse_psycopg3_storage(instance: dg.DagsterInstance, home: Path) -> None:
    """dagster-postgres on a bare `postgresql://` URL: this process maps it to psycopg2 (see
    copyjob_dagster/__init__.py), but the webserver and daemon that `dagster dev` starts build
    the instance before they load copyjob, get psycopg 3, and fail a run's first event."""
    url = getattr(instance.event_log_storage, "postgres_url", None)
    if url and make_url(url).drivername == "postgresql":
        raise ConfigError(
            f"{home / 'dagster.yaml'}: the PostgreSQL storage needs `scheme: "
            f"postgresql+psycopg2` under postgres_db (dagster-postgres is written for psycopg2; "
            f"with SQLAlchemy 2.1 the UI's runs would fail with a syntax error at NOTIFY)"
        )
