"""A Delta table's change data feed as an incremental source: the rows changed since a version.

Where a table has `delta.enableChangeDataFeed`, each commit also records its inserted,
updated (pre- and post-image) and deleted rows. A run reads the feed from the version after
the one last copied up to the table's version when the run began (its watermark), and takes
each changed key's last change: its newest row, unless that change is a delete. Deleted keys
need no list of their own: at that version the key is no longer in the table, which the
engine's deletion pass (by the table's keys) finds, in the same commit as the changed rows.

Memory: the changed keys with their versions (one pass over the feed's key columns), then the
changed rows stream batch by batch (a second pass).
"""

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from copyjob_dagster.stores.datasets import DatasetReader

CHANGE_FEED = "delta.enableChangeDataFeed"
CHANGE, VERSION = "_change_type", "_commit_version"


def has_change_feed(table: DeltaTable) -> bool:
    return table.metadata().configuration.get(CHANGE_FEED, "").lower() == "true"


@dataclass
class ChangeFeed:
    """The changes of versions (`since`, `version`] of one table, and the table at `version`
    (`snapshot`, whose keys the deletion pass reads). `since=None`: no changes, a first load."""

    table: DeltaTable
    since: int | None
    version: int
    snapshot: DatasetReader
    snapshot_schema: pa.Schema

    def __post_init__(self) -> None:
        self._newest: pa.Table | None = None
        self.deleted_keys = 0

    @property
    def changed(self) -> bool:
        return self.since is not None and self.version > self.since

    def read_keys(self, key: list[str]) -> None:
        """Read the changed keys (the feed's first pass): after it, `deleted_keys` is known."""
        if self.changed and self._newest is None:
            self._newest = self._last_changes(key)

    def rows(self, columns: list[str], key: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Each changed key's newest row (not deleted), as `columns`."""
        self.read_keys(key)
        newest = self._newest
        if newest is None or not newest.num_rows:
            return
        for batch in self._feed([*dict.fromkeys([*columns, *key])]):
            batch = batch.filter(_kept(batch))
            if not batch.num_rows:
                continue
            found = pa.Table.from_batches([batch]).join(
                newest, keys=[*key, VERSION], join_type="inner"
            )
            yield from found.select(columns).to_batches(max_chunksize=batch_rows)

    def _last_changes(self, key: list[str]) -> pa.Table:
        """The changed keys whose last change is not a delete, with that change's version."""
        changes = pa.Table.from_batches(
            [b.filter(pc.not_equal(b.column(CHANGE), "update_preimage")) for b in self._feed(key)]
        )
        if not changes.num_rows:
            return changes.select([*key, VERSION])
        last = changes.group_by(key).aggregate([(VERSION, "max")])
        last = last.rename_columns([*key, VERSION])
        newest = changes.join(last, keys=[*key, VERSION], join_type="inner")
        deleted = newest.filter(pc.equal(newest.column(CHANGE), "delete")).select(key)
        self.deleted_keys = deleted.num_rows
        return (
            newest.filter(pc.not_equal(newest.column(CHANGE), "delete"))
            .select([*key, VERSION])
            .join(deleted, keys=key, join_type="left anti")
            .group_by([*key, VERSION])
            .aggregate([])
        )

    def _feed(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        assert self.since is not None
        reader = self.table.load_cdf(
            starting_version=self.since + 1,
            ending_version=self.version,
            columns=[*columns, CHANGE, VERSION],
        )
        schema = self.snapshot_schema
        for batch in pa.RecordBatchReader.from_stream(reader):
            # Text comes as string views; the table's own types are what the copy planned.
            yield pa.RecordBatch.from_arrays(
                [
                    column.cast(schema.field(name).type if name in schema.names else pa.string())
                    for name, column in zip(batch.schema.names, batch.columns, strict=True)
                ],
                names=batch.schema.names,
            )


def _kept(batch: pa.RecordBatch) -> pa.Array:
    change = batch.column(CHANGE)
    return pc.and_(pc.not_equal(change, "update_preimage"), pc.not_equal(change, "delete"))
