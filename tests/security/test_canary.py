"""The canary: a password that must never be seen again once it is given to copyjob.

Every connection here logs in with a password holding the session's marker: a PostgreSQL role
of the suite's own server (which checks passwords, unlike the shared one) and a MariaDB user.
Copies then succeed, fail on a wrong password (the wrong one holds the marker too), fail on an
unreachable host, fail on a duplicate key, and fail on a bad job file; each through `copyjob`
as a user runs it, and through Dagster in this process. Then the marker is looked for
everywhere a person or a log collector can read: the commands' output, Python logs, exception
text, the Dagster event log, run config and tags, materialization metadata, every file of the
Dagster instance, `copyjob history`, the Parquet files, and the webserver's GraphQL answers.
"""

import json
import logging
import os
import subprocess
import sys
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from conftest import BadInputTally, make_dagster_home
from dagster_web import free_port, graphql, serve, wait_until_ready

from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs
from copyjob_dagster.engine import copy_table, load_jobs
from copyjob_dagster.errors import CopyJobError

from .conftest import MySQLUser, PgRole
from .private_pg import PrivatePostgres

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

ASSETS_AND_RUNS = """
{
  assetNodes {
    assetKey { path } description opName
    metadataEntries { label description ... on TextMetadataEntry { text } }
    assetMaterializations(limit: 10) {
      runId
      metadataEntries {
        label
        ... on TextMetadataEntry { text }
        ... on IntMetadataEntry { intRepr }
        ... on TableSchemaMetadataEntry { schema { columns { name type } } }
      }
    }
  }
  runsOrError { ... on Runs { results { runId jobName status runConfigYaml tags { key value } } } }
  workspaceOrError {
    ... on Workspace {
      locationEntries { name locationOrLoadError { __typename ... on PythonError { message } } }
    }
  }
}
"""
RUN_LOGS = """
query ($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message }
        ... on ErrorEvent { error { className message stack causes { message stack } } }
      }
    }
    ... on PythonError { message }
  }
}
"""


@dataclass
class Canary:
    marker: str
    home: Path
    folder: Path
    outputs: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    graphql: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    in_process_events: list[str] = field(default_factory=list)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter().format(record))


def _closed_port() -> int:
    return free_port()  # bound for a moment, then closed: nothing listens there


def _write_jobs(
    folder: Path, server: PrivatePostgres, schema: str, mysql_url: str, role: str
) -> tuple[Path, Path]:
    def source(password_variable: str, port: int = server.port, **extra: str) -> str:
        url = f"postgresql+psycopg://{role}:${{{password_variable}}}@127.0.0.1:{port}/postgres"
        return json.dumps({"url": url, "schema": schema, **extra})

    good, bad = folder / "jobs", folder / "bad_jobs"
    good.mkdir()
    bad.mkdir()
    (good / "ok.yaml").write_text(
        f"name: canary_ok\nsource: {source('CANARY_PW')}\n"
        f"destination: {{url: '{folder / 'lake'}'}}\nmode: incremental\n"
        "tables:\n  - {name: orders, incremental_column: updated_at}\n"
    )
    (good / "constraint.yaml").write_text(
        f"name: canary_constraint\nsource: {source('CANARY_PW')}\n"
        f"destination: {{url: '{mysql_url}'}}\n"
        "tables:\n  - {name: dupes, primary_key: [k]}\n"
    )
    (good / "bad_password.yaml").write_text(
        f"name: canary_bad_password\nsource: {source('CANARY_WRONG_PW')}\n"
        f"destination: {{url: '{folder / 'lake_bad_password'}'}}\n"
        "tables:\n  - {name: orders}\n"
    )
    unreachable = source("CANARY_PW", _closed_port(), name="unreachable")
    (good / "unreachable.yaml").write_text(
        f"name: canary_unreachable\nsource: {unreachable}\n"
        f"destination: {{url: '{folder / 'lake_unreachable'}'}}\n"
        "tables:\n  - {name: orders}\n"
    )
    (bad / "bad.yaml").write_text(
        f"name: canary_bad\nsource: {source('CANARY_PW')}\n"
        f"destination: {{url: '{mysql_url}'}}\n"
        "tables:\n  - {name: orders, colums: [id]}\n"
    )
    return good, bad


def _run_all(commands: dict[str, tuple[list[str], dict[str, str]]]) -> dict[str, Any]:
    """Run `copyjob` commands at the same time (they take seconds each to start)."""
    started = {
        name: subprocess.Popen(
            [str(BIN / "copyjob"), *args],
            cwd=PROJECT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (args, env) in commands.items()
    }
    done = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=240)
        done[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return done


@pytest.fixture(scope="module")
def canary(
    private_postgres: PrivatePostgres,
    pg_role: PgRole,
    mysql_user: MySQLUser,
    mysql_server: str,
    marker: str,
    password: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Canary]:
    tag = uuid.uuid4().hex[:8]
    folder = tmp_path_factory.mktemp("canary")
    schema, database = f"canary_{tag}", f"cj_canary_{tag}"
    admin = sa.create_engine(private_postgres.admin_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE SCHEMA {schema};"
            f"CREATE TABLE {schema}.orders (id int PRIMARY KEY, name text, updated_at int);"
            f"INSERT INTO {schema}.orders VALUES (1, 'a', 10), (2, 'b', 20), (3, 'c', 30);"
            f"CREATE TABLE {schema}.dupes (k text, v int);"
            f"INSERT INTO {schema}.dupes VALUES ('same', 1), ('same', 2);"
        )
    admin.dispose()
    role = pg_role(
        f"canary_reader_{tag}",
        password,
        f"GRANT USAGE ON SCHEMA {schema} TO canary_reader_{tag}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO canary_reader_{tag}",
    )
    root = sa.create_engine(mysql_server)
    with root.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {database}")
    user = mysql_user(f"cj_canary_{tag}", password, f"GRANT ALL ON {database}.* TO {{user}}")
    mysql_url = f"mysql+pymysql://{user}:${{CANARY_PW}}@127.0.0.1:3306/{database}"
    good, bad = _write_jobs(folder, private_postgres, schema, mysql_url, role)
    home = make_dagster_home(folder / "dagster_home")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "COPYJOB_JOBS_DIR": str(good),
        "CANARY_PW": password,  # raw, as a user sets it: copyjob URL-encodes it
        "CANARY_WRONG_PW": password + "-wrong",
    }
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)  # creates the storage before the runs race to
    found = Canary(marker, home, folder)
    bad_env = {**env, "COPYJOB_JOBS_DIR": str(bad)}
    try:
        found.outputs = _run_all(
            {
                **{
                    f"run {job}": (["run", f"canary_{job}", "--verbose"], env)
                    for job in ("ok", "constraint", "bad_password", "unreachable")
                },
                "validate --connect": (["validate", "--connect"], env),
                "validate bad file": (["validate"], bad_env),
                "run bad file": (["run", "canary_bad"], bad_env),
            }
        )
        found.graphql = _ask_the_webserver(env, folder / "webserver.log", found)
        _copy_in_process(found, env, good)
        yield found
    finally:
        with root.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {database}")
        root.dispose()


def _copy_in_process(found: Canary, env: dict[str, str], good: Path) -> None:
    """The same jobs in this process: every Python log record and every exception's text."""
    collect = _Collect()
    root = logging.getLogger()
    saved = root.level
    root.addHandler(collect)
    root.setLevel(logging.DEBUG)
    variables = {name: env[name] for name in ("CANARY_PW", "CANARY_WRONG_PW")}
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in variables.items():
                patch.setenv(name, value)
            jobs = load_jobs(good)
        for job in jobs:
            try:
                copy_table(job, job.tables[0])
            except CopyJobError as exc:
                found.exceptions += [repr(exc), *traceback.format_exception(exc, chain=True)]
        with dg.instance_for_test() as instance:
            result = dg.materialize(
                [*build_source_specs(jobs), *build_copy_assets(jobs)],
                instance=instance,
                raise_on_error=False,
            )
            for run in instance.get_runs():
                found.in_process_events += [
                    dg.serialize_value(entry) for entry in instance.all_logs(run.run_id)
                ]
            found.in_process_events += [dg.serialize_value(event) for event in result.all_events]
    finally:
        root.removeHandler(collect)
        root.setLevel(saved)
    found.logs = collect.lines


def _ask_the_webserver(env: dict[str, str], log_path: Path, found: Canary) -> list[str]:
    """Start dagster-webserver on the instance; return its answers. `copyjob history` runs
    while it starts."""
    with serve(["dagster-webserver"], env, log_path) as url:
        found.outputs |= _run_all(
            {"history": (["history"], env), "history --json": (["history", "--json"], env)}
        )
        wait_until_ready(url, log_path)
        answers = [json.dumps(graphql(url, ASSETS_AND_RUNS))]
        runs = json.loads(answers[0])["data"]["runsOrError"]["results"]
        answers += [json.dumps(graphql(url, RUN_LOGS, runId=run["runId"])) for run in runs]
        assert len(runs) == 4, answers[0]
        return answers


def _leaks(bad_inputs: BadInputTally, place: str, texts: list[str], marker: str) -> int:
    count = sum(text.count(marker) for text in texts)
    bad_inputs.leaks(place, count)
    return count


def test_the_copies_ran_and_failed_as_meant(canary: Canary) -> None:
    outputs = canary.outputs
    assert outputs["run ok"].returncode == 0, outputs["run ok"].stderr
    assert pq.read_table(canary.folder / "lake" / "orders").num_rows == 3
    expected_failures = {
        "run constraint": "Duplicate entry 'same'",
        "run bad_password": "password authentication failed",
        "run unreachable": "Connection refused",
        "validate --connect": "password authentication failed",
        "validate bad file": "table 'orders', field 'colums': unknown field",
        "run bad file": "field 'colums'",
    }
    for name, expected in expected_failures.items():
        done = outputs[name]
        assert done.returncode == 1, f"{name}: {done.stdout}{done.stderr}"
        assert expected in done.stderr, f"{name}: {done.stderr}"
        assert "Traceback" not in done.stderr, f"{name}: {done.stderr}"
    assert outputs["history"].returncode == 0, outputs["history"].stderr
    assert any(e for e in canary.exceptions), "the failing copies raised nothing"


def test_no_secret_in_command_output(canary: Canary, bad_inputs: BadInputTally) -> None:
    texts = [
        o.stdout + o.stderr for name, o in canary.outputs.items() if not name.startswith("history")
    ]
    assert _leaks(bad_inputs, "copyjob run/validate output", texts, canary.marker) == 0


def test_no_secret_in_history(canary: Canary, bad_inputs: BadInputTally) -> None:
    texts = [o.stdout + o.stderr for n, o in canary.outputs.items() if n.startswith("history")]
    assert "canary_ok/orders" in texts[0]
    assert _leaks(bad_inputs, "copyjob history", texts, canary.marker) == 0


def test_no_secret_in_python_logs_or_exceptions(canary: Canary, bad_inputs: BadInputTally) -> None:
    assert canary.logs, "no log record was captured"
    assert _leaks(bad_inputs, "Python logs", canary.logs, canary.marker) == 0
    assert _leaks(bad_inputs, "exception text", canary.exceptions, canary.marker) == 0
    assert (
        _leaks(bad_inputs, "in-process Dagster events", canary.in_process_events, canary.marker)
        == 0
    )


def test_no_secret_in_event_log_run_config_or_metadata(
    canary: Canary, bad_inputs: BadInputTally
) -> None:
    texts = []
    with dg.DagsterInstance.from_config(str(canary.home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 4  # the bad job file never reached Dagster
        for run in runs:
            texts += [json.dumps(run.run_config), json.dumps(run.tags)]
            texts += [dg.serialize_value(entry) for entry in instance.all_logs(run.run_id)]
        event = instance.get_latest_materialization_event(dg.AssetKey(["canary_ok", "orders"]))
        metadata = event.asset_materialization.metadata
        assert metadata["dagster/row_count"].value == 3
        texts.append(dg.serialize_value(metadata))
    assert _leaks(bad_inputs, "Dagster event log and run config", texts, canary.marker) == 0


def test_no_secret_in_any_file_of_the_instance_or_the_lake(
    canary: Canary, bad_inputs: BadInputTally
) -> None:
    """Every byte the runs left: storage databases, compute logs, Parquet files and footers."""
    files = [p for p in canary.folder.rglob("*") if p.is_file()]
    parquet = [p for p in files if p.suffix == ".parquet"]
    assert parquet
    texts = [p.read_bytes().decode("latin-1") for p in files]
    texts += [str(pq.read_metadata(p).metadata) for p in parquet]
    assert _leaks(bad_inputs, "instance and Parquet files", texts, canary.marker) == 0


def test_no_secret_in_graphql_answers(canary: Canary, bad_inputs: BadInputTally) -> None:
    assert any("canary_ok" in answer for answer in canary.graphql)
    assert _leaks(bad_inputs, "webserver GraphQL answers", canary.graphql, canary.marker) == 0
