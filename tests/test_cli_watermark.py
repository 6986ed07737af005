"""Mistakes in watermark operations and backfills are refused clearly, before anything changes."""

import sqlite3
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner
from conftest import make_dagster_home

from copyjob_dagster.cli import main
from copyjob_dagster.cli import watermark as cli_watermark
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs
from copyjob_dagster.engine import load_jobs, table_lock

KEY = dg.AssetKey(["ops", "events"])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One job and instance for every test here: none of them may change anything."""
    tmp_path = tmp_path_factory.mktemp("ops")
    source = tmp_path / "source.sqlite"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, updated_at INTEGER)")
        db.executemany("INSERT INTO events VALUES (?, ?)", [(1, 10), (2, 20)])
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "ops.yaml").write_text(
        f"name: ops\nsource: {{url: 'sqlite:///{source}'}}\n"
        f"destination: {{url: '{tmp_path / 'lake'}'}}\nmode: incremental\n"
        "tables: [{name: events, incremental_column: updated_at}]\n"
    )
    home = make_dagster_home(tmp_path / "home")
    return {"DAGSTER_HOME": str(home), "COPYJOB_JOBS_DIR": str(jobs)}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["watermark", "set", "ops", "events", "20x", "--reason", "r"],
            "error: job 'ops', table 'events': watermark '20x' is not a value of column "
            "'updated_at', which holds integer values: give a whole number, such as 1500\n",
        ),
        (
            ["watermark", "set", "ops", "events", "15", "--reason", "r"],
            "error: job 'ops', table 'events': the destination has no table 'events' yet, and "
            "a run that finds none loads the table whole; set the watermark after its first "
            "copy\n",
        ),
        (
            ["watermark", "reset", "ops", "events", "--reason", " "],
            "error: job 'ops', table 'events': say why the watermark changes (a reason); "
            "it is kept in the table's history\n",
        ),
        (
            ["watermark", "reset", "ops", "orders", "--reason", "r"],
            "error: job 'ops' has no table 'orders' (tables: events)\n",
        ),
        (
            ["run", "ops", "--table", "events", "--from", "30", "--to", "20"],
            "error: job 'ops', table 'events': a backfill's 'from' (30) must be below its "
            "'to' (20)\n",
        ),
        (
            ["run", "ops", "--from", "1", "--to", "2"],
            "error: a backfill copies one table: give exactly one --table, no --full-refresh\n",
        ),
    ],
    ids=[
        "bad-value",
        "not-copied-yet",
        "no-reason",
        "no-table",
        "empty-window",
        "no-table-for-backfill",
    ],
)
def test_mistakes_are_refused_and_change_nothing(
    env: dict[str, str], args: list[str], message: str
) -> None:
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        runs = len(instance.get_run_records())
        done = CliRunner(env=env).invoke(main, args)
        assert (done.exit_code, done.output) == (1, message)
        assert instance.fetch_observations(KEY, limit=1).records == []
        assert len(instance.get_run_records()) == runs  # refused before any run started


def test_an_operation_waits_for_a_running_copy(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_watermark, "LOCK_WAIT_SECONDS", 0.3)
    (job,) = load_jobs(Path(env["COPYJOB_JOBS_DIR"]))
    with table_lock(job, job.tables[0]):
        done = CliRunner(env=env).invoke(
            main, ["watermark", "reset", "ops", "events", "--reason", "r"]
        )
    assert done.exit_code == 1
    assert "is being copied by another run" in done.output
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert instance.fetch_observations(KEY, limit=1).records == []


def test_the_launchpad_refuses_two_operations_at_once(env: dict[str, str]) -> None:
    (job,) = load_jobs(Path(env["COPYJOB_JOBS_DIR"]))
    assets = [*build_source_specs([job]), *build_copy_assets([job])]
    config = {"reset_watermark": True, "backfill_from": "1", "backfill_to": "2", "reason": "r"}
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        result = dg.materialize(
            assets,
            instance=instance,
            run_config={"ops": {"copy__ops": {"config": config}}},
            raise_on_error=False,
        )
        assert not result.success
        (failure,) = result.get_step_failure_events()
        assert failure.step_failure_data.user_failure_data.description == (
            "run config: choose one of reset_watermark, backfill_from/backfill_to"
        )
        assert instance.fetch_observations(KEY, limit=1).records == []
        assert instance.get_latest_materialization_event(KEY) is None
