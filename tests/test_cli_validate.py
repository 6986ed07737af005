"""`copyjob validate` as a user runs it: a folder of job files, one line per problem, exit 1.

The command is run as a subprocess, through the installed console script. Every bad input of
the table below sits in one folder checked by a single run (the command takes seconds to start);
each case then looks for its own line.
"""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BadInputTally

COPYJOB = Path(sys.executable).parent / "copyjob"
SECRET = "s3cret-Zq81x"
HEAD = "source: {url: 'sqlite:///shop.db'}\ndestination: {url: lake}\n"
ORDERS = "tables:\n  - name: orders\n"


def _job(name: str, body: str = ORDERS, head: str = HEAD) -> str:
    return f"name: {name}\n{head}{body}"


def run_validate(jobs_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "COPYJOB_JOBS_DIR": str(jobs_dir), **env}
    return subprocess.run(
        [str(COPYJOB), "validate", *args],
        env=environment,
        cwd=jobs_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str]) -> None:
    """Exit 1, and every line of stderr a one-line message: no traceback, no continuation."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    for line in result.stderr.splitlines():
        assert line.startswith(("invalid: ", "error: ")), line


# (file stem = job name, file content, what its message must name besides the file)
BAD_JOBS = [
    pytest.param(
        "unknown_key",
        _job("unknown_key", "tables:\n  - name: orders\n    colums: [id]\n"),
        ["job 'unknown_key'", "table 'orders'", "field 'colums'", "did you mean 'columns'?"],
        id="unknown-table-key",
    ),
    pytest.param(
        "unknown_job_key",
        _job("unknown_job_key", ORDERS + "sheduel: '0 * * * *'\n"),
        ["field 'sheduel'", "unknown field; did you mean 'schedule'?"],
        id="unknown-job-key",
    ),
    pytest.param(
        "unknown_store_key",
        _job(
            "unknown_store_key",
            head="source: {url: 'sqlite:///a.db', shema: x}\ndestination: {url: lake}\n",
        ),
        ["field 'source.shema'", "did you mean 'schema'?"],
        id="unknown-store-key",
    ),
    pytest.param(
        "missing_source",
        _job("missing_source", head="destination: {url: lake}\n"),
        ["job 'missing_source'", "field 'source'", "required, but missing"],
        id="missing-source",
    ),
    pytest.param(
        "missing_url",
        _job("missing_url", head="source: {schema: public}\ndestination: {url: lake}\n"),
        ["field 'source.url'", "required, but missing"],
        id="missing-url",
    ),
    pytest.param(
        "missing_table_name",
        _job("missing_table_name", "tables:\n  - columns: [id]\n"),
        ["table #1", "field 'name'", "required, but missing"],
        id="missing-table-name",
    ),
    pytest.param(
        "no_tables",
        _job("no_tables", "tables: []\n"),
        ["field 'tables'", "must list at least one item"],
        id="empty-tables",
    ),
    pytest.param(
        "bad_cron",
        _job("bad_cron", ORDERS + "schedule: every day\n"),
        ["field 'schedule'", "'every day' is not a 5-field cron expression"],
        id="cron-words",
    ),
    pytest.param(
        "six_field_cron",
        _job("six_field_cron", ORDERS + "schedule: '0 * * * * *'\n"),
        ["field 'schedule'", "not a 5-field cron expression"],
        id="cron-six-fields",
    ),
    pytest.param(
        "cron_out_of_range",
        _job("cron_out_of_range", ORDERS + "schedule: '61 * * * *'\n"),
        ["field 'schedule'", "not a 5-field cron expression"],
        id="cron-minute-61",
    ),
    pytest.param(
        "cron_in_mapping",
        _job("cron_in_mapping", ORDERS + "schedule: {cron: 'hourly', status: running}\n"),
        ["field 'schedule.cron'", "'hourly' is not a 5-field cron expression"],
        id="cron-in-mapping",
    ),
    pytest.param(
        "bad_timezone",
        _job("bad_timezone", ORDERS + "schedule: {cron: '0 * * * *', timezone: Paris}\n"),
        ["field 'schedule.timezone'", "'Paris' is not a known time zone"],
        id="schedule-timezone",
    ),
    pytest.param(
        "schedule_status",
        _job("schedule_status", ORDERS + "schedule: {cron: '0 * * * *', status: paused}\n"),
        ["field 'schedule.status'", "should be 'running' or 'stopped'"],
        id="schedule-status",
    ),
    pytest.param(
        "sensor_on_full",
        _job("sensor_on_full", ORDERS + "sensor: true\n"),
        ["field 'sensor'", "needs mode: incremental"],
        id="sensor-on-full-copy",
    ),
    pytest.param(
        "retries_typo",
        _job("retries_typo", ORDERS + "retries: {max_retry: 3}\n"),
        ["field 'retries.max_retry'", "did you mean 'max_retries'?"],
        id="retries-unknown-key",
    ),
    pytest.param(
        "rename_unselected",
        _job("rename_unselected", ORDERS + "    columns: [id]\n    rename: {amount: total}\n"),
        ["table 'orders'", "field 'rename'", "not selected in `columns`: amount"],
        id="rename-unselected-column",
    ),
    pytest.param(
        "key_unselected",
        _job("key_unselected", ORDERS + "    columns: [amount]\n    primary_key: [id]\n"),
        ["table 'orders'", "field 'primary_key'", "not selected in `columns`: id"],
        id="primary-key-unselected",
    ),
    pytest.param(
        "cursor_unselected",
        _job(
            "cursor_unselected",
            "mode: incremental\n" + ORDERS + "    columns: [id]\n"
            "    incremental_column: updated_at\n",
        ),
        ["table 'orders'", "field 'incremental_column'", "not selected in `columns`: updated_at"],
        id="incremental-column-unselected",
    ),
    pytest.param(
        "columns_twice",
        _job("columns_twice", ORDERS + "    columns: [id, amount, id]\n"),
        ["table 'orders'", "field 'columns'", "columns listed twice: id"],
        id="column-listed-twice",
    ),
    pytest.param(
        "rename_clash",
        _job(
            "rename_clash",
            ORDERS + "    columns: [id, amount, total]\n    rename: {amount: total}\n",
        ),
        ["table 'orders'", "field 'rename'", "several columns would be named: total"],
        id="rename-onto-selected-column",
    ),
    pytest.param(
        "duplicate_destination",
        _job("duplicate_destination", ORDERS + "  - name: old_orders\n    to: orders\n"),
        ["table 'old_orders'", "field 'to'", "table 'orders' is also copied to 'orders'"],
        id="duplicate-destination-table",
    ),
    pytest.param(
        "asset_key_clash",
        _job("asset_key_clash", "tables:\n  - name: order-items\n  - name: order_items\n"),
        ["table 'order_items'", "field 'to'", "same asset key 'order_items'"],
        id="destinations-share-asset-key",
    ),
    pytest.param(
        "onto_itself",
        _job(
            "onto_itself",
            head="source: {url: 'sqlite:///shop.db'}\ndestination: {url: 'sqlite:///shop.db'}\n",
        ),
        ["table 'orders'", "field 'to'", "would replace the source table itself"],
        id="copy-onto-source-table",
    ),
    pytest.param(
        "missing_env",
        _job("missing_env", ORDERS + "  - name: customers\n    to: ${COPYJOB_TEST_UNSET}\n"),
        ["table 'customers'", "field 'to'", "environment variable COPYJOB_TEST_UNSET is not set"],
        id="missing-env-var-in-table",
    ),
    pytest.param(
        "missing_env_url",
        _job(
            "missing_env_url",
            head="source: {url: '${COPYJOB_TEST_UNSET}'}\ndestination: {url: lake}\n",
        ),
        ["field 'source.url'", "environment variable COPYJOB_TEST_UNSET is not set"],
        id="missing-env-var-in-url",
    ),
    pytest.param(
        "malformed_env",
        _job("malformed_env", "tables:\n  - name: ${1ORDERS}\n"),
        ["table '${1ORDERS}'", "field 'name'", "malformed environment reference"],
        id="malformed-env-reference",
    ),
    pytest.param(
        "yaml_syntax",
        "name: yaml_syntax\ntables: [orders\n",
        ["invalid YAML", "line "],
        id="yaml-syntax-error",
    ),
    pytest.param(
        "yaml_tabs",
        "name: yaml_tabs\nsource:\n\turl: sqlite:///shop.db\n",
        ["line 3, column 1", "invalid YAML", "YAML does not allow tabs"],
        id="yaml-tab-indent",
    ),
    pytest.param(
        "duplicate_key",
        _job("duplicate_key", ORDERS + "name: again\n"),
        ["line 6", "key 'name' is given twice (first on line 1)"],
        id="yaml-duplicate-key",
    ),
    pytest.param(
        "duplicate_table_key",
        _job("duplicate_table_key", ORDERS + "    to: a\n    to: b\n"),
        ["line 7", "key 'to' is given twice (first on line 6)"],
        id="yaml-duplicate-key-in-table",
    ),
    pytest.param(
        "unhashable_key",
        _job("unhashable_key", "? [a, b]\n: 1\n"),
        ["invalid YAML", "unhashable key"],
        id="yaml-unhashable-key",
    ),
    pytest.param(
        "two_documents",
        _job("two_documents") + "---\nname: other\n",
        ["invalid YAML: expected a single document in the stream, but found another"],
        id="yaml-two-documents",
    ),
    pytest.param(
        "not_a_mapping",
        "- name: orders\n",
        ["a job file must be a mapping"],
        id="yaml-top-level-list",
    ),
    pytest.param("empty_file", "", ["a job file must be a mapping"], id="yaml-empty-file"),
    pytest.param(
        "not_utf8",
        b"name: caf\xe9\n",
        ["not UTF-8 text"],
        id="not-utf8",
    ),
    pytest.param(
        "tables_mapping",
        _job("tables_mapping", "tables: {name: orders}\n"),
        ["field 'tables'", "should be a valid list, got a mapping"],
        id="tables-as-mapping",
    ),
    pytest.param(
        "table_as_text",
        _job("table_as_text", "tables: [orders]\n"),
        ["table #1", "should be a mapping of `key: value` lines, got text"],
        id="table-as-text",
    ),
    pytest.param(
        "columns_text",
        _job("columns_text", ORDERS + "    columns: id\n"),
        ["table 'orders'", "field 'columns'", "should be a valid list, got text"],
        id="columns-as-text",
    ),
    pytest.param(
        "column_number",
        _job("column_number", ORDERS + "    columns: [id, 7]\n"),
        ["table 'orders'", "field 'columns', item 2", "should be a valid string, got a number"],
        id="column-as-number",
    ),
    pytest.param(
        "table_name_number",
        _job("table_name_number", "tables:\n  - name: 2024\n"),
        ["table #1", "field 'name'", "should be a valid string, got a number"],
        id="table-name-as-number",
    ),
    pytest.param(
        "batch_negative",
        _job("batch_negative", ORDERS + "batch_rows: -5\n"),
        ["field 'batch_rows'", "should be greater than 0"],
        id="negative-batch-rows",
    ),
    pytest.param(
        "batch_zero",
        _job("batch_zero", ORDERS + "batch_rows: 0\n"),
        ["field 'batch_rows'", "should be greater than 0"],
        id="zero-batch-rows",
    ),
    pytest.param(
        "batch_text",
        _job("batch_text", ORDERS + "batch_rows: lots\n"),
        ["field 'batch_rows'", "should be a valid integer, got text"],
        id="batch-rows-as-text",
    ),
    pytest.param(
        "batch_bool",
        _job("batch_bool", ORDERS + "batch_rows: yes\n"),
        ["field 'batch_rows'", "got true/false"],
        id="batch-rows-as-bool",
    ),
    pytest.param(
        "bad_mode",
        _job("bad_mode", "mode: sometimes\n" + ORDERS),
        ["field 'mode'", "should be 'full', 'incremental' or 'cdc'"],
        id="unknown-mode",
    ),
    pytest.param(
        "incremental_no_cursor",
        _job("incremental_no_cursor", "mode: incremental\n" + ORDERS),
        ["table 'orders'", "field 'incremental_column'", "mode: incremental needs"],
        id="incremental-without-column",
    ),
    pytest.param(
        "write_in_full",
        _job("write_in_full", ORDERS + "    write: append\n"),
        ["table 'orders'", "field 'write'", "a full copy replaces the table"],
        id="write-in-full-mode",
    ),
    pytest.param(
        "bad_write",
        _job(
            "bad_write",
            "mode: incremental\n" + ORDERS + "    incremental_column: id\n    write: upsert\n",
        ),
        ["table 'orders'", "field 'write'", "should be 'append', 'merge' or 'scd2'"],
        id="unknown-write",
    ),
    pytest.param(
        "literal_password",
        _job(
            "literal_password",
            head=f"source: {{url: 'postgresql://bob:{SECRET}@db/shop'}}\n"
            "destination: {url: lake}\n",
        ),
        ["field 'source.url'", "password written in the file", "${VARIABLE}"],
        id="literal-password",
    ),
    pytest.param(
        "default_password",
        _job(
            "default_password",
            head="source: {url: 'sqlite:///a.db'}\ndestination: "
            f"{{url: 'postgresql://bob:${{PW:-{SECRET}}}@db/wh'}}\n",
        ),
        ["field 'destination.url'", "password written in the file"],
        id="password-as-env-default",
    ),
    pytest.param(
        "query_password",
        _job(
            "query_password",
            head=f"source: {{url: 'postgresql://db/shop?password={SECRET}'}}\n"
            "destination: {url: lake}\n",
        ),
        ["field 'source.url'", "password written in the file"],
        id="password-in-query",
    ),
    pytest.param(
        "bad-job-name",
        _job("bad-job-name"),
        ["job 'bad-job-name'", "field 'name'", "words of letters and digits"],
        id="job-name-with-dash",
    ),
    pytest.param(
        "double__underscore",
        _job("double__underscore"),
        ["field 'name'", "single underscores"],
        id="job-name-double-underscore",
    ),
    pytest.param(
        "empty_table_name",
        _job("empty_table_name", "tables:\n  - name: ''\n"),
        ["table #1", "field 'name'", "must not be empty"],
        id="empty-table-name",
    ),
    pytest.param(
        "bad_port",
        _job(
            "bad_port",
            head="source: {url: 'postgresql://bob@db:port/shop'}\ndestination: {url: lake}\n",
        ),
        ["field 'source.url'", "not a valid database URL"],
        id="url-bad-port",
    ),
    pytest.param(
        "env_url_bad_port",
        _job(
            "env_url_bad_port",
            head="source: {url: '${COPYJOB_TEST_BAD_URL}'}\ndestination: {url: lake}\n",
        ),
        ["field 'source.url'", "not a valid database URL"],
        id="env-url-with-password-bad-port",
    ),
    pytest.param(
        "unknown_dialect",
        _job(
            "unknown_dialect",
            head="source: {url: 'postgress://db/shop'}\ndestination: {url: lake}\n",
        ),
        ["field 'source.url'", "unknown database dialect 'postgress'"],
        id="unknown-dialect",
    ),
]


@pytest.fixture(scope="module")
def bad_folder_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> subprocess.CompletedProcess[str]:
    jobs_dir = tmp_path_factory.mktemp("bad") / "jobs"
    jobs_dir.mkdir()
    for param in BAD_JOBS:
        stem, content, _ = param.values
        path = jobs_dir / f"{stem}.yaml"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return run_validate(
        jobs_dir,
        COPYJOB_TEST_BAD_URL=f"postgresql://bob:{SECRET}@db:port/shop",
        PW="from-env",
    )


@pytest.mark.parametrize(("stem", "content", "expected"), BAD_JOBS)
def test_bad_job_is_refused_clearly(
    bad_folder_run: subprocess.CompletedProcess[str],
    stem: str,
    content: str | bytes,
    expected: list[str],
    bad_inputs: BadInputTally,
) -> None:
    lines = [line for line in bad_folder_run.stderr.splitlines() if f"/{stem}.yaml" in line]
    bad_inputs.refusal(
        f"validate {stem}.yaml",
        any(all(part in line for part in expected) for line in lines)
        and f"ok: {stem}.yaml" not in bad_folder_run.stdout,
    )
    assert lines, f"{stem}.yaml was not refused:\n{bad_folder_run.stdout}"
    assert any(all(part in line for part in expected) for line in lines), "\n".join(lines)
    assert f"ok: {stem}.yaml" not in bad_folder_run.stdout


def test_bad_folder_fails_without_traceback_or_secret(
    bad_folder_run: subprocess.CompletedProcess[str], bad_inputs: BadInputTally
) -> None:
    bad_inputs.leaks(
        "copyjob validate", (bad_folder_run.stdout + bad_folder_run.stderr).count(SECRET)
    )
    assert_clean_failure(bad_folder_run)
    assert SECRET not in bad_folder_run.stdout + bad_folder_run.stderr
    assert f"error: {len(bad_folder_run.stderr.splitlines()) - 1} problem(s)" in (
        bad_folder_run.stderr
    )


def test_valid_folder_passes(tmp_path: Path) -> None:
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    (jobs_dir / "shop.yaml").write_text(
        "name: shop_to_lake\n"
        "source: {url: '${COPYJOB_TEST_SHOP_URL}', schema: main, name: shop_main}\n"
        "destination: {url: 'postgresql+psycopg://${COPYJOB_TEST_USER}:${COPYJOB_TEST_PW}"
        "@localhost/warehouse', schema: staging}\n"
        "mode: incremental\n"
        "schedule: '*/15 * * * *'\n"
        "batch_rows: 1000\n"
        "tables:\n"
        "  - name: orders\n"
        "    columns: [id, customer_id, amount, updated_at]\n"
        "    to: orders_copy\n"
        "    rename: {amount: total_amount}\n"
        "    incremental_column: updated_at\n"
        "    primary_key: [id]\n"
        "    write: merge\n"
        "  - name: customers\n"
        "    incremental_column: updated_at\n"
    )
    (jobs_dir / "lake.yml").write_text(_job("lake_copy"))
    (jobs_dir / "notes.txt").write_text("not a job")
    result = run_validate(
        jobs_dir,
        COPYJOB_TEST_SHOP_URL="sqlite:///shop.db",
        COPYJOB_TEST_USER="loader",
        COPYJOB_TEST_PW=SECRET,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "ok: lake.yml: job 'lake_copy', 1 tables (not connected)" in result.stdout
    assert "ok: shop.yaml: job 'shop_to_lake', 2 tables (not connected)" in result.stdout
    assert SECRET not in result.stdout


def test_one_bad_file_fails_the_run(tmp_path: Path) -> None:
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    (jobs_dir / "good.yaml").write_text(_job("good"))
    (jobs_dir / "bad.yaml").write_text(_job("bad", ORDERS + "batch_rows: -1\nmode: x\n"))
    result = run_validate(jobs_dir)
    assert_clean_failure(result)
    assert result.stdout == "ok: good.yaml: job 'good', 1 tables (not connected)\n"
    bad = jobs_dir / "bad.yaml"
    assert result.stderr.splitlines() == [
        f"invalid: {bad}: job 'bad', field 'mode': should be 'full', 'incremental' or 'cdc'",
        f"invalid: {bad}: job 'bad', field 'batch_rows': should be greater than 0",
        f"error: 2 problem(s) in the job files of {jobs_dir}",
    ]


def test_problems_between_files(tmp_path: Path) -> None:
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    (jobs_dir / "a.yaml").write_text(_job("shop"))
    (jobs_dir / "b.yaml").write_text(_job("shop", "tables:\n  - name: customers\n"))
    other_source = "source: {url: 'sqlite:///elsewhere/shop.db'}\ndestination: {url: lake}\n"
    (jobs_dir / "c.yaml").write_text(_job("other_shop", head=other_source))
    result = run_validate(jobs_dir)
    assert_clean_failure(result)
    assert result.stdout == "ok: a.yaml: job 'shop', 1 tables (not connected)\n"
    stderr = result.stderr
    assert f"{jobs_dir / 'b.yaml'}: job 'shop', field 'name': already used by" in stderr
    assert (
        f"{jobs_dir / 'c.yaml'}: job 'other_shop', table 'orders', field 'to': job 'shop' "
        "(a.yaml) also copies into 'orders'"
    ) in stderr
    assert (
        f"{jobs_dir / 'c.yaml'}: job 'other_shop', field 'source.name': job 'shop' (a.yaml) "
        "reads another database or schema also named 'shop'"
    ) in stderr


@pytest.mark.parametrize(
    ("make_folder", "expected"),
    [
        pytest.param(False, "the copy jobs folder does not exist", id="missing-folder"),
        pytest.param(True, "no job files (.yaml, .yml) to check", id="empty-folder"),
    ],
)
def test_folder_without_jobs(tmp_path: Path, make_folder: bool, expected: str) -> None:
    jobs_dir = tmp_path / "jobs"
    if make_folder:
        jobs_dir.mkdir()
    result = run_validate(jobs_dir)
    assert_clean_failure(result)
    assert f"error: {jobs_dir}: {expected}" in result.stderr


@pytest.fixture
def live_source(tmp_path: Path) -> Path:
    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount REAL, updated_at TEXT)")
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("CREATE TABLE notes (id INTEGER, body TEXT)")
    return path


def test_connect_passes_against_live_source(tmp_path: Path, live_source: Path) -> None:
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    (jobs_dir / "live.yaml").write_text(
        _job(
            "live",
            ORDERS + "    columns: [id, amount]\n    rename: {amount: total}\n"
            "  - name: customers\n",
            head=f"source: {{url: 'sqlite:///{live_source}'}}\n"
            f"destination: {{url: '{tmp_path / 'lake'}'}}\n",
        )
    )
    result = run_validate(jobs_dir, "--connect")
    assert result.returncode == 0, result.stderr
    assert "ok: live.yaml: job 'live', 2 tables (tables, columns and stores checked)" in (
        result.stdout
    )


def test_connect_reports_missing_tables_columns_and_stores(
    tmp_path: Path, live_source: Path
) -> None:
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    unreachable = "postgresql+psycopg://nobody:${COPYJOB_TEST_PW}@127.0.0.1:1/x"
    (jobs_dir / "live.yaml").write_text(
        _job(
            "live",
            "mode: incremental\n"
            "tables:\n"
            "  - name: orders\n    columns: [id, discount, updated]\n"
            "    incremental_column: updated\n"
            "  - name: customers\n    rename: {id: name}\n    incremental_column: id\n"
            "  - name: invoices\n    incremental_column: id\n"
            "  - name: notes\n    incremental_column: id\n    write: merge\n"
            "  - name: customers\n    to: people\n    incremental_column: id\n"
            "    write: merge\n",
            head=f"source: {{url: 'sqlite:///{live_source}'}}\n"
            f"destination: {{url: '{unreachable}'}}\n",
        )
    )
    (jobs_dir / "gone.yaml").write_text(
        _job(
            "gone",
            head=f"source: {{url: '{tmp_path / 'gone'}'}}\n"
            f"destination: {{url: '{tmp_path / 'lake'}'}}\n",
        )
    )
    result = run_validate(jobs_dir, "--connect", COPYJOB_TEST_PW=SECRET)
    assert_clean_failure(result)
    live, gone = jobs_dir / "live.yaml", jobs_dir / "gone.yaml"
    expected = [
        f"{live}: job 'live', table 'orders', field 'columns': the source table has no column "
        "discount, updated (it has: id, amount, updated_at)",
        f"{live}: job 'live', table 'orders', field 'incremental_column': the source table has "
        "no column updated",
        f"{live}: job 'live', table 'customers', field 'rename': several columns would be "
        "named: name",
        f"{live}: job 'live', table 'invoices', field 'name': source sqlite:///{live_source}: "
        "table 'invoices' not found",
        f"{live}: job 'live', table 'notes': write: merge needs a primary_key",
        f"{live}: job 'live', field 'destination.url': destination "
        "postgresql+psycopg://nobody:***@127.0.0.1:1/x: connecting failed",
        f"{gone}: job 'gone', field 'source.url': source folder",
    ]
    for message in expected:
        assert message in result.stderr
    assert "ok: " not in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_connect_writes_nothing_to_a_missing_source_or_destination(tmp_path: Path) -> None:
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    missing_source = tmp_path / "missing.sqlite"
    (jobs_dir / "ghost.yaml").write_text(
        _job(
            "ghost",
            head=f"source: {{url: 'sqlite:///{missing_source}'}}\n"
            f"destination: {{url: '{tmp_path / 'not_yet' / 'lake'}'}}\n",
        )
    )
    result = run_validate(jobs_dir, "--connect")
    assert_clean_failure(result)
    assert "unable to open database file" in result.stderr
    assert not missing_source.exists()  # a source is opened read-only, never created
    assert not (tmp_path / "not_yet").exists()  # checking a destination creates nothing
