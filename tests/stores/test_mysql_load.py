"""MySQL/MariaDB destinations load through LOAD DATA LOCAL INFILE: exact values, or an error."""

import logging
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from copyjob_dagster.config import StoreConfig
from copyjob_dagster.errors import DestinationError
from copyjob_dagster.stores import mysqlload, open_destination

EDGES = pa.table(
    {
        "id": pa.array([1, 2, 3, 4], pa.int64()),
        "text": ["", "NULL", 'a "quoted",\nline\r\n\\N \\ back\t\\', None],
        "emoji": ["😀", None, "\\", ","],
        "blob": pa.array([b"", bytes(range(256)), None, b"\\N\t\n\r\x00"], pa.binary()),
        "f64": [0.1 + 0.2, -1e-300, None, 1.7976931348623157e308],
        "f32": pa.array([3.4028234663852886e38, 1.1, None, -1e-45], pa.float32()),
        "dec": pa.array(
            [Decimal("-12345.67"), Decimal("0.00"), None, Decimal("99999999.99")],
            pa.decimal128(10, 2),
        ),
        "u64": pa.array([2**64 - 1, 0, None, 2**53 + 1], pa.uint64()),
        "flag": [True, False, None, True],
        "at": pa.array(
            [datetime(1000, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999), None, None],
            pa.timestamp("us"),
        ),
        "at_tz": pa.array(
            [datetime(2024, 6, 30, 23, 59, 59, 999999, tzinfo=UTC), None] * 2,
            pa.timestamp("us", "UTC"),
        ),
        "day": pa.array([date(1000, 1, 1), date(9999, 12, 31), None, date(2000, 2, 29)]),
        "clock": pa.array([time(0), time(23, 59, 59, 999999), None, time(12)]),
    }
)


@pytest.fixture
def store(mysql_url: str) -> Any:
    destination = open_destination(StoreConfig(url=mysql_url))
    yield destination
    destination.close()


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows of each LOAD DATA (empty: the INSERT path was taken)."""
    loaded: list[int] = []
    original = mysqlload.load

    def spy(*args: Any) -> int:
        loaded.append(original(*args))
        return loaded[-1]

    monkeypatch.setattr(mysqlload, "load", spy)
    return loaded


def _read(store: Any, table: str) -> dict[str, list[Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM {store.qualified(table)} ORDER BY id")).all()
    return {name: [row[i] for row in rows] for i, name in enumerate(rows[0]._fields)}


def _expected() -> dict[str, list[Any]]:
    expected = EDGES.to_pydict()
    expected["flag"] = [None if v is None else int(v) for v in expected["flag"]]
    expected["at_tz"] = [None if v is None else v.replace(tzinfo=None) for v in expected["at_tz"]]
    expected["f32"] = [3.40282e38, 1.1, None, -1.4013e-45]  # as MariaDB prints a FLOAT
    return expected


def test_every_edge_value_survives_load_data(store: Any, loads: list[int]) -> None:
    assert store.replace("edges", EDGES.schema, ("id",), EDGES.to_batches(max_chunksize=3)) == 4
    assert loads == [4]
    assert store.replaced_rows == 4  # the server's report: the row-count check takes it
    actual = _read(store, "edges")
    actual["clock"] = [None if v is None else (datetime.min + v).time() for v in actual["clock"]]
    assert actual == _expected()


def test_a_value_the_server_would_change_fails_the_load(store: Any, loads: list[int]) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE narrow (id BIGINT, t VARCHAR(3))")
    target = store.reflect("narrow")
    wide = pa.record_batch({"id": [1, 2], "t": ["abc", "abcd"]})
    with pytest.raises(DestinationError, match="Data truncated"), store.engine.begin() as conn:
        store.write_batches(conn, target, [wide])
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM narrow").scalar() == 0


def test_a_source_error_while_loading_rolls_the_load_back(store: Any, loads: list[int]) -> None:
    def failing() -> Any:
        yield EDGES.to_batches()[0]
        raise DestinationError("the source broke")

    with pytest.raises(DestinationError, match="the source broke"):
        store.replace("edges", EDGES.schema, ("id",), failing())
    assert store.describe("edges") is None


def test_without_local_infile_the_same_rows_are_inserted(store: Any, loads: list[int]) -> None:
    store._loads_local_files = lambda conn: False  # as when the server's local_infile is OFF
    assert store.replace("edges", EDGES.schema, ("id",), EDGES.to_batches()) == 4
    assert loads == []
    assert store.replaced_rows is None  # the rows sent, not the server's count: the check counts
    actual = _read(store, "edges")
    actual["clock"] = [None if v is None else (datetime.min + v).time() for v in actual["clock"]]
    assert actual == _expected()


def test_the_fallback_warns_once_when_the_server_refuses_local_files(
    store: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Off:
        def scalar(self) -> int:
            return 0

    with store.engine.connect() as conn, caplog.at_level(logging.WARNING):
        monkeypatch.setattr(conn, "exec_driver_sql", lambda *_: Off())
        assert store._loads_local_files(conn) is False
        assert store._loads_local_files(conn) is False
    assert [r.message.count("local_infile is OFF") for r in caplog.records] == [1]
