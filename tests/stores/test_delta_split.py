"""A Delta source read in parts (`split:`): every part reads the one table version the copy
opened, and the copy holds exactly that version's rows, each once."""

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine import copy_table
from copyjob_dagster.engine.splitting import SplitPlan, open_reader
from copyjob_dagster.stores import open_source
from copyjob_dagster.stores.validation import store_problems

START = datetime(2026, 1, 1, tzinfo=UTC)


def events(ids: list[int | None], at: int = 0) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "payload": [f"row {i}" for i in ids],
            "seen_at": [START + timedelta(minutes=(i or 0) + at) for i in ids],
        }
    )


def lake_with_versions(lake: Path) -> None:
    """Three commits, so the table has several files, one of them holding a NULL id."""
    path = str(lake / "events")
    write_deltalake(path, events(list(range(1, 21))))
    write_deltalake(path, events([*range(21, 41), None]), mode="append")
    write_deltalake(path, events(list(range(41, 61))), mode="append")


def lake_job(tmp_path: Path, split: dict[str, Any], **table: Any) -> CopyJob:
    return CopyJob.model_validate(
        {
            "name": "from_lake",
            "mode": "incremental" if "incremental_column" in table else "full",
            "source": {"url": f"delta:///{tmp_path / 'lake'}"},
            "destination": {"url": f"sqlite:///{tmp_path / 'copy.sqlite'}"},
            "batch_rows": 7,
            "tables": [{"name": "events", "split": split, **table}],
        }
    )


def copied(tmp_path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tmp_path / "copy.sqlite") as db:
        return db.execute("SELECT id, payload FROM events ORDER BY id").fetchall()


def version_rows(tmp_path: Path, version: int | None = None) -> list[tuple[Any, ...]]:
    data = DeltaTable(str(tmp_path / "lake" / "events"), version=version).to_pyarrow_table()
    pairs = zip(data["id"].to_pylist(), data["payload"].to_pylist(), strict=True)
    return sorted(pairs, key=lambda row: (row[0] is not None, row[0]))


@pytest.mark.parametrize("column", ["id", "seen_at"])
def test_a_split_delta_copy_holds_every_row_of_the_version_once(
    tmp_path: Path, column: str
) -> None:
    lake_with_versions(tmp_path / "lake")
    job = lake_job(tmp_path, {"column": column, "parts": 3})
    assert list(store_problems(job)) == []

    result = copy_table(job, job.tables[0])

    assert result.parts == 3
    assert result.source_version == 2
    assert result.rows_read == result.rows_written == 61
    assert copied(tmp_path) == version_rows(tmp_path)


def test_an_incremental_split_reads_each_window_once(tmp_path: Path) -> None:
    lake_with_versions(tmp_path / "lake")
    job = lake_job(tmp_path, {"column": "id", "parts": 2}, incremental_column="seen_at")
    first = copy_table(job, job.tables[0])
    write_deltalake(str(tmp_path / "lake" / "events"), events(list(range(61, 81))), mode="append")

    second = copy_table(job, job.tables[0], first.watermark)

    assert (first.parts, second.parts) == (2, 2)
    assert second.source_version == 3
    assert second.rows_read == 20  # the new rows; the one at the watermark is unchanged
    assert copied(tmp_path) == version_rows(tmp_path)


def test_every_part_reads_the_version_opened_even_after_later_commits(tmp_path: Path) -> None:
    lake_with_versions(tmp_path / "lake")
    source = open_source(lake_job(tmp_path, {"parts": 3}).source)
    path = str(tmp_path / "lake" / "events")
    with open_reader(source, "events", SplitPlan("id", 3)) as reader:
        # Before the parts read a row: one commit replaces the table, another adds to it.
        write_deltalake(path, events(list(range(500, 510))), mode="overwrite")
        write_deltalake(path, events([None, 999]), mode="append")
        data = pa.Table.from_batches(list(reader.batches(["id", "payload"], 5)))

    assert reader.version == 2
    read = sorted(
        zip(data["id"].to_pylist(), data["payload"].to_pylist(), strict=True),
        key=lambda row: (row[0] is not None, row[0]),
    )
    assert read == version_rows(tmp_path, version=2)


def test_a_split_of_a_copy_by_the_change_feed_is_named(tmp_path: Path) -> None:
    job = lake_job(tmp_path, {"parts": 2}, primary_key=["id"])
    job = job.model_copy(update={"mode": "incremental"})  # no incremental_column: the feed

    problems = [(p.loc, str(p)) for p in store_problems(job)]

    assert len(problems) == 1
    assert problems[0][0] == ("tables", 0, "split")
    assert "change data feed" in problems[0][1] and "remove `split:`" in problems[0][1]
