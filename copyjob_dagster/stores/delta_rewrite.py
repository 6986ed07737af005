"""A Delta merge written one data file at a time (copy-on-write), in one Delta commit.

delta-rs 1.6.6 writes no deletion vectors (delta-rs#4512): its merge rewrites each data file
that holds a changed row, and its join holds the window and those files' rows together (a
merge of 20,000 rows spread over a 2,000,000-row table, every file touched, peaked at 325-458
MB; benchmarks/results/delta-merge.md). Here instead, holding one file at a time:

1. the window's rows are written to new data files, their keys kept in memory;
2. each data file that the window's keys, the gone keys or the restored keys can reach (by the
   min/max statistics of its key columns) is read alone; if none of its rows is changed it is
   left as it is, else its rows of the window's keys (and, for hard deletions, of gone keys)
   are dropped, soft deletions mark or unmark theirs, and the rest go to a new file;
3. one commit (`create_write_transaction`, a WRITE) removes the rewritten files and adds the
   new ones, tagged as the store's other commits are (`delta_merge.tagged`), with the rows
   inserted, updated and deleted in its commit info.

The rows match as in the DataFusion merge (`delta_merge`): by equal keys, a NULL key matching
nothing. A run killed before the commit leaves files that no version names (vacuum removes
them); the previous version stays. The commit is tried once, as the version after the one the
files were chosen from: if any writer committed meanwhile, ours fails (and the run's rerun
merges again). delta-rs's conflict check, which would let some of those commits through, is
not relied on: it does not see that a compaction (`optimize`, whose removes say
`dataChange: false`) removed a file that ours removes too, and the rewritten file's rows would
then be in the table twice. Each of these commits also carries the application transaction
`copyjob`.

It applies to tables copyjob writes (`fits`): no partitions; no deletion vectors, column
mapping, constraints, change data feed or other table features than naive timestamps; and a
window of the table's own columns. Anything else, and SCD2, goes to the DataFusion merge.
"""

import functools
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import RemoveAction, Transaction

from copyjob_dagster.stores.base import Commit, DeletePolicy
from copyjob_dagster.stores.delta_changes import DeltaKeyDiff
from copyjob_dagster.stores.delta_files import DataFiles, now_ms, stats_columns

APP_ID = "copyjob"
INSERTED, UPDATED, DELETED = "copyjob.inserted", "copyjob.updated", "copyjob.deleted"
_ROW = "_copyjob_row"
TIME_BOUND_CUT = timedelta(milliseconds=1)


# Table features that change nothing of how a data file is written or committed: naive
# timestamps (every table with one has them).
PLAIN_FEATURES = {"timestampNtz"}


def fits(existing: DeltaTable, target: pa.Schema, policy: DeletePolicy | None) -> bool:
    """Whether a merge of rows of `target` (and deletions by `policy`) can be written here."""
    protocol = existing.protocol()
    metadata = existing.metadata()
    schema = pa.schema(existing.schema().to_arrow())
    return (
        _plain(protocol.min_reader_version, 1, protocol.reader_features)
        and _plain(protocol.min_writer_version, 2, protocol.writer_features)
        and not metadata.partition_columns
        and metadata.configuration.get("delta.appendOnly") != "true"
        and not any(f.metadata and b"delta.invariants" in f.metadata for f in schema)
        and _fields(schema) == _fields(target)
        and (policy is None or policy.versions is None)
        and (policy is None or policy.mode == "hard" or policy.marker in schema.names)
    )


def _plain(version: int, legacy: int, features: list[str] | None) -> bool:
    """A protocol version of no feature but the legacy ones up to `legacy` (deletion
    vectors, column mapping, constraints, change data feed... are later ones), or of table
    features all in PLAIN_FEATURES."""
    return version <= legacy or (features is not None and set(features) <= PLAIN_FEATURES)


def _fields(schema: pa.Schema) -> dict[str, tuple[pa.DataType, bool]]:
    """Each field's type as Delta holds it (one string type, one binary type)."""
    return {f.name: (_DELTA_TYPES.get(f.type, f.type), f.nullable) for f in schema}


_DELTA_TYPES = {pa.large_string(): pa.string(), pa.large_binary(): pa.binary()}


class RepeatedKeys(ValueError):
    """The window holds a key more than once (the store names the table it was writing)."""


@dataclass
class _Keys:
    """The keys the merge acts on: each a table of key columns (rows may repeat)."""

    replaced: pa.Table  # the window's: its rows replace the rows of these (write key)
    gone: pa.Table | None  # deleted (hard) or marked (soft), by the deletion key
    restored: pa.Table | None  # marks cleared (soft)


def rewrite(
    existing: DeltaTable,
    write_key: Sequence[str],
    batches: Iterable[pa.RecordBatch],
    diff: DeltaKeyDiff | None,
    properties: CommitProperties,
    token: str,
) -> int:
    """Merge the batches (of the table's schema) and `diff`'s deletions into `existing` in one
    commit (see the module's doc); return the window's row count."""
    schema = pa.schema(existing.schema().to_arrow())
    dataset = existing.to_pyarrow_dataset()
    filesystem = dataset.filesystem
    files = DataFiles(
        filesystem, schema, stats_columns(schema, existing.metadata().configuration), token
    )
    window_keys: list[pa.Table] = []

    def keyed() -> Iterable[pa.RecordBatch]:
        for batch in batches:
            window_keys.append(pa.table(batch.select(list(write_key))))
            yield pa.RecordBatch.from_arrays(
                [batch.column(f.name).cast(f.type) for f in schema], schema=schema
            )

    written = files.write(keyed())
    replaced = (
        pa.concat_tables(window_keys)
        if window_keys
        else schema.empty_table().select(list(write_key))
    )
    _refuse_repeated(replaced, write_key)
    keys = _Keys(replaced, None, None)
    if diff is not None:
        diff.drop_restores(replaced.select(diff.key))
        gone = list(diff.gone_keys())
        keys.gone = pa.Table.from_batches(gone) if gone else None
        keys.restored = (
            diff.restores if diff.restores is not None and diff.restores.num_rows else None
        )
    policy = diff.policy if diff is not None else None
    gone_key = diff.key if diff is not None else []
    actions = pa.table(existing.get_add_actions(flatten=True))

    removed: list[RemoveAction] = []
    counts = _Counts()
    for path, size in _reachable(actions, write_key, gone_key, keys):
        path = unquote(path)  # the log's escaped form: delta-rs escapes a remove's path again
        data = ds.dataset(path, schema=schema, filesystem=filesystem).to_table()
        kept = _rewritten(data, write_key, gone_key, policy, keys, counts)
        if kept is None:
            continue  # no row of it changes: the file stays
        files.write(kept.to_batches(), split=False)
        removed.append(RemoveAction(path, True, now_ms(), size=size, partition_values={}))
    # Window rows of a key the table held (maybe in more than one row) are not inserted.
    matched = pa.concat_tables(counts.matched) if counts.matched else replaced.slice(0, 0)
    inserted = written - matched.group_by(list(write_key)).aggregate([]).num_rows
    metadata = {
        INSERTED: inserted,
        UPDATED: counts.replaced + counts.marked,
        DELETED: counts.deleted,
    }
    commit = CommitProperties(
        custom_metadata={**(properties.custom_metadata or {}), **metadata},
        app_transactions=[Transaction(APP_ID, existing.version() + 1)],
        max_commit_retries=0,  # see the module's doc: any commit made meanwhile fails ours
    )
    try:
        existing.create_write_transaction(
            [*removed, *files.added], mode="append", schema=schema, commit_properties=commit
        )
    except CommitFailedError:
        raise CommitFailedError(
            f"another writer committed to the table after version {existing.version()}, which "
            f"this merge read: nothing was committed, run it again"
        ) from None
    if diff is not None:
        diff.applied = diff.counts(deleted=counts.deleted)
    return written


@dataclass
class _Counts:
    replaced: int = 0  # destination rows replaced by the window's
    marked: int = 0  # marked or unmarked (soft deletions)
    deleted: int = 0
    matched: list[pa.Table] = field(default_factory=list)  # the keys of the replaced rows


def _refuse_repeated(keys: pa.Table, names: Sequence[str]) -> None:
    """Stop a window that holds a key (with no NULL in it) more than once: merged by key it
    would be in the table twice (delta-rs's merge refuses it too, when the key is there)."""
    names = list(names)
    valid = functools.reduce(pc.and_, [pc.is_valid(keys.column(n)) for n in names])
    counted = keys.filter(valid).group_by(names).aggregate([([], "count_all")])
    repeated = counted.filter(pc.greater(counted.column("count_all"), 1))
    if repeated.num_rows:  # no key's value in the message: rows' values stay out of logs
        raise RepeatedKeys(
            f"the window holds {repeated.num_rows} keys more than once: a merge by "
            f"{', '.join(names)} would write each of them twice; make the key unique at the "
            f"source"
        )


def _reachable(
    actions: pa.Table, write_key: Sequence[str], gone_key: Sequence[str], keys: _Keys
) -> Iterable[tuple[str, int]]:
    """The data files (path, size) that a row of `keys` may match: those where, for one of the
    key sets, each of its key columns with statistics has a key between the file's lowest and
    highest value."""
    sets = []
    for table, names in (
        (keys.replaced, write_key),
        (keys.gone, gone_key),
        (keys.restored, gone_key),
    ):
        if table is None or not table.num_rows:
            continue
        sets.append(
            [
                (
                    actions.column(f"min.{name}").to_pylist(),
                    actions.column(f"max.{name}").to_pylist(),
                    sorted(v for v in table.column(name).to_pylist() if v is not None),
                )
                for name in names
                if f"min.{name}" in actions.column_names and f"max.{name}" in actions.column_names
            ]
        )
    paths, sizes = actions.column("path").to_pylist(), actions.column("size_bytes").to_pylist()
    for index, (path, size) in enumerate(zip(paths, sizes, strict=True)):
        if any(
            all(_any_between(low[index], high[index], values) for low, high, values in bounds)
            for bounds in sets
        ):
            yield path, size


def _any_between(low: Any, high: Any, values: list[Any]) -> bool:
    """Whether a value of the sorted `values` lies in [low, high] (no bound: it may).

    delta-rs (as Spark) writes a timestamp's bounds cut to the millisecond: a file whose
    highest value is 12:00:00.123456 says 12:00:00.123, so a timestamp's highest value is
    taken TIME_BOUND_CUT higher (its lowest, cut down, is still a lower bound). A decimal's
    bounds are JSON floats in delta-rs's files (9007199254740995 is written 9007199254740996):
    they bound nothing."""
    if low is None or high is None or isinstance(low, Decimal):
        return True
    if isinstance(high, datetime):
        if high.replace(tzinfo=None) > datetime.max - TIME_BOUND_CUT:
            return True  # within a millisecond of the last timestamp: it bounds nothing
        high += TIME_BOUND_CUT
    at = bisect_left(values, low)
    return at < len(values) and values[at] <= high


def _rewritten(
    data: pa.Table,
    write_key: Sequence[str],
    gone_key: Sequence[str],
    policy: DeletePolicy | None,
    keys: _Keys,
    counts: _Counts,
) -> pa.Table | None:
    """The file's rows after the merge, counted into `counts`; None if the merge changes none
    of them."""
    replaced = _matching(data, write_key, keys.replaced)
    gone = _matching(data, gone_key, keys.gone) & ~replaced
    restored = _matching(data, gone_key, keys.restored)  # none the window writes
    marked = 0
    if policy is not None and policy.mode == "soft":
        marker = data.column(policy.marker)
        marks = gone & ~np.asarray(marker.is_valid())
        unmarks = restored & np.asarray(marker.is_valid())
        marked = int(marks.sum()) + int(unmarks.sum())
        if marked:
            stamp = pa.scalar(policy.stamp, marker.type)
            unmarked = pc.if_else(unmarks, pa.scalar(None, marker.type), marker)
            at = data.schema.get_field_index(policy.marker)
            data = data.set_column(at, data.schema.field(at), pc.if_else(marks, stamp, unmarked))
        dropped = replaced
    else:
        dropped = replaced | gone
        counts.deleted += int(gone.sum())
    counts.replaced += int(replaced.sum())
    counts.marked += marked
    if replaced.any():
        counts.matched.append(data.filter(replaced).select(list(write_key)))
    if not dropped.any() and not marked:
        return None
    return data.filter(~dropped)


def _matching(data: pa.Table, names: Sequence[str], keys: pa.Table | None) -> np.ndarray:
    """Which rows of `data` have their `names` equal to a row of `keys` (NULL equals
    nothing), by a semi join of the row numbers."""
    found = np.zeros(data.num_rows, dtype=bool)
    if keys is None or not keys.num_rows or not data.num_rows:
        return found
    names = list(names)
    rows = data.select(names).append_column(_ROW, pa.array(np.arange(data.num_rows)))
    probe = keys.select(names).cast(data.select(names).schema)
    hits = rows.join(probe, keys=names, join_type="left semi").column(_ROW)
    found[hits.to_numpy()] = True
    return found


def commit_counts(entry: dict[str, Any]) -> Commit | None:
    """This module's counts, if `entry` (a history entry) is one of its commits."""
    if INSERTED not in entry:
        return None
    return Commit(
        version=int(entry["version"]),
        inserted=int(entry[INSERTED]),
        updated=int(entry[UPDATED]),
        deleted=int(entry[DELETED]),
    )
