"""Versions (SCD2) and deletions in a Parquet folder, with bounded memory.

Versions: a window's rows go into their own part file (named after the window, so a rerun
replaces it), then older parts are rewritten where a version of one of the window's keys must
close (valid_to = the newer valid_from) or where the same version was written before (by a run
that was killed after its part was in place). Memory: the window's keys and validity values,
and one batch.

Deletions: the destination's keys and the source's keys are spilled to disk in hash buckets of
at most `BUCKET_KEYS` destination keys each (one bucket below that size: nothing is hashed),
and each bucket pair is anti-joined in memory; the rows to change are recorded by position
(part file, row) and each affected part is rewritten once. Memory: one bucket pair (about
`BUCKET_KEYS` keys of each side), and the positions of one part's changed rows (16 bytes each).
Parts are replaced one by one (temporary file and rename), so a killed pass leaves some done and
some not; the next run's pass finishes it, since a deleted or marked row is not found again.
"""

import hashlib
import math
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from copyjob_dagster.stores import parquet_files
from copyjob_dagster.stores.base import DeletePolicy, DeletionCounts, VersionColumns, Window

if TYPE_CHECKING:
    from copyjob_dagster.stores.files import FolderStore

BUCKET_KEYS = 1_000_000
NEW_FROM = "_copyjob_new_from"
FILE, ROW, LIVE, MARKED, ACTION = "_copyjob_file", "_copyjob_row", "_live", "_marked", "_action"
REMOVE, MARK, RESTORE = 0, 1, 2


def write_versions(
    store: "FolderStore",
    table: str,
    schema: pa.Schema,
    key: tuple[str, ...],
    batches: Iterable[pa.RecordBatch],
    versions: VersionColumns,
    window: Window,
) -> int:
    if window.low is None:
        return store.write_increment(table, schema, key, batches, method="append", window=window)
    rows, new, name = _write_part(
        store, table, schema, batches, window, (*key, versions.valid_from)
    )
    if new is not None:
        new = new.rename_columns([*key, NEW_FROM])
        for older in parquet_files.parts(store.folder / table):
            if older.name != name:
                _close_versions(older, new, key, versions)
    return rows


def _write_part(
    store: "FolderStore",
    table: str,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    window: Window,
    columns: tuple[str, ...],
) -> tuple[int, pa.Table | None, str]:
    """Write the window's part file; return its rows, their `columns` (None if no row was
    written) and the part's name."""
    folder = store.folder / table
    name = f"part-{parquet_files.window_id(window)}.parquet"
    seen: list[pa.RecordBatch] = []

    def remember(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            seen.append(batch.select(list(columns)))
            yield batch

    folder.mkdir(parents=True, exist_ok=True)
    parquet_files.remove_strays(folder)
    rows = parquet_files.write_file(folder / name, schema, remember(batches))
    return rows, pa.Table.from_batches(seen) if seen else None, name


def without_rows(batch: pa.RecordBatch, rows: pa.Table) -> pa.RecordBatch:
    """`batch` without the rows whose `rows.column_names` values are among `rows`, compared
    exactly (a semi-join, not Python equality)."""
    positions = pa.Table.from_batches([batch.select(rows.column_names)]).append_column(
        ROW, pa.array(np.arange(batch.num_rows))
    )
    matched = positions.join(rows, keys=rows.column_names, join_type="left semi")
    return batch.filter(pc.invert(_mask(batch.num_rows, matched.column(ROW))))


def _close_versions(
    path: Path, new: pa.Table, key: tuple[str, ...], versions: VersionColumns
) -> None:
    parquet = pq.ParquetFile(path)
    if not any(_closed(b, new, key, versions)[1] for b in parquet.iter_batches()):
        return
    parquet_files.write_file(
        path,
        parquet.schema_arrow,
        (_closed(b, new, key, versions)[0] for b in pq.ParquetFile(path).iter_batches()),
    )


def _closed(
    batch: pa.RecordBatch, new: pa.Table, key: tuple[str, ...], versions: VersionColumns
) -> tuple[pa.RecordBatch, int]:
    """The batch with versions older than the window's closed and its own versions removed."""
    rows = batch.num_rows
    positions = pa.Table.from_batches([batch.select(list(key))]).append_column(
        ROW, pa.array(np.arange(rows))
    )
    matched = positions.join(new, keys=list(key), join_type="inner").sort_by(ROW)
    if not matched.num_rows:
        return batch, 0
    valid_from = batch.column(versions.valid_from)
    mask = _mask(rows, matched.column(ROW))
    new_from = pc.replace_with_mask(
        pa.nulls(rows, valid_from.type), mask, matched.column(NEW_FROM).combine_chunks()
    )
    same = pc.fill_null(pc.equal(valid_from, new_from), False)
    current = batch.column(versions.is_current)
    # The window's row is the key's newest version, whatever Arrow's order of the values.
    close = pc.fill_null(pc.and_(pc.and_(current, mask), pc.invert(same)), False)
    changed = {
        versions.valid_to: pc.if_else(close, new_from, batch.column(versions.valid_to)),
        versions.is_current: pc.if_else(close, False, current),
    }
    columns = [changed.get(name, batch.column(name)) for name in batch.schema.names]
    updated = pa.RecordBatch.from_arrays(columns, schema=batch.schema).filter(pc.invert(same))
    return updated, pc.sum(same).as_py() + pc.sum(close).as_py()


def _mask(rows: int, positions: Any) -> pa.Array:
    mask = np.zeros(rows, dtype=bool)
    mask[np.asarray(positions)] = True
    return pa.array(mask)


class ParquetKeyDiff:
    """Deletions found by hashed, on-disk buckets of both key sets (see the module's doc)."""

    def __init__(
        self,
        store: "FolderStore",
        table: str,
        key_schema: pa.Schema,
        source_keys: Iterable[pa.RecordBatch],
        policy: DeletePolicy,
        workdir: Path,
    ) -> None:
        self._folder = store.folder / table
        self._policy, self._key, self._workdir = policy, list(key_schema.names), workdir
        self._buckets = max(1, math.ceil(self._count_rows() / BUCKET_KEYS))
        self._source = self._spill("source", ((b, 0) for b in source_keys), key_schema)
        actions = self._actions()
        self.live = actions[1]
        self.pending = actions[2]

    def _count_rows(self) -> int:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in parquet_files.parts(self._folder))

    def _spill(
        self, side: str, batches: Iterable[tuple[pa.RecordBatch, int]], schema: pa.Schema
    ) -> list[Path]:
        paths = [self._workdir / f"{side}-{b}.arrow" for b in range(self._buckets)]
        writers = [pa.ipc.new_file(path, schema) for path in paths]
        try:
            for batch, _ in batches:
                for bucket, part in self._split(batch):
                    writers[bucket].write_batch(part)
        finally:
            for writer in writers:
                writer.close()
        return paths

    def _split(self, batch: pa.RecordBatch) -> Iterator[tuple[int, pa.RecordBatch]]:
        if self._buckets == 1:
            yield 0, batch
            return
        buckets = _buckets(batch, self._key, self._buckets)
        for bucket in range(self._buckets):
            part = batch.filter(pa.array(buckets == bucket))
            if part.num_rows:
                yield bucket, part

    def _destination_rows(self) -> Iterator[tuple[pa.RecordBatch, int]]:
        """Each part's keys with their position and whether the row is live (and marked)."""
        policy = self._policy
        for index, path in enumerate(parquet_files.parts(self._folder)):
            parquet = pq.ParquetFile(path)
            names = parquet.schema_arrow.names
            offset = 0
            for batch in parquet.iter_batches(
                columns=[c for c in self._state_columns() if c in names]
            ):
                rows = batch.num_rows
                marked = pa.repeat(pa.scalar(False), rows)
                if policy.versions is not None:
                    live = pc.fill_null(batch.column(policy.versions.is_current), False)
                elif policy.mode == "soft" and policy.marker in names:
                    marked = batch.column(policy.marker).is_valid()
                    live = pc.invert(marked)
                else:
                    live = pa.repeat(pa.scalar(True), rows)
                columns = [batch.column(k) for k in self._key]
                extra = [
                    pa.repeat(pa.scalar(index, pa.int32()), rows),
                    pa.array(np.arange(offset, offset + rows)),
                    live,
                    marked,
                ]
                yield (
                    pa.RecordBatch.from_arrays(
                        [*columns, *extra], names=[*self._key, FILE, ROW, LIVE, MARKED]
                    ),
                    index,
                )
                offset += rows

    def _state_columns(self) -> list[str]:
        policy = self._policy
        if policy.versions is not None:
            return [*self._key, policy.versions.is_current]
        return [*self._key, *([policy.marker] if policy.marker else [])]

    def _actions(self) -> tuple[list[Path], int, int]:
        """Per bucket, the positions to change; with the live and pending row counts."""
        batches = self._destination_rows()
        first = next(batches, None)
        if first is None:
            return [], 0, 0
        schema = first[0].schema
        destination = self._spill("destination", _chain(first, batches), schema)
        live = pending = 0
        paths = []
        for bucket in range(self._buckets):
            there = pa.ipc.open_file(destination[bucket]).read_all()
            source = pa.ipc.open_file(self._source[bucket]).read_all()
            gone = there.join(source, keys=self._key, join_type="left anti")
            live += pc.sum(there.column(LIVE)).as_py() or 0
            gone_live = gone.filter(gone.column(LIVE))
            pending += gone_live.num_rows
            changes = [self._positions(gone if self._policy.mode == "hard" else gone_live, MARK)]
            if self._policy.mode == "soft" and self._policy.versions is None:
                back = there.join(source, keys=self._key, join_type="left semi")
                changes.append(self._positions(back.filter(back.column(MARKED)), RESTORE))
            path = self._workdir / f"actions-{bucket}.arrow"
            changed = pa.concat_tables(changes)
            with pa.ipc.new_file(path, changed.schema) as writer:
                writer.write_table(changed)
            paths.append(path)
        return paths, live, pending

    @staticmethod
    def _positions(rows: pa.Table, action: int) -> pa.Table:
        return pa.table(
            {
                FILE: rows.column(FILE),
                ROW: rows.column(ROW),
                ACTION: pa.repeat(pa.scalar(action, pa.int8()), rows.num_rows),
            }
        )

    def apply(self) -> DeletionCounts:
        # The window's write rewrote parts: positions are found again, in the parts as they are.
        paths, _, _ = self._actions()
        if not paths:
            return DeletionCounts()
        actions = ds.dataset([str(p) for p in paths], format="ipc")
        counts = {MARK: 0, RESTORE: 0}
        for index, path in enumerate(parquet_files.parts(self._folder)):
            mine = actions.to_table(filter=ds.field(FILE) == index).sort_by(ROW)
            if mine.num_rows:
                for action, rows in self._rewrite(path, mine).items():
                    counts[action] += rows
        if self._policy.mode == "hard":
            return DeletionCounts(deleted=counts[MARK])
        return DeletionCounts(soft_deleted=counts[MARK], restored=counts[RESTORE])

    def _rewrite(self, path: Path, mine: pa.Table) -> dict[int, int]:
        rows = mine.column(ROW).to_numpy()
        kinds = mine.column(ACTION).to_numpy()
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        policy = self._policy
        if policy.mode == "soft" and policy.marker and policy.marker not in schema.names:
            schema = schema.append(pa.field(policy.marker, pa.timestamp("us", "UTC")))

        def changed() -> Iterator[pa.RecordBatch]:
            offset = 0
            for batch in parquet.iter_batches():
                count = batch.num_rows
                start, stop = np.searchsorted(rows, [offset, offset + count])
                marks = np.zeros(count, dtype=bool)
                restores = np.zeros(count, dtype=bool)
                here = rows[start:stop] - offset
                marks[here[kinds[start:stop] == MARK]] = True
                restores[here[kinds[start:stop] == RESTORE]] = True
                offset += count
                yield self._changed_batch(batch, schema, pa.array(marks), pa.array(restores))

        parquet_files.write_file(path, schema, changed())
        return {MARK: int((kinds == MARK).sum()), RESTORE: int((kinds == RESTORE).sum())}

    def _changed_batch(
        self, batch: pa.RecordBatch, schema: pa.Schema, marks: pa.Array, restores: pa.Array
    ) -> pa.RecordBatch:
        policy = self._policy
        if policy.mode == "hard":
            return batch.filter(pc.invert(marks))
        columns = {name: batch.column(name) for name in batch.schema.names}
        if policy.versions is not None:
            valid_to = columns[policy.versions.valid_to]
            stamp = pa.scalar(policy.stamp, valid_to.type)
            columns[policy.versions.valid_to] = pc.if_else(marks, stamp, valid_to)
            current = columns[policy.versions.is_current]
            columns[policy.versions.is_current] = pc.if_else(marks, False, current)
        else:
            kind = schema.field(policy.marker).type
            marker = columns.get(policy.marker, pa.nulls(batch.num_rows, kind))
            marker = pc.if_else(marks, pa.scalar(policy.stamp, kind), marker)
            columns[policy.marker] = pc.if_else(restores, pa.scalar(None, kind), marker)
        return pa.RecordBatch.from_arrays([columns[n] for n in schema.names], schema=schema)


def _chain(
    first: tuple[pa.RecordBatch, int], rest: Iterator[tuple[pa.RecordBatch, int]]
) -> Iterator[tuple[pa.RecordBatch, int]]:
    yield first
    yield from rest


def _buckets(batch: pa.RecordBatch, key: list[str], buckets: int) -> np.ndarray:
    """Each row's bucket: a multiplicative hash of a single integer key (vectorized), else a
    hash of the key's text. Both sides' keys have the same types, so they hash alike."""
    if len(key) == 1 and pa.types.is_integer(batch.column(key[0]).type):
        values = batch.column(key[0]).to_numpy().astype(np.int64).view(np.uint64)
        return ((values * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)) % np.uint64(buckets)
    rows = zip(*(batch.column(k).to_pylist() for k in key), strict=True)
    digests = (hashlib.blake2b(repr(row).encode(), digest_size=8).digest() for row in rows)
    return np.fromiter((int.from_bytes(d, "big") % buckets for d in digests), dtype=np.uint64)


@contextmanager
def diff_keys(
    store: "FolderStore",
    table: str,
    key_schema: pa.Schema,
    source_keys: Iterable[pa.RecordBatch],
    policy: DeletePolicy,
) -> Iterator[ParquetKeyDiff]:
    workdir = store.folder / f".copyjob-keys-{table}"
    shutil.rmtree(workdir, ignore_errors=True)  # what a killed pass left
    workdir.mkdir(parents=True)
    try:
        yield ParquetKeyDiff(store, table, key_schema, source_keys, policy, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
