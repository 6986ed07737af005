"""The upkeep of a destination's tables, where its format needs one (Delta: compaction and
vacuum), as the engine asks for it after a run."""

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Upkeep:
    """What one upkeep of a table did: compaction, then vacuum (`MaintainedTables`)."""

    commits: int
    """Commits to the table since its previous compaction or vacuum."""
    files_compacted: int
    """Small files rewritten, as `files_written` larger ones (their rows unchanged)."""
    files_written: int
    files_deleted: int
    """Files no version within the retention needs, deleted from storage."""
    version: int
    """The table's version after the upkeep."""


@runtime_checkable
class MaintainedTables(Protocol):
    """A destination whose tables are kept up: small files compacted, old files vacuumed."""

    def maintain(
        self, table: str, every: int, retention_hours: int | None, *, now: bool = False
    ) -> Upkeep | None:
        """Compact and vacuum `table` once `every` commits were made since its last upkeep
        (or `now`), deleting only files out of the table longer than `retention_hours` (None:
        the table's own retention); None when it was not due."""
        ...
