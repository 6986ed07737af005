"""PostgreSQL read natively by ADBC's driver: in the reader's snapshot, exact for the types the
type zoo leaves out, and the CSV path taken instead, before any row is read, where it cannot."""

import logging
import re
from decimal import Decimal
from typing import Any

import adbc_driver_postgresql.dbapi as adbc_dbapi
import pyarrow as pa
import pytest
import sqlalchemy as sa

from copyjob_dagster.errors import SchemaError
from copyjob_dagster.stores import pgadbc
from copyjob_dagster.stores.base import KeyRange
from copyjob_dagster.stores.sql_reader import SqlTableReader


@pytest.fixture
def source(pg_source: Any) -> Any:
    return pg_source


def _rows(batches: list[pa.RecordBatch]) -> list[int]:
    return [batch.num_rows for batch in batches]


def _ids(batches: Any) -> list[int]:
    return sorted(pa.Table.from_batches(list(batches)).column("id").to_pylist())


def test_the_driver_reads_the_snapshot_not_later_commits(
    source: Any, driver_batches: list[pa.RecordBatch]
) -> None:
    with source.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {source.qualified('t')} (id int, v text)")
        conn.exec_driver_sql(f"INSERT INTO {source.qualified('t')} VALUES (1, 'a'), (2, 'b')")
    with source.open_reader("t") as reader, source.open_split("t", 2) as (main, others):
        assert reader.count() == 2 and main.count() == 2  # each snapshot taken now
        with source.engine.begin() as conn:  # committed after both snapshots
            conn.exec_driver_sql(f"INSERT INTO {source.qualified('t')} VALUES (3, 'c')")
            conn.exec_driver_sql(f"DELETE FROM {source.qualified('t')} WHERE id = 1")
        whole = _ids(reader.batches(["id", "v"], 10))
        low, high = KeyRange("id", None, 2, nulls=True), KeyRange("id", 2, None)
        first, second = main.batches(["id"], 10, part=low), others[0].batches(["id"], 9, part=high)
        parts = _ids([*first, *second])
    assert (whole, parts) == ([1, 2], [1, 2])
    assert _rows(driver_batches) == [2, 1, 1]  # the driver read every one of them
    with source.open_reader("t") as reader:  # a new snapshot sees the commit
        assert _ids(reader.batches(["id"], 10)) == [2, 3]


ODD_TYPES = """
CREATE TYPE {schema}.mood AS ENUM ('sad', '😀');
CREATE TABLE {schema}.odd (
    id int PRIMARY KEY, c char(4), a text[], e {schema}.mood, n numeric, w numeric(40, 5),
    tt timetz, r int4range, m money, b bytea, x xml, big numeric(38, 0), s18 numeric(18, 4),
    z18 numeric(18, 0)
);
INSERT INTO {schema}.odd VALUES
    (1, 'ab', '{{a,NULL,"b c"}}', '😀', 'NaN', -12345678901234567890123456789012345.12345,
     '12:00:00.000001+02', '[1,3)', 12.34, '\\x00ff', '<a>x</a>',
     99999999999999999999999999999999999999, -99999999999999.9999, 999999999999999999),
    (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (3, '', '{{}}', 'sad', '-Infinity', 0, '00:00:00-14:59', 'empty', -0.01, '\\x', '', 0,
     0.0001, -1);
"""


def test_types_outside_the_zoo_read_as_the_row_path_reads_them(
    source: Any, driver_batches: list[pa.RecordBatch]
) -> None:
    with source.engine.begin() as conn:
        conn.exec_driver_sql(ODD_TYPES.format(schema=source._schema))
    columns = source.describe("odd").column_names
    with source.open_reader("odd") as reader:
        by_driver = pa.Table.from_batches(list(reader.batches(columns, 2)))
        by_rows = pa.Table.from_batches(list(SqlTableReader.batches(reader, columns, 2)))
    assert _rows(driver_batches) == [3]
    assert by_driver.schema == by_rows.schema
    assert by_driver.to_pylist() == by_rows.to_pylist()
    assert by_driver.column("c").to_pylist() == ["ab  ", None, "    "]  # CHAR keeps its padding
    assert by_driver.column("w")[0].as_py() == Decimal("-12345678901234567890123456789012345.12345")
    assert by_driver.column("s18").to_pylist() == [
        Decimal("-99999999999999.9999"),
        None,
        Decimal("0.0001"),
    ]


@pytest.mark.parametrize(
    ("ddl", "value", "problem"),
    [
        ("timestamp", "infinity", "outside the years 1 to 9999"),
        ("timestamptz", "-infinity", "outside the years 1 to 9999"),
        ("date", "0044-03-15 BC", "outside the years 1 to 9999"),
        ("time", "24:00:00", "is 24:00:00"),
        ("numeric(40, 2)", "NaN", "does not fit decimal256(40, 2)"),
    ],
)
def test_values_with_no_exact_arrow_value_are_refused_naming_the_column(
    source: Any, ddl: str, value: str, problem: str
) -> None:
    with source.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {source.qualified('edge')} (id int, v {ddl})")
        conn.execute(
            sa.text(f"INSERT INTO {source.qualified('edge')} VALUES (1, CAST(:v AS {ddl}))"),
            {"v": value},
        )
    refused = pytest.raises(SchemaError, match=f"column 'v': .*{re.escape(problem)}")
    with refused, source.open_reader("edge") as reader:
        list(reader.batches(["id", "v"], 10))


def test_a_table_the_driver_cannot_read_exactly_takes_the_csv_path(
    source: Any, driver_batches: list[pa.RecordBatch], monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    with source.engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE {source.qualified('u')} (id int, g uuid, n numeric(5, 1))"
        )
        conn.exec_driver_sql(
            f"INSERT INTO {source.qualified('u')} VALUES "
            "(1, '00000000-0000-0000-0000-00000000000a', 1.5), (2, NULL, NULL)"
        )
    columns = ["id", "g", "n"]
    with source.open_reader("u") as reader:
        expected = pa.Table.from_batches(list(SqlTableReader.batches(reader, columns, 10)))
    caplog.set_level(logging.DEBUG, logger="copyjob_dagster.stores.pgcopy")

    # A column the driver would hand over in another type (a UUID not cast to text): its own
    # schema, checked before any row is read, sends the table down the CSV path.
    planned = pgadbc.plan
    monkeypatch.setattr(pgadbc, "plan", lambda *a: pgadbc.Plan(planned(*a).schema, frozenset()))
    with source.open_reader("u") as reader:
        assert pa.Table.from_batches(list(reader.batches(columns, 10))) == expected
    assert "the driver reads extension<arrow.uuid>, not string" in caplog.text

    # A column type the native reader does not take at all: no driver connection either.
    monkeypatch.setattr(pgadbc, "_native", lambda t: t != pa.int32())
    monkeypatch.setattr(pgadbc, "plan", planned)
    monkeypatch.setattr(adbc_dbapi, "connect", None)  # imported by `pgadbc.read` when it reads
    with source.open_reader("u") as reader:
        assert pa.Table.from_batches(list(reader.batches(columns, 10))) == expected
    assert "column 'id' holds int32 values" in caplog.text
    assert _rows(driver_batches) == []


def test_a_nan_in_a_bounded_numeric_fails_the_read_naming_the_column(source: Any) -> None:
    """Its smallest unit has no integer: the server refuses the cast, as Arrow refuses NaN."""
    with source.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {source.qualified('nan')} (id int, v numeric(12, 2))")
        conn.exec_driver_sql(f"INSERT INTO {source.qualified('nan')} VALUES (1, 'NaN')")
    refused = pytest.raises(SchemaError, match="column 'v': a value is NaN")
    with refused, source.open_reader("nan") as reader:
        list(reader.batches(["id", "v"], 10))


DECIMALS = {  # NUMERIC(p, s) of p <= 18, read from their binary form: every digit group's place
    "a": (18, 0, ["999999999999999999", "-999999999999999999", "10000", "9999", "1", "-1"]),
    "b": (18, 6, ["999999999999.999999", "-0.000001", "0.5", "1234.0001", "-100000000.01"]),
    "c": (12, 2, ["0.01", "-0.1", "9999999999.99", "10000.00", "-12.34", "0"]),
    "d": (5, 5, ["0.99999", "-0.00001", "0.1", "0.0001"]),
    "e": (9, 1, ["-99999999.9", "0.1", "10000000.0", "12345.6"]),
}


def test_bounded_decimals_read_natively_are_the_row_paths_to_the_last_digit(
    source: Any, driver_batches: list[pa.RecordBatch]
) -> None:
    """Every row holds one value or NULL in each column, in groups of digits on both sides of
    the point, signs and the extremes of the type; the driver's batch is sliced (3 rows)."""
    columns = ", ".join(f"{name} numeric({p}, {s})" for name, (p, s, _) in DECIMALS.items())
    rows = max(len(values) for _, _, values in DECIMALS.values()) + 1  # a last row of NULLs
    with source.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {source.qualified('dec')} (id int, {columns})")
        for i in range(rows):
            values = [v[i] if i < len(v) else None for _, _, v in DECIMALS.values()]
            conn.execute(
                sa.text(
                    f"INSERT INTO {source.qualified('dec')} VALUES (:i, "
                    + ", ".join(f"CAST(:v{k} AS numeric)" for k in range(len(values)))
                    + ")"
                ),
                {"i": i, **{f"v{k}": value for k, value in enumerate(values)}},
            )
    names = ["id", *DECIMALS]
    with source.open_reader("dec") as reader:
        by_driver = pa.Table.from_batches(list(reader.batches(names, 3))).sort_by("id")
        by_rows = pa.Table.from_batches(list(SqlTableReader.batches(reader, names, 3)))
    assert _rows(driver_batches) == [rows]
    assert by_driver.equals(by_rows.sort_by("id"))
    for name, (_, _, values) in DECIMALS.items():
        read = by_driver.column(name).to_pylist()
        assert read == [Decimal(v) for v in values] + [None] * (rows - len(values))
