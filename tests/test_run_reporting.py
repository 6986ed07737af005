"""What `copyjob run` and `copyjob history` report when a copy commits but its row-count check
fails, and when the run's process is killed."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner
from conftest import make_dagster_home

from copyjob_dagster.cli import main
from copyjob_dagster.defs import (
    build_copy_assets,
    build_source_specs,
    mark_interrupted_runs,
    process_tags,
)
from copyjob_dagster.engine import load_jobs

COPYJOB = Path(sys.executable).parent / "copyjob"
PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path) -> dict[str, str]:
    """A job `rep` copying `orders` incrementally from one SQLite file into another."""
    source, destination = tmp_path / "shop.sqlite", tmp_path / "copy.sqlite"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, updated_at INTEGER)")
        db.executemany("INSERT INTO orders VALUES (?, ?)", [(i, i * 10) for i in range(1, 4)])
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "rep.yaml").write_text(
        f"name: rep\nsource: {{url: 'sqlite:///{source}', name: shop}}\n"
        f"destination: {{url: 'sqlite:///{destination}'}}\nmode: incremental\n"
        "tables:\n  - {name: orders, incremental_column: updated_at, primary_key: [id]}\n"
    )
    home = make_dagster_home(tmp_path / "dagster_home")
    return {
        "DAGSTER_HOME": str(home),
        "COPYJOB_JOBS_DIR": str(jobs),
        "SOURCE": str(source),
        "DESTINATION": str(destination),
    }


def _copyjob(project: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(COPYJOB), *args],
        cwd=PROJECT,
        env={**os.environ, **project},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _history(project: dict[str, str]) -> list[dict[str, str]]:
    done = CliRunner().invoke(main, ["history", "rep", "--json"], env=project)
    assert done.exit_code == 0, done.output
    return json.loads(done.output)["runs"]


def test_a_failed_error_check_fails_the_command_and_shows_in_history(
    project: dict[str, str],
) -> None:
    jobs = load_jobs(Path(project["COPYJOB_JOBS_DIR"]))
    with dg.DagsterInstance.from_config(project["DAGSTER_HOME"]) as instance:
        assets = [*build_source_specs(jobs), *build_copy_assets(jobs)]
        assert dg.materialize(assets, instance=instance).success
    with sqlite3.connect(project["DESTINATION"]) as db:
        db.execute("DELETE FROM orders WHERE id = 2")  # a row lost at the destination
    with sqlite3.connect(project["SOURCE"]) as db:
        db.execute("INSERT INTO orders VALUES (4, 40)")

    stdout, stderr = _copyjob(project, "run", "rep").communicate(timeout=240)

    assert "succeeded" not in stdout
    assert "rep/orders: check row_count_parity failed" in stderr, stdout + stderr
    assert "holds 3 rows, 1 fewer than the 4 source rows" in stderr
    assert "Traceback" not in stderr
    latest = _history(project)[0]
    assert latest["status"] == "check_failed"
    assert "1 fewer than the 4" in latest["error"]
    assert latest["watermark_after"] == "40"  # the copy itself committed


def test_copyjob_run_killed_shows_as_failed_in_history(project: dict[str, str]) -> None:
    run = _copyjob(project, "run", "rep")
    deadline = time.monotonic() + 120
    with dg.DagsterInstance.from_config(project["DAGSTER_HOME"]) as instance:
        while not instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    # The process itself, not its pipes: Dagster's compute-log `tail` processes may hold them
    # open a while after the process they mirror is gone.
    assert run.wait(timeout=30) == -signal.SIGKILL
    run.stdout.close()
    run.stderr.close()

    latest = _history(project)[0]
    assert latest["status"] == "failure"
    assert f"pid {run.pid}" in latest["error"] and "interrupted" in latest["error"]
    with dg.DagsterInstance.from_config(project["DAGSTER_HOME"]) as instance:
        assert instance.get_runs()[0].status == dg.DagsterRunStatus.FAILURE


def test_a_live_run_stays_started(project: dict[str, str]) -> None:
    """Only a run whose process is gone is marked: this test's own process is alive."""
    with dg.DagsterInstance.from_config(project["DAGSTER_HOME"]) as instance:
        jobs = load_jobs(Path(project["COPYJOB_JOBS_DIR"]))
        job = dg.Definitions(assets=build_copy_assets(jobs)).resolve_implicit_global_asset_job_def()
        made = instance.create_run_for_job(
            job, tags=process_tags(), status=dg.DagsterRunStatus.STARTED
        )
        assert mark_interrupted_runs(instance) == []
        assert instance.get_run_by_id(made.run_id).status == dg.DagsterRunStatus.STARTED


def test_a_reexecution_of_a_cli_run_is_not_taken_for_an_interrupted_one() -> None:
    """The UI's re-execution of a `copyjob run` inherits its tags, the CLI process's among
    them; once that process has ended, only the CLI run itself is marked interrupted."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = {**process_tags(), "copyjob/pid": gone.stdout.strip()}
    dead.pop("copyjob/process_start", None)

    @dg.op
    def step() -> None: ...

    @dg.job
    def copy() -> None:
        step()

    started = dg.DagsterRunStatus.STARTED
    with dg.instance_for_test() as instance:
        cli = instance.create_run_for_job(copy, tags=dead, status=started)
        again = instance.create_run_for_job(
            copy, tags={**dead, "dagster/parent_run_id": cli.run_id}, status=started
        )
        assert mark_interrupted_runs(instance) == [cli.run_id]
        assert instance.get_run_by_id(again.run_id).status == started
