"""Upkeep of a Delta table: compaction of its small files, then vacuum of the files that no
version within the retention needs, with delta-rs's own `optimize.compact` and `vacuum`.

Each write adds files and the log a commit: a table merged every few minutes gathers small
files (an append's window, a merge's rewritten files) and keeps every file it ever replaced,
since older versions read them. Compaction rewrites the small files of the latest version into
files of the table's target size, in one commit that changes no row (`dataChange: false`);
the files it replaces stay on storage, for the versions before it. Vacuum deletes the files
that have been out of the table longer than the retention, which is never shorter than the
table's `delta.deletedFileRetentionDuration` (Delta's default: 7 days): delta-rs refuses a
shorter one. So every version younger than the retention stays readable (time travel), and a
reader still reading such a version keeps its files. Expired log entries (older than
`delta.logRetentionDuration`, 30 days by default, and before the latest checkpoint) go too.

An upkeep is due once `every` commits were made since the table's last compaction or vacuum
(read from the table's own history, so a killed run or another writer's commits count alike).
An upkeep with nothing to compact nor delete commits nothing, and is due again next time.
"""

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from copyjob_dagster.errors import DestinationError
from copyjob_dagster.stores.delta_layout import TARGET_FILE_BYTES, WRITER
from copyjob_dagster.stores.upkeep import Upkeep

UPKEEP_OPERATIONS = {"OPTIMIZE", "VACUUM END"}
VACUUM_STARTED = "VACUUM START"
RETENTION_PROPERTY = "delta.deletedFileRetentionDuration"


def commits_since_upkeep(table: DeltaTable, limit: int) -> int:
    """The table's commits since its last compaction or vacuum, counted up to `limit`."""
    commits = 0
    for entry in table.history(limit + 2):  # newest first; a vacuum is two entries
        operation = entry.get("operation")
        if operation in UPKEEP_OPERATIONS:
            break
        if operation != VACUUM_STARTED:
            commits += 1
    return min(commits, limit)


class DeltaUpkeep:
    """`maintain` for the Delta store (see the module's doc)."""

    _existing: Any  # the store's: the table's latest version, or an error
    _translated: Any  # the store's: delta-rs errors as the store's own
    location: Any

    def maintain(
        self, table: str, every: int, retention_hours: int | None, *, now: bool = False
    ) -> Upkeep | None:
        found: DeltaTable = self._existing(table)
        commits = commits_since_upkeep(found, every)
        if commits < every and not now:
            return None
        guard: AbstractContextManager[None] = self._translated(table, "maintaining")
        with guard:
            target = found.metadata().configuration.get("delta.targetFileSize")
            compacted = found.optimize.compact(
                target_size=None if target else TARGET_FILE_BYTES, writer_properties=WRITER
            )
            found = self._existing(table)
            with _retention_explained(self.location(table), found, retention_hours):
                deleted = found.vacuum(
                    retention_hours=retention_hours,
                    dry_run=False,
                    enforce_retention_duration=True,
                )
            found = self._existing(table)
            found.cleanup_metadata()
        return Upkeep(
            commits=commits,
            files_compacted=int(compacted.get("numFilesRemoved", 0)),
            files_written=int(compacted.get("numFilesAdded", 0)),
            files_deleted=len(deleted),
            version=found.version(),
        )


@contextmanager
def _retention_explained(where: str, table: DeltaTable, hours: int | None) -> Iterator[None]:
    """delta-rs's refusal of a retention shorter than the table's, said with the field."""
    try:
        yield
    except DeltaError as exc:
        if "retention" not in str(exc).lower():
            raise
        configured = table.metadata().configuration.get(RETENTION_PROPERTY)
        raise DestinationError(
            f"destination {where}: maintenance.retention_hours ({hours} hours) is shorter than "
            f"the table's own {RETENTION_PROPERTY} ({configured}): older versions would lose "
            f"their files; raise retention_hours or leave it out"
        ) from None
