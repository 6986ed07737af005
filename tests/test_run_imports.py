"""`copyjob run` imports the libraries its job's stores need, not every store's: a PostgreSQL ->
MariaDB run (COPY's CSV into LOAD DATA) needs no data frame, no Delta or Parquet folder code, and
not ADBC's DB-API, whose pyarrow.dataset imports pandas (about 0.3 s of CPU a run, before a row
is copied); and it makes those imports' million objects without the garbage collector going over
them in full (four full collections, ~0.3 s of CPU, before). Checked in a fresh process, as a
user's `copyjob run` starts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from conftest import make_dagster_home

NOT_NEEDED = (
    "pandas",
    "deltalake",
    "pyarrow.dataset",
    "adbc_driver_manager.dbapi",
    "copyjob_dagster.stores.files",
    "copyjob_dagster.stores.sqlite",
    "questionary",
    "moto",
)
RUN = f"""
import gc, json, sys
full = []
gc.callbacks.append(lambda phase, info: info["generation"] == 2 and full.append(phase))
from copyjob_dagster.cli import main
try:
    main(["run", "imports"], standalone_mode=False)
finally:
    print("IMPORTED", json.dumps(sorted(set(sys.modules) & set({list(NOT_NEEDED)!r}))))
    print("FULL_COLLECTIONS", full.count("stop"))
"""


def test_a_postgresql_to_mariadb_run_imports_no_library_it_does_not_use_nor_collects_them(
    pg_server: str, pg_schema: str, mysql_url: str, tmp_path: Path
) -> None:
    source = sa.create_engine(pg_server)
    with source.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE TABLE {pg_schema}.orders AS SELECT g AS id, "
                "(g * 1.5)::numeric(12, 2) AS amount, g / 3.0::float8 AS score "
                "FROM generate_series(1, 1000) g"
            )
        )
    source.dispose()
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "imports.yaml").write_text(
        f"name: imports\nmode: full\nsource: {{url: '{pg_server}', schema: {pg_schema}}}\n"
        f"destination: {{url: '{mysql_url}'}}\ntables:\n  - name: orders\n"
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(make_dagster_home(tmp_path / "home")),
        "COPYJOB_JOBS_DIR": str(jobs),
    }
    done = subprocess.run(
        [sys.executable, "-c", RUN], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    destination = sa.create_engine(mysql_url)
    with destination.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM orders")).scalar() == 1000
    destination.dispose()
    said = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    assert json.loads(said["IMPORTED"]) == []
    assert said["FULL_COLLECTIONS"] == "0"
