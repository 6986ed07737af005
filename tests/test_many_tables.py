"""Many tables in one run: a job's tables are one step that copies them on a pool of threads.

Each table stays its own asset (materialization, check, history); one table's failure leaves
the others recorded and the run failed naming it; a re-execution from failure copies only the
failed tables; many tables written at once into one SQLite file wait for each other.
"""

import sqlite3
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.storage.tags import RESUME_RETRY_TAG

from copyjob_dagster.config import CopyJob
from copyjob_dagster.defs import assets
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs
from copyjob_dagster.defs.history import read_history
from copyjob_dagster.errors import SchemaError

TABLES = [f"t{i:02d}" for i in range(12)]


def _source(tmp_path: Path, rows: int = 50) -> Path:
    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as db:
        for table in TABLES:
            db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT)")
            db.executemany(
                f"INSERT INTO {table} VALUES (?, ?)", [(i, f"n{i}") for i in range(rows)]
            )
    return path


def _job(source: Path, destination: str, parallel: int = 8) -> CopyJob:
    return CopyJob.model_validate(
        {
            "name": "many",
            "source": {"url": f"sqlite:///{source}"},
            "destination": {"url": destination},
            "max_parallel_tables": parallel,
            "tables": [{"name": table} for table in TABLES],
        }
    )


def _materialize(job: CopyJob, instance: dg.DagsterInstance, **kwargs: Any) -> Any:
    return dg.materialize(
        [*build_source_specs([job]), *build_copy_assets([job])],
        instance=instance,
        raise_on_error=False,
        **kwargs,
    )


def _materialized(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    return sorted(r.event_log_entry.dagster_event.asset_key.path[-1] for r in records)


def test_many_tables_into_one_sqlite_file_all_arrive(tmp_path: Path) -> None:
    """Eight writers of one SQLite file at once: each waits for the file, none fails."""
    destination = tmp_path / "warehouse.sqlite"
    job = _job(_source(tmp_path, rows=500), f"sqlite:///{destination}", parallel=8)
    with dg.instance_for_test() as instance:
        result = _materialize(job, instance)
        assert result.success
        assert _materialized(instance, result.run_id) == TABLES
    with sqlite3.connect(destination) as db:
        counts = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    assert counts == dict.fromkeys(TABLES, 500)


def test_one_failed_table_leaves_the_others_recorded_and_a_retry_copies_only_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _job(_source(tmp_path), str(tmp_path / "lake"), parallel=4)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "many.yaml").write_text(yaml.safe_dump(job.model_dump(mode="json", exclude_unset=True)))
    monkeypatch.setenv("COPYJOB_JOBS_DIR", str(jobs))
    real, copied, broken = assets.copy_table, [], ["t03"]

    def copy_table(job: CopyJob, table: Any, *args: Any, **kwargs: Any) -> Any:
        copied.append(table.name)
        if table.name in broken:
            raise SchemaError(f"job 'many', table {table.name!r}: the source has no column 'x'")
        return real(job, table, *args, **kwargs)

    monkeypatch.setattr(assets, "copy_table", copy_table)
    recon = dg.build_reconstructable_job(
        "copyjob_dagster.definitions", "job_named", reconstructable_args=("many",)
    )
    with dg.instance_for_test() as instance:
        failed = dg.execute_job(recon, instance=instance)
        assert not failed.success
        assert _materialized(instance, failed.run_id) == [t for t in TABLES if t != "t03"]
        (failure,) = failed.get_step_failure_events()
        description = failure.step_failure_data.user_failure_data.description
        assert description.startswith("1 of 12 tables failed:\n  t03: job 'many', table 't03'")

        history = read_history(instance, [job], {"many": [job.table("t03")]}, limit=5)
        (t03,) = [run for run in history.runs if run.run_id == failed.run_id]
        assert (t03.status, t03.attempts) == ("failure", 1)
        assert "has no column 'x'" in (t03.error or "")

        broken[:], copied[:] = [], []
        retried = dg.execute_job(
            recon,
            instance=instance,
            reexecution_options=dg.ReexecutionOptions.from_failure(failed.run_id, instance),
            # What the UI's and the daemon's re-executions from failure tag their runs with
            # (`execute_job` leaves it out).
            tags={RESUME_RETRY_TAG: "true"},
        )
        assert retried.success
        assert copied == ["t03"]
        assert _materialized(instance, retried.run_id) == ["t03"]
