"""SQLite's column-wise reader and writer give what the generic per-value path gives: the
reader also for files whose columns hold values of other storage classes than their declared
type, the writer down to each value's storage class and text.

The reader has two ways in: ADBC's driver on a connection of its own (files in a rollback
journal mode), and the snapshot connection's own sqlite3 cursor (WAL files, or where the
driver would not be exact). Each exactness test runs on both."""

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from copyjob_dagster.config import StoreConfig
from copyjob_dagster.errors import SchemaError
from copyjob_dagster.stores import open_destination, open_source, sqlite_native, sqlite_writer
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


@pytest.fixture(params=["delete", "wal"])
def journal(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The file's journal mode; the test fails unless the read took the way the mode gives."""
    native_reads = []
    batches = sqlite_native.batches

    def counted(*args: object, **kwargs: object) -> object:
        native_reads.append(args)
        return batches(*args, **kwargs)

    monkeypatch.setattr(sqlite_native, "batches", counted)
    yield request.param
    assert bool(native_reads) == (request.param == "delete")


def _source(
    tmp_path: Path, rows: list[tuple[object, ...]], journal: str = "delete", columns: str = COLUMNS
) -> str:
    path = tmp_path / "odd.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA journal_mode = {journal}")
        conn.execute(f"CREATE TABLE t ({columns})")
        marks = ", ".join("?" * len(rows[0]))
        conn.executemany(f"INSERT INTO t VALUES ({marks})", rows)
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
    tmp_path: Path, journal: str
) -> None:
    fast, slow = _read(_source(tmp_path, ROWS, journal))

    assert fast.equals(slow)
    assert fast.column("flag").to_pylist() == [True, False, None, True, True]
    assert fast.column("amount").to_pylist()[3:] == [Decimal("0.12"), Decimal("2.68")]
    assert fast.column("at").to_pylist()[3:] == [
        datetime(2024, 1, 31, 12, 0),
        datetime(2024, 1, 31, 10, 0),  # the offset applied, as datetime.fromisoformat does
    ]
    assert fast.column("score").to_pylist() == [1.5, None, -0.25, 7.0, 2.0]


@pytest.mark.parametrize("first", [True, False], ids=["in-the-first-batch", "later"])
def test_a_fraction_in_an_integer_column_stops_the_read_instead_of_being_cut(
    tmp_path: Path, first: bool
) -> None:
    rows = [(n, 1, "1", None, None, None) for n in range(1, 6)]
    rows.insert(0 if first else 4, (2.5, 0, "1", None, None, None))
    url = _source(tmp_path, rows)
    store = open_source(StoreConfig(url=url))
    try:
        with store.open_reader("t") as reader, pytest.raises(SchemaError, match="column 'id'"):
            list(reader.batches(["id", "flag"], 10))
    finally:
        store.close()


def test_a_window_reads_the_same_rows(tmp_path: Path, journal: str) -> None:
    window = Window("day", low=date(2024, 2, 1), high=date(2024, 3, 1))
    fast, slow = _read(_source(tmp_path, ROWS[:3], journal), window)

    assert fast.equals(slow)
    assert fast.column("id").to_pylist() == [2]


def test_columns_whose_first_batch_is_null_or_of_another_class_read_as_the_generic_path(
    tmp_path: Path, journal: str
) -> None:
    # The driver types each column by its first batch: `note` is NULL there and `n` holds
    # only integers (a DOUBLE read must stay DOUBLE); a non-UTF-8 BLOB sits in a TEXT column.
    columns = "id INTEGER, note TEXT, n NUMERIC(6,2), blob TEXT"
    rows = [(1, None, 5, "a"), (2, None, 6, "b"), (3, "é", 7.25, b"\xff\xfe")]
    rows += [(i, f"note {i}", i / 4, f"b{i}") for i in range(4, 9)]
    fast, slow = _read(_source(tmp_path, rows, journal, columns))

    assert fast.equals(slow)
    assert fast.column("note").to_pylist()[:4] == [None, None, "é", "note 4"]
    assert fast.column("n").to_pylist()[:3] == [Decimal("5.00"), Decimal("6.00"), Decimal("7.25")]
    assert fast.column("blob").to_pylist()[2] == "b'\\xff\\xfe'"


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_a_wide_decimal_keeps_integers_a_double_cannot_hold(tmp_path: Path, journal: str) -> None:
    rows = [(1, 2**62 + 1), (2, 0.5), (3, -(2**60) - 1)]
    fast, slow = _read(_source(tmp_path, rows, journal, "id INTEGER, big NUMERIC(20,1)"))

    assert fast.equals(slow)
    assert fast.column("big").to_pylist() == [
        Decimal(2**62 + 1),
        Decimal("0.5"),
        Decimal(-(2**60) - 1),
    ]


def test_text_among_doubles_after_the_first_batch_stops_the_read_naming_the_column(
    tmp_path: Path,
) -> None:
    rows = [(n, None, None, None, None, n / 2) for n in range(1, 6)] + [
        (6, None, None, None, None, "not a number")
    ]
    store = open_source(StoreConfig(url=_source(tmp_path, rows)))
    try:
        with store.open_reader("t") as reader, pytest.raises(SchemaError, match="column 'score'"):
            list(reader.batches(["id", "score"], 2))
    finally:
        store.close()


def _insert_from_another_process(path: str) -> subprocess.CompletedProcess[str]:
    script = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=0.2);"
    script += " c.execute('INSERT INTO t (id) VALUES (99)'); c.commit()"
    return subprocess.run(
        [sys.executable, "-c", script, path], capture_output=True, text=True, check=False
    )


def test_the_snapshot_keeps_writers_out_before_during_and_after_the_native_read(
    tmp_path: Path,
) -> None:
    """The driver's connection reads what the snapshot's lock keeps unchanged, and must not
    release that lock (POSIX locks are the process's: a second SQLite library that unlocked or
    closed the file would)."""
    url = _source(tmp_path, ROWS)
    path = url.removeprefix("sqlite:///")
    store = open_source(StoreConfig(url=url))
    try:
        with store.open_reader("t") as reader:
            before = _insert_from_another_process(path)
            rows = pa.Table.from_batches(list(reader.batches(["id"], 2)))
            again = pa.Table.from_batches(list(reader.batches(["id"], 2)))
            after = _insert_from_another_process(path)
        then = _insert_from_another_process(path)
    finally:
        store.close()

    assert "database is locked" in before.stderr
    assert rows.column("id").to_pylist() == again.column("id").to_pylist() == [1, 2, 3, 4, 5]
    assert "database is locked" in after.stderr
    assert then.returncode == 0, then.stderr


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


def _written(
    path: Path, written: pa.Table = WRITTEN, batch_rows: int = 2
) -> list[tuple[object, ...]]:
    """Each stored value of `written` written to `path`, as its storage class and SQL literal."""
    store = open_destination(StoreConfig(url=f"sqlite:///{path}"))
    try:
        store.replace("t", written.schema, ("id",), written.to_batches(max_chunksize=batch_rows))
    finally:
        store.close()
    cells = ", ".join(f'typeof("{name}"), quote("{name}")' for name in written.column_names)
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


def test_rows_inserted_many_a_statement_land_each_in_its_own_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of two full statements and a remainder: every value in its row and column."""
    batch_rows = 2 * sqlite_writer.ROWS_PER_STATEMENT + 7
    many = pa.concat_tables([WRITTEN] * (2 * batch_rows // len(WRITTEN) + 1))
    many = many.set_column(0, "id", pa.array(range(len(many)), pa.int64())).combine_chunks()
    fast = _written(tmp_path / "fast.sqlite", many, batch_rows)
    monkeypatch.setattr(SQLiteStore, "write_batches", SqlStore.write_batches)

    assert len(fast) == len(many) > batch_rows
    assert fast == _written(tmp_path / "generic.sqlite", many, batch_rows)
