"""PostgreSQL to PostgreSQL copies stream binary COPY bytes; they must be as exact as Arrow's.

Each test copies between two scratch schemas through the engine, checks every value, type and
count, and checks which path was taken, so a passthrough that is wrongly chosen (or wrongly
skipped) fails here.
"""

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import scratch_schema

from copyjob_dagster import engine
from copyjob_dagster.engine import load_job
from copyjob_dagster.stores import pgcopy

COLUMNS = """
    id bigint PRIMARY KEY,
    amount numeric(12,2),
    big numeric,
    label varchar(20),
    body text,
    loose varchar,
    blob bytea,
    doc jsonb,
    ref uuid,
    at timestamp,
    at_tz timestamptz,
    day date,
    ratio double precision,
    flag boolean,
    span interval,
    updated bigint
"""


def _row(i: int, updated: int) -> dict[str, Any]:
    return {
        "id": i,
        "amount": Decimal("-12345.67") if i % 2 else Decimal("0.01"),
        "big": Decimal("123456789012345678901234567890.000000001") * i,
        "label": f"l{i}",
        "body": None if i % 5 == 0 else f'line\none "quoted" \\ back\ttab {i}',
        "loose": "x" * (i % 7),
        "blob": bytes([0, 255, i % 256, 10, 92]),
        "doc": {"i": i, "nested": [1, "two", None]},
        "ref": uuid.UUID(int=i),
        "at": datetime(2024, 1, 1, 0, 0, 0, 123456),
        "at_tz": datetime(2024, 6, 30, 23, 59, 59, 999999, tzinfo=UTC),
        "day": date(1999, 12, 31),
        "ratio": float("nan") if i == 3 else (float("-inf") if i == 4 else i / 3),
        "flag": None if i % 3 == 0 else bool(i % 2),
        "span": "1 mon 2 days 03:04:05.000006",
        "updated": updated,
    }


@pytest.fixture
def schemas(pg_server: str) -> Iterator[tuple[str, str]]:
    for source in scratch_schema(pg_server, "SCHEMA"):
        for destination in scratch_schema(pg_server, "SCHEMA"):
            yield source, destination


class Copy:
    """A source table and a job copying it (with a column left out and one renamed)."""

    def __init__(self, url: str, schemas: tuple[str, str], tmp_path: Path, **table: str) -> None:
        self.url, (self.source, self.destination) = url, schemas
        self.engine = sa.create_engine(url)
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE {self.source}.items ({COLUMNS})"))
        options = "".join(f", {key}: {value}" for key, value in table.items())
        job_file = tmp_path / "job.yaml"
        job_file.write_text(
            f"name: pt\nmode: {'incremental' if 'incremental_column' in table else 'full'}\n"
            f"batch_rows: 7\nsource: {{url: '{url}', schema: {self.source}}}\n"
            f"destination: {{url: '{url}', schema: {self.destination}}}\n"
            "tables:\n  - {name: items, to: copied, rename: {body: text_body}, "
            f"columns: [id, amount, big, label, body, loose, blob, doc, ref, at, at_tz, day, ratio,"
            f" flag, span, updated]{options}}}\n"
        )
        self.job = load_job(job_file)

    def insert(self, rows: list[dict[str, Any]]) -> None:
        table = sa.Table("items", sa.MetaData(), autoload_with=self.engine, schema=self.source)
        with self.engine.begin() as conn:
            conn.execute(sa.insert(table), rows)

    def update(self, ids: list[int], updated: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    f"UPDATE {self.source}.items SET label = 'changed', updated = :u "
                    "WHERE id = ANY(:ids)"
                ),
                {"u": updated, "ids": ids},
            )

    def run(self, watermark: Any = None) -> engine.CopyResult:
        return engine.copy_table(self.job, self.job.tables[0], watermark)

    def rows(self, schema: str, table: str, body: str) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            # Text forms compare NaN, JSON and intervals exactly.
            return conn.execute(
                sa.text(
                    f"SELECT id, amount::text, big::text, label, {body}, loose, blob, doc::text, "
                    f"ref, at, at_tz, day, ratio::text, flag, span::text, updated "
                    f"FROM {schema}.{table} ORDER BY id"
                )
            ).all()

    def assert_copied(self) -> None:
        assert self.rows(self.destination, "copied", "text_body") == self.rows(
            self.source, "items", "body"
        )

    def column_types(self, schema: str, table: str) -> dict[str, str]:
        with self.engine.connect() as conn:
            return dict(
                conn.execute(
                    sa.text(
                        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                        "WHERE attrelid = to_regclass(:t) AND attnum > 0 AND NOT attisdropped"
                    ),
                    {"t": f"{schema}.{table}"},
                ).all()
            )


@pytest.fixture
def binary_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The row counts of each binary COPY written (empty: the Arrow path was taken)."""
    written: list[int] = []
    original = pgcopy.write_binary

    def spy(*args: Any) -> int:
        written.append(original(*args))
        return written[-1]

    monkeypatch.setattr(pgcopy, "write_binary", spy)
    return written


def test_a_full_copy_streams_exact_values_with_renames(
    pg_server: str, schemas: tuple[str, str], tmp_path: Path, binary_writes: list[int]
) -> None:
    copy = Copy(pg_server, schemas, tmp_path)
    copy.insert([_row(i, i) for i in range(1, 31)])
    seen: list[int] = []
    job_table = copy.job.tables[0]
    result = engine.copy_table(copy.job, job_table, progress=lambda rows, *_: seen.append(rows))
    assert (result.rows_read, result.rows_written, binary_writes) == (30, 30, [30])
    assert seen == sorted(seen) and seen[-1] == 30 and len(seen) > 3  # a report per chunk
    copy.assert_copied()
    source_types = copy.column_types(copy.source, "items")
    copied_types = copy.column_types(copy.destination, "copied")
    source_types["text_body"] = source_types.pop("body")
    source_types["loose"] = "text"  # as on the Arrow path: same values, same binary form
    assert copied_types == source_types


def test_an_empty_table_copies_as_an_empty_table(
    pg_server: str, schemas: tuple[str, str], tmp_path: Path, binary_writes: list[int]
) -> None:
    result = Copy(pg_server, schemas, tmp_path).run()
    assert (result.rows_written, binary_writes) == (0, [0])


def test_a_type_that_would_change_takes_the_arrow_path(
    pg_server: str, schemas: tuple[str, str], tmp_path: Path, binary_writes: list[int]
) -> None:
    copy = Copy(pg_server, schemas, tmp_path)
    with copy.engine.begin() as conn:  # char(n) becomes varchar(n): binary COPY would refuse it
        conn.execute(sa.text(f"ALTER TABLE {copy.source}.items ALTER label TYPE char(20)"))
    copy.insert([_row(i, i) for i in range(1, 6)])
    result = copy.run()
    assert (result.rows_written, binary_writes) == (5, [])
    copy.assert_copied()


@pytest.mark.parametrize("write", ["append", "merge"])
def test_incremental_windows_stream_once_and_rerun_idempotently(
    pg_server: str,
    schemas: tuple[str, str],
    tmp_path: Path,
    binary_writes: list[int],
    write: str,
) -> None:
    copy = Copy(
        pg_server, schemas, tmp_path, incremental_column="updated", write=write, primary_key="[id]"
    )
    copy.insert([_row(i, i // 3) for i in range(1, 21)])  # three rows a value: ties
    first = copy.run()
    assert (first.rows_written, first.watermark.value) == (20, 6)

    copy.insert([_row(i, 6 + i // 25) for i in range(21, 31)])  # ties with the watermark
    if write == "merge":
        copy.update([1, 2], 9)
    second = copy.run(first.watermark)
    assert (second.window.low, second.window.low_inclusive) == (6, True)  # late ties re-read
    with copy.engine.connect() as conn:
        in_window = f"SELECT count(*) FROM {copy.source}.items WHERE updated >= 6"
        assert second.rows_written == conn.execute(sa.text(in_window)).scalar()
    again = copy.run(first.watermark)  # the same window again: nothing changes
    assert again.rows_written == second.rows_written
    nothing = copy.run(again.watermark)  # nothing new: no write at all
    assert nothing.rows_written == 0
    assert binary_writes == [20, second.rows_written, again.rows_written]
    with copy.engine.connect() as conn:
        count = conn.execute(sa.text(f"SELECT count(*) FROM {copy.destination}.copied"))
        assert count.scalar() == 30
    copy.assert_copied()  # every value, the updated rows' new ones included
