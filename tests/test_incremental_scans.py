"""What an incremental run costs at the source when its incremental column has no index: each
query of the run reads the whole table, so the run asks as few as its guarantees allow.

The figures are PostgreSQL's own count of sequential scans of the source table
(`pg_stat_user_tables.seq_scan`). A run with new rows reads the table twice when the rows at the
watermark's value changed in number (one aggregate for the window's bounds, NULLs and counts;
the window itself), three times when they did not (their fingerprint is read to tell an edit);
the fingerprint of the new watermark's rows is taken from the window's own rows. Each run's
rows land once, and the watermark's fingerprint is the one a read of the rows at its value gives.
"""

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from test_late_commits import scratch_database

from copyjob_dagster.config import CopyJob, StoreConfig
from copyjob_dagster.engine import Watermark, copy_table, plan_copy
from copyjob_dagster.engine.late_commits import CLOCK_MARGIN
from copyjob_dagster.engine.windows import fingerprint
from copyjob_dagster.stores import open_source
from copyjob_dagster.stores.base import CursorProfile

INSERT = (
    "INSERT INTO {schema}.events SELECT g, 'row ' || g, g * 1.25, "
    "timestamptz '2024-01-01' + g * interval '1 second' "
    "FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) g"
)


class Source:
    """An `events` table without an index on its incremental column, copied to SQLite."""

    def __init__(self, pg_server: str, schema: str, tmp_path: Path) -> None:
        self.engine = sa.create_engine(pg_server)
        self.schema = schema
        self.destination = tmp_path / "copy.sqlite"
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    f"CREATE TABLE {schema}.events (id integer PRIMARY KEY, name text, "
                    f"amount numeric(12, 2), updated_at timestamptz)"
                )
            )
        self.job = CopyJob.model_validate(
            {
                "name": "scans",
                "mode": "incremental",
                "source": {"url": pg_server, "schema": schema},
                "destination": {"url": f"sqlite:///{self.destination}"},
                "batch_rows": 50,
                "tables": [
                    {
                        "name": "events",
                        "incremental_column": "updated_at",
                        "primary_key": ["id"],
                        "write": "merge",
                    }
                ],
            }
        )

    def execute(self, statement: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(statement.format(schema=self.schema)), values)

    def scans(self) -> int:
        """The table's sequential scans so far, once the sessions that read it have reported
        them (a session reports when it ends, and the copy ends its own): the count has stayed
        the same for a second."""
        counted, settled = -1, 0
        for _ in range(100):
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
                now = conn.execute(
                    sa.text(
                        "SELECT seq_scan FROM pg_stat_user_tables "
                        "WHERE schemaname = :schema AND relname = 'events'"
                    ),
                    {"schema": self.schema},
                ).scalar_one()
            settled = settled + 1 if now == counted else 0
            if settled == 10:
                return now
            counted = now
            time.sleep(0.1)
        return counted

    def copy(self, watermark: Watermark | None, **options: Any) -> tuple[Any, int]:
        """A run from `watermark`: its result and the table's scans it took."""
        before = self.scans()
        result = copy_table(self.job, self.job.tables[0], watermark, **options)
        return result, self.scans() - before

    def fingerprint_read(self, watermark: Watermark) -> tuple[int, str]:
        """The fingerprint at the watermark's value as a read of those rows gives it."""
        source = open_source(self.job.source)
        try:
            plan = plan_copy(self.job, self.job.tables[0], source.describe("events"))
            with source.open_reader("events") as reader:
                return fingerprint(reader, plan, watermark.value)
        finally:
            source.close()

    def copied(self) -> list[tuple[Any, ...]]:
        engine = sa.create_engine(f"sqlite:///{self.destination}")
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, name, updated_at FROM events ORDER BY id"))
            found = [tuple(row) for row in rows]
        engine.dispose()
        return found


@pytest.fixture
def source(pg_server: str, pg_schema: str, tmp_path: Path) -> Iterator[Source]:
    made = Source(pg_server, pg_schema, tmp_path)
    yield made
    made.engine.dispose()


def _recorded(source: Source, result: Any) -> None:
    """The run's watermark carries the fingerprint that a read of its rows gives."""
    watermark = result.watermark
    assert (watermark.rows_at_value, watermark.fingerprint) == source.fingerprint_read(watermark)


def test_new_rows_cost_the_window_and_one_aggregate_plus_the_tie_check(source: Source) -> None:
    source.execute(INSERT, first=1, last=300)
    first, _ = source.copy(None)
    assert first.watermark.rows_at_value == 1
    source.execute(INSERT, first=301, last=420)
    progress: list[tuple[int, int | None]] = []
    second, scans = source.copy(first.watermark, progress=lambda r, e, s: progress.append((r, e)))
    # The aggregate, the fingerprint of the one row at the old watermark (unchanged), the
    # window; before: two profile queries, the fingerprint, a count for progress, the window,
    # and the fingerprint of the new watermark's rows.
    assert scans == 3
    assert second.rows_written == 120 and progress[-1] == (120, 120)
    assert len(source.copied()) == 420 == len({row[0] for row in source.copied()})

    third, scans = source.copy(second.watermark)  # nothing new: the aggregate and the tie check
    assert scans == 2 and third.rows_written == 0 and third.watermark == second.watermark
    _recorded(source, first)  # read last: a read is a scan of its own
    _recorded(source, second)


def test_rows_that_arrive_at_the_watermark_cost_the_window_and_one_aggregate(
    source: Source,
) -> None:
    source.execute(INSERT, first=1, last=300)
    first, _ = source.copy(None)
    # A late row with the watermark's very value, and newer rows: the count at the value
    # differs, so no fingerprint need be read to know the window starts at the value.
    source.execute(
        "INSERT INTO {schema}.events VALUES (1000, 'late', 1, :at)", at=first.watermark.value
    )
    source.execute(INSERT, first=301, last=310)
    second, scans = source.copy(first.watermark)
    assert scans == 2
    assert second.window.low_inclusive and second.rows_written == 12  # the two at the value too
    _recorded(source, second)
    copied = source.copied()
    assert len(copied) == 311 == len({row[0] for row in copied})
    assert (1000, "late") in {row[:2] for row in copied}


def test_a_watermark_held_at_its_value_keeps_the_fingerprint_of_the_rows_there(
    pg_server: str, tmp_path: Path
) -> None:
    """An open transaction holds the watermark at the last run's value: the window leaves the
    rows there out (unchanged), so the watermark keeps their fingerprint, not the window's."""
    with scratch_database(pg_server) as url:
        engine = sa.create_engine(url)
        source = Source(url, "public", tmp_path)
        try:
            open_since = engine.connect()
            started = open_since.exec_driver_sql("SELECT now()").scalar_one()
            held_at = started - CLOCK_MARGIN  # where the open transaction holds the watermark
            source.execute(INSERT, first=1, last=30)
            for row in (31, 32):  # two rows at the value it will be held at
                source.execute(
                    "INSERT INTO {schema}.events VALUES (:id, 'held', 2, :at)", id=row, at=held_at
                )
            first, _ = source.copy(None)
            assert first.watermark.value == held_at and first.watermark.rows_at_value == 2
            source.execute(
                "INSERT INTO {schema}.events VALUES (40, 'new', 3, :at)",
                at=started + timedelta(hours=1),
            )
            second, _ = source.copy(first.watermark)
            assert not second.window.low_inclusive and second.rows_written == 1
            assert second.watermark == first.watermark  # held: the two rows' fingerprint
            _recorded(source, second)
            open_since.rollback()
            open_since.close()
            third, _ = source.copy(second.watermark)  # nothing holds it: no row read again
            assert not third.window.low_inclusive and third.rows_written == 1
            assert third.watermark.value > held_at
            assert len(source.copied()) == 33 == len({row[0] for row in source.copied()})
        finally:
            source.engine.dispose()
            engine.dispose()


@pytest.mark.parametrize("store", ["sqlite", "parquet"])
def test_the_one_aggregate_says_what_the_window_holds(tmp_path: Path, store: str) -> None:
    """NULLs, the maximum, the rows at or above the watermark and at it: what the window and
    the tie check are planned from, from SQLite's aggregate and a Parquet folder's scan."""
    rows = pa.table(
        {
            "id": pa.array(range(8), pa.int64()),
            "at": pa.array([1, 2, 3, 3, 3, None, 5, None], pa.int64()),
        }
    )
    if store == "sqlite":
        url = f"sqlite:///{tmp_path / 'source.sqlite'}"
        with sa.create_engine(url).begin() as conn:
            conn.execute(sa.text("CREATE TABLE events (id INTEGER PRIMARY KEY, at INTEGER)"))
            conn.execute(sa.text("INSERT INTO events VALUES (:id, :at)"), rows.to_pylist())
    else:
        url = str(tmp_path / "files")
        (tmp_path / "files" / "events").mkdir(parents=True)
        pq.write_table(rows, tmp_path / "files" / "events" / "part.parquet")
    source = open_source(StoreConfig(url=url))
    try:
        with source.open_reader("events") as reader:
            assert reader.profile("at", 3) == CursorProfile(2, 5, rows=4, rows_at_low=3)
            assert reader.profile("at", 6) == CursorProfile(2, None, rows=0, rows_at_low=0)
            assert reader.profile("at", None) == CursorProfile(2, 5, rows=6, rows_at_low=0)
    finally:
        source.close()
