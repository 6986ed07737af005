"""SQLite keeps a NUMERIC(p, s) value with more places than `s` as it was written (3.001 in a
NUMERIC(12, 2)); copies round such a value to the column's scale. A window's upper bound must
still not fall below it: rounded down, `cursor <= 3.00` would leave the row out of every run,
since the next run sees no value above the watermark (found by review, 2026-12-06)."""

import sqlite3
from pathlib import Path

from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine import copy_table


def _source(path: Path, values: list[str]) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, v NUMERIC(12, 2), name TEXT)")
        db.executemany(
            "INSERT INTO events (v, name) VALUES (?, ?)", [(v, f"row {v}") for v in values]
        )


def _copied(path: Path) -> list[int]:
    with sqlite3.connect(path) as db:
        return sorted(row[0] for row in db.execute("SELECT id FROM events"))


def _job(tmp_path: Path, table: dict) -> CopyJob:
    return CopyJob.model_validate(
        {
            "name": "bounds",
            "mode": "incremental",
            "source": {"url": f"sqlite:///{tmp_path / 'source.sqlite'}"},
            "destination": {"url": f"sqlite:///{tmp_path / 'copy.sqlite'}"},
            "tables": [{"name": "events", "primary_key": ["id"], **table}],
        }
    )


def test_a_cursor_value_with_more_places_than_its_scale_is_copied(tmp_path: Path) -> None:
    _source(tmp_path / "source.sqlite", ["1.25", "2.5", "3.001"])
    job = _job(tmp_path, {"incremental_column": "v", "write": "merge"})
    watermark = None
    for _ in range(2):
        watermark = copy_table(job, job.tables[0], watermark).watermark
    assert _copied(tmp_path / "copy.sqlite") == [1, 2, 3]
