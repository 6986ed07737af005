"""The Delta merge written file by file (stores/delta_rewrite.py), as a user checks it: the
table's rows equal those delta-rs's own merge leaves from the same changes, a reader still
skips files by their statistics, and a writer that changed the same files meanwhile makes the
commit fail instead of being overwritten."""

import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable, write_deltalake
from test_type_zoo import PARQUET_ZOO

from copyjob_dagster.errors import DestinationError
from copyjob_dagster.stores import Window
from copyjob_dagster.stores.base import DeletePolicy
from copyjob_dagster.stores.delta import DeltaStore
from copyjob_dagster.stores.delta_types import delta_schema

FILES, FILE_ROWS = 4, 250
MARKER = "_copyjob_deleted_at"
STAMP = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
# Delta holds every zoo column but these (test_type_zoo: they stop the copy).
ZOO = [c for c in PARQUET_ZOO if c.name not in {"tod", "dur", "d50"}]


def zoo_schema() -> pa.Schema:
    fields = [pa.field("id", pa.int64()), pa.field("updated_at", pa.int64())]
    fields += [pa.field(c.name, c.ddl) for c in ZOO]
    fields.append(pa.field(MARKER, pa.timestamp("us", "UTC")))
    return delta_schema(pa.schema(fields))


def zoo_rows(ids: list[int | None], at: int, shift: int = 0) -> pa.Table:
    """Rows of the zoo: each column cycles through its values (NULLs among them), `shift`
    turning the cycle so that changed rows hold other values."""
    schema = zoo_schema()
    columns: dict[str, Any] = {"id": ids, "updated_at": [at + n for n in range(len(ids))]}
    for column in ZOO:
        cycle = itertools.cycle(column.values)
        for _ in range(shift):
            next(cycle)
        columns[column.name] = pa.array(
            [next(cycle) for _ in ids], column.ddl, from_pandas=True
        ).cast(schema.field(column.name).type, safe=False)
    columns[MARKER] = pa.nulls(len(ids), schema.field(MARKER).type)
    return pa.table(columns, schema=schema)


def lake(folder: Path) -> DeltaStore:
    """A table `zoo` of FILES data files, ids 1..FILES*FILE_ROWS in order."""
    path = folder / "zoo"
    for number in range(FILES):
        ids = list(range(number * FILE_ROWS + 1, (number + 1) * FILE_ROWS + 1))
        write_deltalake(str(path), zoo_rows(ids, at=ids[0]), mode="append")
    return DeltaStore(f"delta:///{folder}", "destination")


def merge(store: DeltaStore, window: pa.Table, gone: set[int], mode: str | None) -> Any:
    """The window merged by `id`, with the keys in `gone` deleted (`mode`), as the engine
    asks a Delta destination: one commit; return what it reports."""
    kept = [i for i in range(1, 10_000) if i not in gone]  # the source's keys
    key_schema = pa.schema([pa.field("id", pa.int64())])
    if mode is None:
        return store.last_commit, write(store, window), None
    policy = DeletePolicy(mode=mode, key=("id",), stamp=STAMP, marker=MARKER)  # type: ignore[arg-type]
    source_keys = iter([pa.record_batch([pa.array(kept, pa.int64())], schema=key_schema)])
    with store.diff_keys("zoo", key_schema, source_keys, policy) as diff:
        rows = write(store, window)
        counts = diff.apply()
    return store.last_commit, rows, counts


def write(store: DeltaStore, window: pa.Table) -> int:
    batches = window.to_batches(max_chunksize=97)
    window_of_run = Window("updated_at", 0)
    return store.write_increment(
        "zoo", window.schema, ("id",), batches, method="merge", window=window_of_run
    )


def contents(folder: Path, version: int | None = None) -> list[dict[str, Any]]:
    table = DeltaTable(str(folder / "zoo"), version=version).to_pyarrow_table()
    return table.sort_by([("id", "ascending"), ("updated_at", "ascending")]).to_pylist()


def changes() -> tuple[pa.Table, set[int]]:
    """Every 37th row changed (each file has some), new keys, a NULL key, and every 53rd key
    gone from the source."""
    total = FILES * FILE_ROWS
    changed = list(range(5, total + 1, 37))
    window = pa.concat_tables(
        [
            zoo_rows(changed, at=5000, shift=2),
            zoo_rows([total + 1, total + 2, None], at=6000, shift=3),
        ]
    )
    gone = set(range(11, total + 1, 53)) - set(changed)
    return window, gone


def paths(table: DeltaTable) -> set[str]:
    return set(pa.table(table.get_add_actions()).column("path").to_pylist())


@pytest.mark.parametrize("mode", [None, "hard", "soft"], ids=["upsert", "hard", "soft"])
def test_the_file_by_file_merge_leaves_what_delta_rs_merge_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str | None
) -> None:
    window, gone = changes()
    # Then every key is back at the source: some with a new row, the others as they were.
    back = sorted(gone)[::2]
    steps = [(window, gone), (zoo_rows(back, at=7000, shift=4), set())]
    store = lake(tmp_path / "mine")
    mine = [merge(store, w, g, mode) for w, g in steps]
    assert DeltaTable(str(tmp_path / "mine" / "zoo")).history(1)[0]["operation"] == "WRITE"
    monkeypatch.setattr("copyjob_dagster.stores.delta.fits", lambda *args: False)
    store = lake(tmp_path / "theirs")
    theirs = [merge(store, w, g, mode) for w, g in steps]
    assert DeltaTable(str(tmp_path / "theirs" / "zoo")).history(1)[0]["operation"] == "MERGE"

    for version in (FILES, FILES + 1):
        assert contents(tmp_path / "mine", version) == contents(tmp_path / "theirs", version)
    assert mine == theirs  # each commit's version and counts, the rows, the deletions
    if mode == "soft":
        marked = [r["id"] for r in contents(tmp_path / "mine", FILES) if r[MARKER] is not None]
        assert marked == sorted(gone)
        assert mine[1][2].restored == len(gone) - len(back)


def test_only_the_files_the_keys_reach_are_rewritten_and_readers_still_skip(
    tmp_path: Path,
) -> None:
    store = lake(tmp_path)
    path = str(tmp_path / "zoo")
    before = paths(DeltaTable(path))
    # Keys in the second file only, and a new one past the table's end.
    window = zoo_rows([FILE_ROWS + 3, FILE_ROWS + 9, 5000], at=7000, shift=1)

    merge(store, window, set(), None)

    after = DeltaTable(path)
    assert len(before - paths(after)) == 1  # that file replaced, the others kept
    dataset = after.to_pyarrow_dataset()
    # The new rows' file holds ids FILE_ROWS + 3 to 5000; the rewritten one the rest of the
    # second file's: each file's statistics rule it out for the keys it cannot hold.
    for key, expected in ((100, 1), (FILE_ROWS + 10, 2), (5000, 1), (6000, 0)):
        fragments = list(dataset.get_fragments(filter=ds.field("id") == key))
        assert len(fragments) == expected, key
    assert dataset.to_table(filter=ds.field("id") == FILE_ROWS + 9).column(
        "updated_at"
    ).to_pylist() == [7001]
    actions = pa.table(after.get_add_actions(flatten=True)).to_pydict()
    assert sum(actions["num_records"]) == FILES * FILE_ROWS + 1


def test_a_writer_that_changed_the_same_files_meanwhile_fails_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = lake(tmp_path)
    path = str(tmp_path / "zoo")
    real = DeltaTable.create_write_transaction

    def raced(self: DeltaTable, *args: Any, **kwargs: Any) -> None:
        DeltaTable(path).delete("id = 2")  # rewrites the file of ids 1-250, committed first
        real(self, *args, **kwargs)

    monkeypatch.setattr(DeltaTable, "create_write_transaction", raced)
    with pytest.raises(DestinationError, match="writing the Delta table failed"):
        merge(store, zoo_rows([3, FILE_ROWS * FILES + 1], at=8000, shift=1), set(), None)

    table = DeltaTable(path)
    assert table.version() == FILES  # the other writer's delete, and nothing of ours
    ids = table.to_pyarrow_table().column("id").to_pylist()
    assert 2 not in ids and FILE_ROWS * FILES + 1 not in ids and len(ids) == FILES * FILE_ROWS - 1


def test_two_copyjob_writers_inserting_the_same_new_key_cannot_both_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = lake(tmp_path)
    other = DeltaStore(f"delta:///{tmp_path}", "destination")
    real = DeltaTable.create_write_transaction
    new_key = FILE_ROWS * FILES + 1
    raced = []

    def racing(self: DeltaTable, *args: Any, **kwargs: Any) -> None:
        if not raced:  # another machine's run of the same window commits first
            raced.append(True)
            merge(other, zoo_rows([new_key], at=9000), set(), None)
        real(self, *args, **kwargs)

    monkeypatch.setattr(DeltaTable, "create_write_transaction", racing)
    with pytest.raises(DestinationError, match="writing the Delta table failed"):
        merge(store, zoo_rows([new_key], at=9000), set(), None)

    ids = DeltaTable(str(tmp_path / "zoo")).to_pyarrow_table().column("id").to_pylist()
    assert ids.count(new_key) == 1
