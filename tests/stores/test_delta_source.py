"""A Delta merge reads only the files its window's keys can reach (delta_source): a file of
keys outside the window's range is never opened, so a merge of the newest rows does not read,
join and rewrite the whole table."""

import sqlite3
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable

from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine import copy_table
from copyjob_dagster.stores.delta import TARGET_FILE_BYTES
from copyjob_dagster.stores.delta_source import KeyRange


def lake_job(tmp_path: Path, key_type: str) -> tuple[CopyJob, Path]:
    source = tmp_path / "source.sqlite"
    with sqlite3.connect(source) as db:
        db.execute(f"CREATE TABLE events (id {key_type} PRIMARY KEY, payload TEXT, updated_at INT)")
    job = CopyJob.model_validate(
        {
            "name": "lake",
            "mode": "incremental",
            "source": {"url": f"sqlite:///{source}"},
            "destination": {"url": f"delta:///{tmp_path / 'lake'}"},
            "tables": [{"name": "events", "incremental_column": "updated_at", "write": "merge"}],
        }
    )
    return job, source


def execute(source: Path, sql: str, rows: list[tuple[Any, ...]] | None = None) -> None:
    with sqlite3.connect(source) as db:
        if rows is None:
            db.execute(sql)
        else:
            db.executemany(sql, rows)


def test_a_merge_never_opens_a_file_outside_its_keys_range(tmp_path: Path) -> None:
    job, source = lake_job(tmp_path, "INTEGER")
    watermark = None
    for start in (1, 11, 21):  # three runs: three files, of ids 1-10, 11-20 and 21-30
        rows = [(i, f"row {i}", i) for i in range(start, start + 10)]
        execute(source, "INSERT INTO events VALUES (?, ?, ?)", rows)
        watermark = copy_table(job, job.tables[0], watermark).watermark
    path = tmp_path / "lake" / "events"
    table = DeltaTable(str(path))
    assert table.metadata().configuration["delta.targetFileSize"] == str(TARGET_FILE_BYTES)
    actions = pa.table(table.get_add_actions(flatten=True)).to_pydict()
    oldest = next(p for p, low in zip(actions["path"], actions["min.id"], strict=True) if low == 1)
    # The file of ids 1-10 made unreadable: a merge that opened it would fail.
    saved = (path / oldest).read_bytes()
    (path / oldest).write_bytes(b"\0" * len(saved))
    execute(source, "UPDATE events SET payload = 'changed', updated_at = 100 WHERE id IN (22, 25)")
    execute(source, "INSERT INTO events VALUES (31, 'new', 101)")

    result = copy_table(job, job.tables[0], watermark)

    (path / oldest).write_bytes(saved)
    assert result.commit.inserted == 1
    data = DeltaTable(str(path)).to_pyarrow_table().sort_by("id").to_pydict()
    with sqlite3.connect(source) as db:
        expected = db.execute("SELECT id, payload FROM events ORDER BY id").fetchall()
    assert list(zip(data["id"], data["payload"], strict=True)) == expected


def test_a_text_key_with_quotes_is_bounded_and_merged(tmp_path: Path) -> None:
    job, source = lake_job(tmp_path, "TEXT")
    names = ["a", "o'brien", "zed", "ß"]
    execute(source, "INSERT INTO events VALUES (?, ?, ?)", [(n, n, 1) for n in names])
    first = copy_table(job, job.tables[0], None)
    execute(source, "UPDATE events SET payload = 'changed', updated_at = 2 WHERE id = 'o''brien'")
    execute(source, "INSERT INTO events VALUES ('b''s', 'new', 2)")

    result = copy_table(job, job.tables[0], first.watermark)

    assert result.commit.inserted == 1
    data = DeltaTable(str(tmp_path / "lake" / "events")).to_pyarrow_table().to_pydict()
    assert sorted(zip(data["id"], data["payload"], strict=True)) == sorted(
        [("a", "a"), ("b's", "new"), ("o'brien", "changed"), ("zed", "zed"), ("ß", "ß")]
    )


def test_the_range_covers_every_batch_and_leaves_out_unordered_columns() -> None:
    keys = KeyRange(["id", "name", "score"])
    for ids, names in (([5, None, 9], ["m", "b'c", None]), ([2, 7], ["x", "a"])):
        keys.add(
            pa.record_batch(
                {"id": ids, "name": names, "score": [1.5] * len(ids)},
            )
        )
    assert keys.predicate("t") == (
        't."id" >= 2 AND t."id" <= 9 AND t."name" >= \'a\' AND t."name" <= \'x\''
    )
    assert KeyRange(["id"]).predicate("t") == ""
