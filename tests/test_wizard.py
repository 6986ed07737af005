"""`copyjob new` as a person uses it: answers typed into a pseudo-terminal, the job file it
writes validated and run, the copy checked in the destination; then `copyjob list`.

The commands run as subprocesses on an instance in a temporary DAGSTER_HOME and a jobs folder
of their own. prompt_toolkit is told not to ask the terminal for its cursor position
(PROMPT_TOOLKIT_NO_CPR), a question that a pexpect terminal, unlike a terminal emulator, never
answers.
"""

import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pexpect
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import make_dagster_home

from copyjob_dagster import cli
from copyjob_dagster.cli.wizard import parse_renames, select_tables
from copyjob_dagster.engine.discovery import incremental_candidates
from copyjob_dagster.errors import ConfigError
from copyjob_dagster.stores import TableDescription

COPYJOB = Path(sys.executable).parent / "copyjob"
CLEAR = "\x15"  # Ctrl-U: empties the answer's pre-filled default
DOWN = "\x1b[B"
CTRL_C = "\x03"
SECRET = "not-a-real-pw-7Qx"


def _env(root: Path) -> dict[str, str]:
    jobs, home = root / "jobs", root / "dagster_home"
    jobs.mkdir()
    make_dagster_home(home)
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "COPYJOB_JOBS_DIR": str(jobs),
        "PROMPT_TOOLKIT_NO_CPR": "1",
        "TERM": "xterm",
    }


def _copyjob(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(COPYJOB), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
        check=False,
    )


class Terminal:
    """`copyjob new` in a pseudo-terminal, answered question by question."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.transcript = io.StringIO()
        self.child = pexpect.spawn(
            str(COPYJOB),
            ["new"],
            # The terminal's size, also where a COLUMNS of the caller's would override it.
            env={**env, "LINES": "60", "COLUMNS": "200"},
            cwd=str(cwd),
            dimensions=(60, 200),
            encoding="utf-8",
            timeout=60,
        )
        self.child.logfile_read = self.transcript

    def answer(self, question: str, keys: str = "", replace: bool = False) -> None:
        try:
            self.child.expect_exact(question)
        except (pexpect.EOF, pexpect.TIMEOUT):
            pytest.fail(
                f"never asked {question!r}; the terminal showed:\n{self.transcript.getvalue()}"
            )
        self.child.send((CLEAR if replace else "") + keys + ("" if keys in ("y", "n") else "\r"))

    def finish(self) -> int:
        self.child.expect(pexpect.EOF, timeout=120)
        self.child.close()
        return self.child.exitstatus


# -- the steps' pure parts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "chosen"),
    [
        ("*", ["customers", "orders", "sales_eu", "sales_us"]),
        ("2", ["orders"]),
        ("1, 3-4", ["customers", "sales_eu", "sales_us"]),
        ("sales_* orders", ["sales_eu", "sales_us", "orders"]),
        ("orders 2 ord*", ["orders"]),
    ],
    ids=["all", "number", "numbers-and-range", "glob-then-name", "duplicates-once"],
)
def test_tables_are_chosen_by_number_name_or_glob(spec: str, chosen: list[str]) -> None:
    assert select_tables(spec, ["customers", "orders", "sales_eu", "sales_us"]) == chosen


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("5", "numbered 1 to 4"),
        ("nope", "no table 'nope'"),
        ("x_*", "no table matches"),
        ("", "at least one"),
    ],
)
def test_a_table_choice_that_matches_nothing_says_why(spec: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        select_tables(spec, ["customers", "orders", "sales_eu", "sales_us"])


def test_renames_name_selected_columns_without_clashes() -> None:
    assert parse_renames("total=amount, note = remark", ["id", "total", "note"]) == {
        "total": "amount",
        "note": "remark",
    }
    with pytest.raises(ConfigError, match="no copied column missing"):
        parse_renames("missing=x", ["id"])
    with pytest.raises(ConfigError, match="several columns would be named id"):
        parse_renames("total=id", ["id", "total"])


def test_incremental_candidates_prefer_change_columns_then_the_key() -> None:
    schema = pa.schema(
        [
            ("name", pa.string()),
            ("created_at", pa.timestamp("us")),
            ("id", pa.int64()),
            ("score", pa.float64()),
            ("row_modified", pa.timestamp("us", "UTC")),
            ("updated_at", pa.timestamp("us")),
            ("born", pa.date32()),
            ("quantity", pa.int32()),
        ]
    )
    table = TableDescription("people", schema, primary_key=("id",))
    ranked = [c.column for c in incremental_candidates(table, schema.names)]
    assert ranked == ["updated_at", "row_modified", "id", "created_at", "born", "quantity"]
    assert [c.column for c in incremental_candidates(table, ["name", "id"])] == ["id"]


# -- a SQLite source, typed answers, then validate, run and list -------------------------------


@dataclass(frozen=True)
class Scenario:
    root: Path
    env: dict[str, str]
    shop: Path
    job_file: Path
    transcript: str
    run: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def sqlite_scenario(tmp_path_factory: pytest.TempPathFactory, shop_db: Path) -> Scenario:
    root = tmp_path_factory.mktemp("wizard")
    env = _env(root)
    terminal = Terminal(env, root)
    terminal.answer("Name of the copy job", "shop_wizard", replace=True)
    terminal.answer("Source: a database URL, or a folder", f"sqlite:///{shop_db}")
    terminal.answer("Tables to copy", "orders 1", replace=True)  # by name and by number
    terminal.answer("orders: columns to copy")  # all of them
    terminal.answer("customers: columns to copy")
    terminal.answer("Destination: a database URL, or a folder", "lake", replace=True)
    terminal.answer("Rename destination tables or columns?", "y")
    terminal.answer("orders: destination table", "orders_copy", replace=True)
    terminal.answer("orders: rename columns", "total=total_amount")
    terminal.answer("customers: destination table")
    terminal.answer("customers: rename columns")
    terminal.answer("Copy mode", DOWN)  # incremental
    terminal.answer("orders: the column whose values grow")  # the proposed updated_at
    terminal.answer("orders: primary key")
    terminal.answer("customers: the column whose values grow")
    terminal.answer("customers: primary key")
    terminal.answer("Save it as", "y")
    assert terminal.finish() == 0, terminal.transcript.getvalue()
    run = _copyjob(["run", "shop_wizard"], env, root)  # output to a pipe
    return Scenario(
        root, env, shop_db, root / "jobs" / "shop_wizard.yaml", terminal.transcript.getvalue(), run
    )


def test_wizard_shows_what_it_found_and_writes_the_answers(sqlite_scenario: Scenario) -> None:
    shown = sqlite_scenario.transcript
    assert "connected to sqlite:///" in shown and "4 tables" in shown
    assert "2,000" in shown  # the orders' row count, listed and in the first run's review
    assert "saved " in shown and "ok: shop_wizard.yaml" in shown
    assert "copyjob run shop_wizard" in shown and "copyjob ui" in shown
    job = sqlite_scenario.job_file.read_text()
    assert f"url: sqlite:///{sqlite_scenario.shop}" in job
    assert f"url: {sqlite_scenario.root / 'lake'}" in job  # typed relative to the working folder
    assert "mode: incremental" in job
    assert "to: orders_copy" in job and "total: total_amount" in job
    assert "incremental_column: updated_at" in job and "write: append" in job
    assert sorted(p.name for p in sqlite_scenario.job_file.parent.iterdir()) == ["shop_wizard.yaml"]


def test_the_written_job_validates_and_runs(sqlite_scenario: Scenario) -> None:
    validated = _copyjob(["validate", "--connect"], sqlite_scenario.env, sqlite_scenario.root)
    assert validated.returncode == 0, validated.stderr
    run = sqlite_scenario.run
    assert run.returncode == 0, run.stderr
    with sqlite3.connect(sqlite_scenario.shop) as db:
        orders = db.execute("SELECT count(*) FROM orders").fetchone()[0]
    copied = pq.read_table(sqlite_scenario.root / "lake" / "orders_copy")
    assert copied.num_rows == orders
    assert "total_amount" in copied.column_names and "total" not in copied.column_names


def test_progress_goes_to_a_pipe_as_plain_lines(sqlite_scenario: Scenario) -> None:
    out = sqlite_scenario.run.stdout
    progress = out[: out.index("┏")]  # what comes before the summary table
    assert "orders → orders_copy: done, 2,000 rows in" in progress and "rows/s" in progress
    assert "customers: done, " in progress
    assert "\x1b[" not in out  # no terminal codes
    assert "━" not in progress  # no bar


def test_tables_copied_within_seconds_write_no_progress_events(sqlite_scenario: Scenario) -> None:
    """Each progress line is an event the instance stores: a table of 2,000 rows copied in
    well under the 2 s interval writes none, and its materialization says it was done."""
    with dg.DagsterInstance.from_config(sqlite_scenario.env["DAGSTER_HOME"]) as instance:
        (run,) = instance.get_runs()
        messages = [entry.user_message for entry in instance.all_logs(run.run_id)]
        copied = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
    assert not [m for m in messages if m.startswith("progress ")], messages
    assert len(copied) == 2  # orders and customers


def test_copyjob_list_shows_tables_mode_last_run_and_watermarks(sqlite_scenario: Scenario) -> None:
    listed = _copyjob(["list"], sqlite_scenario.env, sqlite_scenario.root)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "shop_wizard" in line)
    for expected in ("orders", "orders_copy", "incremental", "success"):
        assert expected in row
    customers = next(line for line in listed.stdout.splitlines() if "customers" in line)
    assert "400" in customers  # the customers' watermark: the highest id copied


def test_copyjob_list_json_gives_the_same_data(sqlite_scenario: Scenario) -> None:
    listed = _copyjob(["list", "--json"], sqlite_scenario.env, sqlite_scenario.root)
    assert listed.returncode == 0, listed.stderr
    (job,) = json.loads(listed.stdout)
    assert job["name"] == "shop_wizard" and job["mode"] == "incremental"
    assert job["schedule"] is None and job["last_run_status"] == "success"
    assert [(t["name"], t["destination"]) for t in job["tables"]] == [
        ("orders", "orders_copy"),
        ("customers", "customers"),
    ]
    orders_watermark = job["tables"][0]["watermark"]
    with sqlite3.connect(sqlite_scenario.shop) as db:
        assert orders_watermark.startswith(
            db.execute("SELECT max(updated_at) FROM orders").fetchone()[0][:19]
        )


# -- a PostgreSQL source, its password from an environment variable --------------------------


@pytest.fixture
def pg_accounts(pg_server: str, pg_schema: str) -> Iterator[str]:
    """A table `accounts` of 500 rows in a fresh schema; yields the schema."""
    engine = sa.create_engine(pg_server)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE TABLE {pg_schema}.accounts (id bigint PRIMARY KEY, owner text NOT NULL, "
                f"balance numeric(12, 2), updated_at timestamptz NOT NULL)"
            )
        )
        conn.execute(
            sa.text(
                f"INSERT INTO {pg_schema}.accounts SELECT n, 'owner ' || n, n * 1.5, "
                f"timestamptz '2024-01-01 00:00:00+00' + n * interval '1 minute' "
                f"FROM generate_series(1, 500) AS n"
            )
        )
    engine.dispose()
    yield pg_schema


@pytest.mark.postgres
def test_wizard_with_a_postgres_source_writes_no_password(
    tmp_path: Path, pg_server: str, pg_accounts: str
) -> None:
    env = {**_env(tmp_path), "WZ_PG_PASSWORD": SECRET}
    warehouse = tmp_path / "warehouse.sqlite"
    terminal = Terminal(env, tmp_path)
    terminal.answer("Name of the copy job", "pg_accounts", replace=True)
    terminal.answer("Source: a database URL, or a folder", pg_server)
    terminal.answer("Source schema", pg_accounts)
    terminal.answer(
        "Environment variable holding the source's password", "WZ_PG_PASSWORD", replace=True
    )
    terminal.answer("Tables to copy")  # all: the one table
    terminal.answer("accounts: columns to copy")
    terminal.answer(
        "Destination: a database URL, or a folder", f"sqlite:///{warehouse}", replace=True
    )
    terminal.answer("Rename destination tables or columns?")  # no
    terminal.answer("Copy mode", DOWN)
    terminal.answer("accounts: the column whose values grow")
    terminal.answer("accounts: primary key")  # the key it found: id
    terminal.answer("accounts: how new rows are written")  # merge, offered first with a key
    terminal.answer("Save it as")  # yes
    assert terminal.finish() == 0, terminal.transcript.getvalue()
    assert "500" in terminal.transcript.getvalue()
    assert SECRET not in terminal.transcript.getvalue()

    job = (tmp_path / "jobs" / "pg_accounts.yaml").read_text()
    assert ":${WZ_PG_PASSWORD}@127.0.0.1" in job and SECRET not in job
    assert f"schema: {pg_accounts}" in job
    assert "incremental_column: updated_at" in job and "write: merge" in job

    assert _copyjob(["validate"], env, tmp_path).returncode == 0
    run = _copyjob(["run", "pg_accounts"], env, tmp_path)
    assert run.returncode == 0, run.stderr
    assert SECRET not in run.stdout + run.stderr
    with sqlite3.connect(warehouse) as db:
        assert db.execute("SELECT count(*), sum(id) FROM accounts").fetchone() == (500, 125250)


# -- Ctrl-C, and flags for scripts -----------------------------------------------------------


@pytest.mark.parametrize("interrupt_at", ["Tables to copy", "Save it as"])
def test_ctrl_c_leaves_no_file(tmp_path: Path, shop_db: Path, interrupt_at: str) -> None:
    env = _env(tmp_path)
    terminal = Terminal(env, tmp_path)
    terminal.answer("Name of the copy job", "halfway", replace=True)
    terminal.answer("Source: a database URL, or a folder", f"sqlite:///{shop_db}")
    if interrupt_at == "Save it as":
        terminal.answer("Tables to copy", "orders", replace=True)
        terminal.answer("orders: columns to copy")
        terminal.answer("Destination: a database URL, or a folder", "lake", replace=True)
        terminal.answer("Rename destination tables or columns?")
        terminal.answer("Copy mode")
    terminal.child.expect_exact(interrupt_at)
    terminal.child.send(CTRL_C)
    assert terminal.finish() == 130
    assert "cancelled: no job file written" in terminal.transcript.getvalue()
    assert list((tmp_path / "jobs").iterdir()) == []
    assert not (tmp_path / "lake").exists()


def test_non_interactive_flags_make_the_same_job(tmp_path: Path, shop_db: Path) -> None:
    env = _env(tmp_path)
    flags = [
        "new",
        "--non-interactive",
        "--name=scripted",
        f"--source-url=sqlite:///{shop_db}",
        "--tables=orders",
        "--columns=orders=id,customer_id,total,updated_at",
        f"--destination-url={tmp_path / 'lake'}",
        "--mode=incremental",
        "--incremental-column=orders=id",
        "--rename=orders.total=amount",
    ]
    done = _copyjob(flags, env, tmp_path)
    assert done.returncode == 0, done.stderr
    job = (tmp_path / "jobs" / "scripted.yaml").read_text()
    assert "columns:\n  - id\n  - customer_id\n  - total\n  - updated_at" in job
    assert "incremental_column: id" in job and "amount" in job
    assert "ok: scripted.yaml" in done.stdout


SCRIPTED = ["new", "--non-interactive", "--tables=orders", "--destination-url=lake"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--name=taken"], "--name: taken.yaml already holds a job named 'taken'"),
        (["--name=bad__name"], "--name: use words of letters and digits"),
        (["--name=import"], "--name: 'import' is reserved by Python or Dagster"),
        (["--tables=nope"], "--tables: no table 'nope'"),
        (["--mode=incremental", "--incremental-column=orders=note"], "'note' is not one of"),
        (["--to=customers=x"], "--to customers=...: no question took this answer"),
        (["--primary-key=orders=id"], "--primary-key orders=...: no question took this answer"),
    ],
    ids=[
        "name-taken",
        "bad-name",
        "reserved-name",
        "no-such-table",
        "not-orderable",
        "table-not-chosen",
        "unused",
    ],
)
def test_non_interactive_mistakes_write_nothing(
    tmp_path: Path, shop_db: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    env = _env(tmp_path)
    (tmp_path / "jobs" / "taken.yaml").write_text("name: taken\n")
    result = CliRunner(env=env).invoke(
        cli.main, [*SCRIPTED, f"--source-url=sqlite:///{shop_db}", "--name=fresh", *flags]
    )
    assert result.exit_code == 1, result.output
    assert message in result.stderr and "Traceback" not in result.stderr
    assert [p.name for p in (tmp_path / "jobs").iterdir()] == ["taken.yaml"]


def test_new_without_a_terminal_points_to_the_flags(tmp_path: Path) -> None:
    result = CliRunner(env=_env(tmp_path)).invoke(cli.main, ["new"])
    assert result.exit_code == 1 and "--non-interactive" in result.stderr
