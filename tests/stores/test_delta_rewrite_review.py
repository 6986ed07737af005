"""Adversarial checks of the file-by-file Delta merge (stores/delta_rewrite.py): each test is
a way the merge could lose, duplicate or corrupt rows, or break readers, as a user would see
it in the table."""

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable

from copyjob_dagster.stores import Window
from copyjob_dagster.stores.delta import DeltaStore

TS = pa.timestamp("us", "UTC")


def store_at(folder: Path) -> DeltaStore:
    return DeltaStore(f"delta:///{folder}", "destination")


def rows(path: Path) -> list[dict]:
    table = DeltaTable(str(path)).to_pyarrow_table()
    return table.sort_by([(n, "ascending") for n in table.column_names]).to_pylist()


def test_an_appended_table_rereads_its_boundary_rows_without_duplicating_them(
    tmp_path: Path,
) -> None:
    """`write: append` keys a row by its key and the incremental column, and each run reads
    the rows at the saved watermark again. delta-rs writes a timestamp's statistics cut to
    the millisecond (max 12:00:00.123 for a row at 12:00:00.123456): the file that holds the
    boundary row must still be found, or the row read again is added a second time."""
    store = store_at(tmp_path)
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("updated_at", TS)])
    at = [datetime(2026, 12, 6, 12, 0, 0, 123456, tzinfo=UTC)] * 2
    first = pa.table({"id": [1, 2], "updated_at": pa.array(at, TS)}, schema=schema)
    store.replace("t", schema, ("id",), iter(first.to_batches()))

    again = first.slice(1)  # row 2 sits at the watermark: read again, unchanged
    store.write_increment(
        "t",
        schema,
        ("id", "updated_at"),
        iter(again.to_batches()),
        method="append",
        window=Window("updated_at", at[0], low_inclusive=True),
    )

    assert rows(tmp_path / "t") == first.to_pylist()
