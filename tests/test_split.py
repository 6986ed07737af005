"""Split copies: a table read as key ranges in parallel still copies every row once, from one
moment of the source, and a user's mistake in `split:` is named before anything runs."""

from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import sqlalchemy as sa

from copyjob_dagster.config import CopyJob
from copyjob_dagster.defs.metadata import PARTS, copy_metadata
from copyjob_dagster.engine import copy_table, load_job, splitting
from copyjob_dagster.engine.dryrun import plan_table
from copyjob_dagster.errors import ConfigError, SchemaError, SourceError
from copyjob_dagster.stores.base import TableDescription
from copyjob_dagster.stores.pgcopy import PostgresTableReader

ROWS = 3000


def _fill(url: str, schema: str | None) -> sa.Table:
    """`items`: a key, a nullable split column with NULLs, text, a decimal, a timestamp."""
    engine = sa.create_engine(url)
    items = sa.Table(
        "items",
        sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("bucket", sa.Integer, nullable=True),
        sa.Column("name", sa.String(40)),
        sa.Column("price", sa.Numeric(12, 2)),
        sa.Column("at", sa.DateTime),
        schema=schema,
    )
    with engine.begin() as conn:
        items.create(conn)
        conn.execute(
            sa.insert(items),
            [
                {
                    "id": i,
                    "bucket": None if i % 7 == 0 else i % 100,
                    "name": f"item {i} é",
                    "price": f"{i}.{i % 100:02d}",
                    "at": f"2024-01-{1 + i % 28:02d} 10:{i % 60:02d}:00",
                }
                for i in range(1, ROWS + 1)
            ],
        )
    engine.dispose()
    return items


def _job(url: str, schema: str | None, folder: Path, split: dict[str, Any] | None) -> CopyJob:
    table: dict[str, Any] = {"name": "items"}
    if split is not None:
        table["split"] = split
    source = {"url": url, **({"schema": schema} if schema else {})}
    return CopyJob.model_validate(
        {
            "name": "split",
            "source": source,
            "destination": {"url": str(folder)},
            "batch_rows": 200,
            "tables": [table],
        }
    )


def _copied(folder: Path) -> list[dict[str, Any]]:
    rows = ds.dataset(folder / "items.parquet").to_table().to_pylist()
    return sorted(rows, key=lambda row: row["id"])


@pytest.fixture(params=["postgres", "mariadb"])
def source(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    if request.param == "postgres":
        return request.getfixturevalue("pg_server"), request.getfixturevalue("pg_schema")
    return request.getfixturevalue("mysql_url"), None


def test_a_split_copy_equals_a_single_stream_copy_as_of_one_moment(
    tmp_path: Path, source: tuple[str, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Split on a column with NULLs; rows inserted and deleted once the parts' snapshot is
    taken (as the ranges are computed) are not in the copy."""
    url, schema = source
    items = _fill(url, schema)
    single = _job(url, schema, tmp_path / "single", None)
    copy_table(single, single.tables[0])

    ranges = splitting.key_ranges

    def meanwhile(*args: Any) -> Any:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.insert(items), {"id": ROWS + 1, "bucket": 99, "name": "late"})
            conn.execute(sa.delete(items).where(items.c.id.in_([1, ROWS])))
        engine.dispose()
        return ranges(*args)

    monkeypatch.setattr(splitting, "key_ranges", meanwhile)
    split = _job(url, schema, tmp_path / "split", {"parts": 3, "column": "bucket"})
    result = copy_table(split, split.tables[0])

    assert result.parts == 3
    assert plan_table(split, split.tables[0], None).parts == 3  # what `copyjob plan` shows
    assert result.rows_written == ROWS
    assert _copied(tmp_path / "split") == _copied(tmp_path / "single")


def test_an_incremental_split_copies_each_window_once(
    tmp_path: Path, pg_server: str, pg_schema: str
) -> None:
    items = _fill(pg_server, pg_schema)
    job = CopyJob.model_validate(
        {
            "name": "split",
            "mode": "incremental",
            "source": {"url": pg_server, "schema": pg_schema},
            "destination": {"url": f"sqlite:///{tmp_path / 'copy.sqlite'}"},
            "batch_rows": 200,
            "tables": [{"name": "items", "incremental_column": "id", "split": {"parts": 3}}],
        }
    )
    first = copy_table(job, job.tables[0])
    engine = sa.create_engine(pg_server)
    with engine.begin() as conn:
        new = [{"id": i, "bucket": None, "name": f"new {i}"} for i in range(ROWS + 1, ROWS + 601)]
        conn.execute(sa.insert(items), new)
    engine.dispose()
    second = copy_table(job, job.tables[0], watermark=first.watermark)

    assert (first.parts, second.parts) == (3, 3)
    assert copy_metadata(second, dg.AssetKey(["source", "items"]))[PARTS].value == 3
    assert (first.rows_written, second.rows_written) == (ROWS, 600)
    assert second.watermark is not None and second.watermark.text == str(ROWS + 600)
    copy = sa.create_engine(f"sqlite:///{tmp_path / 'copy.sqlite'}")
    with copy.connect() as conn:
        ids = [row[0] for row in conn.execute(sa.text("SELECT id FROM items ORDER BY id"))]
    copy.dispose()
    assert ids == list(range(1, ROWS + 601))


def test_a_part_that_fails_fails_the_copy_and_writes_nothing(
    tmp_path: Path, pg_server: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(pg_server, pg_schema)
    batches = PostgresTableReader.batches

    def cut_after_one_batch(self: Any, *args: Any, **kwargs: Any) -> Any:
        stream = batches(self, *args, **kwargs)
        yield next(stream)
        part = kwargs.get("part", args[3] if len(args) > 3 else None)
        if part is not None and part.low is not None:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        yield from stream

    monkeypatch.setattr(PostgresTableReader, "batches", cut_after_one_batch)
    job = _job(pg_server, pg_schema, tmp_path / "lake", {"parts": 3})
    with pytest.raises(SourceError, match="server closed the connection"):
        copy_table(job, job.tables[0])
    assert not (tmp_path / "lake" / "items.parquet").exists()


def test_split_mistakes_are_named(tmp_path: Path) -> None:
    job_file = tmp_path / "lake.yaml"
    job_file.write_text(
        "name: lake\nsource: {url: 'sqlite:///x.sqlite'}\ndestination: {url: out}\n"
        "tables:\n  - {name: items, split: {parts: 4}}\n"
    )
    with pytest.raises(ConfigError, match=r"field 'split'.*PostgreSQL or MySQL"):
        load_job(job_file)
    job_file.write_text(
        "name: lake\nsource: {url: 'postgresql+psycopg://h/db', max_connections: 2}\n"
        "destination: {url: out}\ntables:\n  - {name: items, split: {parts: 4}}\n"
    )
    with pytest.raises(ConfigError, match=r"split\.parts.*max_connections \(2\)"):
        load_job(job_file)
    job_file.write_text(job_file.read_text().replace("parts: 4", "parts: 1"))
    with pytest.raises(ConfigError, match=r"'split\.parts': should be a number of parts, 2 or"):
        load_job(job_file)

    job = _job("postgresql+psycopg://h/db", None, tmp_path, {"parts": 2})
    text_key = TableDescription("items", pa.schema([("code", pa.string())]), ("code",))
    with pytest.raises(SchemaError, match="'code' holds string values; a split needs an integer"):
        splitting.plan_split(job, job.tables[0], text_key)


@pytest.mark.parametrize(
    ("low", "high"),
    [(1, 10), (5, 6), (-3, 1_000_000_007)],
    ids=["small", "narrower-than-parts", "wide"],
)
def test_key_ranges_cover_every_value_once(low: int, high: int) -> None:
    parts = splitting.key_ranges("id", low, high, 4)
    assert parts[0].low is None and parts[-1].high is None and parts[0].nulls
    assert [p.high for p in parts[:-1]] == [p.low for p in parts[1:]]
    assert all(p.low < p.high for p in parts[1:-1]) and not any(p.nulls for p in parts[1:])
