"""Dagster's documented PostgreSQL instance config, as a Dagster user already has it.

Dagster's docs configure the instance with `storage: postgres: postgres_db: {username, password,
hostname, db_name, port}` and no `scheme`; dagster-postgres then connects to `postgresql://`,
which SQLAlchemy 2.1 maps to psycopg 3: its `NOTIFY run_events, $1` failed the first run.
copyjob pins SQLAlchemy 2.0, where the bare name is psycopg2 in every process. `copyjob run`
copies on that instance (and on ones naming `scheme`), and a Dagster process that never imports
copyjob (as the webserver and the daemon build the instance) writes a run's events to it.
"""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml
from conftest import _new_instance_database

from copyjob_dagster.stores.postgres import PostgresStore

pytestmark = pytest.mark.postgres

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _documented_instance(folder: Path, scheme: str | None) -> Path:
    """An instance configured as in Dagster's docs ("Dagster instance", PostgreSQL storage)."""
    postgres_db = {
        "username": {"env": "DAGSTER_PG_USERNAME"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "db_name": _new_instance_database(),
        "port": {"env": "DAGSTER_PG_PORT"},
    }
    if scheme:
        postgres_db["scheme"] = scheme
    folder.mkdir()
    config = {"storage": {"postgres": {"postgres_db": postgres_db}}}
    (folder / "dagster.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.fixture
def jobs(tmp_path: Path, shop_db: Path) -> Path:
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "shop.yaml").write_text(
        f"""
name: shop_documented
source: {{url: "sqlite:///{shop_db}", name: shop}}
destination: {{url: "{tmp_path / "lake"}"}}
tables:
  - name: customers
  - name: orders
"""
    )
    return folder


def _copyjob(home: Path, jobs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "copyjob"), *args],
        cwd=PROJECT,
        env={**os.environ, "DAGSTER_HOME": str(home), "COPYJOB_JOBS_DIR": str(jobs)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _assert_copied(home: Path, tmp_path: Path, tables: list[str]) -> None:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS]
        for table in tables:
            key = dg.AssetKey(["shop_documented", table])
            assert instance.get_latest_materialization_event(key) is not None
    for table in tables:
        assert pq.read_table(tmp_path / "lake" / f"{table}.parquet").num_rows > 0


# `scheme: postgresql+psycopg2` (deploy/dagster.postgres.yaml) is run by test_end_to_end.py.
@pytest.mark.parametrize("scheme", [None, "postgresql"])
def test_copyjob_run_on_the_documented_instance(
    pg_server: str, jobs: Path, tmp_path: Path, scheme: str | None
) -> None:
    home = _documented_instance(tmp_path / "home", scheme)
    done = _copyjob(home, jobs, "run", "shop_documented")
    assert "syntax error" not in done.stdout + done.stderr
    assert done.returncode == 0, done.stderr
    _assert_copied(home, tmp_path, ["customers", "orders"])


def test_a_job_url_without_driver_still_opens_with_psycopg_3(pg_server: str) -> None:
    """The bare name is psycopg2 for dagster-postgres; copyjob's own stores open a job's
    `postgresql://` URL with psycopg 3 (COPY, the binary protocol)."""
    bare = sa.engine.make_url(pg_server).set(drivername="postgresql")
    assert sa.create_engine(bare).dialect.driver == "psycopg2"
    store = PostgresStore(bare.render_as_string(hide_password=False), None, "source")
    try:
        assert store.engine.dialect.driver == "psycopg"
    finally:
        store.engine.dispose()


DAGSTER_WITHOUT_COPYJOB = """
import sys
import dagster as dg

@dg.asset
def ping() -> None:
    pass

with dg.DagsterInstance.get() as instance:
    assert dg.materialize([ping], instance=instance).success
    assert instance.get_latest_materialization_event(dg.AssetKey("ping")) is not None
assert not any(name.startswith("copyjob_dagster") for name in sys.modules)
print("ok")
"""


def test_dagster_processes_without_copyjob_write_events_on_the_documented_instance(
    pg_server: str, tmp_path: Path
) -> None:
    """The webserver and the daemon build the instance before they load any code: with the
    pinned SQLAlchemy their events go through, with no `scheme` line and no copyjob import."""
    home = _documented_instance(tmp_path / "home", None)
    done = subprocess.run(
        [sys.executable, "-c", DAGSTER_WITHOUT_COPYJOB],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "syntax error" not in done.stderr
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
