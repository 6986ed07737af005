"""Tables in parallel: a job's `max_parallel_tables`, and a source's `max_connections` as a
Dagster pool that `copyjob run` applies to the instance by itself."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner
from conftest import make_dagster_home

from copyjob_dagster.cli import main
from copyjob_dagster.config import CopyJob
from copyjob_dagster.config.pools import source_pool
from copyjob_dagster.definitions import build_definitions
from copyjob_dagster.defs.concurrency import parallel_tables
from copyjob_dagster.engine import load_jobs
from copyjob_dagster.errors import ConfigError

COPYJOB = Path(sys.executable).parent / "copyjob"
PROJECT = Path(__file__).resolve().parent.parent
TABLES = ["t0", "t1", "t2"]


def _job(source: dict, **fields: object) -> CopyJob:
    return CopyJob.model_validate(
        {"name": "j", "source": source, "destination": {"url": "/lake"}, **fields}
        | {"tables": [{"name": "t"}]}
    )


def test_one_pool_per_source_database_named_without_credentials() -> None:
    url = "postgresql+psycopg://bob:${PW}@db.example.com:6543/shop"
    pools = {
        source_pool(_job({"url": url.replace("${PW}", "s3cret"), "schema": schema}).source)
        for schema in ("sales", "stock")
    }
    assert pools == {"source:postgresql://db.example.com:6543/shop"}
    assert source_pool(_job({"url": "mysql+pymysql://u@other/shop"}).source) not in pools
    folder = source_pool(_job({"url": "/data/my lake"}).source)
    assert folder == "source:folder:/data/my%20lake"  # Dagster refuses whitespace in pools


def test_a_jobs_tables_are_one_step_that_copies_at_most_its_smaller_limit_at_once() -> None:
    job = _job({"url": "sqlite:////data/shop.sqlite", "max_connections": 2}, max_parallel_tables=3)
    defs = build_definitions([job])
    (copy,) = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition) and a.is_executable]
    assert copy.can_subset and copy.op.name == "copy__j"
    assert parallel_tables(job) == 2  # the run takes no more than the source gives
    assert parallel_tables(job.model_copy(update={"max_parallel_tables": 1})) == 1
    # The job's own runs execute the step in the run's process: no process per step.
    assert defs.resolve_job_def("j").executor_def.name == "in_process"


def test_two_limits_for_one_source_database_are_refused(tmp_path: Path) -> None:
    for name, limit in (("a", 2), ("b", 4)):
        (tmp_path / f"{name}.yaml").write_text(
            f"name: {name}\nsource: {{url: 'sqlite:////data/shop.sqlite', max_connections: "
            f"{limit}}}\ndestination: {{url: /lake/{name}}}\ntables: [{{name: t}}]\n"
        )
    with pytest.raises(ConfigError) as refused:
        load_jobs(tmp_path)
    assert "b.yaml: job 'b', field 'source.max_connections'" in str(refused.value)
    assert "max_connections 2, this one 4" in str(refused.value)


def _three_tables(
    tmp_path: Path, max_parallel_tables: int, max_connections: int | None = None, rows: int = 100
) -> tuple[Path, dict[str, str]]:
    """A job `many` of three SQLite tables of `rows` rows; its instance's home, and the
    environment that runs it."""
    source = tmp_path / "shop.sqlite"
    with sqlite3.connect(source) as db:
        for table in TABLES:
            db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, label TEXT)")
            db.execute(
                f"INSERT INTO {table} WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL "
                "SELECT i + 1 FROM n WHERE i + 1 < ?) SELECT i, 'row ' || i FROM n",
                (rows,),
            )
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    limit = max_connections or "null"
    (jobs / "many.yaml").write_text(
        f"name: many\nsource: {{url: 'sqlite:///{source}', max_connections: {limit}}}\n"
        f"destination: {{url: '{tmp_path / 'lake'}'}}\nmax_parallel_tables: {max_parallel_tables}\n"
        f"tables: [{', '.join(f'{{name: {t}}}' for t in TABLES)}]\n"
    )
    home = make_dagster_home(tmp_path / "home")
    return home, {**os.environ, "DAGSTER_HOME": str(home), "COPYJOB_JOBS_DIR": str(jobs)}


def _run_entries(home: Path) -> list[dg.EventLogEntry]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        return [r.event_log_entry for r in instance.get_records_for_run(run.run_id).records]


def test_copyjob_run_holds_a_source_to_its_max_connections(tmp_path: Path) -> None:
    # Tables big enough that two copies started together are still running when both are.
    home, env = _three_tables(tmp_path, max_parallel_tables=3, max_connections=2, rows=300_000)
    done = subprocess.run(
        [str(COPYJOB), "run", "many"], cwd=PROJECT, env=env, capture_output=True, text=True,
        timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    pool = f"source:sqlite:///{tmp_path / 'shop.sqlite'}"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert {p.name: p.limit for p in instance.event_log_storage.get_pool_limits()} == {pool: 2}
    spans = _spans(_run_entries(home))
    assert len(spans) == len(TABLES) and all(len(s) == 2 for s in spans.values())
    # Two copies overlapped, never three: the limit is used, and held.
    assert _most_at_once(spans.values()) == 2, spans


def test_materialize_outside_the_job_keeps_its_max_parallel_tables(tmp_path: Path) -> None:
    """The UI's Materialize (like `dagster asset materialize`) runs Dagster's implicit asset
    job, under the Definitions' executor: the job's limit holds there too."""
    home, env = _three_tables(tmp_path, max_parallel_tables=1)
    done = subprocess.run(
        [str(COPYJOB.with_name("dagster")), "asset", "materialize", "-m",
         "copyjob_dagster.definitions", "--select", "group:many"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_runs()[0].job_name == "__ASSET_JOB"
    spans = _spans(_run_entries(home))
    assert len(spans) == len(TABLES) and all(len(s) == 2 for s in spans.values())
    assert _most_at_once(spans.values()) == 1


def _spans(entries: list[dg.EventLogEntry]) -> dict[str, list[float]]:
    """Each table's copy: from its start to its materialization (which the table records while
    it still holds its slot of the source), by the copy's seconds."""
    spans: dict[str, list[float]] = {}
    for entry in entries:
        if entry.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = entry.asset_materialization
            seconds = materialization.metadata["copyjob/seconds"].value
            spans[materialization.asset_key.path[-1]] = [entry.timestamp - seconds, entry.timestamp]
    return spans


def _most_at_once(spans: object) -> int:
    edges = sorted(
        [(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans],  # type: ignore[attr-defined]
        key=lambda edge: (edge[0], edge[1]),
    )
    running = most = 0
    for _, change in edges:
        running += change
        most = max(most, running)
    return most


def test_copyjob_pools_removes_a_limit_no_job_declares_any_more(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    home = make_dagster_home(tmp_path / "home")
    env = {"DAGSTER_HOME": str(home), "COPYJOB_JOBS_DIR": str(jobs)}
    job_file = "name: j\nsource: {url: 'sqlite:////data/shop.sqlite'%s}\n"
    job_file += "destination: {url: /lake}\ntables: [{name: t}]\n"
    (jobs / "j.yaml").write_text(job_file % ", max_connections: 2")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.set_concurrency_slots("warehouse", 3)  # not copyjob's pool

    first = CliRunner(env=env).invoke(main, ["pools"])
    (jobs / "j.yaml").write_text(job_file % "")
    second = CliRunner(env=env).invoke(main, ["pools"])

    pool = "source:sqlite:////data/shop.sqlite"
    assert first.output == f"{pool}: at most 2 table(s) at once\n", first.output
    assert second.output == (
        "no job sets source.max_connections: no pool limit to apply\n"
        f"{pool}: limit removed (no job sets its source.max_connections any more)\n"
    ), second.output
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert {p.name: p.limit for p in instance.event_log_storage.get_pool_limits()} == {
            "warehouse": 3
        }
