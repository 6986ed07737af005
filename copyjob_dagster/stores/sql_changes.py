"""Versions (SCD2) and deletions in a SQL destination, done by the database itself.

Both stage rows beside the destination table (a table named `_copyjob_<purpose>_<table>`,
dropped afterwards, or by the next run if a process was killed) and then let the database join:
for versions, the window's rows; for deletions, the source's keys, against which an anti-join
(`NOT EXISTS`, served by the staging table's primary key) finds the rows whose key is gone. The
changes themselves run in one transaction; staging commits before them (MySQL commits DDL
anyway), so a killed run leaves at most a staging table behind.
"""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pyarrow as pa
import sqlalchemy as sa

from copyjob_dagster.errors import DestinationError
from copyjob_dagster.stores.base import DeletePolicy, DeletionCounts, VersionColumns

if TYPE_CHECKING:
    from copyjob_dagster.stores.sql import SqlStore


@contextmanager
def staged(
    store: "SqlStore",
    table: str,
    purpose: str,
    schema: pa.Schema,
    key: tuple[str, ...],
    batches: Iterable[pa.RecordBatch],
) -> Iterator[tuple[sa.Table, int]]:
    """A staging table loaded with the batches, and its row count; dropped on exit."""
    name = store.staging_name(table, purpose)
    with store.engine.begin() as conn:
        store.drop_if_exists(conn, name)
        staging = store.create_table(conn, name, schema, key)
    try:
        with store.engine.begin() as conn:
            rows = store.write_batches(conn, staging, batches)
        yield staging, rows
    finally:
        with store.engine.begin() as conn:
            store.drop_if_exists(conn, name)


def _same_key(a: sa.Table, b: sa.Table, key: tuple[str, ...]) -> list[sa.ColumnElement[bool]]:
    return [a.c[name] == b.c[name] for name in key]


def replace_rows(
    store: "SqlStore",
    target: sa.Table,
    schema: pa.Schema,
    identity: tuple[str, ...],
    batches: Iterable[pa.RecordBatch],
) -> int:
    """Write a window's rows in place of the destination rows with the same `identity` values
    (compared exactly, see `SqlStore.same_values`), in one transaction: a rerun of the window
    replaces what an earlier attempt wrote, and no other row is touched."""
    with staged(store, target.name, "rows", schema, (), batches) as (staging, rows):
        same_row = store.same_values(target, staging, identity)
        with store.writing(target.name) as conn:
            conn.execute(sa.delete(target).where(sa.exists().where(*same_row)))
            conn.execute(sa.insert(target).from_select(schema.names, sa.select(*staging.c)))
    return rows


def write_versions(
    store: "SqlStore",
    target: sa.Table,
    schema: pa.Schema,
    key: tuple[str, ...],
    batches: Iterable[pa.RecordBatch],
    versions: VersionColumns,
) -> int:
    """A window's rows as versions, in one transaction (see `Destination.write_versions`)."""
    with staged(store, target.name, "versions", schema, key, batches) as (staging, rows):
        valid_from = versions.valid_from
        same_version = [
            *_same_key(target, staging, key),
            target.c[valid_from] == staging.c[valid_from],
        ]
        history = {valid_from, versions.valid_to, versions.is_current}
        values = [c for c in schema.names if c not in key and c not in history]
        with store.writing(target.name) as conn:
            if values:  # a version read again (a rerun, a lookback) takes the row's values
                conn.execute(
                    sa.update(target)
                    .where(*same_version)
                    .values({target.c[c]: staging.c[c] for c in values})
                )
            conn.execute(
                sa.update(target)
                .where(
                    *_same_key(target, staging, key),
                    target.c[versions.is_current] == sa.true(),
                    # The staged row is the key's newest version: any other current one is
                    # older, whatever the destination's order of the values (text collations).
                    sa.not_(sa.and_(*store.same_values(target, staging, (valid_from,)))),
                )
                .values(
                    {
                        target.c[versions.valid_to]: staging.c[valid_from],
                        target.c[versions.is_current]: sa.false(),
                    }
                )
            )
            new = sa.select(*(staging.c[c] for c in schema.names)).where(
                ~sa.exists().where(*same_version)
            )
            conn.execute(sa.insert(target).from_select(schema.names, new))
    return rows


class SqlKeyDiff:
    """Deletions found by an anti-join of the destination against the staged source keys."""

    def __init__(
        self, store: "SqlStore", target: sa.Table, staging: sa.Table, policy: DeletePolicy
    ) -> None:
        self._store, self._target, self._policy = store, target, policy
        self._gone = ~sa.exists().where(*_same_key(staging, target, policy.key))
        self._live = self._live_condition()
        count = sa.select(sa.func.count()).select_from(target)
        with store.engine.connect() as conn:
            self.live = conn.execute(count.where(*self._live)).scalar_one()
            self.pending = conn.execute(count.where(*self._live, self._gone)).scalar_one()

    def _live_condition(self) -> list[sa.ColumnElement[bool]]:
        policy, target = self._policy, self._target
        if policy.versions is not None:
            return [target.c[policy.versions.is_current] == sa.true()]
        if policy.mode == "soft":
            return [target.c[policy.marker].is_(None)]
        return []

    def apply(self) -> DeletionCounts:
        policy, target = self._policy, self._target
        doing = f"deleting rows from {target.name!r}"
        with self._store.translated_errors(doing), self._store.writing(target.name) as conn:
            if policy.mode == "hard":
                return DeletionCounts(
                    deleted=conn.execute(sa.delete(target).where(self._gone)).rowcount
                )
            if policy.versions is not None:
                closed = conn.execute(
                    sa.update(target)
                    .where(*self._live, self._gone)
                    .values(
                        {
                            target.c[policy.versions.valid_to]: policy.stamp,
                            target.c[policy.versions.is_current]: sa.false(),
                        }
                    )
                )
                return DeletionCounts(soft_deleted=closed.rowcount)
            marker = target.c[policy.marker]
            marked = conn.execute(
                sa.update(target).where(*self._live, self._gone).values({marker: policy.stamp})
            )
            restored = conn.execute(
                sa.update(target).where(marker.is_not(None), ~self._gone).values({marker: None})
            )
            return DeletionCounts(soft_deleted=marked.rowcount, restored=restored.rowcount)


@contextmanager
def diff_keys(
    store: "SqlStore",
    table: str,
    key_schema: pa.Schema,
    source_keys: Iterable[pa.RecordBatch],
    policy: DeletePolicy,
) -> Iterator[SqlKeyDiff]:
    target = store.reflect(table)
    if target is None:
        raise DestinationError(f"destination {store.display_url}: table {table!r} is missing")
    with (
        store.translated_errors(f"finding rows deleted from {table!r}"),
        staged(store, table, "keys", key_schema, policy.key, source_keys) as (staging, _),
    ):
        yield SqlKeyDiff(store, target, staging, policy)
