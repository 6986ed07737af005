"""Incremental copies by a source table's change feed (Delta's change data feed).

Such a table has no incremental column: its watermark is the source table's version last
copied (an integer). A first load (or a full refresh) copies the table at its version now; a
later run merges each key changed since the watermark's version by its newest row, and keys
whose last change was a delete are deleted at the destination (the engine's deletion pass,
with its guard; `deletes: soft` marks them instead, and an explicit `deletes: ignore` leaves
them), in the same destination commit. The new watermark is the version read. Never imports
Dagster.
"""

import dataclasses

from copyjob_dagster.config import TableConfig
from copyjob_dagster.engine.deletions import deletion_pass
from copyjob_dagster.engine.planning import CopyPlan
from copyjob_dagster.engine.rows import RowCounter, non_empty, renamed
from copyjob_dagster.engine.stamping import Stamp, stamped
from copyjob_dagster.engine.watermark import Watermark
from copyjob_dagster.errors import SourceError, WatermarkError
from copyjob_dagster.stores import ChangeFeedSource, DeletionCounts, Destination, Source, Window


@dataclasses.dataclass(frozen=True)
class FeedCopy:
    rows_written: int
    watermark: Watermark
    source_version: int
    deletions: DeletionCounts | None


def copy_by_feed(
    plan: CopyPlan,
    table: TableConfig,
    source: Source,
    destination: Destination,
    previous: Watermark | None,
    counter: RowCounter,
    stamp: Stamp,
    allow_mass_delete: bool,
) -> FeedCopy:
    """Copy the rows changed since `previous` (a source table version), or all at first."""
    where = f"job {plan.job!r}, table {plan.source_table!r}"
    if not source.capabilities.change_feed or not isinstance(source, ChangeFeedSource):
        raise SourceError(f"{where}: the source records no change feed; name an incremental_column")
    if previous is not None and previous.kind != "integer":
        raise WatermarkError(
            f"{where}: the watermark is a {previous.kind}, not a table version of the change "
            f"feed; run a full refresh"
        )
    if destination.describe(plan.destination_table) is None:
        previous = None  # the copy is gone from the destination: load it again
    source_names = {c.destination: c.source for c in plan.columns}
    key = [source_names[name] for name in plan.primary_key]
    if "deletes" not in table.model_fields_set:
        plan = dataclasses.replace(plan, deletes="hard")  # the feed says which keys are gone
    with source.open_feed(plan.source_table, int(previous.text) if previous else None) as feed:
        watermark = Watermark.of("integer", feed.version, 0, "")
        if previous is None:
            rows = feed.snapshot.batches(plan.source_columns, plan.batch_rows)
            batches = counter.count(stamped(renamed(rows, plan.destination_schema), plan, stamp))
            written = destination.replace(
                plan.destination_table, plan.written_schema, plan.primary_key, batches
            )
            return FeedCopy(written, watermark, feed.version, None)
        policy = plan.deletes
        feed.read_keys(key)
        if not feed.deleted_keys:
            plan = dataclasses.replace(plan, deletes="ignore")  # no key to look for
        with deletion_pass(
            plan,
            destination,
            feed.snapshot,
            deleted_at=stamp.loaded_at,
            closed_at=None,
            allow_mass_delete=allow_mass_delete,
            initial=False,
        ) as deletions:
            rows = feed.rows(plan.source_columns, key, plan.batch_rows)
            changed = non_empty(
                counter.count(stamped(renamed(rows, plan.destination_schema), plan, stamp))
            )
            written = 0
            if changed is not None:
                written = destination.write_increment(
                    plan.destination_table,
                    plan.written_schema,
                    plan.primary_key,
                    changed,
                    method="merge",
                    window=Window(plan.primary_key[0], low=previous.value),
                )
            deleted = deletions.apply() if deletions is not None else DeletionCounts()
    return FeedCopy(written, watermark, feed.version, deleted if policy != "ignore" else None)
