"""The append of a window to a folder table's part files, shared by the Parquet folder stores
wherever the parts are kept: a local folder (`LocalParts`) or a prefix of a bucket
(`parquet_s3.S3Parts`). Each keeper writes a part whole, so a reader or a crash never meets half
of one (a temporary file and a rename; a hidden temporary key and one server-side copy).

A window's part is named after its lower bound, so a rerun from the same watermark replaces its
own part with a superset instead of adding a second one. Rows of the window that older parts
hold (rows read again: equal to the watermark, or within a lookback) are then removed from them,
part by part: by the rows' identity (key, or incremental value compared exactly) where the
table has one or its incremental column is text, else by the window's range. So a reader may
briefly see those rows twice, until the older parts are rewritten; a run killed in between
leaves them twice until its rerun, which removes them again (the watermark was not recorded).
"""

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from copyjob_dagster.stores import parquet_files
from copyjob_dagster.stores.base import Window, ordered_by_collation
from copyjob_dagster.stores.parquet_changes import without_rows


class Parts(Protocol):
    """Where one folder table's part files are kept."""

    def path(self, name: str) -> str:
        """The path of the part named `name`."""
        ...

    def paths(self) -> list[str]:
        """The finished parts, sorted; never a temporary one."""
        ...

    def open(self, path: str) -> pq.ParquetFile: ...

    def write(self, path: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
        """Write `path` whole (see the module's doc); return the rows written."""
        ...

    def delete(self, path: str) -> None: ...

    def remove_strays(self) -> None:
        """Remove the temporary parts a killed or failed write left; never a finished one."""
        ...


class LocalParts:
    """The parts in a folder of this machine (see `parquet_files.write_file`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, name: str) -> str:
        return str(self.folder / name)

    def paths(self) -> list[str]:
        return [str(p) for p in parquet_files.parts(self.folder)]

    def open(self, path: str) -> pq.ParquetFile:
        return pq.ParquetFile(path)

    def write(self, path: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
        return parquet_files.write_file(Path(path), schema, batches)

    def delete(self, path: str) -> None:
        Path(path).unlink()

    def remove_strays(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        parquet_files.remove_strays(self.folder)


def append_window(
    parts: Parts,
    schema: pa.Schema,
    primary_key: tuple[str, ...],
    batches: Iterable[pa.RecordBatch],
    window: Window,
) -> int:
    """Write the window's part, then remove its rows read again from the older parts."""
    name = (
        parquet_files.INITIAL_PART
        if window.low is None
        else f"part-{parquet_files.window_id(window)}.parquet"
    )
    by_identity = window.low is not None and bool(
        primary_key or ordered_by_collation(schema.field(window.column))
    )
    identity = list(primary_key or (window.column,))
    seen: list[pa.RecordBatch] = []

    def remember(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if by_identity:
                seen.append(batch.select(identity))
            yield batch

    parts.remove_strays()
    target = parts.path(name)
    rows = parts.write(target, schema, remember(batches))
    older = [path for path in parts.paths() if path != target]
    if by_identity:
        if seen:
            written = pa.Table.from_batches(seen)
            for path in older:
                rewrite(parts, path, identity, lambda b: without_rows(b, written))
    else:
        rewritten = window if window.backfill else dataclasses.replace(window, high=None)
        outside = ~parquet_files.window_expression(rewritten)
        for path in older:
            rewrite(parts, path, [window.column], lambda b: b.filter(outside))
    return rows


def rewrite(
    parts: Parts,
    path: str,
    needed: list[str],
    keep: Callable[[pa.RecordBatch], pa.RecordBatch],
) -> None:
    """Rewrite the part `path` with only the rows `keep` keeps (streaming), or delete it if none
    remain; parts without the `needed` columns, or where all rows stay, are left as they are."""
    parquet = parts.open(path)
    schema = parquet.schema_arrow
    if not set(needed) <= set(schema.names):
        return
    kept = removed = 0
    for batch in parquet.iter_batches(columns=needed):  # `keep` looks at these columns only
        rows = keep(batch).num_rows
        kept, removed = kept + rows, removed + batch.num_rows - rows
        if kept and removed:
            break  # the part is rewritten: no need to read on
    if not removed:
        return
    if not kept:
        parts.delete(path)
        return
    parts.write(path, schema, (keep(b) for b in parts.open(path).iter_batches()))
