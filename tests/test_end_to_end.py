"""The project as its users drive it: `copyjob run`, `dagster asset materialize`, workspace.yaml.

Each test runs the real commands in subprocesses, on an instance in a temporary DAGSTER_HOME
and a jobs folder of its own, and checks what a user would: the copied rows, the run in the
instance's history, the messages.
"""

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from conftest import make_dagster_home

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture
def project_env(tmp_path: Path, shop_db: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """A jobs folder and an instance; on the storage of `instance_storage` where a test asks
    for it (both storages), else on the embedded SQLite one."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "shop.yaml").write_text(
        f"""
name: shop_e2e
source: {{url: "sqlite:///{shop_db}", name: shop}}
destination: {{url: "{tmp_path / "lake"}"}}
tables:
  - name: customers
  - name: orders
    to: orders_copy
    rename: {{total: total_amount}}
"""
    )
    storage = (
        request.getfixturevalue("instance_storage")
        if "instance_storage" in request.fixturenames
        else "sqlite"
    )
    home = make_dagster_home(tmp_path / "dagster_home", storage)
    return {**os.environ, "DAGSTER_HOME": str(home), "COPYJOB_JOBS_DIR": str(jobs)}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=240, check=False
    )


def _count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


def test_copyjob_run_materializes_on_the_configured_instance(
    instance_storage: str, project_env: dict[str, str], shop_db: Path, tmp_path: Path
) -> None:
    done = _run([str(BIN / "copyjob"), "run", "shop_e2e", "--table", "orders"], project_env)
    assert done.returncode == 0, done.stderr
    assert "shop_e2e/orders_copy" in done.stdout
    assert f"{_count(shop_db, 'orders'):,}" in done.stdout
    assert pq.read_table(tmp_path / "lake" / "orders_copy.parquet").num_rows == _count(
        shop_db, "orders"
    )
    assert not (tmp_path / "lake" / "customers.parquet").exists()  # --table selected one

    with dg.DagsterInstance.from_config(project_env["DAGSTER_HOME"]) as instance:
        runs = instance.get_runs()
        assert [r.job_name for r in runs] == ["shop_e2e"]
        assert runs[0].status == dg.DagsterRunStatus.SUCCESS
        event = instance.get_latest_materialization_event(dg.AssetKey(["shop_e2e", "orders_copy"]))
    assert event.asset_materialization.metadata["dagster/row_count"].value == _count(
        shop_db, "orders"
    )


def test_copyjob_run_reports_a_failed_table_without_traceback(
    project_env: dict[str, str], tmp_path: Path
) -> None:
    job_file = Path(project_env["COPYJOB_JOBS_DIR"]) / "shop.yaml"
    job_file.write_text(job_file.read_text().replace("name: customers", "name: clients"))
    done = _run([str(BIN / "copyjob"), "run", "shop_e2e", "--table", "clients"], project_env)
    assert done.returncode == 1
    assert "table 'clients' not found" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout, done.stderr


def test_copyjob_run_unknown_job_is_a_clear_error(project_env: dict[str, str]) -> None:
    done = _run([str(BIN / "copyjob"), "run", "nope"], project_env)
    assert done.returncode == 1
    assert "no copy job named 'nope'" in done.stderr and "shop_e2e" in done.stderr
    assert "Traceback" not in done.stderr


def test_workspace_loads_and_dagster_cli_materializes(
    project_env: dict[str, str], shop_db: Path, tmp_path: Path
) -> None:
    validated = _run(
        [str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"], project_env
    )
    assert validated.returncode == 0, validated.stderr

    done = _run(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "copyjob_dagster.definitions",
            "--select",
            "shop_e2e/customers",
        ],
        project_env,
    )
    assert done.returncode == 0, done.stderr
    assert pq.read_table(tmp_path / "lake" / "customers.parquet").num_rows == _count(
        shop_db, "customers"
    )


def test_copyjob_demo_as_the_readme_runs_it(tmp_path: Path) -> None:
    """README's first command on a project checkout of its own: no DAGSTER_HOME, no jobs
    folder named; the sample database is created and every table lands in the lake."""
    for name in ("workspace.yaml", "dagster.yaml", "copy_jobs"):
        copy = shutil.copytree if (PROJECT / name).is_dir() else shutil.copy
        copy(PROJECT / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "COPYJOB_JOBS_DIR")}
    done = subprocess.run(
        [str(BIN / "copyjob"), "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "succeeded" in done.stdout
    assert "Traceback" not in output and " - DEBUG - " not in output
    source = tmp_path / ".demo" / "shop.sqlite"
    lake = tmp_path / ".demo" / "lake"
    for table, copied in [("customers", "customers"), ("orders", "orders_copy")]:
        assert ds.dataset(lake / copied, format="parquet").count_rows() == _count(source, table)
