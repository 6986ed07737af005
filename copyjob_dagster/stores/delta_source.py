"""A Delta merge's source spilled to a temporary Arrow file, with the range of its key.

delta-rs streams a merge's source (`streamed_exec`, so a large window is never held in memory),
and a streamed source gives it no statistics: it then reads every file of the target to join
them, even when the window's keys all sit in a few of them (the newest rows of a table copied
in key order). Knowing the source's lowest and highest key before the merge starts lets the
merge predicate say `t.key BETWEEN low AND high`, which delta-rs checks against each file's
statistics, skipping the files that cannot hold a matching row: it reads, joins and keeps only
the rest (a merge of the 20,000 newest of 2,000,000 rows read 1 file of 21, not all 21).

So the window is written to a temporary Arrow file first (a stream, batch by batch, as read),
the range noted on the way; the merge then streams it back from disk. Only key columns whose
values DataFusion and Arrow order alike get a range: integers, dates, and text (both compare
bytes). The range is a superset of the keys: a merge's matches are exactly those it had.
"""

import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from copyjob_dagster.stores.delta_types import literal, quoted


class KeyRange:
    """The lowest and highest value seen of each key column that has an order Delta shares."""

    def __init__(self, key: Sequence[str]) -> None:
        self.key = list(key)
        self._bounds: dict[str, tuple[Any, Any, pa.DataType]] = {}
        self._unordered: set[str] = set()

    def add(self, batch: pa.RecordBatch) -> None:
        for name in self.key:
            if name in self._unordered or name not in batch.schema.names:
                continue
            column = batch.column(name)
            if not _ordered_alike(column.type):
                self._unordered.add(name)
                continue
            found = pc.min_max(column).as_py()
            if found["min"] is None:
                continue  # all NULL: such a row matches no target row
            low, high, kind = self._bounds.get(name, (found["min"], found["max"], column.type))
            self._bounds[name] = (min(low, found["min"]), max(high, found["max"]), kind)

    def predicate(self, alias: str) -> str:
        """`alias.key >= low AND alias.key <= high` for each bounded key column ("" if none)."""
        return " AND ".join(
            f"{alias}.{quoted(name)} >= {literal(low, kind)} AND "
            f"{alias}.{quoted(name)} <= {literal(high, kind)}"
            for name, (low, high, kind) in self._bounds.items()
            if name not in self._unordered
        )


def _ordered_alike(kind: pa.DataType) -> bool:
    return (
        pa.types.is_integer(kind)
        or pa.types.is_date(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
    )


class SpilledSource:
    """The spilled batches (read back one at a time) and their key range."""

    def __init__(self, path: Path, key: Sequence[str]) -> None:
        self.path = path
        self.range = KeyRange(key)
        self.rows = 0
        self._written = False

    def write(self, batches: Iterable[pa.RecordBatch]) -> None:
        writer: pa.ipc.RecordBatchFileWriter | None = None
        try:
            for batch in batches:
                if writer is None:
                    writer = pa.ipc.new_file(str(self.path), batch.schema)
                writer.write_batch(batch)
                self.range.add(batch)
                self.rows += batch.num_rows
        finally:
            if writer is not None:
                writer.close()
                self._written = True

    def batches(self) -> Iterator[pa.RecordBatch]:
        if not self._written:
            return
        with pa.OSFile(str(self.path)) as file:  # read, not mapped: pages are not kept resident
            reader = pa.ipc.open_file(file)
            for index in range(reader.num_record_batches):
                yield reader.get_batch(index)


@contextmanager
def spilled(batches: Iterable[pa.RecordBatch], key: Sequence[str]) -> Iterator[SpilledSource]:
    """`batches` written to a temporary file (removed on exit), with the range of `key`."""
    with tempfile.TemporaryDirectory(prefix="copyjob-delta-merge-") as folder:
        source = SpilledSource(Path(folder) / "source.arrow", key)
        source.write(batches)
        yield source
