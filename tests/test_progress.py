"""Progress of a copy: the engine's callback, the row estimates it starts from, the log line
that carries it through Dagster's run log, and `copyjob run` drawing it on a terminal.

(Progress written to a pipe, and into the run log of a real run, is checked in test_wizard.py.)
"""

import io
import os
import sqlite3
import sys
from pathlib import Path

import pexpect
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from conftest import make_dagster_home
from rich.console import Console

from copyjob_dagster.cli import watch
from copyjob_dagster.config import CopyJob, StoreConfig
from copyjob_dagster.engine import copy_table, progress
from copyjob_dagster.engine.watermark import Watermark
from copyjob_dagster.stores import open_source
from copyjob_dagster.stores import postgres as postgres_store

COPYJOB = Path(sys.executable).parent / "copyjob"


def _items_job(shop_db: Path, destination: Path, **changes: object) -> CopyJob:
    return CopyJob.model_validate(
        {
            "name": "items",
            "source": {"url": f"sqlite:///{shop_db}"},
            "destination": {"url": str(destination)},
            "batch_rows": 1000,
            "tables": [{"name": "order_items"}],
            **changes,
        }
    )


def _items(shop_db: Path) -> int:
    with sqlite3.connect(shop_db) as db:
        return db.execute("SELECT count(*) FROM order_items").fetchone()[0]


@pytest.mark.parametrize(
    ("report", "text"),
    [
        (
            progress.Progress(12_000, 50_000, 2.0),
            "12,000 of ~50,000 rows (24%) in 2.0 s, 6,000 rows/s, about 6 s left",
        ),
        (progress.Progress(0, 50_000, 0.0), "0 of ~50,000 rows (0%) in 0.0 s"),
        (progress.Progress(7_000, None, 3.5), "7,000 rows in 3.5 s, 2,000 rows/s"),
        (  # the estimate was low: no time left is promised
            progress.Progress(60_000, 50_000, 10.0),
            "60,000 of ~50,000 rows (100%) in 10.0 s, 6,000 rows/s",
        ),
        (
            progress.Progress(100_000, 4_000_000, 10.0),
            "100,000 of ~4,000,000 rows (2%) in 10.0 s, 10,000 rows/s, about 6 min 30 s left",
        ),
    ],
    ids=["midway", "start", "no-estimate", "beyond-estimate", "minutes-left"],
)
def test_progress_reads_for_people_and_parses_back(report: progress.Progress, text: str) -> None:
    assert report.describe() == text
    assert progress.parse(progress.message("orders", report)) == ("orders", report)


def test_other_log_lines_are_not_progress() -> None:
    assert progress.parse("orders → lake/orders.parquet: read 10 rows") is None
    assert progress.parse("progress report follows") is None


def test_progress_log_reports_once_the_copy_ran_an_interval_then_once_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = iter([100.0, 100.5, 101.9, 102.1, 103.0, 104.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    lines: list[str] = []
    log = progress.ProgressLog("orders", lines.append, every_seconds=2.0)
    for rows in (0, 1000, 2000, 3000, 4000, 5000):
        log(rows, 10_000, rows / 1000)
    assert [progress.parse(line)[1].rows for line in lines] == [2000, 5000]


def test_a_table_copied_within_the_interval_logs_no_progress() -> None:
    lines: list[str] = []
    log = progress.ProgressLog("orders", lines.append, every_seconds=2.0)
    for rows in (0, 500, 1000):
        log(rows, 1000, rows / 1000)
    assert lines == []


def test_a_large_table_reports_its_start_at_once() -> None:
    lines: list[str] = []
    log = progress.ProgressLog("orders", lines.append, every_seconds=2.0)
    log(0, progress.REPORT_AT_ONCE_ROWS, 0.0)
    assert [progress.parse(line)[1].rows for line in lines] == [0]


def test_plain_lines_come_at_most_every_few_seconds_per_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = iter([10.0, 11.0, 16.0, 16.5])
    monkeypatch.setattr(watch.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    lines = watch._Lines(Console(file=out, width=200), {"job__orders": "orders"})
    for rows in (0, 100, 600):
        lines.update("job__orders", progress.Progress(rows, 1000, rows / 100))
    lines.update("job__other", progress.Progress(5, 10, 1.0))  # not a table of this run
    lines.done("job__orders", 1000, 9.0)
    assert out.getvalue().splitlines() == [
        "orders: 0 of ~1,000 rows (0%) in 0.0 s",
        "orders: 600 of ~1,000 rows (60%) in 6.0 s, 100 rows/s, about 4 s left",
        "orders: done, 1,000 rows in 9.0 s, 111 rows/s",
    ]


def test_copy_reports_progress_from_the_source_estimate(tmp_path: Path, shop_db: Path) -> None:
    reports: list[tuple[int, int | None, float]] = []
    result = copy_table(
        _items_job(shop_db, tmp_path / "lake"),
        _items_job(shop_db, tmp_path).tables[0],
        progress=lambda *report: reports.append(report),
    )
    total = _items(shop_db)
    assert result.rows_written == total
    assert reports[0][:2] == (0, total)
    counts = [rows for rows, *_ in reports]
    steps = [after - before for before, after in zip(counts, counts[1:], strict=False)]
    assert counts[-1] == total
    assert len(counts) >= total // 1000 + 1  # a report at least every batch of 1,000 rows
    assert all(0 < step <= 1000 for step in steps)
    assert all(estimate == total for _, estimate, _ in reports)
    assert [elapsed for *_, elapsed in reports] == sorted(elapsed for *_, elapsed in reports)


def test_incremental_copy_estimates_its_window(tmp_path: Path, shop_db: Path) -> None:
    job = _items_job(
        shop_db,
        tmp_path / "lake",
        mode="incremental",
        tables=[{"name": "order_items", "incremental_column": "id"}],
    )
    total = _items(shop_db)
    initial: list[tuple[int, int | None, float]] = []
    copy_table(job, job.tables[0], progress=lambda *r: initial.append(r))
    assert initial[0][:2] == (0, total)  # the initial load: the table's estimate

    # Without a fingerprint the watermark's own value is read again: 1,500 rows above it + 1.
    watermark = Watermark("integer", str(total - 1500), -1, "")
    reports: list[tuple[int, int | None, float]] = []
    result = copy_table(job, job.tables[0], watermark, progress=lambda *r: reports.append(r))
    assert result.rows_read == 1501
    assert reports[0][:2] == (0, 1501) and reports[-1][:2] == (1501, 1501)


def test_estimates_of_sqlite_and_parquet_are_exact(tmp_path: Path, shop_db: Path) -> None:
    lake = tmp_path / "lake"
    lake.mkdir()
    pq.write_table(pa.table({"id": list(range(1234))}), lake / "ids.parquet")
    for url, table, rows in [
        (f"sqlite:///{shop_db}", "order_items", _items(shop_db)),
        (str(lake), "ids", 1234),
    ]:
        source = open_source(StoreConfig(url=url))
        try:
            assert source.estimate_rows(table) == rows
        finally:
            source.close()


@pytest.mark.postgres
def test_postgres_estimates_big_tables_from_the_planner(
    pg_server: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = sa.create_engine(pg_server)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE TABLE {pg_schema}."Big Table" (id int)'))
        conn.execute(
            sa.text(f'INSERT INTO {pg_schema}."Big Table" SELECT generate_series(1, 3000)')
        )
    source = open_source(StoreConfig(url=pg_server, schema=pg_schema))
    try:
        assert source.estimate_rows("Big Table") == 3000  # never analyzed: counted
        with engine.begin() as conn:
            conn.execute(sa.text(f'DELETE FROM {pg_schema}."Big Table" WHERE id > 1000'))
            conn.execute(sa.text(f'ANALYZE {pg_schema}."Big Table"'))
            conn.execute(sa.text(f'INSERT INTO {pg_schema}."Big Table" VALUES (0)'))
        monkeypatch.setattr(postgres_store, "EXACT_COUNT_BELOW", 1)
        assert source.estimate_rows("Big Table") == 1000  # the planner's figure, not a count
    finally:
        source.close()
        engine.dispose()


def test_copyjob_run_draws_a_progress_bar_on_a_terminal(tmp_path: Path, shop_db: Path) -> None:
    jobs, home = tmp_path / "jobs", tmp_path / "home"
    jobs.mkdir()
    make_dagster_home(home)
    (jobs / "items.yaml").write_text(
        f"name: items\nsource: {{url: 'sqlite:///{shop_db}'}}\n"
        f"destination: {{url: '{tmp_path / 'lake'}'}}\nbatch_rows: 1000\n"
        f"tables:\n  - name: order_items\n    to: items_copy\n"
    )
    env = {**os.environ, "DAGSTER_HOME": str(home), "COPYJOB_JOBS_DIR": str(jobs)}
    env["TERM"] = "xterm"
    transcript = io.StringIO()
    child = pexpect.spawn(
        str(COPYJOB),
        ["run", "items"],
        env=env,
        cwd=str(tmp_path),
        dimensions=(30, 200),
        encoding="utf-8",
        timeout=120,
    )
    child.logfile_read = transcript
    child.expect(pexpect.EOF)
    child.close()
    shown = transcript.getvalue()
    assert child.exitstatus == 0, shown
    total = f"{_items(shop_db):,}"
    assert "order_items → items_copy" in shown
    assert "━━━" in shown  # the bar
    assert f"{total} rows" in shown and "rows/s" in shown and "done in" in shown
    assert "\x1b[" in shown  # drawn in place, with terminal codes
