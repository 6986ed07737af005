"""The Dagster run of `copyjob run`: created as the UI creates one, from the code location that
workspace.yaml declares, and executed in this process, as Dagster's run worker executes it.

A run carries the origin of the code location it was launched from; the UI lists a job's runs
by it (the `.dagster/repository` tag it implies) and re-executes a run through it. So the run
is created with the origin the webserver and daemon load from workspace.yaml (read here, not
loaded: no code server is started), and the UI's "Re-execute" of a failed `copyjob run` is
launched like any run of the UI. The run itself executes here, from the reconstructable job
(`job_named`), as `dagster api execute_run` would: no run launcher, so no process to start.
"""

import threading
from collections.abc import Collection, Mapping
from pathlib import Path

import click
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.definitions.repository_definition import SINGLETON_REPOSITORY_NAME
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import (
    CodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.workspace.load_target import WorkspaceFileTarget

from copyjob_dagster.project import project_dir

DEFINITIONS_MODULE = "copyjob_dagster.definitions"


def workspace_location(workspace: Path | None = None) -> CodeLocationOrigin | None:
    """The code location of workspace.yaml that loads copyjob's definitions (the UI's), or None
    (with a warning) when the workspace declares none."""
    path = workspace or project_dir() / "workspace.yaml"
    try:
        origins = WorkspaceFileTarget(paths=[str(path)]).create_origins()
    except Exception as exc:  # noqa: BLE001 - the run goes on; only the UI's view of it is lost
        click.echo(f"warning: {path} does not load ({exc}): the run will not be re-executable "
                   "from the UI", err=True)  # fmt: skip
        return None
    for origin in origins:
        target = getattr(origin, "loadable_target_origin", None)
        if target is not None and DEFINITIONS_MODULE in (target.module_name, target.package_name):
            return origin
    click.echo(
        f"warning: {path} has no code location loading {DEFINITIONS_MODULE}: the run will not "
        "show under its job in the UI, nor be re-executable from there",
        err=True,
    )
    return None


def execute(
    recon: ReconstructableJob,
    instance: dg.DagsterInstance,
    job_name: str,
    run_config: Mapping[str, object],
    tags: Mapping[str, str],
    asset_selection: Collection[dg.AssetKey],
) -> dg.JobExecutionResult:
    """Create the run of `job_name` with the workspace's origin and execute it here (what
    `dg.execute_job` does, but with the origin the UI needs)."""
    location = workspace_location()
    origin = (
        RemoteJobOrigin(
            repository_origin=RemoteRepositoryOrigin(
                code_location_origin=location, repository_name=SINGLETON_REPOSITORY_NAME
            ),
            job_name=job_name,
        )
        if location
        else None
    )
    # (No repository load data: copyjob's definitions have no cacheable assets, and loading the
    # repository for it would build them once more.)
    job_def = recon.get_definition()
    run = instance.create_run_for_job(
        job_def=job_def,
        run_config=run_config,
        tags={**job_def.run_tags, **tags},
        job_code_origin=recon.get_python_origin(),
        remote_job_origin=origin,
        asset_selection=frozenset(asset_selection),
    )
    return execute_run(recon, run, instance)


def read_migrations_once() -> None:
    """Make this process read Dagster's storage migration scripts once, not once per database.

    Each SQLite database of the instance that a process opens for the first time (the runs,
    the schedules, the event log's index, each run's own event log) has its schema revision
    checked against Dagster's migration scripts, and each check reads all of them anew through
    alembic (about 0.06 s each, six times a `copyjob run`). The scripts do not change while the
    process runs: keep the first reading of each scripts folder."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    if getattr(ScriptDirectory.from_config, "copyjob_shared", False):
        return
    original = ScriptDirectory.from_config
    read: dict[tuple[object, ...], ScriptDirectory] = {}
    lock = threading.Lock()

    def from_config(config: Config) -> ScriptDirectory:
        key = (
            config.get_alembic_option("script_location"),
            tuple(config.get_version_locations_list() or ()),
        )
        with lock:
            if key not in read:
                read[key] = original(config)
            return read[key]

    from_config.copyjob_shared = True  # type: ignore[attr-defined]
    ScriptDirectory.from_config = staticmethod(from_config)  # type: ignore[method-assign,assignment]
