"""Dagster's schema probes of its own event log, answered once per process in `copyjob run`.

Before most reads and writes of an asset's records, Dagster's SQL event log asks its database
whether a data migration has run (`has_secondary_index`: a query of the migrations table) and
whether the asset-key table has a column (`has_asset_key_col`: the table's columns, inspected).
A run records each table's materialization and checks, and reads its watermark and its check's
target materialization: with many small tables these probes were several queries per table
(about a tenth of the run's own thread in a 50-table run). A migration, once done, is not undone
while the process runs, so a probe that found one is kept; one that did not is asked again, as
before. Any other storage is left as it is.
"""

from collections.abc import Callable
from typing import Any

import dagster as dg
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

# Each takes the name asked about last (the second also a connection first).
_PROBES = ("has_secondary_index", "has_asset_key_col", "_has_asset_key_col_on_connection")


def remember_schema_probes(instance: dg.DagsterInstance) -> None:
    """Keep the positive answers of the instance's event-log schema probes for the process."""
    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        return
    for name in _PROBES:
        setattr(storage, name, remembered(getattr(storage, name)))


def remembered(probe: Callable[..., bool]) -> Callable[..., bool]:
    """`probe`, answering yes at once for what it once said yes to (its last argument)."""
    found: set[Any] = set()

    def remembered(*args: Any) -> bool:
        if args[-1] in found:
            return True
        if probe(*args):
            found.add(args[-1])
            return True
        return False

    return remembered
