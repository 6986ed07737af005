"""PostgreSQL to MariaDB full copies stream the server's CSV into LOAD DATA (`stores.pgmysql`):
every value must load as the Arrow path loads it, and a type without an exact text must take
the Arrow path. Each test checks which path was taken."""

import dataclasses
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from copyjob_dagster import engine
from copyjob_dagster.engine import copying, load_job
from copyjob_dagster.errors import CopyJobError
from copyjob_dagster.stores import CopyChunk, mysqlload

COLUMNS = """
    id bigint PRIMARY KEY, small smallint, whole integer, amount numeric(12,2),
    wide numeric(38,10), label varchar(5), fixed char(3), body text, blob bytea,
    ratio double precision, single real, at timestamp, at_tz timestamptz, day date, flag boolean
"""
CONTROL = "".join(map(chr, range(1, 32)))  # \b \f \v among them: COPY's text format escapes them
ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "small": -32768,
        "whole": 2147483647,
        "amount": Decimal("-12345.67"),
        "wide": Decimal("1234567890123456789012345678.0123456789"),
        "label": 'a,"b"',
        "fixed": "a",
        "body": f'{CONTROL} \\ \\N NULL "q", 😀 \\.',
        "blob": bytes(range(256)),
        "ratio": 0.1 + 0.2,
        "single": 3.4028234663852886e38,
        "at": datetime(1000, 1, 1),
        "at_tz": datetime(2024, 6, 30, 23, 59, 59, 999999, tzinfo=UTC),
        "day": date(9999, 12, 31),
        "flag": True,
    },
    {"id": 2, "label": "NULL", "fixed": "", "body": "", "blob": b"", "ratio": float("nan")},
    {"id": 3},
    {"id": 4, "body": "\\.", "label": "\\N", "ratio": float("inf"), "single": -1e-45},
    {"id": 5, "body": "\r\n", "ratio": float("-inf"), "flag": False},
    {"id": 6, "ratio": -0.0, "at": datetime(9999, 12, 31, 23, 59, 59, 999999)},
    {"id": 7, "ratio": 1.7976931348623157e308, "single": 1.1, "wide": Decimal("-0.0000000001")},
]


@pytest.fixture
def text_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows of each load of the server's CSV (empty: the Arrow path was taken)."""
    loaded: list[int] = []
    original = mysqlload.load_text

    def spy(*args: Any) -> int:
        loaded.append(original(*args))
        return loaded[-1]

    monkeypatch.setattr(mysqlload, "load_text", spy)
    return loaded


class Copy:
    """A PostgreSQL table and a job that copies it (one column renamed) into MariaDB."""

    def __init__(self, pg_url: str, schema: str, mysql_url: str, tmp_path: Path) -> None:
        self.source = sa.create_engine(pg_url)
        self.destination = sa.create_engine(mysql_url)
        with self.source.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE {schema}.items ({COLUMNS})"))
        self.table = sa.Table("items", sa.MetaData(), autoload_with=self.source, schema=schema)
        self.job_file = tmp_path / "job.yaml"
        self.job_file.write_text(
            f"name: text\nmode: full\nbatch_rows: 3\nsource: {{url: '{pg_url}', schema: {schema}}}"
            f"\ndestination: {{url: '{mysql_url}'}}\ntables:\n"
            "  - {name: items, to: copied, rename: {body: text_body}}\n"
        )

    def insert(self, rows: list[dict[str, Any]]) -> None:
        with self.source.begin() as conn:
            conn.execute(
                sa.insert(self.table), [{c.name: None for c in self.table.c} | r for r in rows]
            )

    def run(self, to: str = "copied") -> engine.CopyResult:
        job = load_job(self.job_file)
        table = job.tables[0].model_copy(update={"to": to})
        return engine.copy_table(job, table)

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        with self.destination.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id"))]

    def close(self) -> None:
        self.source.dispose()
        self.destination.dispose()


@pytest.fixture
def copy(pg_server: str, pg_schema: str, mysql_url: str, tmp_path: Path) -> Iterator[Copy]:
    made = Copy(pg_server, pg_schema, mysql_url, tmp_path)
    yield made
    made.close()


def test_every_value_loads_as_the_arrow_path_loads_it(
    copy: Copy, text_loads: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    copy.insert(ROWS)
    result = copy.run()
    assert (result.rows_read, result.rows_written, text_loads) == (7, 7, [7])
    assert result.destination_rows == 7  # the server's report of the load
    monkeypatch.setattr(copying, "spelled_text", lambda *_: None)
    assert copy.run("by_arrow").destination_rows == 7  # Arrow's CSV into LOAD DATA
    assert text_loads == [7]
    copied = copy.rows("copied")
    assert copied == copy.rows("by_arrow")
    first = dict(zip([c.name for c in copy.table.c], copied[0], strict=True))
    assert first["body"] == ROWS[0]["body"] and first["blob"] == bytes(range(256))
    assert first["at_tz"] == datetime(2024, 6, 30, 23, 59, 59, 999999)  # UTC wall time
    assert (first["flag"], first["amount"], first["ratio"]) == (1, Decimal("-12345.67"), 0.1 + 0.2)
    assert [row[9] for row in copied] == [
        0.1 + 0.2,
        None,
        None,
        None,
        None,
        -0.0,
        1.7976931348623157e308,
    ]


def test_an_empty_table_copies_as_an_empty_table(copy: Copy, text_loads: list[int]) -> None:
    assert (copy.run().rows_written, text_loads, copy.rows("copied")) == (0, [0], [])


def test_a_column_without_an_exact_text_sends_the_table_down_the_arrow_path(
    copy: Copy, text_loads: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    with copy.source.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {copy.table.schema}.items ADD span interval"))
    copy.insert([{"id": 1, "body": "x\fy"}])
    with caplog.at_level(logging.DEBUG, logger="copyjob_dagster.engine.passthrough"):
        assert copy.run().rows_written == 1
    assert text_loads == []
    assert "column 'span' (INTERVAL) has no exact LOAD DATA text" in caplog.text
    assert copy.rows("copied")[0][7] == "x\fy"


def test_a_value_mariadb_cannot_hold_fails_the_copy_and_keeps_the_old_table(
    copy: Copy, text_loads: list[int]
) -> None:
    copy.insert([{"id": 1, "body": "kept"}])
    copy.run()
    with copy.source.begin() as conn:
        conn.execute(
            sa.text(f"INSERT INTO {copy.table.schema}.items (id, day) VALUES (2, 'infinity')")
        )
    with pytest.raises(CopyJobError, match="changed or refused values"):
        copy.run()
    assert [row[7] for row in copy.rows("copied")] == ["kept"]
    with copy.destination.connect() as conn:
        assert conn.execute(sa.text("SHOW TABLES")).scalars().all() == ["copied"]


def _non_finite_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    found = sorted(r.getMessage() for r in caplog.records if "NaN or infinite" in r.getMessage())
    caplog.clear()
    return found


def test_nan_and_infinities_are_counted_and_named_as_the_arrow_path_does(
    copy: Copy, text_loads: list[int], caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    copy.insert(
        [
            {"id": 1, "ratio": float("nan"), "single": float("inf")},
            {"id": 2, "ratio": float("-inf"), "single": 2.5},
            {"id": 3, "ratio": 1.5},
            {"id": 4},
        ]
    )
    expected = [
        "column 'ratio': 2 NaN or infinite values written as NULL (MySQL has none)",
        "column 'single': 1 NaN or infinite values written as NULL (MySQL has none)",
    ]
    with caplog.at_level(logging.WARNING, logger="copyjob_dagster"):
        copy.run()
        assert _non_finite_warnings(caplog) == expected
        copy.run()  # the counts are the copy's own, not added to an earlier copy's
        assert _non_finite_warnings(caplog) == expected
        monkeypatch.setattr(copying, "spelled_text", lambda *_: None)
        copy.run("by_arrow")
        assert _non_finite_warnings(caplog) == expected
    assert text_loads == [4, 4]
    assert copy.rows("copied") == copy.rows("by_arrow")
    assert [(row[9], row[10]) for row in copy.rows("copied")] == [
        (None, None),
        (None, 2.5),
        (1.5, None),
        (None, None),
    ]


def _spoiled(spoil: str) -> Any:
    """`copying.text_copy` whose CSV gives its second row the first's key (the server skips
    it, as LOAD DATA LOCAL does), loses its last row on the way, or the last field of its last
    row (the server fills it in), while the rows sent are counted as read."""
    original = copying.text_copy

    def spoiled_text_copy(*args: Any) -> Any:
        made = original(*args)
        chunks = []
        for chunk in made.chunks:
            data = chunk.data
            if spoil == "duplicate":
                data = data.replace(b"\n2,", b"\n1,", 1)
            elif spoil == "lost":
                data = data[: data.rstrip(b"\n").rindex(b"\n") + 1]
            else:
                data = data[: data.rstrip(b"\n").rindex(b",")] + b"\n"
            chunks.append(CopyChunk(data, chunk.num_rows))
        return dataclasses.replace(made, chunks=chunks)

    return spoiled_text_copy


@pytest.mark.parametrize(
    ("spoil", "said"),
    [
        ("duplicate", "refused values: Duplicate entry '1'"),
        ("lost", "sent 3 rows, 2 loaded"),
        ("truncated", "refused values: Row 3 doesn't contain data for all columns"),
    ],
)
def test_a_load_that_skips_loses_or_truncates_a_row_fails_the_copy_and_keeps_the_old_table(
    copy: Copy, text_loads: list[int], monkeypatch: pytest.MonkeyPatch, spoil: str, said: str
) -> None:
    """The copy takes the server's report of the load for the table's row count (no COUNT(*)
    after it): so the load itself must fail where that count would have been short."""
    copy.insert([{"id": 1, "body": "a"}, {"id": 2, "body": "b"}])
    assert copy.run().destination_rows == 2
    copy.insert([{"id": 3, "body": "c"}])
    monkeypatch.setattr(copying, "text_copy", _spoiled(spoil))
    with pytest.raises(CopyJobError, match=said):
        copy.run()
    assert [row[7] for row in copy.rows("copied")] == ["a", "b"]
    with copy.destination.connect() as conn:
        assert conn.execute(sa.text("SHOW TABLES")).scalars().all() == ["copied"]
