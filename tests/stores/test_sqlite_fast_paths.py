"""SQLite's column-wise reader and writer give what the generic per-value path gives: the
reader also for files whose columns hold values of other storage classes than their declared
type, the writer down to each value's storage class and text."""

import sqlite3
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from copyjob_dagster.config import StoreConfig
from copyjob_dagster.errors import SchemaError
from copyjob_dagster.stores import open_destination, open_source
from copyjob_dagster.stores.base import Window
from copyjob_dagster.stores.sql import SqlStore
from copyjob_dagster.stores.sql_reader import SqlTableReader
from copyjob_dagster.stores.sqlite import SQLiteStore

COLUMNS = "id INTEGER, flag BOOLEAN, amount NUMERIC(12,2), at DATETIME, day DATE, score DOUBLE"
# Rows 1-3 are how SQLAlchemy and most programs store values; the others are what other
# programs leave in a file: 2 and 0.5 as booleans, decimals with more places than the scale
# (2.675 is a double just below it: its digits round up), a timestamp with a 'T' or an offset,
# integers in a DOUBLE column.
ROWS = [
    (1, 1, "1234.56", "2024-01-31 12:00:00.123456", "2024-01-31", 1.5),
    (2, 0, "100", "2024-02-29 00:00:00", "2024-02-29", None),
    (3, None, None, None, None, -0.25),
    (4, 2, 0.125, "2024-01-31T12:00:00", "2024-03-01", 7),
    (5, 0.5, "2.675", "2024-01-31 12:00:00+02:00", "2024-03-02", 2.0),
]


def _source(tmp_path: Path, rows: list[tuple[object, ...]]) -> str:
    path = tmp_path / "odd.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE t ({COLUMNS})")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.close()
    return f"sqlite:///{path}"


def _read(url: str, window: Window | None = None) -> tuple[pa.Table, pa.Table]:
    """The table read by the store's reader and by the generic path, in one snapshot."""
    store = open_source(StoreConfig(url=url))
    try:
        columns = store.describe("t").column_names
        with store.open_reader("t") as reader:
            fast = pa.Table.from_batches(list(reader.batches(columns, 2, window)))
            generic = SqlTableReader(store, reader._conn, reader._table)
            slow = pa.Table.from_batches(list(generic.batches(columns, 2, window)))
    finally:
        store.close()
    return fast, slow


def test_values_of_other_storage_classes_read_as_the_generic_path_reads_them(
    tmp_path: Path,
) -> None:
    fast, slow = _read(_source(tmp_path, ROWS))

    assert fast.equals(slow)
    assert fast.column("flag").to_pylist() == [True, False, None, True, True]
    assert fast.column("amount").to_pylist()[3:] == [Decimal("0.12"), Decimal("2.68")]
    assert fast.column("at").to_pylist()[3:] == [
        datetime(2024, 1, 31, 12, 0),
        datetime(2024, 1, 31, 10, 0),  # the offset applied, as datetime.fromisoformat does
    ]
    assert fast.column("score").to_pylist() == [1.5, None, -0.25, 7.0, 2.0]


def test_a_fraction_in_an_integer_column_stops_the_read_instead_of_being_cut(
    tmp_path: Path,
) -> None:
    url = _source(tmp_path, [(1, 1, "1", None, None, None), (2.5, 0, "1", None, None, None)])
    store = open_source(StoreConfig(url=url))
    try:
        with store.open_reader("t") as reader, pytest.raises(SchemaError, match="column 'id'"):
            list(reader.batches(["id", "flag"], 10))
    finally:
        store.close()


def test_a_window_reads_the_same_rows(tmp_path: Path) -> None:
    window = Window("day", low=date(2024, 2, 1), high=date(2024, 3, 1))
    fast, slow = _read(_source(tmp_path, ROWS[:3]), window)

    assert fast.equals(slow)
    assert fast.column("id").to_pylist() == [2]


WRITTEN = pa.table(
    {
        "id": pa.array([1, 2, 3], pa.int64()),
        "u64": pa.array([2**64 - 1, 0, None], pa.uint64()),
        "f32": pa.array([1.5, float("inf"), None], pa.float32()),
        "d12": pa.array([Decimal("1234.56"), Decimal("-0.01"), None], pa.decimal128(12, 2)),
        "d38": pa.array([Decimal("1E-10"), Decimal("0E-10"), None], pa.decimal128(38, 10)),
        "ts": pa.array([datetime(1, 1, 1), datetime(2024, 2, 29, 1, 2, 3, 4), None]),
        "ns": pa.array([1_001, -1, None], pa.timestamp("ns")),
        "tz": pa.array(
            [datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=2))), None, None],
            pa.timestamp("us", "Europe/Paris"),
        ),
        "day": pa.array([date(2024, 2, 29), date(1, 1, 1), None]),
        "tod": pa.array([time(1, 2, 3, 4), time(0), None]),
        "flag": pa.array([True, False, None]),
        "txt": pa.array(["é'\"", "", None]),
        "bin": pa.array([b"\x00x", b"", None]),
    }
)


def _written(path: Path) -> list[tuple[object, ...]]:
    """Each stored value of WRITTEN written to `path`, as its storage class and SQL literal."""
    store = open_destination(StoreConfig(url=f"sqlite:///{path}"))
    try:
        store.replace("t", WRITTEN.schema, ("id",), WRITTEN.to_batches(max_chunksize=2))
    finally:
        store.close()
    cells = ", ".join(f'typeof("{name}"), quote("{name}")' for name in WRITTEN.column_names)
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f"SELECT {cells} FROM t ORDER BY id").fetchall()
    conn.close()
    return rows


def test_the_writer_stores_what_the_generic_insert_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = _written(tmp_path / "fast.sqlite")
    monkeypatch.setattr(SQLiteStore, "write_batches", SqlStore.write_batches)

    assert fast == _written(tmp_path / "generic.sqlite")
    assert fast[1][10:12] == ("text", "'2024-02-29 01:02:03.000004'")
