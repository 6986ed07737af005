"""Adversarial checks of the file-by-file Delta merge (stores/delta_rewrite.py): each test is
a way the merge could lose, duplicate or corrupt rows, or break readers, as a user would see
it in the table."""

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.transaction import AddAction

from copyjob_dagster.errors import DestinationError
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


KV = pa.schema([pa.field("id", pa.int64()), pa.field("v", pa.string())])


def kv_table(folder: Path, files: list[list[int]]) -> DeltaStore:
    """A table `t` of one data file per list of ids, each row's `v` "old", written by
    delta-rs as another writer would."""
    for ids in files:
        batch = pa.table({"id": ids, "v": ["old"] * len(ids)}, schema=KV)
        write_deltalake(str(folder / "t"), batch, mode="append")
    return store_at(folder)


def merge_kv(store: DeltaStore, ids: list[int]) -> int:
    """A merge by `id` of rows whose `v` is "new"."""
    window = pa.table({"id": ids, "v": ["new"] * len(ids)}, schema=KV)
    return store.write_increment(
        "t", KV, ("id",), iter(window.to_batches()), method="merge", window=Window("id", 0)
    )


def test_a_compaction_committed_meanwhile_fails_the_merge_instead_of_reviving_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compaction (another machine's `optimize`, a Lakehouse's table maintenance) commits
    between the merge's choice of files and its commit, and removes a file the merge
    rewrites: committing the merge anyway would add back the rows of that file next to the
    compacted copy of them (row 3 twice, old and new; row 4 twice)."""
    store = kv_table(tmp_path, [[1, 2], [3, 4], [5, 6]])
    path = str(tmp_path / "t")
    real = DeltaTable.create_write_transaction

    def raced(self: DeltaTable, *args: Any, **kwargs: Any) -> None:
        assert DeltaTable(path).optimize.compact()["numFilesRemoved"] == 3
        real(self, *args, **kwargs)

    monkeypatch.setattr(DeltaTable, "create_write_transaction", raced)
    with pytest.raises(DestinationError, match="writing the Delta table failed"):
        merge_kv(store, [3, 7])

    ids = DeltaTable(path).to_pyarrow_table().column("id").to_pylist()
    assert sorted(ids) == [1, 2, 3, 4, 5, 6]  # the compaction's version, nothing of ours


def test_a_window_holding_one_key_twice_never_leaves_the_key_twice(tmp_path: Path) -> None:
    """A source whose key is not unique (a view, a Delta or Parquet source, a table whose
    declared key no constraint enforces) sends one key twice. delta-rs's merge refuses the
    window ("matched a target row with multiple source rows"); a merge by key must not leave
    the key twice in the destination instead, silently."""
    store = kv_table(tmp_path, [[1, 2], [3, 4]])
    refused = "t: writing the Delta table failed: the window holds 2 keys more than once"
    with pytest.raises(DestinationError, match=refused):  # as delta-rs's merge refuses it
        merge_kv(store, [3, 3, 9, 9])
    ids = DeltaTable(str(tmp_path / "t")).to_pyarrow_table().column("id").to_pylist()
    assert len(ids) == len(set(ids)), sorted(ids)


def test_a_key_held_twice_by_the_table_is_not_reported_as_minus_one_row_inserted(
    tmp_path: Path,
) -> None:
    """A table appended to by another writer holds key 2 in two files. The merge of one row
    of key 2 inserts no row: the commit's metadata (shown in the Dagster UI) must not say
    -1 rows inserted."""
    store = kv_table(tmp_path, [[1, 2], [2, 3]])
    merge_kv(store, [2])
    assert store.last_commit is not None
    assert store.last_commit.inserted == 0


def test_a_decimal_key_past_a_floats_precision_is_found_in_its_file(tmp_path: Path) -> None:
    """A NUMERIC(20) key (ids past 2**53, as Oracle and PostgreSQL NUMERIC ids run): delta-rs
    writes a decimal's statistics as a JSON float, so the file whose lowest id is
    9007199254740995 says 9007199254740996: the merge of that key must still find the file,
    or the key is written a second time."""
    store = store_at(tmp_path)
    key = pa.decimal128(20, 0)
    schema = pa.schema([pa.field("id", key), pa.field("v", pa.string())])
    ids = [Decimal(2**53 + 3), Decimal(2**53 + 5), Decimal(2**53 + 7)]
    first = pa.table({"id": pa.array(ids, key), "v": ["old"] * 3}, schema=schema)
    store.replace("t", schema, ("id",), iter(first.to_batches()))

    window = pa.table({"id": pa.array(ids[:1], key), "v": ["new"]}, schema=schema)
    store.write_increment(
        "t", schema, ("id",), iter(window.to_batches()), method="merge", window=Window("v", "")
    )

    assert rows(tmp_path / "t") == [
        {"id": ids[0], "v": "new"},
        {"id": ids[1], "v": "old"},
        {"id": ids[2], "v": "old"},
    ]


def test_a_key_at_the_last_representable_timestamp_is_merged(tmp_path: Path) -> None:
    """'9999-12-31 23:59:59.999999', the "until further notice" of many tables, in the key:
    the file's highest bound cannot be taken a millisecond higher, yet the row is found."""
    store = store_at(tmp_path)
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("until", TS)])
    end = [datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)] * 2
    first = pa.table({"id": [1, 2], "until": pa.array(end, TS)}, schema=schema)
    store.replace("t", schema, ("id",), iter(first.to_batches()))

    store.write_increment(
        "t",
        schema,
        ("id", "until"),
        iter(first.slice(1).to_batches()),
        method="append",
        window=Window("until", end[0], low_inclusive=True),
    )

    assert rows(tmp_path / "t") == first.to_pylist()


def test_a_data_file_whose_name_needs_escaping_is_removed_when_rewritten(
    tmp_path: Path,
) -> None:
    """Another writer added a data file named `part 1%.parquet` (the log holds it escaped,
    `part%201%25.parquet`). The merge rewrites it: its remove must name the same file, or the
    old file stays in the table next to its rewritten copy (rows 2 and 3 twice)."""
    store = kv_table(tmp_path, [[1]])
    name = "part 1%.parquet"
    written = pa.table({"id": [2, 3], "v": ["old"] * 2}, schema=KV)
    pq.write_table(written, tmp_path / "t" / name)
    stats = {"numRecords": 2, "minValues": {"id": 2}, "maxValues": {"id": 3}}
    add = AddAction(name, (tmp_path / "t" / name).stat().st_size, {}, 0, True, json.dumps(stats))
    DeltaTable(str(tmp_path / "t")).create_write_transaction([add], mode="append", schema=KV)

    merge_kv(store, [2])

    assert rows(tmp_path / "t") == [
        {"id": 1, "v": "old"},
        {"id": 2, "v": "new"},
        {"id": 3, "v": "old"},
    ]
