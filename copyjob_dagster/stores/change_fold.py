"""Changes as columns (`ChangeBatch`), and folded set-wise to each key's last change.

A change source hands an applier either one change at a time (`KeyedChanges.change`: an
operation, a row as a dict, the old key, a position) or many at once as a `ChangeBatch`; the
applier turns the first into the second (`batch_of_rows`), so both meet here.

`fold` keeps, for each key, its last change in the order given; an update that did not carry a
value (`unsent`: an unchanged TOASTed value) takes it from the nearest earlier change to the
same key that carried it, unless a delete lies between; with none, the value stays unsent and
the destination keeps its own. An update that moved a row to another key first deletes the old
key, at its place in the order. Sorting by key and order, then looking at neighbours, does all
of it with Arrow and numpy, not per row in Python.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class _Unsent:
    def __repr__(self) -> str:
        return "UNSENT"


UNSENT: Any = _Unsent()  # a value the change did not carry (unchanged TOAST): keep the old one


@dataclass
class ChangeBatch:
    """Changes in order, as columns.

    `rows`: the destination's columns by name (a delete's carry its key; a column absent is
    NULL, or unsent in a row that has unsent values); `operations`: insert | update | delete;
    `positions`: each change's position; `unsent`: per column, True where the change did not
    carry the value (its value in `rows` is NULL); `old_keys`: the key columns of an update's
    old key, NULL where the change carries none.
    """

    rows: pa.Table
    operations: pa.Array
    positions: pa.Array
    unsent: dict[str, np.ndarray] = field(default_factory=dict)
    old_keys: pa.Table | None = None

    @property
    def num_rows(self) -> int:
        return self.rows.num_rows

    def deleted(self) -> np.ndarray:
        return np.asarray(pc.equal(self.operations, "delete"), dtype=bool)


def batch_of_rows(
    schema: pa.Schema, changes: list[tuple[str, dict[str, Any], tuple | None, int]], key: tuple
) -> ChangeBatch:
    """Changes given one at a time (`KeyedChanges.change`'s arguments) as one batch."""
    some_unsent = [any(v is UNSENT for v in row.values()) for _, row, _, _ in changes]
    columns, unsent = {}, {}
    for f in schema:
        values = [
            row.get(f.name, UNSENT if partial else None)
            for (_, row, _, _), partial in zip(changes, some_unsent, strict=True)
        ]
        mask = np.fromiter((v is UNSENT for v in values), dtype=bool, count=len(values))
        columns[f.name] = _array([None if v is UNSENT else v for v in values], f.type)
        if mask.any():
            unsent[f.name] = mask
    old_keys = None
    if any(old is not None for _, _, old, _ in changes):
        old_keys = pa.table(
            {
                k: pa.array(
                    [old[i] if old else None for _, _, old, _ in changes], schema.field(k).type
                )
                for i, k in enumerate(key)
            }
        )
    return ChangeBatch(
        pa.table(columns, schema=schema),
        pa.array([operation for operation, _, _, _ in changes], pa.string()),
        pa.array([position for _, _, _, position in changes], pa.int64()),
        unsent,
        old_keys,
    )


def _array(values: list[Any], kind: pa.DataType) -> pa.Array:
    """`values` as an array of `kind`; values of another type (a column the source no longer
    describes, kept at the destination as text) are cast, as `aligned` casts a batch's."""
    try:
        return pa.array(values, kind)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array(values).cast(kind)


def aligned(batch: ChangeBatch, schema: pa.Schema) -> ChangeBatch:
    """The batch with `schema`'s columns in its order and types (absent ones NULL, or unsent in
    rows that have unsent values)."""
    n = batch.num_rows
    some_unsent = np.zeros(n, dtype=bool)
    for mask in batch.unsent.values():
        some_unsent |= mask
    columns, unsent = [], {}
    for f in schema:
        if f.name in batch.rows.column_names:
            column = batch.rows.column(f.name)
            columns.append(column if column.type == f.type else column.cast(f.type))
            if f.name in batch.unsent:
                unsent[f.name] = batch.unsent[f.name]
        else:
            columns.append(pa.nulls(n, f.type))
            if some_unsent.any():
                unsent[f.name] = some_unsent
    rows = pa.Table.from_arrays(columns, schema=schema)
    return ChangeBatch(rows, batch.operations, batch.positions, unsent, batch.old_keys)


def concatenated(batches: list[ChangeBatch], key: tuple) -> ChangeBatch:
    """Batches of one schema (see `aligned`) as one."""
    if len(batches) == 1:
        return batches[0]
    rows = pa.concat_tables([b.rows for b in batches])
    unsent = {}
    for name in {n for b in batches for n in b.unsent}:
        unsent[name] = np.concatenate(
            [b.unsent.get(name, np.zeros(b.num_rows, dtype=bool)) for b in batches]
        )
    old_keys = None
    if any(b.old_keys is not None for b in batches):
        keys = pa.schema([rows.schema.field(k).with_nullable(True) for k in key])
        old_keys = pa.concat_tables(
            [
                b.old_keys.cast(keys)
                if b.old_keys is not None
                else pa.table({k: pa.nulls(b.num_rows, keys.field(k).type) for k in key})
                for b in batches
            ]
        )
    return ChangeBatch(
        rows,
        pa.concat_arrays([b.operations for b in batches]),
        pa.concat_arrays([b.positions for b in batches]),
        unsent,
        old_keys,
    )


@dataclass
class Folded:
    """Each key's last change: its row, whether it deletes, and the values it left unsent."""

    rows: pa.Table
    deleted: np.ndarray
    unsent: dict[str, np.ndarray]

    def partial(self) -> np.ndarray:
        """Rows to update column by column (some value unsent)."""
        some = np.zeros(self.rows.num_rows, dtype=bool)
        for mask in self.unsent.values():
            some |= mask
        return some & ~self.deleted


def fold(batch: ChangeBatch, key: tuple) -> Folded:
    rows, deleted, unsent = batch.rows, batch.deleted(), dict(batch.unsent)
    order_in = np.arange(rows.num_rows, dtype=np.int64) * 2 + 1
    moved = _moved(batch, key)
    if len(moved):  # the old key's delete, just before the change that moved the row
        assert batch.old_keys is not None
        old = batch.old_keys.take(moved)
        extra = pa.Table.from_arrays(
            [
                old.column(f.name).cast(f.type) if f.name in key else pa.nulls(len(moved), f.type)
                for f in rows.schema
            ],
            schema=rows.schema,
        )
        rows = pa.concat_tables([rows, extra])
        deleted = np.concatenate([deleted, np.ones(len(moved), dtype=bool)])
        order_in = np.concatenate([order_in, moved * 2])
        unsent = {
            n: np.concatenate([m, np.zeros(len(moved), dtype=bool)]) for n, m in unsent.items()
        }
    sort = pa.table({**{f"k{i}": rows.column(k) for i, k in enumerate(key)}, "order": order_in})
    order = np.asarray(
        pc.sort_indices(
            sort, [(f"k{i}", "ascending") for i in range(len(key))] + [("order", "ascending")]
        )
    )
    size = len(order)
    first = np.ones(size, dtype=bool)
    if size > 1:
        differs = np.zeros(size - 1, dtype=bool)
        for k in key:
            column = rows.column(k).take(order)
            changed = pc.fill_null(pc.not_equal(column.slice(1), column.slice(0, size - 1)), True)
            differs |= np.asarray(changed, dtype=bool)
        first[1:] = differs
    last = np.append(first[1:], True)
    at = np.flatnonzero(last)  # sorted places of each key's last change
    start = np.maximum.accumulate(np.where(first, np.arange(size), 0))[at]
    take = order[at]
    final_deleted = deleted[take]
    columns, left = [], {}
    sorted_deleted = deleted[order]
    for name in rows.column_names:
        if name not in unsent:
            columns.append(rows.column(name).take(take))
            continue
        missing = unsent[name][order]
        source = np.maximum.accumulate(np.where(~missing | sorted_deleted, np.arange(size), -1))[at]
        fill = missing[at] & (source >= start) & ~sorted_deleted[np.maximum(source, 0)]
        index = take.copy()
        index[fill] = order[source[fill]]
        columns.append(rows.column(name).take(index))
        remaining = missing[at] & ~fill & ~final_deleted
        if remaining.any():
            left[name] = remaining
    return Folded(pa.Table.from_arrays(columns, schema=rows.schema), final_deleted, left)


def _moved(batch: ChangeBatch, key: tuple) -> np.ndarray:
    """The changes whose old key differs from their key."""
    if batch.old_keys is None:
        return np.zeros(0, dtype=np.int64)
    moved = np.zeros(batch.num_rows, dtype=bool)
    for k in key:
        old = batch.old_keys.column(k).cast(batch.rows.schema.field(k).type)
        differs = pc.and_(
            pc.is_valid(old), pc.fill_null(pc.not_equal(old, batch.rows.column(k)), True)
        )
        moved |= np.asarray(differs, dtype=bool)
    return np.flatnonzero(moved)
