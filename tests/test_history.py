"""`copyjob history` as a user runs it, on an instance that holds successful and failed copies."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from conftest import make_dagster_home

from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs
from copyjob_dagster.engine import load_jobs

COPYJOB = Path(sys.executable).parent / "copyjob"
PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, instance_storage: str) -> dict[str, str]:
    """A job `hist` with three runs: an initial copy, an increment of orders, and a failed copy
    of customers (a NULL incremental value); on each instance storage."""
    root = tmp_path_factory.mktemp("history")
    source = root / "shop.sqlite"
    with sqlite3.connect(source) as db:
        for table in ("orders", "customers"):
            db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, updated_at INTEGER)")
        db.executemany("INSERT INTO orders VALUES (?, ?)", [(1, 10), (2, 20), (3, 30)])
        db.executemany("INSERT INTO customers VALUES (?, ?)", [(1, 5), (2, 6)])
    jobs = root / "jobs"
    jobs.mkdir()
    (jobs / "hist.yaml").write_text(
        f"""
name: hist
source: {{url: "sqlite:///{source}", name: shop}}
destination: {{url: "{root / "lake"}"}}
mode: incremental
tables:
  - {{name: orders, to: orders_copy, incremental_column: updated_at}}
  - {{name: customers, incremental_column: updated_at}}
"""
    )
    home = make_dagster_home(root / "dagster_home", instance_storage)

    job = load_jobs(jobs)[0]
    assets = [*build_source_specs([job]), *build_copy_assets([job])]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert dg.materialize(assets, instance=instance).success
        with sqlite3.connect(source) as db:
            db.executemany("INSERT INTO orders VALUES (?, ?)", [(4, 40), (5, 50)])
            db.execute("INSERT INTO customers VALUES (3, NULL)")
        assert dg.materialize(assets, instance=instance, selection="hist/orders_copy").success
        failed = dg.materialize(
            assets, instance=instance, selection="hist/customers", raise_on_error=False
        )
        assert not failed.success
    return {**os.environ, "DAGSTER_HOME": str(home), "COPYJOB_JOBS_DIR": str(jobs)}


def _history(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(COPYJOB), "history", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _runs(found: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return [run for run in found["runs"] if run["table"] == table]


def test_history_lists_each_tables_runs_with_rows_watermarks_and_errors(
    project: dict[str, str],
) -> None:
    done = _history(project, "hist", "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)

    increment, initial = _runs(found, "orders_copy")
    assert (initial["status"], initial["rows_read"], initial["rows_written"]) == ("success", 3, 3)
    assert (initial["watermark_before"], initial["watermark_after"]) == (
        "(none: initial load)",
        "30",
    )
    assert (
        increment["rows_read"],
        increment["watermark_before"],
        increment["watermark_after"],
    ) == (
        2,
        "30",
        "50",
    )
    assert increment["started"] > initial["started"]
    assert increment["duration_seconds"] >= 0 and increment["attempts"] == 1

    failure, first = _runs(found, "customers")
    assert first["status"] == "success" and first["watermark_after"] == "6"
    assert failure["status"] == "failure" and failure["rows_read"] is None
    assert "1 rows have a NULL incremental column 'updated_at'" in failure["error"]
    assert failure["watermark_before"] == failure["watermark_after"] == "6"  # left in force
    assert found["runs"][0] == failure  # newest first

    totals = found["totals"]
    assert {t["name"]: (t["copies"], t["rows_read"]) for t in totals["tables"]} == {
        "hist/orders_copy": (2, 5),
        "hist/customers": (1, 2),
    }
    assert [(t["name"], t["rows_written"]) for t in totals["jobs"]] == [("hist", 7)]
    (source,) = totals["sources"]
    assert source["name"].startswith("shop (sqlite:///") and source["rows_read"] == 7
    (destination,) = totals["destinations"]
    assert destination["name"].endswith("lake") and destination["copies"] == 3


def test_history_tables_for_one_table(project: dict[str, str]) -> None:
    done = _history(project, "hist", "--table", "customers")
    assert done.returncode == 0, done.stderr
    assert "Runs, newest first" in done.stdout and "Totals per destination database" in done.stdout
    assert "hist/customers" in done.stdout and "hist/orders_copy" not in done.stdout
    assert "failure" in done.stdout and "1 rows have a NULL" in done.stdout


def test_history_table_without_a_job_is_a_clear_error(project: dict[str, str]) -> None:
    done = _history(project, "--table", "customers")
    assert done.returncode == 1
    assert "--table needs a JOB" in done.stderr and "Traceback" not in done.stderr
