"""One Delta merge that writes a window's rows and applies its deletions: one commit.

The merge's source is a stream of rows each tagged (`OP`) with what it does to the destination
rows of its key (the window's rows, then the keys the deletion pass found):

- `u` upsert: the window's row replaces the row with its key (and, in an appended table, its
  incremental value) or is inserted;
- `v` and `c` (SCD2): each window row twice, once as the version (replacing the same
  (key, valid_from) if a killed run wrote it, else inserted), once to close the key's current
  version of another valid_from (valid_to = the new valid_from, no longer current);
- `d` deletes every row of a gone key; `m` marks its live rows (the stamp in the marker
  column); `r` clears the mark of a key that is back; `x` closes a gone key's current version
  at the stamp (SCD2).

The merge predicate starts with the primary key's equality, so DataFusion joins by hash; no
destination row is matched by two source rows, which delta-rs refuses. Then comes the range of
the source's keys, by which delta-rs skips the files that cannot match (`delta_source`).
"""

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, WriterProperties

from copyjob_dagster.stores.base import Commit, VersionColumns
from copyjob_dagster.stores.delta_changes import (
    CLOSE,
    DELETE,
    MARK,
    OP,
    RESTORE,
    RETIRE,
    UPSERT,
    VERSION,
    DeltaKeyDiff,
)
from copyjob_dagster.stores.delta_rewrite import commit_counts
from copyjob_dagster.stores.delta_source import spilled
from copyjob_dagster.stores.delta_types import as_delta, quoted

WRITE_TOKEN = "copyjob.write"


def upsert(
    existing: DeltaTable,
    key: tuple[str, ...],
    batches: Iterable[pa.RecordBatch],
    cast: Callable[[Iterable[pa.RecordBatch]], pa.RecordBatchReader],
    writer_properties: WriterProperties,
    commit_properties: CommitProperties,
) -> int:
    """Upsert the batches by `key` in one commit, reading only the files that the range of the
    batches' keys can reach (see `delta_source`); `cast` makes the spilled batches Delta's
    rows as the merge reads them back. Return the rows read."""
    with spilled(batches, key) as source:
        on = " AND ".join(f"t.{quoted(k)} = s.{quoted(k)}" for k in key)
        bounds = source.range.predicate("t")
        existing.merge(
            cast(source.batches()),
            predicate=f"{on} AND {bounds}" if bounds else on,
            source_alias="s",
            target_alias="t",
            merge_schema=True,
            writer_properties=writer_properties,
            commit_properties=commit_properties,
        ).when_matched_update_all().when_not_matched_insert_all().execute()
    return source.rows


def merge_changes(
    existing: DeltaTable,
    target: pa.Schema,
    write_key: tuple[str, ...],
    batches: Iterable[pa.RecordBatch],
    *,
    diff: DeltaKeyDiff | None,
    versions: VersionColumns | None,
    writer_properties: WriterProperties,
    commit_properties: CommitProperties,
) -> tuple[int, dict[str, Any]]:
    """Merge the window's batches (of the Delta schema `target`) and `diff`'s deletions in one
    commit; return the window's row count and the merge's metrics. The window is spilled first
    (`delta_source`): the range of its keys and of the deletions' keys bounds the files read."""
    properties = {"writer_properties": writer_properties, "commit_properties": commit_properties}
    # The target's own nullability: with a nullable source, delta-rs's schema merge (of new
    # columns) drops the copied rows' values of non-null columns (delta-rs 1.6.6). The rows of
    # deleted keys hold NULLs there, in columns no clause of theirs reads or writes.
    source_schema = target.append(pa.field(OP, pa.string()))
    common = diff.key if diff is not None else list(write_key)
    with spilled(batches, common) as window:
        bounds = window.range
        if diff is not None:  # the deletion rows' keys bound the merge too
            for keys in diff.gone_keys():
                bounds.add(keys)
            if diff.restores is not None:
                for keys in diff.restores.to_batches():
                    bounds.add(keys)

        def rows() -> Iterator[pa.RecordBatch]:
            for batch in as_delta(window.batches(), target):
                if diff is not None:
                    diff.drop_restores(pa.Table.from_batches([batch.select(diff.key)]))
                for op in (VERSION, CLOSE) if versions is not None else (UPSERT,):
                    yield _tagged(batch, op, source_schema)
            if diff is not None:
                yield from _deletion_rows(diff, versions, source_schema)

        stream = pa.RecordBatchReader.from_batches(source_schema, rows())
        has_marker = diff is not None and diff.policy.marker in existing.schema().to_arrow().names
        predicate = _predicate(common, write_key, diff, versions, has_marker, bounds.predicate("t"))
        metrics = _merge(existing, stream, predicate, target, diff, versions, **properties)
    return window.rows, metrics


def _merge(
    existing: DeltaTable,
    stream: pa.RecordBatchReader,
    predicate: str,
    target: pa.Schema,
    diff: DeltaKeyDiff | None,
    versions: VersionColumns | None,
    **properties: Any,
) -> dict[str, Any]:
    """The merge of the tagged rows: each clause acts on the rows of its tag."""
    columns = {quoted(n): f"s.{quoted(n)}" for n in target.names}
    op = f"s.{quoted(OP)}"
    merger = existing.merge(
        stream,
        predicate=predicate,
        source_alias="s",
        target_alias="t",
        merge_schema=True,
        **properties,
    ).when_matched_update(columns, predicate=f"{op} IN ('{UPSERT}', '{VERSION}')")
    if versions is not None:
        valid_to, current = quoted(versions.valid_to), quoted(versions.is_current)
        # Closed at the newer version's valid_from, or at the stamp a retiring row carries.
        for closing, at in ((CLOSE, versions.valid_from), (RETIRE, versions.valid_to)):
            merger = merger.when_matched_update(
                {valid_to: f"s.{quoted(at)}", current: "false"}, predicate=f"{op} = '{closing}'"
            )
    if diff is not None and diff.policy.mode == "hard":
        merger = merger.when_matched_delete(predicate=f"{op} = '{DELETE}'")
    if diff is not None and diff.policy.marker:
        marker = quoted(diff.policy.marker)
        merger = merger.when_matched_update(
            {marker: f"s.{marker}"}, predicate=f"{op} IN ('{MARK}', '{RESTORE}')"
        )
    return merger.when_not_matched_insert(
        columns, predicate=f"{op} IN ('{UPSERT}', '{VERSION}')"
    ).execute()


def _predicate(
    common: list[str],
    write_key: tuple[str, ...],
    diff: DeltaKeyDiff | None,
    versions: VersionColumns | None,
    has_marker: bool,
    bounds: str,
) -> str:
    def equal(names: Iterable[str]) -> str:
        return " AND ".join(f"t.{quoted(n)} = s.{quoted(n)}" for n in names)

    op = f"s.{quoted(OP)}"
    cases = []
    if versions is not None:
        valid_from, current = quoted(versions.valid_from), quoted(versions.is_current)
        cases.append(f"{op} = '{VERSION}' AND t.{valid_from} = s.{valid_from}")
        cases.append(
            f"{op} = '{CLOSE}' AND t.{current} = true AND t.{valid_from} <> s.{valid_from}"
        )
    else:
        extra = [n for n in write_key if n not in common]
        cases.append(f"{op} = '{UPSERT}'" + (f" AND {equal(extra)}" if extra else ""))
    if diff is not None:
        if diff.policy.mode == "hard":
            cases.append(f"{op} = '{DELETE}'")
        elif versions is not None:
            cases.append(f"{op} = '{RETIRE}' AND t.{quoted(versions.is_current)} = true")
        else:
            marker = quoted(diff.policy.marker or "")
            unmarked, marked = (
                (f" AND t.{marker} IS NULL", f" AND t.{marker} IS NOT NULL")
                if has_marker
                else ("", "")
            )
            cases.append(f"{op} = '{MARK}'{unmarked}")
            cases.append(f"{op} = '{RESTORE}'{marked}")
    bounded = f"{equal(common)} AND {bounds}" if bounds else equal(common)
    return f"{bounded} AND (" + " OR ".join(f"({c})" for c in cases) + ")"


def _tagged(batch: pa.RecordBatch, op: str, schema: pa.Schema) -> pa.RecordBatch:
    tag = pa.repeat(pa.scalar(op, pa.string()), batch.num_rows)
    return pa.RecordBatch.from_arrays([*batch.columns, tag], schema=schema)


def _deletion_rows(
    diff: DeltaKeyDiff, versions: VersionColumns | None, schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """The gone keys as merge rows (the stamp in the column the merge sets), then restores."""
    policy = diff.policy
    if policy.mode == "hard":
        op, stamped = DELETE, None
    elif versions is not None:
        op, stamped = RETIRE, versions.valid_to
    else:
        op, stamped = MARK, policy.marker
    for keys in diff.gone_keys():
        yield _key_rows(keys, op, schema, stamped, policy.stamp)
    if diff.restores is not None and diff.restores.num_rows:
        for keys in diff.restores.to_batches():
            yield _key_rows(keys, RESTORE, schema, None, None)


def _key_rows(
    keys: pa.RecordBatch, op: str, schema: pa.Schema, stamped: str | None, stamp: Any
) -> pa.RecordBatch:
    rows = keys.num_rows
    columns = []
    for field in schema:
        if field.name == OP:
            columns.append(pa.repeat(pa.scalar(op, pa.string()), rows))
        elif field.name in keys.schema.names:
            columns.append(keys.column(field.name).cast(field.type))
        elif field.name == stamped:
            columns.append(pa.repeat(pa.scalar(stamp, field.type), rows))
        elif field.nullable:
            columns.append(pa.nulls(rows, field.type))
        else:
            columns.append(_placeholder(field.type, rows))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _placeholder(kind: pa.DataType, rows: int) -> pa.Array:
    """Values for a non-null column of a deleted key's row, which no clause writes anywhere."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        return pa.array([""] * rows).cast(kind)
    zeros = pa.array([0] * rows, pa.int32())
    return zeros.cast(pa.bool_()) if pa.types.is_boolean(kind) else zeros.cast(kind)


def tagged(token: str) -> CommitProperties:
    return CommitProperties(custom_metadata={WRITE_TOKEN: token})


def commit_of(entry: dict[str, Any], deleted: int) -> Commit:
    """A history entry's version and row counts: a merge reports all three; an overwrite
    reports the rows it added, and `deleted` is what it replaced; a file-by-file merge
    (`delta_rewrite`) writes its counts into its commit info."""
    counted = commit_counts(entry)
    if counted is not None:
        return counted
    metrics = entry.get("operationMetrics", {})
    if "num_target_rows_inserted" in metrics:
        return Commit(
            version=int(entry["version"]),
            inserted=int(metrics["num_target_rows_inserted"]),
            updated=int(metrics["num_target_rows_updated"]),
            deleted=int(metrics["num_target_rows_deleted"]),
        )
    return Commit(
        version=int(entry["version"]),
        inserted=int(metrics.get("num_added_rows", 0)),
        deleted=deleted,
    )
